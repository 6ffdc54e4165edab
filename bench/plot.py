#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Plots and tabulates a rope_bench Google Benchmark JSON file.

    bench/plot.py RESULTS.json [-o DIR] [--all]

Writes DIR/original_<dtype>.png (GB/s vs tokens: rope, unfused, naive fused, copy ceiling)
and DIR/llama3_8b_prefill.png, then prints a Markdown table of the main rows (all rows with
--all). DIR defaults to the JSON file's folder. Without matplotlib the table is still printed.
Exit status 1 when a benchmark reported an error or the file holds no results.

The copy ceiling of a workload is the faster of its two same-bytes copy rows, `copy/...`
(cudaMemcpyAsync) and `copy_kernel/...` (bench/device.cuh's copy kernel): neither wins
everywhere (on an H200 cudaMemcpyAsync is ~2.7 TB/s on large copies, the kernel ~4 TB/s, while
some mid sizes go the other way), and a ceiling drawn below what rope reaches says nothing.
"""

import argparse
import json
import os
import re
import statistics
import sys

# Google Benchmark appends these to every name; they say nothing about the workload.
_SUFFIXES = re.compile(r"(/iterations:\d+|/repeats:\d+|/manual_time|/real_time|/min_time:[\d.]+)")
_TABLE_SIZES = {2048, 63488, 1048576, 4194304}  # original-sweep sizes shown without --all
_UNIT_TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def load_rows(path):
    """One dict per benchmark (name, us, GB/s, pct, tokens), in file order, and the failures.

    Aggregates: the median row is used when the file has them (--benchmark_repetitions with
    aggregates); plain repeated rows are reduced to their median here.
    """
    with open(path) as f:
        data = json.load(f)
    entries = data.get("benchmarks", [])
    has_median = any(e.get("aggregate_name") == "median" for e in entries)
    groups, errors = {}, []
    for e in entries:
        name = _SUFFIXES.sub("", e.get("run_name", e["name"]))
        if e.get("error_occurred"):
            errors.append((name, e.get("error_message", "")))
            continue
        if e.get("skipped"):
            continue
        if has_median and e.get("aggregate_name") != "median":
            continue
        if not has_median and e.get("run_type") == "aggregate":
            continue
        groups.setdefault(name, []).append(e)
    rows = []
    for name, runs in groups.items():
        med = lambda key: statistics.median(float(r.get(key, 0.0)) for r in runs)
        us = statistics.median(r["real_time"] * _UNIT_TO_US[r.get("time_unit", "ns")] for r in runs)
        rows.append({"name": name, "us": us, "gbps": med("GB/s"), "pct": med("pct_of_copy"),
                     "tokens": int(med("tokens")), "x_copy": med("x_copy")})
    return data.get("context", {}), rows, errors


_COPY = re.compile(r"(copy|copy_kernel)/(.+)")
# Rows whose same-bytes copy is registered under another name: strip the prefix or the
# direction/mode/placement part (llama3_8b_prefill/fwd/table/out_of_place/T:n -> llama3_8b_prefill/T:n;
# kv_append/fused/bf16_cache/T:n -> kv_append/bf16_cache/T:n).
_WORKLOAD = [(re.compile(r"(?:unfused|naive_fused)/(.+)"), r"\1"),
             (re.compile(r"(llama3_8b_prefill)/(?:fwd|bwd)/table_8seqs/\w+/(T:\d+)"), r"\1_8seqs/\2"),
             (re.compile(r"(llama3_8b_prefill)/(?:fwd|bwd)/\w+/\w+/(T:\d+)"), r"\1/\2"),
             (re.compile(r"(kv_append)/(?:fused|unfused)/(\w+/T:\d+)"), r"\1/\2"),
             (re.compile(r"(qwen2vl_7b_mrope)/\w+/(T:\d+)"), r"\1/\2")]


def copy_ceilings(rows):
    """{workload: row} with, per workload, the copy row of the higher GB/s (lower time) of
    `copy/<workload>` and `copy_kernel/<workload>`; the row's name becomes `ceiling/<workload>`
    and 'source' says which copy it was."""
    best = {}
    for r in rows:
        m = _COPY.fullmatch(r["name"])
        if m and (m.group(2) not in best or r["gbps"] > best[m.group(2)]["gbps"]):
            best[m.group(2)] = r
    return {w: {**r, "name": f"ceiling/{w}", "source": _COPY.fullmatch(r["name"]).group(1)} for w, r in best.items()}


def workload_of(name):
    for pattern, repl in _WORKLOAD:
        if pattern.fullmatch(name):
            return pattern.sub(repl, name)
    m = _COPY.fullmatch(name)
    return m.group(2) if m else name


def is_main_row(name):
    m = re.search(r"original(?:_warm)?/\w+/N:(\d+)$", name)
    return m is None or int(m.group(1)) in _TABLE_SIZES


def print_table(rows, show_all):
    """Every row, then its workload's ceiling; '% of ceiling' is GB/s over the ceiling's GB/s
    (same bytes, except computed mode, which moves fewer bytes than the table-mode copy)."""
    ceilings = copy_ceilings(rows)
    print("| benchmark | tokens | us per call | GB/s | % of 2 GiB copy | % of same-bytes copy ceiling "
          "| x its own copy (same timing) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if not (show_all or is_main_row(r["name"])):
            continue
        c = ceilings.get(workload_of(r["name"]))
        pct = f"{100.0 * r['gbps'] / c['gbps']:.1f}" if c and c["gbps"] > 0 else "-"
        own = f"{r['x_copy']:.2f}" if r["x_copy"] > 0 else "-"
        print(f"| {r['name']} | {r['tokens']} | {r['us']:.2f} | {r['gbps']:.0f} | {r['pct']:.1f} | {pct} | {own} |")
    for w, c in ceilings.items():
        if show_all or is_main_row(c["name"]):
            print(f"| {c['name']} ({c['source']}) | {c['tokens']} | {c['us']:.2f} | {c['gbps']:.0f} | {c['pct']:.1f} | 100.0 | - |")


def series(rows, pattern):
    """(tokens, GB/s) points of the rows whose name matches `pattern` fully, sorted by tokens."""
    pts = sorted((r["tokens"], r["gbps"]) for r in rows if re.fullmatch(pattern, r["name"]))
    return [p[0] for p in pts], [p[1] for p in pts]


def plot(plt, lines, title, out_path):
    """One log-x plot; `lines` is [(label, xs, ys, style)]; returns False when nothing to draw."""
    lines = [l for l in lines if l[1]]
    if not lines:
        return False
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, xs, ys, style in lines:
        ax.plot(xs, ys, style, label=label, markersize=4)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens")
    ax.set_ylabel("GB/s (minimum bytes / GPU time)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    print(f"wrote {out_path}", file=sys.stderr)
    return True


_CEILING_LABEL = "copy ceiling, same bytes (faster of copy kernel, cudaMemcpyAsync)"


def make_plots(plt, context, rows, out_dir):
    gpu = context.get("gpu_name", "GPU")
    ceiling_rows = list(copy_ceilings(rows).values())
    for dt in ("fp32", "bf16", "fp16"):
        lines = [
            ("rope (this library)", *series(rows, rf"original/{dt}/N:\d+"), "o-"),
            ("unfused (eager-PyTorch-like, 9 kernels)", *series(rows, rf"unfused/original/{dt}/N:\d+"), "s--"),
            ("naive fused (thread per pair)", *series(rows, rf"naive_fused/original/{dt}/N:\d+"), "^--"),
            (_CEILING_LABEL, *series(ceiling_rows, rf"ceiling/original/{dt}/N:\d+"), "k:"),
        ]
        plot(plt, lines, f"RoPE [N, 128] {dt}, per-token fp32 cos/sin, out of place — {gpu}",
             os.path.join(out_dir, f"original_{dt}.png"))
    lines = []
    for direction in ("fwd", "bwd"):
        for cs in ("table", "computed"):
            for place in ("out_of_place", "in_place"):
                style = ("o" if cs == "table" else "s") + ("-" if direction == "fwd" else "--")
                lines.append((f"rope {direction} {cs} {place}",
                              *series(rows, rf"llama3_8b_prefill/{direction}/{cs}/{place}/T:\d+"), style))
    lines.append(("naive fused (fwd table out_of_place)", *series(rows, r"naive_fused/llama3_8b_prefill/T:\d+"), "^:"))
    lines.append((_CEILING_LABEL, *series(ceiling_rows, r"ceiling/llama3_8b_prefill/T:\d+"), "k:"))
    plot(plt, lines, f"Llama-3-8B prefill (q32/k8 x 128, bf16, int64 positions) — {gpu}",
         os.path.join(out_dir, "llama3_8b_prefill.png"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="Google Benchmark JSON written by rope_bench --benchmark_out=...")
    ap.add_argument("-o", "--out-dir", help="folder for the PNGs (default: the JSON file's folder)")
    ap.add_argument("--all", action="store_true", help="table: every row, not only the main ones")
    args = ap.parse_args()

    context, rows, errors = load_rows(args.results)
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.results))
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only; no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots written (python3 -m pip install matplotlib)", file=sys.stderr)
    else:
        os.makedirs(out_dir, exist_ok=True)
        make_plots(plt, context, rows, out_dir)

    if context:
        print(f"{context.get('gpu_name', '?')}: 2 GiB copy ceiling {float(context.get('copy_GBps', 0)):.0f} GB/s "
              f"(copy kernel {float(context.get('copy_kernel_GBps', 0)):.0f}, "
              f"cudaMemcpyAsync {float(context.get('copy_memcpy_GBps', 0)):.0f}), "
              f"CUDA runtime {context.get('cuda_runtime_version', '?')}, driver {context.get('cuda_driver_version', '?')}\n")
    print_table(rows, args.all)
    for name, message in errors:
        print(f"\nskipped with error: {name}: {message}")
    return 1 if errors or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
