"""Llama-3-8B RoPE from PyTorch: rope_cuda vs transformers eager vs torch.compile of transformers.

Shapes: 32 q heads, 8 kv heads, head_dim 128, bf16, q/k slices of a fused qkv buffer [T, 48 * 128],
int64 random positions into a 131072-row fp32 cos/sin cache, T = 1 ... 65536.

Two times per call, both medians over repeated samples in one process:
- kernel: CUDA events around a CUDA-graph replay of REPS back-to-back calls (GPU time only; warm L2);
- end to end: CUDA events around REPS eager Python calls (what a caller pays, launch path included).

Variants (each computes the same rotation of q and k):
- rope_cuda vllm: rope_cuda.vllm.rotary_embedding (in place, fused [cos | sin] cache);
- rope_cuda computed: torch.ops.rope_cuda.rope_ with inv_freq (cos/sin computed in the kernel);
- hf eager: transformers' apply_rotary_pos_emb on the [1, H, T, D] views, with the cos/sin rows
  gathered from the cache by position (the work a rotary module + the function do);
- hf torch.compile: torch.compile of that same function.

Writes results.json, results.md (the table) and results.png (if matplotlib is installed) to --out.
"""

import argparse
import json
import os
import statistics

import torch

import rope_cuda  # noqa: F401  (registers the ops)
from rope_cuda import vllm
from graph_timing import time_graph

HEADS, KV_HEADS, D, ROWS = 32, 8, 128, 131072


def llama3_inv_freq():
    config = {"head_dim": D, "max_position_embeddings": 131072,
              "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
    return rope_cuda.inv_freq_from_config(config)[0].cuda()


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def hf_apply(q, k, cos, sin):
    """transformers' apply_rotary_pos_emb (imported when available, else the same formula)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


try:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as HF_FN
except ImportError:
    HF_FN = hf_apply


def hf_rope(q, k, positions, cos_dup, sin_dup):
    """The rotary module's gather (cos/sin rows in the model's dtype) + transformers' function."""
    t = q.shape[0]
    cos, sin = cos_dup[positions][None].to(q.dtype), sin_dup[positions][None].to(q.dtype)
    return HF_FN(q.view(1, t, HEADS, D).transpose(1, 2), k.view(1, t, KV_HEADS, D).transpose(1, 2), cos, sin)


HF_COMPILED = torch.compile(hf_rope)  # one function for every T: Dynamo recompiles once, as dynamic


def variants(t, inv_freq, cache, cos_dup, sin_dup):
    qkv = torch.randn(t, (HEADS + 2 * KV_HEADS) * D, device="cuda", dtype=torch.bfloat16)
    q, k = qkv[:, : HEADS * D], qkv[:, HEADS * D: (HEADS + KV_HEADS) * D]
    q3, k3 = q.view(t, HEADS, D), k.view(t, KV_HEADS, D)
    positions = torch.randint(0, ROWS, (t,), device="cuda")
    return {
        "rope_cuda vllm": lambda: vllm.rotary_embedding(positions, q, k, D, cache, True),
        "rope_cuda computed": lambda: torch.ops.rope_cuda.rope_.default(q3, k3, positions, None, None, None, inv_freq,
                                                                         1.0, False, False),
        "hf eager": lambda: hf_rope(q, k, positions, cos_dup, sin_dup),
        "hf torch.compile": lambda: HF_COMPILED(q, k, positions, cos_dup, sin_dup),
    }


def time_eager(fn, reps, samples=7):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(samples):
        torch.cuda.synchronize()
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / reps)
    return statistics.median(times)


def min_bytes(t):
    """q and k read and written once, one cos/sin row per token, the positions."""
    return t * ((HEADS + KV_HEADS) * D * 2 * 2 + D * 4 + 8)


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "kernel_us", "kernel time (CUDA-graph replay)"),
                           (axes[1], "e2e_us", "end-to-end time per call")):
        for name in dict.fromkeys(r["variant"] for r in results):
            rows = [r for r in results if r["variant"] == name]
            ax.plot([r["tokens"] for r in rows], [r[key] for r in rows], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens")
        ax.set_ylabel("us")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Llama-3-8B RoPE (q32/k8 x 128, bf16, fused qkv, int64 positions), {torch.cuda.get_device_name()}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def table(results, tokens):
    names = list(dict.fromkeys(r["variant"] for r in results))
    by = {(r["tokens"], r["variant"]): r for r in results}
    lines = ["| T | " + " | ".join(f"{n} kernel / e2e us" for n in names) + " | rope_cuda vllm GB/s | vs compile | vs eager |",
             "|---:|" + "---:|" * (len(names) + 3)]
    for t in tokens:
        cells = [f"{by[t, n]['kernel_us']:.2f} / {by[t, n]['e2e_us']:.2f}" for n in names]
        ours = by[t, "rope_cuda vllm"]["kernel_us"]
        lines.append(f"| {t} | " + " | ".join(cells) +
                     f" | {min_bytes(t) / ours / 1e3:.0f} | {by[t, 'hf torch.compile']['kernel_us'] / ours:.2f}x"
                     f" | {by[t, 'hf eager']['kernel_us'] / ours:.1f}x |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 512, 4096, 16384, 65536])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    inv_freq = llama3_inv_freq()
    angles = torch.arange(ROWS, device="cuda", dtype=torch.float32)[:, None] * inv_freq
    cache = torch.cat([angles.cos(), angles.sin()], dim=-1)
    cos_dup, sin_dup = torch.cat([angles.cos()] * 2, dim=-1), torch.cat([angles.sin()] * 2, dim=-1)

    results = []
    for t in args.tokens:
        reps = 200 if t <= 512 else (50 if t <= 16384 else 10)
        for name, fn in variants(t, inv_freq, cache, cos_dup, sin_dup).items():
            e2e = time_eager(fn, reps)
            kernel = time_graph(lambda i: fn(), reps)
            results.append({"tokens": t, "variant": name, "kernel_us": kernel, "e2e_us": e2e})
            print(f"T={t:6d} {name:20s} kernel {kernel:9.2f} us   end-to-end {e2e:9.2f} us", flush=True)

    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    md = table(results, args.tokens)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    plot(results, os.path.join(args.out, "results.png"))


if __name__ == "__main__":
    main()
