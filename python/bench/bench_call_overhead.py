"""What an eager caller waits for per call at decode sizes: CUDA events around back-to-back
Python calls (no CUDA graph), next to the floor of any torch op in the same process.

Shapes: Llama-3.1-8B (32 q / 8 kv heads x 128, bf16), q and k slices of a fused qkv buffer
[T, 48 * 128], int64 positions into a 131072-row fp32 [cos | sin] cache (vLLM's layout); for the
Hugging Face drop-in, q and k as the transposed [1, H, T, D] views a transformers model passes,
cos/sin [1, T, 128] rows in bf16 (what its rotary module returns).

Rows (each a median over samples of `--calls` back-to-back calls, us per call):
- floor: an empty custom op (torch.library, CUDA, launches nothing): the dispatcher's own cost;
- torch.add: one elementwise kernel on q's slice (a torch op that launches);
- rope_: torch.ops.rope_cuda.rope_ (the raw in-place op, computed cos/sin);
- vllm.rotary_embedding, hf.apply_rotary_pos_emb: the drop-ins;
- each rope row once more under torch.no_grad() where autograd could matter (hf).

Prints a markdown table; --json FILE also writes the numbers.
"""

import argparse
import json
import statistics

import torch

import rope_cuda
from rope_cuda import hf, vllm

HEADS, KV_HEADS, D, ROWS = 32, 8, 128, 131072


@torch.library.custom_op("rope_bench::nothing", mutates_args=())
def _nothing(x: torch.Tensor) -> None:
    return None


def per_call_us(call, calls, samples):
    for _ in range(20):
        call()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(samples):
        start.record()
        for _ in range(calls):
            call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / calls)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    dev = "cuda"
    inv_freq = 1.0 / 500000.0 ** (torch.arange(0, D, 2, device=dev).float() / D)
    angles = torch.arange(ROWS, device=dev).float()[:, None] * inv_freq[None, :]
    cache = torch.cat((angles.cos(), angles.sin()), dim=-1)
    rows = []
    for t in args.tokens:
        qkv = torch.randn(t, (HEADS + 2 * KV_HEADS) * D, device=dev, dtype=torch.bfloat16)
        q, k = qkv[:, : HEADS * D], qkv[:, HEADS * D: (HEADS + KV_HEADS) * D]
        q3, k3 = q.view(t, HEADS, D), k.view(t, KV_HEADS, D)
        positions = torch.randint(0, ROWS, (t,), device=dev)
        # transformers' layout: [1, H, T, D] views of [1, T, H, D], bf16 duplicated-halves cos/sin.
        q4, k4 = q3.unsqueeze(0).transpose(1, 2), k3.unsqueeze(0).transpose(1, 2)
        emb = torch.cat((angles[positions], angles[positions]), dim=-1)[None]
        cos, sin = emb.cos().to(torch.bfloat16), emb.sin().to(torch.bfloat16)
        calls = {
            "floor (empty custom op)": lambda: _nothing(q),
            "torch.add (q slice + 1)": lambda: torch.add(q, 1),
            "rope_ (raw op, computed)": lambda: torch.ops.rope_cuda.rope_(q3, k3, positions, inv_freq=inv_freq),
            "rope_cuda.apply_rope_ (computed)": lambda: rope_cuda.apply_rope_(q3, k3, positions=positions,
                                                                               inv_freq=inv_freq),
            "vllm.rotary_embedding": lambda: vllm.rotary_embedding(positions, q, k, D, cache, True),
            "hf.apply_rotary_pos_emb": lambda: hf.apply_rotary_pos_emb(q4, k4, cos, sin),
        }
        for name, call in calls.items():
            us = per_call_us(call, args.calls, args.samples)
            rows.append({"tokens": t, "call": name, "us_per_call": us})
        with torch.no_grad():
            us = per_call_us(calls["hf.apply_rotary_pos_emb"], args.calls, args.samples)
        rows.append({"tokens": t, "call": "hf.apply_rotary_pos_emb (no_grad)", "us_per_call": us})

    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| T | call | us per call |\n|---:|---|---:|")
    for r in rows:
        print(f"| {r['tokens']} | {r['call']} | {r['us_per_call']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
