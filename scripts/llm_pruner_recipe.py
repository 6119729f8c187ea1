#!/usr/bin/env python3
"""LLM-Pruner's recipe in PyTorch, end to end in one process, for the side-by-side timing of
`scripts/bench-speed` (not CI): import, load the model, trace its dependency graph, calibrate,
score, prune, write.

    python3 scripts/llm_pruner_recipe.py MODEL CALIB.jsonl OUT_DIR [--ratio 0.2] [--layers 3..27]
                                         [--threads N]

LLM-Pruner's own `hf_prune.py` cannot be run here: LLM-Pruner is not on PyPI and GitHub cannot
be reached. Its pruning engine is a fork of Torch-Pruning by the same authors, which is on PyPI
(`torch-pruning`); this script runs the recipe of `hf_prune.py` on that engine: the model read by
transformers in float32 from MODEL, a transformers folder (`from_pretrained`, as `hf_prune.py`
reads its model; `bench_speed.py` writes one from the GGUF file), Torch-Pruning's `MetaPruner`
tracing the dependency graph from one calibration row, LLM-Pruner's Taylor calibration (one forward+backward of the whole calibration
batch, labels = inputs), first-order element-wise Taylor importance (|w · ∂L/∂w| summed per
channel, group reduction `sum`, as `--importance taylor-element1`), block-wise: only the MLP's
inner channels and the attention heads of layers LAYERS are pruned (the hidden size is kept:
every `o_proj`, `down_proj` and the `lm_head` is an ignored layer, as are the layers outside
LAYERS), 20% each, then the pruned model written whole with `torch.save`, as `hf_prune.py` does.

Prints one line `row: {json}` with the seconds of each part (`import`, `load`, `trace`,
`calibrate`, `prune`, `write`), the parameters before and after, and the pruned shapes.
"""

import argparse
import json
import os
import sys
import time

T0 = time.perf_counter()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a transformers model folder")
    ap.add_argument("calib", help="JSON lines, one {\"input_ids\": [...]} a sample (bench-speed's calib.jsonl)")
    ap.add_argument("out")
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--layers", default="3..27", help="pruned layers, a Rust-style range START..END (END excluded)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    start, end = (int(x) for x in args.layers.split(".."))

    import torch
    import torch_pruning as tp
    from transformers import AutoModelForCausalLM

    parts = {"import": time.perf_counter() - T0}
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, attn_implementation="eager", dtype=torch.float32)
    config = model.config
    parts["load"] = time.perf_counter() - t
    params_before = sum(p.numel() for p in model.parameters())

    with open(args.calib) as f:
        rows = [json.loads(line)["input_ids"] for line in f if line.strip()]
    ids = torch.tensor(rows)

    t = time.perf_counter()
    layers = model.model.layers
    num_heads, ignored = {}, [model.lm_head]
    for i, layer in enumerate(layers):
        attn, mlp = layer.self_attn, layer.mlp
        num_heads[attn.q_proj] = config.num_attention_heads
        num_heads[attn.k_proj] = config.num_key_value_heads
        num_heads[attn.v_proj] = config.num_key_value_heads
        # block-wise: the residual stream's width stays; outside LAYERS nothing is pruned
        ignored += [attn.o_proj, mlp.down_proj]
        if not start <= i < end:
            ignored += [attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj]
    importance = tp.importance.TaylorImportance(group_reduction="sum", normalizer=None)
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs=ids[:1],
        forward_fn=lambda m, x: m(x, use_cache=False).logits,
        importance=importance,
        global_pruning=False,
        pruning_ratio=args.ratio,
        ignored_layers=ignored,
        num_heads=num_heads,
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=args.ratio,
    )
    parts["trace"] = time.perf_counter() - t

    t = time.perf_counter()
    model.zero_grad(set_to_none=True)
    loss = model(ids, labels=ids, use_cache=False).loss
    loss.backward()
    parts["calibrate"] = time.perf_counter() - t

    t = time.perf_counter()
    pruner.step()
    model.zero_grad(set_to_none=True)
    # the pruned head counts into the attention modules, as hf_prune.py does
    for layer in layers:
        attn = layer.self_attn
        attn.num_key_value_groups = attn.q_proj.out_features // attn.k_proj.out_features
    shapes = [(l.self_attn.q_proj.out_features // l.self_attn.head_dim, l.self_attn.k_proj.out_features,
               l.mlp.gate_proj.out_features) for l in layers]
    parts["prune"] = time.perf_counter() - t

    t = time.perf_counter()
    # as hf_prune.py writes its result: the whole pruned module (its shapes differ by layer, which
    # a transformers config cannot state)
    os.makedirs(args.out, exist_ok=True)
    torch.save({"model": model}, os.path.join(args.out, "pytorch_model.bin"))
    parts["write"] = time.perf_counter() - t
    params_after = sum(p.numel() for p in model.parameters())
    row = {"parts": parts, "loss": loss.item(), "params_before": params_before, "params_after": params_after,
           "layers": [{"q_heads": q, "kv_width": kv, "intermediate": m} for q, kv, m in shapes],
           "torch": torch.__version__, "torch_pruning": tp.__version__ if hasattr(tp, "__version__") else "?"}
    print("row: " + json.dumps(row))


if __name__ == "__main__":
    sys.exit(main())
