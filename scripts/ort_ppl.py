#!/usr/bin/env python3
"""Perplexity of an ONNX language model computed by onnxruntime (a by-hand check that a pruned
ONNX written by prunec runs there and computes what prunec computes).

Usage: python scripts/ort_ppl.py MODEL.onnx TOKENIZER.json TEXT   (needs numpy, onnxruntime and
tokenizers; 128-token windows, as `prunec --pass eval --seq-len 128`)."""
import math, sys
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer

model, tok, text = sys.argv[1:4]
ids = Tokenizer.from_file(tok).encode(open(text).read(), add_special_tokens=False).ids
L = 128
s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
nll, n = 0.0, 0
for i in range(0, len(ids) - L + 1, L):
    w = np.array([ids[i:i + L]], dtype=np.int64)
    logits = s.run(None, {"input_ids": w})[0][0, :-1].astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nll += float((lse - logits[np.arange(L - 1), w[0, 1:]]).sum())
    n += L - 1
print(f"onnxruntime: {len(ids)} tokens, {n} predicted, perplexity {math.exp(nll / n):.6f}")
