#!/usr/bin/env python3
"""Runs a GGUF file (one prunec wrote, or any) through llama.cpp, the reference client of
prunec's GGUF output, and prints one JSON object on stdout (everything else goes to stderr).

Usage: PYTHONPATH=$(scripts/fetch-llama-cpp) python3 scripts/llama_cpp_run.py MODE MODEL.gguf ...

  logits   MODEL --tokens 1,2,3            every position's logits, the tokens in one batch
  tokenize MODEL --text FILE [--add-special]   llama.cpp's ids of the file's text (UTF-8, whole),
           special tokens written in it not parsed (`special=False`); with --add-special, the
           BOS/EOS the file's configuration adds (`add_bos=True`). Loads the vocabulary only.
  ppl      MODEL --text FILE | --tokens-file FILE.json [--seq-len 128] [--max-windows N]
           [--bos auto|never|start|window] perplexity as `prunec --pass eval` computes it
  generate MODEL --prompt TEXT [--max-tokens N]   greedy generation
  bench    MODEL [--prompt-tokens 128] [--gen-tokens 64] [--repeat 3] [--threads N]
           prefill and decode tokens/s (medians) and peak RSS, measured in a fresh process

Perplexity (src/evaluate.rs, backends/src/runtime/eval.rs): non-overlapping windows of
--seq-len tokens (len // seq_len of them, the partial last one dropped), each evaluated from an
empty KV cache; the NLL of tokens 1..L-1 of each window given those before it, summed in f64;
ppl = exp(NLL / (windows * (seq_len - 1))). --bos (frontends/src/data.rs, `Bos::stream`): `auto`
(prunec's default) adds what the model's tokenizer configuration adds around a text (a GGUF
file's `tokenizer.ggml.add_bos_token`/`add_eos_token`, else a BOS for SentencePiece vocabularies:
llama.cpp's rule, read here from llama.cpp itself), once around the whole text, and nothing to
--tokens-file ids (as prunec leaves `input_ids` rows); `never`; `start` (one BOS before the
text); `window` (chunks of seq_len-1 tokens, each after a BOS). --max-windows N keeps the first
N*seq_len tokens after that (prunec's --limit). The text is read as prunec reads it: `*.raw`
(WikiText) and `ptb.*.txt` as lines joined by blank lines, anything else whole; it is tokenized
by llama.cpp's tokenizer without special tokens (which may split otherwise than prunec's: pass
prunec's ids with --tokens-file to compare perplexities on the same tokens).

`--kv-type f32` keeps the KV cache in float32 (llama.cpp's default is f16), for comparisons.
"""
import argparse
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys
import time


def eprint(*a):
    print(*a, file=sys.stderr, flush=True)


def rss_mib(field):
    """VmHWM (peak) or VmRSS (now) of this process, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def silence(llama_cpp):
    last = [0]

    @llama_cpp.llama_log_callback
    def _quiet(level, text, user_data):  # errors (ggml's level 4, and their continuations) still reach stderr
        if level != 5:
            last[0] = level
        if last[0] == 4:
            sys.stderr.write(text.decode("utf-8", "replace"))
    silence.cb = _quiet  # keep a reference: llama.cpp holds the pointer
    llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))


def load(path, n_ctx, n_batch, threads, logits_all, kv_type="f16"):
    import llama_cpp
    silence(llama_cpp)
    kv = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[kv_type]
    try:
        llm = llama_cpp.Llama(
            model_path=path, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
            n_threads_batch=threads, logits_all=logits_all, n_gpu_layers=0, type_k=kv, type_v=kv,
            verbose=False,
        )
    except ValueError as e:
        # Llama(verbose=False) hides llama.cpp's output while loading: load again, so that its
        # error (a key, a tensor's shape) reaches stderr
        silence(llama_cpp)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        model = llama_cpp.llama_model_load_from_file(path.encode(), params)
        if model:
            llama_cpp.llama_model_free(model)
        sys.exit(f"llama.cpp: {e}")
    silence(llama_cpp)  # Llama() may have set its own callback
    return llm


def clear(llm):
    llm.reset()
    llm._ctx.kv_cache_clear()


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def log_softmax_rows(x):
    import numpy as np
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def read_text(path):
    """The text as prunec's `read_eval_source` gives it to the tokenizer (rows joined by
    blank lines, as LLM-Pruner's ppl_dataset.py)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    name = os.path.basename(path).lower()
    if name.endswith(".raw"):
        text = text.replace("\r\n", "\n")
        lines = text.splitlines(keepends=True)
        return "\n\n".join("" if not l.strip() else l for l in lines)
    if name.startswith("ptb.") and name.endswith(".txt"):
        return "\n\n".join(l.strip() for l in text.splitlines())
    return text


