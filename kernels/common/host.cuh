// host.cuh — host-side helpers of the launchers: answers asked of the driver once per device.
#pragma once

#include <atomic>

#include <cuda_runtime.h>

namespace qk {

// A positive value that `query(dev, &value)` gives for the current device, asked once per
// device (and per key < KEYS) and kept; a failed query, or a value <= 0, is not kept.
// Devices beyond 32 are asked every time.
template <int KEYS = 1> class PerDevice {
  std::atomic<int> value_[32][KEYS]{};  // 0: not asked yet

 public:
  template <typename Query> cudaError_t get(int key, int *out, Query &&query) {
    int dev = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err != cudaSuccess) return err;
    const bool kept = dev >= 0 && dev < 32 && key >= 0 && key < KEYS;
    if (kept && (*out = value_[dev][key].load(std::memory_order_relaxed)) > 0) return cudaSuccess;
    err = query(dev, out);
    if (err == cudaSuccess && kept && *out > 0) value_[dev][key].store(*out, std::memory_order_relaxed);
    return err;
  }
};

// Raises a kernel's dynamic shared-memory limit once per device.
template <auto Kernel>
cudaError_t set_smem_limit_once(int bytes) {
  static PerDevice<> done;
  int set = 0;
  return done.get(0, &set, [&](int, int *o) {
    *o = 1;
    return cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  });
}

}  // namespace qk
