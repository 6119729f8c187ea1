#!/usr/bin/env python3
"""LLM-Pruner's perplexity evaluator, restated with transformers: the reference for
`prunec --bos start` (and, for the other placements of the BOS token, `--bos never|window`).

LLM-Pruner (`LLMPruner/datasets/ppl_dataset.py`, `LLMPruner/evaluator/ppl.py`) tokenizes the
dataset's rows joined with "\\n\\n" in one call of the model's tokenizer with its defaults
(a LLaMA tokenizer adds its BOS once, at the very start), cuts the ids into consecutive windows
of `seq_len` (the last partial one dropped), runs each window on its own, takes the cross-entropy
of positions 1..L predicted from 0..L-1 (`reduction="none"`), concatenates every window's losses
and returns `exp(mean)`.

    python3 scripts/llm_pruner_ppl.py GGUF_FILE TEXT_FILE [--seq-len 128] [--out OUT.json]

The model and its tokenizer are read from the GGUF file by transformers' own GGUF support (the
weights dequantized to float32; eager attention). For a LLaMA-architecture file transformers
builds a `LlamaTokenizerFast` with `add_bos_token=True`: a LLaMA-style tokenizer that adds the
file's BOS token (SmolLM2's `<|im_start|>`, id 1) at the start of a text. Three placements are
measured: `start` (the tokenizer's own call, LLM-Pruner's), `never` (`add_special_tokens=False`)
and `window` (every window is the BOS and `seq_len - 1` text tokens); each in float32, as LLM-Pruner
runs, then with the model in float64 (`float64`).
"""

import argparse
import json
import math
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def windows_of(ids, seq_len):
    import torch

    n = ids.numel() // seq_len
    return torch.stack([ids[i * seq_len:(i + 1) * seq_len] for i in range(n)])


def llm_pruner_eval(model, windows, batch_size):
    """`PPLMetric`'s `llama_eval`: every predicted token's loss, concatenated."""
    import torch

    nlls = []
    with torch.no_grad():
        for i in range(0, windows.shape[0], batch_size):
            batch = windows[i:i + batch_size]
            logits = model(batch).logits
            shift_logits = logits[:, :-1, :].contiguous()
            shift_labels = batch[:, 1:].contiguous()
            loss = torch.nn.CrossEntropyLoss(reduction="none")(
                shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.view(-1))
            nlls.append(loss)
    return torch.cat(nlls, dim=-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("text")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    with_bos = tok(text, return_tensors="pt").input_ids[0]
    plain = tok(text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    bos = tok.bos_token_id
    if with_bos.numel() != plain.numel() + 1 or int(with_bos[0]) != bos:
        sys.exit(f"error: the tokenizer does not add one BOS ({type(tok).__name__}, bos {bos})")
    per_window = plain[:(plain.numel() // (args.seq_len - 1)) * (args.seq_len - 1)].view(-1, args.seq_len - 1)
    placements = {
        "start": windows_of(with_bos, args.seq_len),
        "never": windows_of(plain, args.seq_len),
        "window": torch.cat([torch.full((per_window.shape[0], 1), bos, dtype=plain.dtype), per_window], dim=1),
    }
    out = {
        "reference": "LLM-Pruner's PPLMetric (ppl_dataset.process_data + llama_eval), restated in scripts/llm_pruner_ppl.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model": name,
        "tokenizer": f"{type(tok).__name__} from the GGUF file (add_bos_token={getattr(tok, 'add_bos_token', None)}), BOS id {bos}",
        "text": os.path.basename(args.text),
        "seq_len": args.seq_len,
        "text_tokens": int(plain.numel()),
        "bos": {},
    }
    for placement, windows in placements.items():
        nll = llm_pruner_eval(model, windows, args.batch_size)
        mean32 = float(nll.mean())  # as LLM-Pruner: the mean of the f32 losses
        mean64 = float(nll.double().mean())
        out["bos"][placement] = {
            "windows": int(windows.shape[0]),
            "predicted": int(nll.numel()),
            "mean_nll": mean64,
            "perplexity": math.exp(mean32),
            "perplexity_f64_mean": math.exp(mean64),
        }
        print(f"--bos {placement}: perplexity {math.exp(mean32):.6f} ({windows.shape[0]} windows, "
              f"{nll.numel()} predicted; mean NLL {mean64:.9f})", file=sys.stderr)
    # the same evaluator with the model in float64: the exact values both float32 runs approximate
    # (`prunec --precision f64` is compared with these)
    model.to(torch.float64)
    for placement, windows in placements.items():
        nll = llm_pruner_eval(model, windows, args.batch_size).double()
        mean = float(nll.mean())
        out["bos"][placement]["float64"] = {"mean_nll": mean, "perplexity": math.exp(mean)}
        print(f"--bos {placement} in float64: perplexity {math.exp(mean):.6f} (mean NLL {mean:.9f})", file=sys.stderr)
    text = json.dumps(out, indent=1) + "\n"
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, args.out)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