def bos_stream(rule, tokens, llm, seq_len, ids_given):
    bos = llm.token_bos()
    if rule == "never" or (rule == "auto" and ids_given):
        return tokens
    if rule == "auto":
        pre = [bos] if llm._model.add_bos_token() and bos >= 0 else []
        eos = llm.token_eos()
        post = [eos] if llm._model.add_eos_token() and eos >= 0 else []
        return pre + tokens + post
    if bos < 0:
        sys.exit(f"--bos {rule}: the model has no BOS token")
    if rule == "start":
        return [bos] + tokens
    if seq_len < 2:
        sys.exit(f"--bos window: windows of {seq_len} tokens")
    out = []
    n = seq_len - 1
    for i in range(0, len(tokens) - n + 1, n):
        out += [bos] + tokens[i:i + n]
    return out


def mode_logits(a):
    import numpy as np
    toks = [int(t) for t in a.tokens.split(",") if t.strip()]
    if not toks:
        sys.exit("--tokens: no tokens")
    llm = load(a.model, max(len(toks), 8), max(len(toks), 8), a.threads, True, a.kv_type)
    clear(llm)
    llm.eval(toks)
    logits = np.array(llm.scores[: len(toks)], dtype=np.float32)
    return {"n_vocab": llm.n_vocab(), "logits": [[float(v) for v in row] for row in logits]}


def mode_tokenize(a):
    import llama_cpp
    silence(llama_cpp)
    with open(a.text, "rb") as f:
        text = f.read()
    llm = llama_cpp.Llama(model_path=a.model, vocab_only=True, verbose=False)
    ids = llm.tokenize(text, add_bos=a.add_special, special=False)
    return {"n_vocab": llm.n_vocab(), "ids": ids}


def mode_ppl(a):
    import numpy as np
    L = a.seq_len
    if L < 2:
        sys.exit("--seq-len: a window needs at least 2 tokens")
    llm = load(a.model, L, L, a.threads, True, a.kv_type)
    if a.tokens_file:
        with open(a.tokens_file) as f:
            tokens = [int(t) for t in json.load(f)]
        ids_given = True
    else:
        if not a.text:
            sys.exit("ppl: --text FILE or --tokens-file FILE.json")
        tokens = llm.tokenize(read_text(a.text).encode("utf-8"), add_bos=False, special=False)
        ids_given = False
    tokens = bos_stream(a.bos, tokens, llm, L, ids_given)
    if a.max_windows is not None:
        tokens = tokens[: a.max_windows * L]
    windows = len(tokens) // L
    if windows == 0:
        sys.exit(f"the text has {len(tokens)} tokens, fewer than one window of {L}")
    n_vocab = llm.n_vocab()
    if max(tokens) >= n_vocab:
        sys.exit(f"token id {max(tokens)} is outside the vocabulary ({n_vocab})")
    nll = 0.0
    t0 = time.time()
    for w in range(windows):
        win = tokens[w * L:(w + 1) * L]
        clear(llm)
        llm.eval(win)
        lp = log_softmax_rows(np.asarray(llm.scores[: L - 1]))
        nll -= float(lp[np.arange(L - 1), win[1:]].sum())
    predicted = windows * (L - 1)
    mean = nll / predicted
    eprint(f"ppl: {windows} windows of {L} in {time.time() - t0:.1f}s")
    return {"perplexity": math.exp(mean), "mean_nll": mean, "tokens": len(tokens), "windows": windows,
            "predicted": predicted, "seq_len": L, "bos": a.bos}


