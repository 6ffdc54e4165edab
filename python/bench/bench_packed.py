"""Packed-sequence (THD) training shapes: rope_cuda.te.apply_rotary_pos_emb against the pure-torch
chain of the same semantics, eager and under torch.compile, forward and forward + backward.

Shapes: Llama-3-8B heads (q 32 + k 8 heads of 128 rotated as one [T, 40, 128] bf16 tensor, TE's
format "thd"), sequences 1,024 x 64, 64 x 1,024 and 8 x 8,192 tokens, cp_size 1 and 2 (rank 0's
load-balanced half). Each row: GPU time per call by CUDA-graph replay of back-to-back calls
(graph_timing.time_graph), and the copy of the same bytes (t read, out written) timed the same way.

Prints a markdown table; --json FILE also writes the numbers.
"""

import argparse
import json

import torch

from graph_timing import time_graph
from rope_cuda import te

HEADS, D = 40, 128


def reference(t, cos, sin, positions):
    """The pure-torch chain: gather each token's cos/sin row, rotate the halves."""
    c, s = cos[positions][:, None, :], sin[positions][:, None, :]
    x1, x2 = t[..., : D // 2].float(), t[..., D // 2:].float()
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).to(t.dtype)


def rank_positions(lengths, cp_size, device):
    parts = []
    for length in lengths:
        local = length // cp_size
        i = torch.arange(local, device=device)
        if cp_size > 1:
            chunk = local // 2
            i = torch.where(i < chunk, i, length - chunk + (i - chunk))  # rank 0: chunks 0 and 2cp-1
        parts.append(i)
    return torch.cat(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    dev = "cuda"
    inv_freq = 1.0 / 500000.0 ** (torch.arange(0, D, 2, device=dev).float() / D)
    rows = []
    for count, length in ((1024, 64), (64, 1024), (8, 8192)):
        for cp in (1, 2):
            lengths = [length] * count
            cu = torch.tensor([0] + [length * (i + 1) for i in range(count)], device=dev, dtype=torch.int32)
            tokens = count * length // cp
            angles = torch.arange(length, device=dev).float()[:, None] * inv_freq[None, :]
            freqs = torch.cat((angles, angles), dim=-1)[:, None, None, :]
            cos, sin = angles.cos(), angles.sin()
            positions = rank_positions(lengths, cp, dev)
            t = torch.randn(tokens, HEADS, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
            grad = torch.randn_like(t)
            src = torch.empty(tokens * HEADS * D, device=dev, dtype=torch.bfloat16)
            dst = torch.empty_like(src)
            compiled = torch.compile(reference, dynamic=True)

            def ours():
                return te.apply_rotary_pos_emb(t, freqs, "thd", cu_seqlens=cu, cp_size=cp, cp_rank=0)

            candidates = {
                "rope_cuda.te": ours,
                "torch eager": lambda: reference(t, cos, sin, positions),
                "torch.compile": lambda: compiled(t, cos, sin, positions),
            }
            with torch.no_grad():
                copy_us = time_graph(lambda i: dst.copy_(src), args.calls, args.samples)
            shape = f"{count}x{length}"
            for name, fn in candidates.items():
                with torch.no_grad():
                    fwd = time_graph(lambda i: fn(), args.calls, args.samples)

                def step(i, fn=fn):
                    (grad_t,) = torch.autograd.grad(fn(), t, grad)
                    return grad_t

                try:
                    bwd = time_graph(step, args.calls, args.samples)
                except RuntimeError as e:  # a chain that cannot be captured: say so, keep the row
                    print(f"{name} {shape} cp {cp}: forward + backward not timed: {str(e).splitlines()[0]}")
                    bwd = float("nan")
                rows.append(dict(shape=shape, cp=cp, tokens=tokens, impl=name, fwd_us=fwd, fwd_bwd_us=bwd,
                                 copy_us=copy_us))
    print("| shape | cp | tokens | impl | fwd (us) | fwd+bwd (us) | copy (us) | copy / fwd |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shape']} | {r['cp']} | {r['tokens']} | {r['impl']} | {r['fwd_us']:.1f} | {r['fwd_bwd_us']:.1f} | "
              f"{r['copy_us']:.1f} | {r['copy_us'] / r['fwd_us']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
