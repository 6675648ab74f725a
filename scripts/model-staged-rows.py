#!/usr/bin/env python3
"""A model of StagedRows (kernels/gemm_sm90.cuh): a warp's 16-row piece of 1-, 2- or 4-byte
outputs written into its 1 KiB shared-memory buffer and read back as 16-byte row pieces.

The index arithmetic is transcribed from the kernel (swizzle, at, the constructor's st, swz,
ld and gofs, and store's writes); the model then checks, for each element size:
- every output element of the piece is written exactly once and read back by the lane whose
  16-byte global store covers its row and column (so the tile's outputs land where the
  unstaged stores would put them);
- no shared-memory access has a bank conflict, under the hardware's wavefront split: one
  wavefront for a warp's 2-byte stores, half warps for 8-byte stores, one per 8x8 matrix for
  stmatrix.x4, quarter warps for 16-byte loads.
It needs no GPU: CI runs it beside scripts/model-pingpong.py. Exit status 1 on a failure.
"""
import sys

BANKS = 32


def swizzle(elem, r):
    return ((r >> 1) & 1) << 1 if elem == 4 else (r >> 1) & 3


def at(elem, r, c):
    return 64 * r + ((c ^ swizzle(elem, r)) << 4)


def conflict_free(accesses):
    """accesses: (address, bytes) of one wavefront; each 4-byte word in one bank, and two
    different words in one bank are a conflict."""
    banks = {}
    for a, n in accesses:
        for w in range(a // 4, (a + n - 1) // 4 + 1):
            banks.setdefault(w % BANKS, set()).add(w)
    return all(len(words) == 1 for words in banks.values())


def model(elem):
    cols = 64 // elem  # a piece's columns
    qs = cols // 8  # n8 blocks per piece
    errors = []
    buf = {}  # byte address -> (row, col, byte of the element)

    def write(addr, row, col, nbytes):
        for b in range(nbytes):
            e = (row, col + b // elem, b % elem)
            if addr + b in buf:
                errors.append(f"{elem}-byte: byte {addr + b} written twice")
            buf[addr + b] = e

    # The constructor.
    st = {}
    swz = {}
    for lane in range(32):
        if elem == 2:
            mi, rr = lane >> 3, (lane & 7) + 8 * ((lane >> 3) & 1)
            for k in range(2):
                st[lane, k] = at(elem, rr, 2 * k + (mi >> 1))
        else:
            for h in range(2):
                r = (lane >> 2) + 8 * h
                st[lane, h] = 64 * r + 2 * elem * (lane & 3)
                swz[lane, h] = swizzle(elem, r)

    # store(): lane (gid, tig) holds, of block q in row gid + 8h, columns 8q + 2tig and + 1.
    if elem == 4:
        for q in range(2):
            for h in range(2):
                wave = []
                for lane in range(32):
                    gid, tig = lane >> 2, lane & 3
                    a = st[lane, h] + 32 * (q ^ (swz[lane, h] >> 1))
                    write(a, gid + 8 * h, 8 * q + 2 * tig, 8)
                    wave.append((a, 8))
                for half in (wave[:16], wave[16:]):
                    if not conflict_free(half):
                        errors.append(f"4-byte: block {q} row half {h}: 8-byte stores conflict")
    elif elem == 2:
        # stmatrix.x4: matrix j's row i at the address lane 8j + i gives; thread t's register j
        # is row t / 4, bytes 4 (t % 4) .. + 3 of matrix j. Registers: p[2k][0], p[2k][1],
        # p[2k + 1][0], p[2k + 1][1] (block 2k or 2k + 1, rows 0-7 or 8-15).
        for k in range(2):
            for j in range(4):
                q, h = 2 * k + (j >> 1), j & 1
                wave = []
                for t in range(32):
                    row_addr = st[8 * j + (t >> 2), k]
                    a = row_addr + 4 * (t & 3)
                    write(a, (t >> 2) + 8 * h, 8 * q + 2 * (t & 3), 4)
                    wave.append((a, 4))
                if not conflict_free(wave):
                    errors.append(f"2-byte: stmatrix {k} matrix {j} conflicts")
    else:
        for q in range(8):
            for h in range(2):
                wave = []
                for lane in range(32):
                    gid, tig = lane >> 2, lane & 3
                    a = st[lane, h] + (((q >> 1) ^ swz[lane, h]) << 4) + 8 * (q & 1)
                    write(a, gid + 8 * h, 8 * q + 2 * tig, 2)
                    wave.append((a, 2))
                if not conflict_free(wave):
                    errors.append(f"1-byte: block {q} row half {h}: 2-byte stores conflict")
    if len(buf) != 1024:
        errors.append(f"{elem}-byte: {len(buf)} of 1024 bytes written")

    # The reads: lane's ld[i] (row 8i + lane / 4, chunk lane % 4) stored at gofs[i] = that
    # row, column (16 / elem)(lane % 4).
    for i in range(2):
        for quarter in range(4):
            wave = []
            for lane in range(8 * quarter, 8 * quarter + 8):
                r, c = 8 * i + (lane >> 2), lane & 3
                a = at(elem, r, c)
                wave.append((a, 16))
                col0 = (16 // elem) * c
                for b in range(16):
                    want = (r, col0 + b // elem, b % elem)
                    if buf.get(a + b) != want:
                        errors.append(f"{elem}-byte: read {i} lane {lane} byte {b}: {buf.get(a + b)} != {want}")
            if not conflict_free(wave):
                errors.append(f"{elem}-byte: read {i} quarter {quarter}: 16-byte loads conflict")
    return errors


def main():
    errors = []
    for elem in (1, 2, 4):
        e = model(elem)
        print(f"StagedRows<{elem}>: {'ok' if not e else f'{len(e)} errors'}")
        errors += e
    for e in errors[:20]:
        print("  " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
