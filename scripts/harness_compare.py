#!/usr/bin/env python3
"""Compares prunec's zero-shot results (`prunec ... --samples FILE.jsonl`) with
lm-evaluation-harness's (`scripts/harness_zero_shot.py`), document by document, and prints a
Markdown table. The harness ran twice, with the model in float32 and in float64; prunec's samples
come in the same two precisions (`--precision f32`, the default, and `--precision f64`). Per task:
the documents; the largest |Δ log-likelihood| over every choice between prunec and the harness in
float32 and in float64, and between the harness's own two runs (its float32 error); the documents
whose `acc` or `acc_norm` differ in either precision; both aggregates. Exits 1 when a float64
log-likelihood differs by more than --f64-tolerance (the issue's 1e-4), a float32 one by more than
--tolerance, a document's `acc`/`acc_norm` differs, or a document is missing.

    python3 scripts/harness_compare.py SAMPLES.jsonl SAMPLES_F64.jsonl MODEL_LABEL HARNESS.json
        [--tolerance 5e-4] [--f64-tolerance 1e-4] [--title TITLE]

Why two tolerances: in float32 neither side is exact. The harness's own float32 values are up to
2e-4 from its float64 ones on these requests (a continuation of 10-30 tokens sums that many
rounded log-probabilities after 30 layers of float32 arithmetic), and prunec's are of the same
size, in other directions: two float32 engines cannot agree to 1e-4 when each is 2e-4 from the
exact value. In float64 both are exact to far better than 1e-4, so that is where 1e-4 is checked.

Only the standard library: it runs with any Python 3.
"""

import argparse
import json
import sys


def read_samples(path, label):
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row["model"] == label:
                    rows[(row["task"], row["doc_id"])] = row
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples", help="prunec's --samples output (--precision f32)")
    ap.add_argument("samples_f64", help="prunec's --samples output with --precision f64")
    ap.add_argument("label", help="the `model` of the rows to compare (the eval pass's label: original, group,score,prune...)")
    ap.add_argument("harness", help="scripts/harness_zero_shot.py's output")
    ap.add_argument("--tolerance", type=float, default=5e-4)
    ap.add_argument("--f64-tolerance", type=float, default=1e-4)
    ap.add_argument("--title", default=None)
    args = ap.parse_args()

    with open(args.harness, encoding="utf-8") as f:
        ref = json.load(f)
    ours = {"f32": read_samples(args.samples, args.label), "f64": read_samples(args.samples_f64, args.label)}
    keys = {"f32": ("loglikelihoods", "acc", "acc_norm"), "f64": ("loglikelihoods_f64", "acc_f64", "acc_norm_f64")}
    tolerance = {"f32": args.tolerance, "f64": args.f64_tolerance}
    failures = []
    lines = []
    if args.title:
        lines.append(f"**{args.title}**\n")
    lines.append("| task | documents | max \\|prunec − harness\\| f32 | max \\|prunec − harness\\| f64 | max \\|harness f32 − f64\\| "
                 "| acc / acc_norm differ (f32) | acc / acc_norm differ (f64) | acc (harness / prunec) | acc_norm (harness / prunec) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    overall = {"f32": 0.0, "f64": 0.0, "harness": 0.0}
    for task, t in ref["tasks"].items():
        worst = {"f32": 0.0, "f64": 0.0, "harness": 0.0}
        differ = {p: [0, 0] for p in ("f32", "f64")}
        acc = norm = 0.0
        for d in t["docs"]:
            for b, c in zip(d["loglikelihoods"], d["loglikelihoods_f64"]):
                worst["harness"] = max(worst["harness"], abs(b - c))
            for p, (ll, a, n) in keys.items():
                mine = ours[p].get((task, d["doc_id"]))
                if mine is None:
                    failures.append(f"{task} document {d['doc_id']}: not in the {p} samples for `{args.label}`")
                    continue
                if len(mine["loglikelihoods"]) != len(d[ll]):
                    failures.append(f"{task} document {d['doc_id']} ({p}): {len(mine['loglikelihoods'])} choices, harness {len(d[ll])}")
                    continue
                for x, y in zip(mine["loglikelihoods"], d[ll]):
                    worst[p] = max(worst[p], abs(x - y))
                differ[p][0] += mine["acc"] != d[a]
                differ[p][1] += mine["acc_norm"] != d[n]
                if p == "f32":
                    acc += mine["acc"]
                    norm += mine["acc_norm"]
        n = max(1, len(t["docs"]))
        for k in overall:
            overall[k] = max(overall[k], worst[k])
        for p in ("f32", "f64"):
            if worst[p] > tolerance[p]:
                failures.append(f"{task}: a {p} log-likelihood differs from the harness's by {worst[p]:.3g} (> {tolerance[p]:g})")
            if any(differ[p]):
                failures.append(f"{task} ({p}): {differ[p][0]} documents' acc and {differ[p][1]} documents' acc_norm differ")
        lines.append(f"| {task} | {len(t['docs'])} | {worst['f32']:.2e} | {worst['f64']:.2e} | {worst['harness']:.2e} "
                     f"| {differ['f32'][0]} / {differ['f32'][1]} | {differ['f64'][0]} / {differ['f64'][1]} "
                     f"| {t['acc']:.4f} / {acc / n:.4f} | {t['acc_norm']:.4f} / {norm / n:.4f} |")
    print("\n".join(lines))
    print(f"\nlargest |Δ log-likelihood|: prunec − harness {overall['f32']:.2e} in float32, {overall['f64']:.2e} in float64; "
          f"the harness's own float32 − float64 {overall['harness']:.2e}; lm-eval {ref['harness']['version']}, "
          f"torch {ref['harness']['torch']}, transformers {ref['harness']['transformers']}")
    for f in failures:
        print(f"error: {f}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
