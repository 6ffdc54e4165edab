#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The README's performance tables from a rope_bench JSON file: Llama-3-8B shapes (32 q / 8 kv
heads x 128, bf16, int64 positions into a 131072-row fp32 cos/sin cache) for RoPE, RoPE + KV
append, QK-norm + RoPE and the attention prologue (Qwen3-8B), each next to the copy of its bytes
timed the same way in the same run (`copy_us`) and to the unfused chain where the bench has one;
then a decode step's kernel chain launched one after another and with programmatic dependent
launch, and the packed-sequence (THD) training rows when the file has them.

    bench/summary_table.py RESULTS.json

Prints Markdown. Exit status 1 when a row the table needs is missing or errored.
"""

import json
import re
import sys

# (label, benchmark name without Google Benchmark's suffixes, unfused companion or None)
ROWS = [
    ("RoPE, decode, warm L2", "decode_warm/table/T:{t}", None, (1, 64, 256)),
    ("RoPE, decode, computed cos/sin, warm L2", "decode_warm/computed/T:{t}", None, (1, 64, 256)),
    ("RoPE, table", "llama3_8b_prefill/fwd/table/out_of_place/T:{t}", "naive_fused/llama3_8b_prefill/T:{t}",
     (512, 4096, 16384, 65536)),
    ("RoPE, computed cos/sin", "llama3_8b_prefill/fwd/computed/out_of_place/T:{t}", None, (4096, 65536)),
    ("RoPE backward, table", "llama3_8b_prefill/bwd/table/out_of_place/T:{t}", None, (16384,)),
    ("RoPE + KV append, bf16 cache", "kv_append/fused/bf16_cache/T:{t}", "kv_append/unfused/bf16_cache/T:{t}",
     (1, 64, 4096, 16384, 65536)),
    ("RoPE + KV append, FP8 cache", "kv_append/fused/fp8_cache/T:{t}", "kv_append/unfused/fp8_cache/T:{t}",
     (1, 4096, 65536)),
    ("QK-RMSNorm + RoPE (Qwen3-8B)", "qk_norm/fused/T:{t}", "qk_norm/unfused/T:{t}", (1, 64, 4096, 16384, 65536)),
    ("Attention prologue: QK-norm + RoPE + k/v to a bf16 cache", "prologue/fused/bf16_cache/T:{t}",
     "prologue/unfused/bf16_cache/T:{t}", (1, 64, 4096, 65536)),
    ("Attention prologue: QK-norm + RoPE + k/v to an FP8 cache + q to FP8", "prologue/fused/fp8_cache_fp8_q/T:{t}",
     "prologue/unfused/fp8_cache_fp8_q/T:{t}", (1, 64, 4096, 65536)),
]
# Programmatic dependent launch: a decode step's chain (producer, rope, consumer), per step.
CHAIN_TOKENS = (1, 8, 64)
# Training on packed sequences (THD): sequences x tokens, forward and backward, cp 1 and 2.
THD_SHAPES = ("1024x64", "64x1024", "8x8192")
_SUFFIX = re.compile(r"(/iterations:\d+|/manual_time|/real_time)")
_TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def main(path):
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        rows[_SUFFIX.sub("", b.get("run_name", b["name"]))] = b
    ctx = data.get("context", {})
    missing = []

    def us(name):
        b = rows.get(name)
        if b is None or b.get("error_occurred"):
            missing.append(name)
            return None
        return b["real_time"] * _TO_US[b.get("time_unit", "ns")]

    print("| workload | tokens | rope (us) | copy of its bytes (us) | x copy | unfused chain (us) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, pattern, unfused, tokens in ROWS:
        for t in tokens:
            name = pattern.format(t=t)
            rope_us = us(name)
            if rope_us is None:
                continue
            b = rows[name]
            copy = b.get("copy_us")
            other = us(unfused.format(t=t)) if unfused else None
            print(f"| {label} | {t} | {rope_us:.2f} | {copy:.2f} | {b['x_copy']:.2f} | "
                  f"{f'{other:.2f}' if other is not None else '-'} |")
    chain = [(t, us(f"chain/serial/T:{t}"), us(f"chain/programmatic/T:{t}")) for t in CHAIN_TOKENS]
    if all(serial is not None and pdl is not None for _, serial, pdl in chain):
        print()
        print("| decode step chain (producer, RoPE, consumer) | tokens | serial (us) | programmatic (us) | saved (us) |")
        print("|---|---:|---:|---:|---:|")
        for t, serial, pdl in chain:
            print(f"| launched with programmatic dependent launch | {t} | {serial:.2f} | {pdl:.2f} | {serial - pdl:.2f} |")
    thd = [(shape, cp, pass_, variant) for shape in THD_SHAPES for cp in (1, 2) for pass_ in ("fwd", "bwd")
           for variant in ("plain", "offsets")]
    if any(f"thd/{p}/{shape}/{v}/cp:{cp}" in rows for shape, cp, p, v in thd):
        print()
        print("| packed sequences (THD, cu_seqlens) | pass | cp | rope (us) | copy of its bytes (us) | x copy | "
              "positions array (us) |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for shape, cp, pass_, variant in thd:
            name = f"thd/{pass_}/{shape}/{variant}/cp:{cp}"
            rope_us = us(name)
            if rope_us is None:
                continue
            b = rows[name]
            array = us(f"thd_positions_array/fwd/{shape}/plain/cp:1") if (pass_, variant, cp) == ("fwd", "plain", 1) else None
            print(f"| {shape}, {'offsets' if variant == 'offsets' else 'no offsets'} | {pass_} | {cp} | {rope_us:.2f} | "
                  f"{b.get('copy_us'):.2f} | {b['x_copy']:.2f} | {f'{array:.2f}' if array is not None else '-'} |")
    if missing:
        print(f"summary_table.py: missing or errored rows: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
