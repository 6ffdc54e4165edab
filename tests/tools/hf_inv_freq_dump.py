#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Dumps real torch fp32 inv_freq for the configs of inv_freq_vs_fp32.py, on CPU and CUDA.

    python3 tests/tools/hf_inv_freq_dump.py OUT.json

Runs where torch is installed (the GPU machine); the expressions are HF transformers'
`_compute_*_parameters` lines, run with torch itself, so torch's own pow / reciprocal kernels
are what is measured. Where transformers is importable, Llama's rotary embedding module is also
asked for its inv_freq ("[transformers]" entries). Feed OUT.json to
`inv_freq_vs_fp32.py --torch-json`.
"""

import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inv_freq_vs_fp32 import configs  # noqa: E402


def default(base, dim, dev):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(device=dev, dtype=torch.float) / dim))


def hf_torch(c, dev):
    t, base, dim, factor = c["type"], c["base"], c["dim"], c["factor"]
    if t == 0:
        return default(base, dim, dev)
    if t == 1:
        inv = default(base, dim, dev)
        inv /= factor
        return inv
    if t == 3:
        seq = c["seq"] if c["seq"] > c["orig"] else c["orig"]
        b = base * ((factor * seq / c["orig"]) - (factor - 1)) ** (dim / (dim - 2))
        return default(b, dim, dev)
    if t == 4:
        def corr(rot):
            return (dim * math.log(c["orig"] / (rot * 2 * math.pi))) / (2 * math.log(base))
        low = max(math.floor(corr(c["beta_fast"])), 0)
        high = min(math.ceil(corr(c["beta_slow"])), dim - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
        pos_freqs = base ** (torch.arange(0, dim, 2).to(device=dev, dtype=torch.float) / dim)
        extrap = 1.0 / pos_freqs
        interp = 1.0 / (factor * pos_freqs)
        ef = 1 - ramp.to(device=dev, dtype=torch.float)
        return interp * (1 - ef) + extrap * ef
    if t == 5:
        inv = default(base, dim, dev)
        low_wl, high_wl = c["orig"] / c["low"], c["orig"] / c["high"]
        wavelen = 2 * math.pi / inv
        llama = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (c["orig"] / wavelen - c["low"]) / (c["high"] - c["low"])
        smoothed = (1 - smooth) * llama / factor + smooth * llama
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        return torch.where(medium, smoothed, llama)
    if t == 6:
        short, long = c["ext"]
        ext = torch.tensor(long if c["seq"] > c["orig"] else short, dtype=torch.float32, device=dev)
        shape = torch.arange(0, dim, 2, dtype=torch.int64, device=dev).float() / dim
        return 1.0 / (ext * base**shape)
    raise ValueError(t)


def hexes(t):
    return [float(v).hex() for v in t.detach().cpu().tolist()]


def transformers_entries(out, devs):
    try:
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    except Exception as e:  # noqa: BLE001
        print(f"transformers not usable: {e!r}", file=sys.stderr)
        return
    cases = {
        "Llama-3 (default, 500000, dim 128)": {"rope_type": "default", "rope_theta": 500000.0},
        "Llama-3.1 (llama3 x8, 500000, dim 128)": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 8192},
    }
    for name, rp in cases.items():
        for dev in devs:
            try:
                cfg = LlamaConfig(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                                  max_position_embeddings=131072, rope_parameters=rp)
                emb = LlamaRotaryEmbedding(cfg, device=dev)
                out.setdefault(name + " [transformers]", {})[dev] = hexes(emb.inv_freq)
            except Exception as e:  # noqa: BLE001
                print(f"transformers {name} on {dev}: {e!r}", file=sys.stderr)


def main():
    devs = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out = {}
    for name, c in configs():
        out[name] = {dev: hexes(hf_torch(c, dev)) for dev in devs}
    transformers_entries(out, devs)
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)
    print(f"torch {torch.__version__}, devices {devs}, {len(out)} entries", file=sys.stderr)


if __name__ == "__main__":
    main()
