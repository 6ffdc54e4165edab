"""The seed's sweep from PyTorch: rope_cuda against torch.compile of the seed's formula and a copy.

Shape: x [N, 128] fp32, one fp32 cos/sin row [N, 64] per token, half-split pairs, out of place
(bench/rope_bench.cu's `original/fp32` rows). Each variant is timed with CUDA events around a
CUDA-graph replay of back-to-back calls, median of 7 samples, in two modes:
- warm: every call on the same inputs (what a kernel sees right after the one that wrote x);
- cold: each call of the graph on its own input set, enough sets to cover twice the L2 cache,
  so a call finds little of its data in L2 (as the C++ bench's L2-flushed rows).

Variants (same bytes: x and cos/sin read once, y written once):
- rope_cuda: rope_cuda.apply_rope(x[:, None], cos=cos, sin=sin) (positions: the token index);
- torch.compile: torch.compile of the seed's formula (halves, two products, subtract, add, cat);
- copy: torch's copy of a tensor of half those bytes (read + write), the ceiling.

Writes results.json and results.md to --out.
"""

import argparse
import json
import os

import torch

import rope_cuda
from graph_timing import time_graph

D = 128


def seed_formula(x, cos, sin):
    x1, x2 = x[:, : D // 2], x[:, D // 2:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


SEED_COMPILED = torch.compile(seed_formula, dynamic=False)


def min_bytes(n):
    return n * (2 * D * 4 + 2 * (D // 2) * 4)


def input_sets(n, count):
    sets = []
    for _ in range(count):
        x = torch.randn(n, D, device="cuda")
        angles = torch.rand(n, D // 2, device="cuda") * 6.283
        src = torch.empty(min_bytes(n) // 8, device="cuda")
        sets.append({"x": x, "cos": angles.cos(), "sin": angles.sin(), "src": src, "dst": torch.empty_like(src)})
    return sets


VARIANTS = {
    "rope_cuda": lambda s: rope_cuda.apply_rope(s["x"][:, None], cos=s["cos"], sin=s["sin"]),
    "torch.compile": lambda s: SEED_COMPILED(s["x"], s["cos"], s["sin"]),
    "copy": lambda s: s["dst"].copy_(s["src"]),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 10240, 18432, 26624, 63488, 1048576])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results_seed"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size

    results = []
    for n in args.tokens:
        cold_sets = max(2, -(-2 * l2 // min_bytes(n)))
        for mode, count in (("warm", 1), ("cold", cold_sets)):
            sets = input_sets(n, count)
            calls = max(count, 256 if n <= 65536 else 16)
            for name, fn in VARIANTS.items():
                us = time_graph(lambda i: fn(sets[i % len(sets)]), calls)
                results.append({"tokens": n, "mode": mode, "variant": name, "us": us,
                                "GBps": min_bytes(n) / us / 1e3})
                print(f"N={n:8d} {mode:4s} {name:14s} {us:9.2f} us  {min_bytes(n) / us / 1e3:7.0f} GB/s", flush=True)
            del sets
            torch.cuda.empty_cache()

    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    by = {(r["tokens"], r["mode"], r["variant"]): r["us"] for r in results}
    lines = ["| N | mode | rope_cuda us | torch.compile us | copy us | rope_cuda / torch.compile time | copy / rope_cuda time |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for n in args.tokens:
        for mode in ("warm", "cold"):
            ours, comp, copy = by[n, mode, "rope_cuda"], by[n, mode, "torch.compile"], by[n, mode, "copy"]
            lines.append(f"| {n} | {mode} | {ours:.2f} | {comp:.2f} | {copy:.2f} | {ours / comp:.2f} | {copy / ours:.2f} |")
    md = "\n".join(lines)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"{meta['device']}, torch {meta['torch']}, CUDA {meta['cuda']}\n\n" + md + "\n")
    print(md)


if __name__ == "__main__":
    main()