def mode_generate(a):
    import numpy as np
    import llama_cpp
    text = a.prompt.encode("utf-8")
    most = len(text) + 2  # tokens of the prompt at most: one per byte, and BOS/EOS
    llm = load(a.model, most + a.max_tokens + 1, max(most, 8), a.threads, True, a.kv_type)
    # the prompt with the special tokens the model's configuration adds (llama.cpp's add_bos)
    prompt = llm.tokenize(text, add_bos=True, special=True)
    clear(llm)
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    out = []
    llm.eval(prompt)
    for _ in range(a.max_tokens):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if llama_cpp.llama_vocab_is_eog(vocab, tok):
            break
        out.append(tok)
        llm.eval([tok])
    text = llm.detokenize(out).decode("utf-8", "replace")
    return {"prompt_tokens": prompt, "text": text, "tokens": out}


def bench_child(a):
    """One model's measurement in this (fresh) process."""
    import llama_cpp  # noqa: F401  (the baseline counts the library, loaded before the model)
    baseline = rss_mib("VmHWM")
    P, G = a.prompt_tokens, a.gen_tokens
    llm = load(a.model, P + G + 8, P, a.threads, False, a.kv_type)
    vocab = llm.n_vocab()
    prompt = [100 + i % max(1, vocab - 100) for i in range(P)]
    pre, dec = [], []
    for r in range(a.repeat + 1):  # the first round warms up
        clear(llm)
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        for i in range(G):
            llm.eval([100 + (P + i) % max(1, vocab - 100)])
        t2 = time.perf_counter()
        if r > 0:
            pre.append(P / (t1 - t0))
            dec.append(G / (t2 - t1) if G else 0.0)
    return {"prefill_tok_s": statistics.median(pre), "decode_tok_s": statistics.median(dec),
            "peak_rss_mib": rss_mib("VmHWM"), "baseline_rss_mib": baseline,
            "model_file_mib": os.path.getsize(a.model) / 2**20, "threads": a.threads,
            "prompt_tokens": P, "gen_tokens": G, "repeat": a.repeat}


def mode_bench(a):
    if a.in_process:
        return bench_child(a)
    cmd = [sys.executable, os.path.abspath(__file__), "bench", a.model, "--in-process",
           "--prompt-tokens", str(a.prompt_tokens), "--gen-tokens", str(a.gen_tokens),
           "--repeat", str(a.repeat), "--threads", str(a.threads), "--kv-type", a.kv_type]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, check=True)
    return json.loads(r.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["logits", "tokenize", "ppl", "generate", "bench"])
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=cores())
    p.add_argument("--kv-type", choices=["f16", "f32"], default="f16")
    p.add_argument("--tokens", help="logits: comma-separated token ids")
    p.add_argument("--text")
    p.add_argument("--tokens-file")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--max-windows", type=int)
    p.add_argument("--bos", choices=["auto", "never", "start", "window"], default="auto")
    p.add_argument("--prompt", default="The capital of France is")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--add-special", action="store_true", help="tokenize: add the BOS/EOS the model adds")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.mode == "logits" and not a.tokens:
        p.error("logits: --tokens 1,2,3")
    if a.mode == "tokenize" and not a.text:
        p.error("tokenize: --text FILE")
    # llama.cpp writes to fd 1 in places: keep stdout for the JSON alone
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    result = {"logits": mode_logits, "tokenize": mode_tokenize, "ppl": mode_ppl, "generate": mode_generate, "bench": mode_bench}[a.mode](a)
    json.dump(result, out)
    out.write("\n")
    out.flush()


if __name__ == "__main__":
    main()
