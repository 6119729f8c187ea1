#!/usr/bin/env python3
"""Runs lm-evaluation-harness (its `hf` backend: transformers, float32 then float64, CPU) on a local HF model
folder over the repository's zero-shot fixtures, with local task configs that restate
lm-evaluation-harness v0.4.2's definitions of the seven tasks of LLM-Pruner's tables, and writes
every document's per-choice log-likelihoods, `acc` and `acc_norm`, the aggregates and the
versions used as JSON. Nothing is fetched: the datasets are the fixtures' Parquet files, the
model a local folder.

    python3 scripts/harness_zero_shot.py MODEL_DIR OUT.json [--fixtures tests/fixtures/eval]

Needs `lm-eval`, `torch` and `transformers` (`scripts/fetch-lm-eval` installs them).

The task configs (written to a temporary folder and given to the harness's TaskManager) are
v0.4.2's: the same `doc_to_text`, `doc_to_target`, `doc_to_choice`, `process_docs` and splits,
with `dataset_path: parquet` and the fixture file instead of the hub's dataset. One addition:
BoolQ and WinoGrande also list `acc_norm` (v0.4.2 lists only `acc` for them), so that the
harness computes it for every task; `acc` is unchanged by it.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Each task: its fixture (relative to the fixtures folder), the split v0.4.2 evaluates, and the
# YAML body v0.4.2 gives it (dataset lines left out: they are written per run).
TASKS = {
    "boolq": (
        # v0.4.2: super_glue/boolq/default.yaml (dataset super_glue, boolq; `label` 0/1)
        "super_glue-boolq/validation-00000-of-00001.parquet",
        "validation",
        """output_type: multiple_choice
doc_to_text: "{{passage}}\\nQuestion: {{question}}?\\nAnswer:"
doc_to_target: label
doc_to_choice: ["no", "yes"]
""",
    ),
    "piqa": (
        "piqa/validation-00000-of-00001.parquet",
        "validation",
        """output_type: multiple_choice
doc_to_text: "Question: {{goal}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{[sol1, sol2]}}"
""",
    ),
    "hellaswag": (
        "hellaswag/validation-00000-of-00001.parquet",
        "validation",
        """output_type: multiple_choice
process_docs: !function prunec_utils.hellaswag_process_docs
doc_to_text: "{{query}}"
doc_to_target: "{{label}}"
doc_to_choice: "choices"
""",
    ),
    "winogrande": (
        "winogrande/winogrande_xl/validation-00000-of-00001.parquet",
        "validation",
        """output_type: multiple_choice
doc_to_text: !function prunec_utils.winogrande_doc_to_text
doc_to_target: !function prunec_utils.winogrande_doc_to_target
doc_to_choice: !function prunec_utils.winogrande_doc_to_choice
""",
    ),
    "arc_easy": (
        "ai2_arc/ARC-Easy/test-00000-of-00001.parquet",
        "test",
        """output_type: multiple_choice
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
""",
    ),
    "arc_challenge": (
        "ai2_arc/ARC-Challenge/test-00000-of-00001.parquet",
        "test",
        """output_type: multiple_choice
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
""",
    ),
    "openbookqa": (
        "openbookqa/main/test-00000-of-00001.parquet",
        "test",
        """output_type: multiple_choice
doc_to_text: question_stem
doc_to_target: "{{choices.label.index(answerKey.lstrip())}}"
doc_to_choice: "{{choices.text}}"
""",
    ),
}

METRICS = """metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

# v0.4.2's `hellaswag/utils.py` and `winogrande/preprocess_winogrande.py`, restated.
UTILS = r'''
import re


def _preprocess(text):
    text = text.strip()
    # brackets are WikiHow markup
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_process_docs(dataset):
    def one(doc):
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {
            "query": _preprocess(doc["activity_label"] + ": " + ctx),
            "choices": [_preprocess(e) for e in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(one)


def winogrande_doc_to_text(doc):
    # partial evaluation: the context differs per choice; the gold one is the index
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_doc_to_target(doc):
    blank = doc["sentence"].index("_") + 1
    return doc["sentence"][blank:].strip()


def winogrande_doc_to_choice(doc):
    blank = doc["sentence"].index("_")
    return [doc["sentence"][:blank] + o for o in (doc["option1"], doc["option2"])]
'''


