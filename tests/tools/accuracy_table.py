#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs the accuracy tests and prints the table of docs/accuracy.md.

    tests/tools/accuracy_table.py [PROGRAM] [--backend gpu|host] [--seed N] [--update FILE]

PROGRAM is the test program built from tests/test_accuracy.cu (default:
build/tests/rope_accuracy_tests, as `cmake --preset test && cmake --build --preset test` makes it).
It runs the program's GPU rows (`Accuracy.*`; `--backend host` runs `AccuracyHost.*`, the per-token
body on the host, instead) with ROPE_TEST_SEED=N (default 1, so that a table can be made again
digit for digit), reads its `[ ACCURACY ]` lines and prints a markdown table on stdout.
`--update docs/accuracy.md` also writes it into that file, in place of the caption and table that
follow the line `<!-- ACCURACY-TABLE -->`.

Exits 1, after printing what it has, when a row is over its bound (the test fails) or the program
fails otherwise, and 2 when there are no rows (no GPU: `Accuracy.*` skip) or on a bad argument; the
file is updated only on success. Standard library only.
"""

import argparse
import os
import re
import subprocess
import sys

PLACEHOLDER = "<!-- ACCURACY-TABLE -->"
DTYPES = ["fp32", "fp16", "bf16"]
LINE = re.compile(r"^\[ ACCURACY \] (.*)$")
DEVICE = re.compile(r"^\[ DEVICE +\] (.*)$")


def parse(output):
    rows, device = [], None
    for line in output.splitlines():
        m = LINE.match(line.strip())
        if m:
            rows.append(dict(field.split("=", 1) for field in m.group(1).split()))
            continue
        m = DEVICE.match(line.strip())
        if m and device is None:
            device = m.group(1)
    return rows, device


def mode_label(mode, dtype):
    if mode == "computed":
        return "computed"
    table = mode.split("_", 1)[1]
    return f"{table} table" + (" (tensor's type)" if table == dtype and dtype != "fp32" else "")


def short(value):
    """6.12e-08 -> 6.12e-8."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), value)


def mode_order(mode):
    return 2 if mode == "computed" else (0 if mode == "table_fp32" else 1)


def render(rows, device, backend, seed):
    rows = sorted(rows, key=lambda r: (DTYPES.index(r["dtype"]), mode_order(r["mode"])))  # stable: positions keep their order
    tokens = rows[0]["tokens"]
    values = int(rows[0]["values"])
    where = f"on {device}" if backend == "gpu" and device else ("on the host (per-token body)" if backend == "host" else "")
    out = [f"Measured {where} by `tests/tools/accuracy_table.py` (ROPE_TEST_SEED={seed}): q 32 heads + k 8 heads "
           f"x 128 dims, {tokens} tokens, {values / 1e6:.1f}M values per row, Llama-3.1 frequencies.", ""]
    out.append("| dtype | cos/sin | positions | rel. L2 | max abs | bound: rel. L2 | bound: max abs |")
    out.append("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        rel, mx = float(r["rel_l2"]), float(r["max_abs"])
        over = rel > float(r["bound_rel_l2"]) or mx > float(r["bound_max_abs"])
        out.append(f"| {r['dtype']} | {mode_label(r['mode'], r['dtype'])} | `{r['positions']}` | {short(r['rel_l2'])} | "
                   f"{short(r['max_abs'])} | {short(r['bound_rel_l2'])} | {short(r['bound_max_abs'])} |"
                   + (" **over bound**" if over else ""))
    return out


def update(path, block):
    lines = open(path, encoding="utf-8").read().split("\n")
    if lines.count(PLACEHOLDER) != 1:
        sys.exit(f"accuracy_table.py: {path} must hold the line {PLACEHOLDER} exactly once")
    start = lines.index(PLACEHOLDER) + 1
    end = start
    # The old caption (any lines before the table), then the table's rows.
    while end < len(lines) and not lines[end].startswith("|"):
        if lines[end].startswith("#"):
            sys.exit(f"accuracy_table.py: no table follows {PLACEHOLDER} in {path} before the next heading")
        end += 1
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = block
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("program", nargs="?", default=os.path.join("build", "tests", "rope_accuracy_tests"))
    ap.add_argument("--backend", choices=["gpu", "host"], default="gpu")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--update", metavar="FILE")
    args = ap.parse_args()
    if not os.access(args.program, os.X_OK):
        print(f"accuracy_table.py: {args.program} is not an executable (build the target rope_accuracy_tests)",
              file=sys.stderr)
        return 2
    suite = "Accuracy" if args.backend == "gpu" else "AccuracyHost"
    env = dict(os.environ, ROPE_TEST_SEED=str(args.seed))
    run = subprocess.run([args.program, f"--gtest_filter={suite}.*"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    rows, device = parse(run.stdout)
    rows = [r for r in rows if r.get("backend") == args.backend]
    if not rows:
        sys.stderr.write("\n".join(run.stdout.splitlines()[-12:]) + "\n")
        why = "no CUDA device: the GPU rows skipped (run on a GPU, or --backend host)" if "SKIPPED" in run.stdout else \
            "the program printed no [ ACCURACY ] lines"
        print(f"accuracy_table.py: {why}", file=sys.stderr)
        return 2
    block = render(rows, device, args.backend, args.seed)
    print("\n".join(block))
    if run.returncode != 0:
        sys.stderr.write("\n".join(l for l in run.stdout.splitlines() if "Failure" in l or "FAILED" in l or "Expected" in l
                                   or "Which is" in l or "ROPE_TEST_SEED" in l) + "\n")
        print(f"accuracy_table.py: {args.program} failed (exit {run.returncode}); {args.update or 'no file'} not updated",
              file=sys.stderr)
        return 1
    if args.update:
        update(args.update, block)
        print(f"accuracy_table.py: wrote the table into {args.update}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
