#!/usr/bin/env python3
"""Compares prunec's zero-shot results (`prunec ... --samples FILE.jsonl`) with
lm-evaluation-harness's (`scripts/harness_zero_shot.py`), document by document, and prints a
Markdown table: per task, the documents, the largest |Δ log-likelihood| over every choice between
prunec and the harness, and of each against the same tokens scored in float64 (the harness
script's `loglikelihoods_f64`), the documents whose `acc` or `acc_norm` differ, and both
aggregates. Exits 1 when prunec differs from the harness by more than --tolerance or from the
float64 values by more than --f64-tolerance, a document's `acc`/`acc_norm` differs, or a document
is missing.

    python3 scripts/harness_compare.py SAMPLES.jsonl MODEL_LABEL HARNESS.json [--tolerance 2e-4] [--f64-tolerance 1e-4]

The harness computes in float32 on the CPU; torch's float32 `log_softmax` there errs by a few
1e-6 per token (always upwards, measured on AVX-512), so over a continuation of 10-20 tokens the
harness's own values are 1e-4 or more from the float64 ones: hence the two tolerances.

Only the standard library: it runs with any Python 3.
"""

import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples", help="prunec's --samples output")
    ap.add_argument("label", help="the `model` of the rows to compare (the eval pass's label: original, group,score,prune...)")
    ap.add_argument("harness", help="scripts/harness_zero_shot.py's output")
    ap.add_argument("--tolerance", type=float, default=2e-4)
    ap.add_argument("--f64-tolerance", type=float, default=1e-4)
    ap.add_argument("--title", default=None)
    args = ap.parse_args()

    with open(args.harness, encoding="utf-8") as f:
        ref = json.load(f)
    ours = {}
    with open(args.samples, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row["model"] == args.label:
                    ours[(row["task"], row["doc_id"])] = row
    failures = []
    lines = []
    if args.title:
        lines.append(f"**{args.title}**\n")
    lines.append("| task | documents | max \\|prunec − harness\\| | max \\|prunec − f64\\| | max \\|harness − f64\\| "
                 "| acc differs | acc_norm differs | acc (harness / prunec) | acc_norm (harness / prunec) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    worst_all, f64_all, harness_f64_all = 0.0, 0.0, 0.0
    for task, t in ref["tasks"].items():
        worst, vs_f64, harness_f64, acc_diff, norm_diff, acc, norm = 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0
        for d in t["docs"]:
            mine = ours.get((task, d["doc_id"]))
            if mine is None:
                failures.append(f"{task} document {d['doc_id']}: not in {args.samples} for `{args.label}`")
                continue
            if len(mine["loglikelihoods"]) != len(d["loglikelihoods"]):
                failures.append(f"{task} document {d['doc_id']}: {len(mine['loglikelihoods'])} choices, harness {len(d['loglikelihoods'])}")
                continue
            for a, b, c in zip(mine["loglikelihoods"], d["loglikelihoods"], d["loglikelihoods_f64"]):
                worst = max(worst, abs(a - b))
                vs_f64 = max(vs_f64, abs(a - c))
                harness_f64 = max(harness_f64, abs(b - c))
            acc_diff += mine["acc"] != d["acc"]
            norm_diff += mine["acc_norm"] != d["acc_norm"]
            acc += mine["acc"]
            norm += mine["acc_norm"]
        n = max(1, len(t["docs"]))
        worst_all = max(worst_all, worst)
        f64_all = max(f64_all, vs_f64)
        harness_f64_all = max(harness_f64_all, harness_f64)
        if worst > args.tolerance:
            failures.append(f"{task}: a log-likelihood differs from the harness's by {worst:.3g} (> {args.tolerance:g})")
        if vs_f64 > args.f64_tolerance:
            failures.append(f"{task}: a log-likelihood differs from the float64 one by {vs_f64:.3g} (> {args.f64_tolerance:g})")
        if acc_diff or norm_diff:
            failures.append(f"{task}: {acc_diff} documents' acc and {norm_diff} documents' acc_norm differ")
        lines.append(f"| {task} | {len(t['docs'])} | {worst:.2e} | {vs_f64:.2e} | {harness_f64:.2e} | {acc_diff} | {norm_diff} "
                     f"| {t['acc']:.4f} / {acc / n:.4f} | {t['acc_norm']:.4f} / {norm / n:.4f} |")
    print("\n".join(lines))
    print(f"\nlargest |Δ log-likelihood|: prunec − harness {worst_all:.2e}, prunec − f64 {f64_all:.2e}, "
          f"harness − f64 {harness_f64_all:.2e}; lm-eval {ref['harness']['version']}, "
          f"torch {ref['harness']['torch']}, transformers {ref['harness']['transformers']}")
    for f in failures:
        print(f"error: {f}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
