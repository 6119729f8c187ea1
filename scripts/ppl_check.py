#!/usr/bin/env python3
"""Perplexity of an HF folder written by prunec, computed by transformers (a by-hand check that
the output loads without custom code and computes what prunec computes).

Usage: python scripts/ppl_check.py FOLDER TEXT   (needs torch and transformers; 128-token windows,
as `prunec --pass eval --seq-len 128`)."""
import sys, math, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, text_path = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
ids = tok(open(text_path).read(), add_special_tokens=False).input_ids
L = 128
wins = [ids[i:i+L] for i in range(0, len(ids) - L + 1, L)]
nll = 0.0; n = 0
with torch.no_grad():
    for w in wins:
        x = torch.tensor([w])
        lp = torch.log_softmax(model(x).logits[0, :-1].float(), -1)
        nll += -lp.gather(1, x[0, 1:, None]).sum().item(); n += L - 1
print(f"transformers {type(model).__name__}: {model.config.num_attention_heads} heads, {model.config.num_key_value_heads} kv, mlp {model.config.intermediate_size}; tokens {len(ids)} windows {len(wins)} perplexity {math.exp(nll/n):.6f}")
