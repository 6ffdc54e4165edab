#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""How far rope's frequencies and angles are from a framework's fp32 ones and from exact values.

    tests/tools/inv_freq_vs_fp32.py [--dump BIN] [--samples N] [--torch-json FILE]

Not part of the build or of ctest: a measurement whose figures the headers quote
(include/rope/frequencies.cuh, include/rope/device/rotation.cuh). Needs numpy and mpmath
(pip install numpy mpmath) and nvcc, or a prebuilt tests/tools/rope_freq_dump.cu (--dump).

1. rope::compute_inv_freq (fp64, one rounding to fp32) against the same formulas evaluated in
   fp32 the way HF transformers' modeling_rope_utils.py does (`_compute_*_parameters`), emulated
   with numpy float32, one rounding per torch op:
     - `torch.arange(0, dim, 2, dtype=torch.int64).float() / dim`: the exponent rounds to fp32
       (exact only when dim is a power of two), then `base ** t` is an fp32 pow with the Python
       float base cast to fp32 (torch's pow(Scalar, Tensor) wraps the scalar; the common dtype
       is float32). pow is modelled correctly rounded ("cr"); numpy's float32 power gives a
       second estimate ("libm"): torch's CPU pow (Sleef, <= 1 ulp) or CUDA powf (<= 2 ulp) may
       land anywhere within those bounds.
     - `scalar / tensor` is `tensor.reciprocal() * scalar` (torch's Tensor.__rdiv__), so
       `1.0 / x`, `2 * math.pi / inv_freq` and `old_context_len / wavelen` are emulated that way;
       `tensor / scalar` is an fp32 division (CPU semantics; CUDA multiplies by the reciprocal).
   Also the exact (mpmath, 200-bit) value of each formula, to show which side the error is on.
   --torch-json FILE compares with inv_freq dumped by real torch/transformers instead
   (see tests/tools/hf_inv_freq_dump.py).
2. device::reduced_half_turns and the host device::rotary_sincos against exact values over
   random positions in [0, 2^29) and the frequencies of the configs of part 1.
"""

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile

import mpmath
import numpy as np

mpmath.mp.prec = 200
f32 = np.float32
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# ---- configurations (rope::ScalingType numbers: default 0, linear 1, ntk 2, dynamic 3, yarn 4,
# llama3 5, longrope 6) ----


def phi3_like_factors(n):
    """LongRoPE factors of our own choosing, shaped like Phi-3's (short ~1..3, long ~1..60, rising
    with the pair index), written with 4 decimals as a config.json would hold them."""
    short = [round(1.0 + 2.0 * (i / (n - 1)) ** 2, 4) for i in range(n)]
    long = [round(1.0 + 59.0 * (i / (n - 1)) ** 3, 4) for i in range(n)]
    return short, long


def configs():
    s96, l96 = phi3_like_factors(48)
    base = dict(factor=1.0, orig=0, maxpos=0, low=1.0, high=4.0, beta_fast=32.0, beta_slow=1.0, seq=0, ext=None)
    rows = [
        ("Llama-2 (default, 10000, dim 128)", dict(type=0, base=10000.0, dim=128)),
        ("Llama-3 (default, 500000, dim 128)", dict(type=0, base=500000.0, dim=128)),
        ("Llama-3.1 (llama3 x8, 500000, dim 128)", dict(type=5, base=500000.0, dim=128, factor=8.0, orig=8192)),
        ("Llama-3.2-1B (llama3 x32, 500000, dim 64)", dict(type=5, base=500000.0, dim=64, factor=32.0, orig=8192)),
        ("GPT-NeoX-20B (default, 10000, rotary 24)", dict(type=0, base=10000.0, dim=24)),
        ("Phi-3-mini (default, 10000, dim 96)", dict(type=0, base=10000.0, dim=96)),
        ("rotary 96, base 500000 (default)", dict(type=0, base=500000.0, dim=96)),
        ("linear x4 (10000, dim 128)", dict(type=1, base=10000.0, dim=128, factor=4.0)),
        ("dynamic NTK x2 (10000, 128, orig 4096, seq 8192)",
         dict(type=3, base=10000.0, dim=128, factor=2.0, orig=4096, seq=8192)),
        ("YaRN DeepSeek-V3 (x40, 10000, rope dim 64, orig 4096)",
         dict(type=4, base=10000.0, dim=64, factor=40.0, orig=4096)),
        ("YaRN Qwen2.5 (x4, 1e6, dim 128, orig 32768)", dict(type=4, base=1000000.0, dim=128, factor=4.0, orig=32768)),
        ("LongRoPE Phi-3-like long (10000, dim 96, 4096 -> 131072)",
         dict(type=6, base=10000.0, dim=96, orig=4096, maxpos=131072, seq=131072, ext=(s96, l96))),
        ("LongRoPE Phi-3-like short (same, seq 4096)",
         dict(type=6, base=10000.0, dim=96, orig=4096, maxpos=131072, seq=4096, ext=(s96, l96))),
    ]
    return [(name, {**base, **c}) for name, c in rows]


# ---- rope's values, through the C++ helper ----


def build_dump():
    out = os.path.join(tempfile.mkdtemp(), "rope_freq_dump")
    cmd = ["nvcc", "-std=c++17", "-O2", "-arch=native", "-I", os.path.join(ROOT, "include"), "-o", out,
           os.path.join(HERE, "rope_freq_dump.cu")]
    subprocess.run(cmd, check=True)
    return out


def run_dump(binary, lines):
    res = subprocess.run(binary if isinstance(binary, list) else [binary], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    return res.stdout.splitlines()


def rope_inv_freq(binary, cfgs):
    lines = []
    for _, c in cfgs:
        ext = [] if c["ext"] is None else list(c["ext"][0]) + list(c["ext"][1])
        lines.append(" ".join(str(v) for v in ["freq", c["type"], repr(c["base"]), c["dim"], repr(c["factor"]), c["orig"],
                                               c["maxpos"], repr(c["low"]), repr(c["high"]), repr(c["beta_fast"]),
                                               repr(c["beta_slow"]), c["seq"]] + [repr(v) for v in ext]))
    out = []
    for line in run_dump(binary, lines):
        parts = line.split()
        if parts[0] != "ok":
            raise SystemExit(f"rope rejected a config: {line}")
        out.append(np.array([float.fromhex(h) for h in parts[2:]], dtype=f32))
    return out


# ---- fp32 emulation of HF transformers ----


def nearest_f32(x):
    """The fp32 value nearest the mpmath number x (ties to even)."""
    c = f32(float(x))
    best = min((c, np.nextafter(c, f32(-np.inf)), np.nextafter(c, f32(np.inf))), key=lambda v: abs(mpmath.mpf(float(v)) - x))
    return f32(best)


def pow32(base, exps, mode):
    base = f32(base)
    if mode == "libm":
        return np.power(base, exps.astype(f32)).astype(f32)
    return np.array([nearest_f32(mpmath.power(mpmath.mpf(float(base)), mpmath.mpf(float(e)))) for e in exps], dtype=f32)


def rdiv(scalar, t):
    """`scalar / tensor` in torch: tensor.reciprocal() * scalar, both rounded to fp32."""
    return (f32(1.0) / t).astype(f32) * f32(scalar)


def hf_exponents(dim):
    return np.arange(0, dim, 2, dtype=np.int64).astype(f32) / f32(dim)


def hf_default(base, dim, mode):
    return rdiv(1.0, pow32(base, hf_exponents(dim), mode))


def hf_inv_freq(c, mode):
    t, base, dim, factor = c["type"], c["base"], c["dim"], c["factor"]
    if t == 0:
        return hf_default(base, dim, mode)
    if t == 1:
        return hf_default(base, dim, mode) / f32(factor)
    if t in (2, 3):
        if t == 2:
            b = base * factor ** (dim / (dim - 2))
        else:
            seq = c["seq"] if c["seq"] > c["orig"] else c["orig"]
            b = base * ((factor * seq / c["orig"]) - (factor - 1)) ** (dim / (dim - 2))
        return hf_default(b, dim, mode)
    if t == 4:
        pos = pow32(base, hf_exponents(dim), mode)
        extrap = rdiv(1.0, pos)
        interp = rdiv(1.0, f32(factor) * pos)

        def corr(rot):
            return (dim * math.log(c["orig"] / (rot * 2 * math.pi))) / (2 * math.log(base))

        low = max(math.floor(corr(c["beta_fast"])), 0)
        high = min(math.ceil(corr(c["beta_slow"])), dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=f32) - f32(low)) / f32(high - low), f32(0), f32(1)).astype(f32)
        ef = f32(1) - ramp
        return interp * (f32(1) - ef) + extrap * ef
    if t == 5:
        inv = hf_default(base, dim, mode)
        low_wl = c["orig"] / c["low"]
        high_wl = c["orig"] / c["high"]
        wavelen = rdiv(2 * math.pi, inv)
        llama = np.where(wavelen > f32(low_wl), inv / f32(factor), inv).astype(f32)
        smooth = (rdiv(c["orig"], wavelen) - f32(c["low"])) / f32(c["high"] - c["low"])
        smoothed = (f32(1) - smooth) * llama / f32(factor) + smooth * llama
        medium = ~(wavelen < f32(high_wl)) & ~(wavelen > f32(low_wl))
        return np.where(medium, smoothed, llama).astype(f32)
    if t == 6:
        short, long = c["ext"]
        ext = np.array(long if c["seq"] > c["orig"] else short, dtype=f32)
        return rdiv(1.0, ext * pow32(base, hf_exponents(dim), mode))
    raise ValueError(t)


def exact_inv_freq(c):
    """The real-number value of each formula (mpmath), from the same inputs."""
    t, dim = c["type"], c["dim"]
    mp = mpmath.mpf
    base, factor = mp(c["base"]), mp(c["factor"])
    if t == 2:
        base = base * factor ** (mp(dim) / (dim - 2))
    if t == 3:
        seq = c["seq"] if c["seq"] > c["orig"] else c["orig"]
        base = base * (factor * seq / c["orig"] - (factor - 1)) ** (mp(dim) / (dim - 2))
    plain = [1 / base ** (mp(2 * i) / dim) for i in range(dim // 2)]
    if t in (0, 2, 3):
        return plain
    if t == 1:
        return [f / factor for f in plain]
    if t == 4:
        def corr(rot):
            return (dim * math.log(c["orig"] / (rot * 2 * math.pi))) / (2 * math.log(c["base"]))
        low = max(math.floor(corr(c["beta_fast"])), 0)
        high = min(math.ceil(corr(c["beta_slow"])), dim - 1)
        if low == high:
            high += 0.001
        out = []
        for i, f in enumerate(plain):
            r = min(max((mp(i) - low) / (mp(high) - low), 0), 1)
            out.append(f / factor * r + f * (1 - r))
        return out
    if t == 5:
        o, lo, hi = mp(c["orig"]), mp(c["low"]), mp(c["high"])
        out = []
        for f in plain:
            wl = 2 * mpmath.pi / f
            if wl > o / lo:
                out.append(f / factor)
            elif wl >= o / hi:
                s = (o / wl - lo) / (hi - lo)
                out.append((1 - s) * f / factor + s * f)
            else:
                out.append(f)
        return out
    if t == 6:
        short, long = c["ext"]
        ext = long if c["seq"] > c["orig"] else short
        return [f / mp(float(f32(e))) for f, e in zip(plain, ext)]
    raise ValueError(t)


# ---- comparisons ----


def ordinal(x):
    """Integer whose differences count fp32 ulps (x >= 0 here)."""
    return np.asarray(x, dtype=f32).view(np.int32).astype(np.int64)


def ulp_of(x):
    x = f32(x)
    return float(np.nextafter(x, f32(np.inf)) - x)


def ulps_from_exact(vals, exact):
    return max(abs(float(mpmath.mpf(float(v)) - e)) / ulp_of(v) for v, e in zip(vals, exact))


def output_effect(fa, fb, position):
    """max |cos(p fa) - cos(p fb)|, max |sin ...|, max |angle difference| (rad), exact arithmetic."""
    dc = ds = da = 0.0
    p = mpmath.mpf(position)
    for a, b in zip(fa, fb):
        ta, tb = p * mpmath.mpf(float(a)), p * mpmath.mpf(float(b))
        dc = max(dc, abs(float(mpmath.cos(ta) - mpmath.cos(tb))))
        ds = max(ds, abs(float(mpmath.sin(ta) - mpmath.sin(tb))))
        da = max(da, abs(float(ta - tb)))
    return dc, ds, da


def part1(binary, torch_json):
    cfgs = configs()
    ropes = rope_inv_freq(binary, cfgs)
    torch_vals = None
    if torch_json:
        with open(torch_json) as f:
            torch_vals = json.load(f)
    print("## compute_inv_freq (fp64, one rounding) vs HF transformers' formulas in fp32\n")
    hdr = "| config | pairs | max ulp rope vs HF fp32 (cr pow / libm pow) | pairs differing | rope vs exact (ulp) | HF fp32 vs exact (ulp) |"
    if torch_vals:
        hdr += " rope vs real torch CPU / CUDA (ulp) |"
    print(hdr)
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if torch_vals else ""))
    effects = []
    all_freqs = set()
    for (name, c), rope in zip(cfgs, ropes):
        hf = hf_inv_freq(c, "cr")
        hf_libm = hf_inv_freq(c, "libm")
        exact = exact_inv_freq(c)
        d = np.abs(ordinal(rope) - ordinal(hf))
        d2 = np.abs(ordinal(rope) - ordinal(hf_libm))
        row = (f"| {name} | {len(rope)} | {d.max()} / {d2.max()} | {int((d > 0).sum())} | "
               f"{ulps_from_exact(rope, exact):.2f} | {ulps_from_exact(hf, exact):.2f} |")
        if torch_vals:
            cells = []
            for dev in ("cpu", "cuda"):
                v = torch_vals.get(name, {}).get(dev)
                cells.append("-" if v is None else str(np.abs(ordinal(rope) - ordinal(np.array([float.fromhex(h) for h in v], dtype=f32))).max()))
            row += f" {' / '.join(cells)} |"
        print(row)
        effects.append((name, rope, hf, hf_libm))
        all_freqs.update(float(v) for v in rope)
    def from_torch(name, dev):
        v = (torch_vals or {}).get(name, {}).get(dev)
        return None if v is None else np.array([float.fromhex(h) for h in v], dtype=f32)

    if torch_vals:
        print("\nReal transformers (LlamaRotaryEmbedding) vs the torch expressions above, max ulp:")
        for key, per_dev in torch_vals.items():
            if key.endswith(" [transformers]"):
                for dev in per_dev:
                    d = np.abs(ordinal(from_torch(key, dev)) - ordinal(from_torch(key[:-15], dev))).max()
                    print(f"- {key} {dev}: {d}")
    print("\n## Effect on cos/sin, rope's frequencies vs HF fp32 ('cr' pow), exact arithmetic\n")
    extra = " p = 10^6 vs real torch CPU / CUDA: max |dcos|, |dsin| |" if torch_vals else ""
    print("| config | p = 131072: max dcos / dsin / dangle | p = 10^6: max dcos / dsin / dangle (rad) |" + extra)
    print("|---|---:|---:|" + ("---:|" if torch_vals else ""))
    for name, rope, hf, _ in effects:
        cells = []
        for p in (131072, 1000000):
            dc, ds, da = output_effect(rope, hf, p)
            cells.append(f"{dc:.2g} / {ds:.2g} / {da:.2g}")
        row = f"| {name} | {cells[0]} | {cells[1]} |"
        if torch_vals:
            parts = []
            for dev in ("cpu", "cuda"):
                t = from_torch(name, dev)
                parts.append("-" if t is None else "%.2g, %.2g" % output_effect(rope, t, 1000000)[:2])
            row += f" {' / '.join(parts)} |"
        print(row)
    return sorted(all_freqs)


def exact_reduced(p, f):
    """p * f / pi reduced into [-1, 1] (half-turns), exactly (to 200 bits)."""
    h = mpmath.mpf(p) * mpmath.mpf(f) / mpmath.pi
    return h - 2 * mpmath.nint(h / 2)


def part2(binary, freqs, samples, max_pos_log2, device=False):
    rng = random.Random(2026)
    cases = []
    big = [f for f in freqs if f >= 1e-3]
    for k in range(samples):
        f = rng.choice(freqs if k % 2 else big)
        # Half uniform, a quarter near the top of the range, a quarter log-uniform (small positions).
        if k % 4 == 0:
            p = (1 << max_pos_log2) - 1 - rng.randrange(1 << 16)
        elif k % 4 == 1:
            p = int(2 ** rng.uniform(0, max_pos_log2))
        else:
            p = rng.randrange(1 << max_pos_log2)
        cases.append((p, f))
    requests = [f"angle {p} {float(f32(f)).hex()}" for p, f in cases]
    out = run_dump([binary, "--device"] if device else binary, requests)
    worst_r = worst_sc = 0.0
    worst_r_case = worst_sc_case = None
    for (p, f), line in zip(cases, out):
        r, s, co = (float.fromhex(v) for v in line.split())
        ex = exact_reduced(p, f)
        er = abs(float(mpmath.mpf(r) - ex))
        # A reduced value of -1 and 1 are the same angle.
        er = min(er, abs(float(mpmath.mpf(r) - ex + 2)), abs(float(mpmath.mpf(r) - ex - 2)))
        theta = mpmath.mpf(p) * mpmath.mpf(f)
        es = abs(float(mpmath.mpf(s) - mpmath.sin(theta)))
        ec = abs(float(mpmath.mpf(co) - mpmath.cos(theta)))
        if er > worst_r:
            worst_r, worst_r_case = er, (p, f)
        if max(es, ec) > worst_sc:
            worst_sc, worst_sc_case = max(es, ec), (p, f)
    where = "device (sincospif)" if device else "host"
    print(f"\n## Angle, {where}: positions in [0, 2^{max_pos_log2}), {samples} samples, "
          f"{len(freqs)} distinct frequencies\n")
    print(f"reduced_half_turns max |error| = {worst_r:.3g} half-turns = {worst_r * math.pi:.3g} rad "
          f"(at position {worst_r_case[0]}, inv_freq {worst_r_case[1]!r})")
    print(f"{where} rotary_sincos max |sin - exact|, |cos - exact| = {worst_sc:.3g} "
          f"(at position {worst_sc_case[0]}, inv_freq {worst_sc_case[1]!r})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", help="prebuilt rope_freq_dump (default: build it with nvcc)")
    ap.add_argument("--samples", type=int, default=40000, help="angle samples (part 2)")
    ap.add_argument("--torch-json", help="inv_freq dumped by tests/tools/hf_inv_freq_dump.py")
    ap.add_argument("--device", action="store_true", help="part 2 also on the GPU (the kernel's sincospif)")
    args = ap.parse_args()
    binary = args.dump or build_dump()
    freqs = part1(binary, args.torch_json)
    part2(binary, freqs, args.samples, 29)
    if args.device:
        part2(binary, freqs, args.samples, 29, device=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
