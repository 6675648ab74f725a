#!/usr/bin/env bash
# Installs CUDA 13.0's compiler (nvcc, ptxas, cudart, CCCL headers), cuobjdump/nvdisasm
# for SASS inspection, and libclang for bindgen, from PyPI wheels, into an ignored
# folder of this repository. No system CUDA is needed or touched.
#
#   scripts/install-cuda-toolchain.sh            # installs into .cuda/ (idempotent)
#   eval "$(scripts/install-cuda-toolchain.sh --env)"   # installs if needed, then exports
#
# The GPU machines run driver 580 (CUDA 13.0), so 13.0 is the compiler to pin.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${QK_CUDA_DIR:-$ROOT/.cuda}"
PY="${PYTHON:-python3}"

PINS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-nvvm==13.0.88
  nvidia-cuda-cuobjdump==13.2.86
  nvidia-cuda-nvdisasm==13.2.86
  libclang==18.1.1
)
STAMP="$DEST/.installed-$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-16)"

if [[ ! -f "$STAMP" ]]; then
  echo "installing the CUDA 13.0 toolchain wheels into $DEST" >&2
  rm -rf "$DEST"
  mkdir -p "$DEST"
  "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$DEST/py" "${PINS[@]}" >&2
  touch "$STAMP"
fi

CUDA_HOME="$DEST/py/nvidia/cu13"
LIBCLANG_DIR="$DEST/py/clang/native"
for f in "$CUDA_HOME/bin/nvcc" "$CUDA_HOME/bin/ptxas" "$CUDA_HOME/lib/libcudart_static.a" \
         "$CUDA_HOME/bin/cuobjdump" "$LIBCLANG_DIR/libclang.so"; do
  [[ -e "$f" ]] || { echo "install-cuda-toolchain: missing $f after install" >&2; exit 1; }
done

if [[ "${1:-}" == "--env" ]]; then
  echo "export CUDA_HOME='$CUDA_HOME'"
  echo "export NVCC='$CUDA_HOME/bin/nvcc'"
  echo "export PATH='$CUDA_HOME/bin':\"\$PATH\""
  echo "export LIBCLANG_PATH='$LIBCLANG_DIR'"
else
  echo "CUDA toolchain ready. Use it with:" >&2
  echo "  export CUDA_HOME='$CUDA_HOME'" >&2
  echo "  export PATH='$CUDA_HOME/bin':\$PATH" >&2
  echo "  export LIBCLANG_PATH='$LIBCLANG_DIR'" >&2
  echo "or: eval \"\$(scripts/install-cuda-toolchain.sh --env)\"" >&2
fi
