#!/usr/bin/env python3
"""Where a kernel's warps wait, by instruction class: a summary of Nsight Compute's source
page (`ncu -i REPORT --page source --csv --print-source sass`).

    scripts/ncu-stalls.py SOURCE.csv [--top N]    (N: instructions listed, default 25)

The CSV holds one table per profiled launch (a header row starting with an address column,
then one row per SASS instruction). For each launch this prints the warp-state samples
summed by opcode class (tensor core, barriers and waits, float, conversions, integer,
shared loads, global stores, ...) with every sample column that the CSV carries (the
all-samples total, the not-issued ones and, where ncu writes them, one per stall reason),
then the N instructions with the most samples. Columns are found by name (any numeric
column whose name mentions samples or a stall), so that a change in ncu's naming leaves a
summary of what is there rather than an error; the raw CSV stays beside it.

Why (benches/NOTES.md): the fused bf16 epilogue of the sm_90a GEMM costs ~2 us per 128x256
tile where its ~630 instructions per warp would issue in ~0.7 us; which instructions the
warps wait on (the shared-memory parameter loads, the conversions, the stores) decides how
to hide it.
"""
import argparse
import csv
import re
import sys
from collections import defaultdict

CLASSES = [
    ("tensor core", r"^(HGMMA|IGMMA|WARPGROUP)"),
    ("barrier / mbarrier wait", r"^(SYNCS|BAR|WARPSYNC|BSYNC|BSSY|ELECT|DEPBAR|MEMBAR|ERRBAR|CCTL)"),
    ("TMA / bulk copy", r"^(UTMA|UBLKCP|UTMACCTL)"),
    ("int->float convert", r"^(I2F|I2FP)"),
    ("float->bf16/f16 pack", r"^F2FP"),
    ("other convert", r"^(F2I|F2F|FRND)"),
    ("float math", r"^(FMUL|FADD|FFMA|FMNMX|FSEL|FSETP|FCHK|MUFU)"),
    ("warp shuffle / vote", r"^(SHFL|VOTE|REDUX|MATCH)$"),
    ("shared load/store/atomic", r"^(LDS|STS|LDSM|STSM|ATOMS)$"),
    ("local memory (spill)", r"^(LDL|STL)$"),
    ("global load", r"^(LDG|LD|LDGSTS)$"),
    ("global store / atomic", r"^(STG|ST|RED|ATOM|ATOMG)$"),
    ("integer / address", r"^(IMAD|IADD|IADD3|LEA|LOP|LOP3|SHF|ISETP|IMNMX|SEL|MOV|PRMT|CS2R|S2R|S2UR|IABS|POPC|FLO|BREV|VIADD|IMUL)$"),
    ("uniform datapath", r"^U"),
    ("control", r"^(BRA|EXIT|RET|CALL|BRX|JMP|NOP|YIELD|BPT|KILL)"),
]


def opcode(sass):
    """The opcode of a SASS line, without predicate or modifiers: '@P0 FADD R1, ...' -> FADD."""
    t = sass.strip().split()
    if t and t[0].startswith("@"):
        t = t[1:]
    return t[0].split(".")[0] if t else "?"


def klass(op):
    for name, pat in CLASSES:
        if re.match(pat, op):
            return name
    return "other"


def number(v):
    try:
        return float(str(v).replace(",", ""))
    except ValueError:
        return None


def tables(path):
    """Yields (kernel, header, rows) per table: a new table starts at each header row, and
    the "Kernel Name" row before it names the kernel."""
    kernel, header, rows = "", None, []
    with open(path, newline="", errors="replace") as f:
        for row in csv.reader(f):
            if not row:
                continue
            first = row[0].strip().strip('"').lower()
            if first == "kernel name":
                if header and rows:
                    yield kernel, header, rows
                kernel, header, rows = (row[1] if len(row) > 1 else ""), None, []
            elif "address" in first and any("source" in c.lower() for c in row):
                if header and rows:
                    yield kernel, header, rows
                header, rows = row, []
            elif header and len(row) == len(header):
                rows.append(row)
    if header and rows:
        yield kernel, header, rows


def summarize(header, rows, top):
    src = next(i for i, c in enumerate(header) if "source" in c.lower())
    named = [i for i, c in enumerate(header) if i != src and re.search(r"sampl|stall", c, re.I)]
    cols = [i for i in named if any(number(r[i]) is not None for r in rows[:2000])]
    if not cols:
        print("  no numeric sample columns found; columns are:", ", ".join(header))
        return
    main = cols[0]
    for i in cols:
        if "all samples" in header[i].lower():
            main = i
    total = sum(number(r[main]) or 0 for r in rows)
    print(f"  {len(rows)} instructions, {total:.0f} samples in '{header[main]}'")
    if total == 0:
        print("  (no samples: the launch was too short for the sampling interval, or not sampled)")
        return
    by_class = defaultdict(lambda: [0.0] * len(cols))
    for r in rows:
        acc = by_class[klass(opcode(r[src]))]
        for j, i in enumerate(cols):
            acc[j] += number(r[i]) or 0
    # The sample columns that matter: the main one and any holding >= 1% of it.
    shown = [j for j, i in enumerate(cols) if i == main or sum(a[j] for a in by_class.values()) >= 0.01 * total]
    names = [header[cols[j]] for j in shown]
    print("  by instruction class (% of all samples; then each column's samples):")
    print("    " + f"{'class':<26}{'%':>7}  " + " | ".join(names))
    for name, acc in sorted(by_class.items(), key=lambda kv: -kv[1][cols.index(main)]):
        share = 100.0 * acc[cols.index(main)] / total if total else 0.0
        if share < 0.1:
            continue
        print("    " + f"{name:<26}{share:>6.1f}%  " + " | ".join(f"{acc[j]:.0f}" for j in shown))
    print(f"  the {top} instructions with the most samples:")
    ranked = sorted(rows, key=lambda r: -(number(r[main]) or 0))[:top]
    for r in ranked:
        print(f"    {number(r[main]) or 0:>8.0f}  {r[0]:>8}  {r[src].strip()[:90]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", help="ncu -i REPORT --page source --csv --print-source sass output")
    ap.add_argument("--top", type=int, default=25, help="instructions listed per launch")
    args = ap.parse_args()
    n, previous = 0, None
    for kernel, header, rows in tables(args.csv):
        # NOTE: the source CSVs of ncu 2025.3 seen here hold each launch's table twice, row
        # for row: a repeat is skipped (two launches with every counter equal do not happen).
        if rows == previous:
            continue
        previous = rows
        n += 1
        print(f"== launch {n}: {kernel}")
        summarize(header, rows, args.top)
    if n == 0:
        print(f"no source table found in {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
