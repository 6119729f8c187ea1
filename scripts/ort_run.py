"""Runs ONNX language models in onnxruntime (the reference client of prunec's ONNX tests and of
scripts/onnx-forms-check), whatever their interface: `input_ids`, and when the graph has them
`attention_mask` (ones, or the padding given), `position_ids` (0..seq, or from the mask) and a
key/value cache (`past_key_values.N.key|value`, empty at first; its shape read from the graph,
`head_size` from genai_config.json beside the model where the graph leaves it symbolic).

    python ort_run.py JOBS.json

JOBS.json holds a list of jobs; each writes `out`:
  {"kind": "logits", "model": M, "ids": [[...], ...], "out": F}
      logits [batch, seq, vocab] as little-endian f32
  {"kind": "padded", "model": M, "rows": [[...], [...]], "out": F}
      the rows left-padded to one length, with attention_mask and position_ids saying so;
      the logits of each row's own tokens, concatenated (f32)
  {"kind": "cached", "model": M, "tokens": [...], "prefill": K, "out": F}
      the first K tokens in one run, then the others one a run through the cache: the logits
      of positions K-1.. (f32)
  {"kind": "generate", "model": M, "prompt": [...], "new_tokens": N, "out": F}
      greedy generation feeding the cache back (prefill, then one token a step): JSON list
  {"kind": "genai", "folder": D, "prompt": [...], "new_tokens": N, "out": F}
      onnxruntime_genai loads the folder and generates greedily: JSON list
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def head_size(path):
    cfg = os.path.join(os.path.dirname(path), "genai_config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            return json.load(f)["model"]["decoder"]["head_size"]
    return None


def empty_cache(s, path, batch):
    feeds = {}
    for i in s.get_inputs():
        if i.name.startswith("past"):
            shape = list(i.shape)
            dims = [batch, shape[1], 0, shape[3] if isinstance(shape[3], int) else head_size(path)]
            feeds[i.name] = np.zeros(dims, dtype=np.float32)
    return feeds


def run(s, path, ids, mask=None, positions=None, past=None):
    names = {i.name for i in s.get_inputs()}
    batch, seq = ids.shape
    past_len = 0
    feeds = {"input_ids": ids}
    if past is None:
        past = empty_cache(s, path, batch)
    else:
        past_len = next(iter(past.values())).shape[2]
    feeds.update(past)
    if mask is None:
        mask = np.ones((batch, past_len + seq), dtype=np.int64)
    if "attention_mask" in names:
        feeds["attention_mask"] = mask
    if "position_ids" in names:
        if positions is None:
            positions = np.broadcast_to(np.arange(past_len, past_len + seq, dtype=np.int64), (batch, seq)).copy()
        feeds["position_ids"] = positions
    outs = s.run(None, feeds)
    named = dict(zip([o.name for o in s.get_outputs()], outs))
    present = {k.replace("present", "past_key_values"): v for k, v in named.items() if k.startswith("present")}
    return named["logits"], present


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    for job in jobs:
        kind = job["kind"]
        if kind == "genai":
            import onnxruntime_genai as og
            model = og.Model(job["folder"])
            params = og.GeneratorParams(model)
            params.set_search_options(do_sample=False, max_length=len(job["prompt"]) + job["new_tokens"])
            gen = og.Generator(model, params)
            gen.append_tokens(job["prompt"])
            out = []
            while not gen.is_done():
                gen.generate_next_token()
                out.append(int(gen.get_next_tokens()[0]))
            with open(job["out"], "w") as f:
                json.dump(out[: job["new_tokens"]], f)
            continue
        path = job["model"]
        s = session(path)
        if kind == "logits":
            logits, _ = run(s, path, np.array(job["ids"], dtype=np.int64))
            logits.astype("<f4").tofile(job["out"])
        elif kind == "padded":
            rows = job["rows"]
            width = max(len(r) for r in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for b, r in enumerate(rows):
                ids[b, width - len(r):] = r
                mask[b, width - len(r):] = 1
            positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
            logits, _ = run(s, path, ids, mask, positions)
            parts = [logits[b, width - len(r):] for b, r in enumerate(rows)]
            np.concatenate(parts).astype("<f4").tofile(job["out"])
        elif kind == "cached":
            tokens, k = job["tokens"], job["prefill"]
            logits, past = run(s, path, np.array([tokens[:k]], dtype=np.int64))
            steps = [logits[0, -1]]
            for t in tokens[k:]:
                logits, past = run(s, path, np.array([[t]], dtype=np.int64), past=past)
                steps.append(logits[0, -1])
            np.stack(steps).astype("<f4").tofile(job["out"])
        elif kind == "generate":
            tokens = list(job["prompt"])
            ids = np.array([tokens], dtype=np.int64)
            logits, past = run(s, path, ids)
            out = []
            for step in range(job["new_tokens"]):
                nxt = int(np.argmax(logits[0, -1]))
                out.append(nxt)
                tokens.append(nxt)
                if step + 1 == job["new_tokens"]:
                    break
                logits, past = run(s, path, np.array([[nxt]], dtype=np.int64), past=past)
            with open(job["out"], "w") as f:
                json.dump(out, f)
        else:
            raise SystemExit(f"unknown job kind {kind}")


if __name__ == "__main__":
    main()