def write_task_configs(folder, fixtures):
    with open(os.path.join(folder, "prunec_utils.py"), "w", encoding="utf-8") as f:
        f.write(UTILS)
    for name, (rel, split, body) in TASKS.items():
        data = os.path.abspath(os.path.join(fixtures, rel))
        if not os.path.isfile(data):
            sys.exit(f"error: {data}: no such fixture")
        yaml = (
            f"task: {name}\n"
            "dataset_path: parquet\n"
            "dataset_kwargs:\n"
            "  data_files:\n"
            f"    {split}: {json.dumps(data)}\n"
            f"{'validation_split' if split == 'validation' else 'test_split'}: {split}\n"
            + body
            + METRICS
            + "metadata:\n  version: 1.0\n"
        )
        with open(os.path.join(folder, f"{name}.yaml"), "w", encoding="utf-8") as f:
            f.write(yaml)


def encode(lm, context, continuation):
    """The (context, continuation) tokens as the harness's `loglikelihood` makes them."""
    if context == "":
        cont = lm.tok_encode(continuation, add_special_tokens=False)
        if cont and cont[0] == lm.prefix_token_id:
            return [cont[:1], cont[1:]]
        return [[lm.prefix_token_id], cont]
    return [list(t) for t in lm._encode_pair(context, continuation)]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="an HF model folder (config.json, model.safetensors, tokenizer files)")
    ap.add_argument("out", help="the JSON file to write")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--fixtures", default=os.path.join(here, "..", "tests", "fixtures", "eval"))
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated (default: all seven)")
    ap.add_argument("--batch-size", type=int, default=1)
    args = ap.parse_args()

    import lm_eval
    import torch
    import transformers
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in TASKS:
            sys.exit(f"error: unknown task {t!r}; valid: {', '.join(TASKS)}")
    version = getattr(lm_eval, "__version__", None)
    if version is None:
        from importlib.metadata import version as pkg_version

        version = pkg_version("lm_eval")
    with tempfile.TemporaryDirectory() as cfg:
        write_task_configs(cfg, args.fixtures)
        manager = TaskManager(include_path=cfg, include_defaults=False)
        runs = {}
        for dtype in ("float32", "float64"):
            print(f"lm-eval {version}: {', '.join(tasks)} on {args.model} in {dtype}", file=sys.stderr, flush=True)
            lm = HFLM(pretrained=os.path.abspath(args.model), dtype=dtype, device="cpu", batch_size=args.batch_size)
            runs[dtype] = lm_eval.simple_evaluate(
                model=lm,
                tasks=tasks,
                num_fewshot=0,
                log_samples=True,
                task_manager=manager,
                bootstrap_iters=100000,  # acc and acc_norm are means: their stderr is analytic, no resampling
            )
        results = runs["float32"]
    out = {
        "harness": {"package": "lm-eval", "version": version, "backend": "hf", "dtypes": ["float32", "float64"], "device": "cpu",
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "num_fewshot": 0, "batch_size": args.batch_size,
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "task_configs": "lm-evaluation-harness v0.4.2's, restated by scripts/harness_zero_shot.py"},
        "model": {"folder": os.path.basename(os.path.normpath(args.model))},
        "tasks": {},
    }
    weights = os.path.join(args.model, "model.safetensors")
    if os.path.isfile(weights):
        out["model"]["model.safetensors sha256"] = sha256(weights)
    for name in tasks:
        agg = results["results"][name]
        docs = []
        in_f64 = {s["doc_id"]: s for s in runs["float64"]["samples"][name]}
        for s in sorted(results["samples"][name], key=lambda s: s["doc_id"]):
            s64 = in_f64[s["doc_id"]]
            lls = [float(r[0]) for r in s["filtered_resps"]]
            assert all(math.isfinite(x) for x in lls), (name, s["doc_id"], lls)
            requests = [[str(x) for x in (a.args if hasattr(a, "args") else a)] for a in s["arguments"]]
            tokens = [encode(lm, c, k) for c, k in requests]
            docs.append({
                "doc_id": s["doc_id"],
                "target": s["target"],
                "requests": requests,
                # the tokens the harness scored: its own encoding of each (context, continuation)
                "tokens": tokens,
                "loglikelihoods": lls,
                "acc": float(s["acc"]),
                "acc_norm": float(s["acc_norm"]),
                # the harness again with the model in float64 (`dtype=float64`): the exact values
                # the float32 run approximates
                "loglikelihoods_f64": [float(r[0]) for r in s64["filtered_resps"]],
                "acc_f64": float(s64["acc"]),
                "acc_norm_f64": float(s64["acc_norm"]),
            })
        out["tasks"][name] = {
            "file": TASKS[name][0],
            "documents": len(docs),
            "acc": agg["acc,none"],
            "acc_stderr": agg["acc_stderr,none"],
            "acc_norm": agg["acc_norm,none"],
            "acc_norm_stderr": agg["acc_norm_stderr,none"],
            "docs": docs,
        }
        print(f"{name}: acc {agg['acc,none']:.4f}, acc_norm {agg['acc_norm,none']:.4f} ({len(docs)} documents)",
              file=sys.stderr)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
