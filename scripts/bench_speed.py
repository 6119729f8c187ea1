#!/usr/bin/env python3
"""prunec against PyTorch eager on the same model and the same token ids, alternating the two
(A B A B) so that both see the same machine load: forward tokens/s and forward+backward tokens/s
of a batch of BATCH × SEQ tokens, LoRA training tokens/s on that batch (prunec's `lora,recover`
against PEFT, LLM-Pruner's adapter settings), and the time of LLM-Pruner's calibration (one
forward+backward of 10 samples × 64 tokens, the recipe's), then the whole recipe end to end, each in
its own process with its peak RSS sampled from /proc: prunec's group,score,prune against the same
recipe in PyTorch on Torch-Pruning, the engine LLM-Pruner forks (scripts/llm_pruner_recipe.py).

    python3 scripts/bench_speed.py PRUNEC GGUF [--rounds 3] [--batch 4] [--seq-len 128]
                                   [--iters 3] [--threads N] [--attn eager] [--out FILE.md]
                                   [--work DIR] [--no-recipe] [--lora-steps 3] [--devices cpu:0,cpu:1]

Driven by `scripts/bench-speed`. The model is read by transformers from the GGUF file itself
(`load_gguf_checkpoint`, weights dequantized to float32), as prunec reads it. The token ids of the
forward and forward+backward batches are those `prunec bench` draws: SplitMix64 seeded 0,
`below(vocab)` per token, row by row (`backends/src/runtime/bench.rs`), restated here; the
calibration ids are `scripts/ab-smollm2`'s (Python's `random.Random(0)`, ids in 3..30000).

Each measurement times ITERS batches after one untimed warm-up (as `prunec bench` does); the
table reports the median over the rounds and the ratio prunec / PyTorch (> 1: prunec faster).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MASK = (1 << 64) - 1


class SplitMix64:
    """`prunec_ir::rng::SplitMix64`, bit for bit."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, bound):
        if bound <= 1:
            return 0
        rem = (MASK % bound + 1) % bound
        while True:
            x = self.next_u64()
            if x <= MASK - rem:
                return x % bound


def settle(seconds):
    """A pause before each measurement: PyTorch's OpenMP threads spin for a while after their
    work, taking a core from whatever runs next (prunec's LoRA right after PyTorch's work ran
    ~10% slower than after a 2 s pause)."""
    time.sleep(seconds)


def bench_ids(vocab, batch, seq_len):
    rng = SplitMix64(0)
    return [[rng.below(vocab) for _ in range(seq_len)] for _ in range(batch)]


def calib_ids():
    r = random.Random(0)
    return [[r.randrange(3, 30000) for _ in range(64)] for _ in range(10)]


def run_prunec_bench(prunec, gguf, batch, seq_len, iters):
    cmd = [prunec, "bench", gguf, "--batch", str(batch), "--seq-len", str(seq_len), "--iters", str(iters),
           "--new-tokens", "0", "--row-json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("row: "):
            return json.loads(line[5:])
    raise RuntimeError(f"no row from {' '.join(cmd)}:\n{out}")


def run_sampled(cmd):
    """Runs `cmd` and samples its resident set from /proc every 5 ms (prunec resets the kernel's
    high-water mark per pass, so the child's ru_maxrss under-reports it; the same sampling serves
    both sides): wall seconds, peak RSS in bytes, stdout."""
    import threading

    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        path = f"/proc/{proc.pid}/status"
        while proc.poll() is None:
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            peak[0] = max(peak[0], int(line.split()[1]) * 1024)
                            break
            except (FileNotFoundError, ProcessLookupError, ValueError):
                break
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-4000:]}")
    return wall, peak[0], out


def run_prunec_recipe(prunec, gguf, work, devices=None):
    """prunec's whole recipe in its own process: wall seconds, peak RSS (sampled), each pass's
    seconds and the calibration's loss from its report."""
    calib = os.path.join(work, "calib.jsonl")
    out, report = os.path.join(work, "recipe-out.gguf"), os.path.join(work, "recipe.json")
    cmd = [prunec, gguf, "--pass", "group,score,prune", "--unit-ratio", "0.2", "--gqa", "query",
           "--attn-layers", "3..27", "--mlp-layers", "3..27", "--importance", "taylor-element1",
           "--calib", calib, "--calib-samples", "10", "--calib-len", "64", "-o", out, "--report", report, "--force"]
    if devices:
        cmd += ["--devices", devices]
    wall, peak, _ = run_sampled(cmd)
    report = json.load(open(report))
    passes = {p["name"]: p["seconds"] for p in report["passes"]}
    return wall, peak, passes, report["calibration"]["loss"]


def run_torch_recipe(python, folder, work, threads):
    """The same recipe in PyTorch on Torch-Pruning, the engine LLM-Pruner's `hf_prune.py` forks
    (scripts/llm_pruner_recipe.py), in its own process, on the model as a transformers folder (float32
    safetensors, `Torch.hf_folder`: read by `from_pretrained` as `hf_prune.py` reads its model):
    wall seconds (imports included), peak RSS (sampled), its parts' seconds, the calibration's loss."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llm_pruner_recipe.py")
    cmd = [python, script, folder, os.path.join(work, "calib.jsonl"), os.path.join(work, "recipe-torch"),
           "--layers", "3..27", "--ratio", "0.2", "--threads", str(threads)]
    wall, peak, out = run_sampled(cmd)
    row = next(json.loads(l[5:]) for l in out.splitlines() if l.startswith("row: "))
    return wall, peak, row["parts"], row["loss"]


def run_prunec_lora(prunec, gguf, work, rows, steps):
    """prunec's LoRA recovery (LLM-Pruner's adapters: r 8, alpha 16, dropout 0.05 on every
    linear of the layers; AdamW lr 1e-4) on `rows` (one step = all of them, one micro-batch):
    training tokens/s as its report gives it (every step, the first included)."""
    data, report = os.path.join(work, "lora.jsonl"), os.path.join(work, "lora.json")
    with open(data, "w") as f:
        for row in rows:
            f.write(json.dumps({"input_ids": row}) + "\n")
    n = str(len(rows))
    cmd = [prunec, gguf, "--pass", "lora,recover", "--train-text", data, "--cutoff-len", str(len(rows[0])),
           "--steps", str(steps), "--batch-size", n, "--micro-batch-size", n, "--val-set-size", "0",
           "--warmup-steps", "0", "--report", report, "--force"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.load(open(report))["training"]["tokens_per_s"]


class Torch:
    def __init__(self, gguf, threads, attn):
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        folder, name = os.path.split(os.path.abspath(gguf))
        t = time.perf_counter()
        # from_pretrained(gguf_file=) wants `accelerate`; its own GGUF reader does without
        from transformers import AutoConfig
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        self.model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32)
        tensors = load_gguf_checkpoint(os.path.abspath(gguf), return_tensors=True, model_to_load=self.model)["tensors"]
        result = self.model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False)
        tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
        if result.unexpected_keys or set(result.missing_keys) - tied:
            raise RuntimeError(f"GGUF tensors do not fit the model: {result}")
        self.model.eval()
        self.load_seconds = time.perf_counter() - t
        self.torch = torch
        self.vocab = self.model.get_input_embeddings().weight.shape[0]

    def forward(self, ids, iters):
        torch = self.torch
        x = torch.tensor(ids)
        with torch.no_grad():
            self.model(x, use_cache=False).logits[0, 0, 0].item()
            t = time.perf_counter()
            for _ in range(iters):
                self.model(x, use_cache=False).logits[0, 0, 0].item()
            return x.numel() * iters / (time.perf_counter() - t)

    def step(self, x):
        loss = self.model(x, labels=x, use_cache=False).loss
        loss.backward()
        self.model.zero_grad(set_to_none=True)

    def backward(self, ids, iters):
        x = self.torch.tensor(ids)
        self.step(x)
        t = time.perf_counter()
        for _ in range(iters):
            self.step(x)
        return x.numel() * iters / (time.perf_counter() - t)

    def lora(self, ids, steps):
        """PEFT's LoRA with LLM-Pruner's settings on a copy of the model (r 8, alpha 16,
        dropout 0.05, every linear of the layers), AdamW lr 1e-4, one optimizer step per batch:
        training tokens/s over `steps` steps, the first included, as prunec's report counts."""
        import copy
        from peft import LoraConfig, get_peft_model

        torch = self.torch
        config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(copy.deepcopy(self.model), config)
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
        x = torch.tensor(ids)
        t = time.perf_counter()
        for _ in range(steps):
            loss = model(input_ids=x, labels=x, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - t
        del model, opt
        return x.numel() * steps / seconds

    def calibrate(self, ids):
        """LLM-Pruner's taylor calibration: one forward+backward of the whole batch, then
        |w ⊙ ∂L/∂w| of every weight (element1's salience before the per-unit sums)."""
        x = self.torch.tensor(ids)
        t = time.perf_counter()
        loss = self.model(x, labels=x, use_cache=False).loss
        loss.backward()
        with self.torch.no_grad():
            for p in self.model.parameters():
                if p.grad is not None:
                    (p * p.grad).abs()
        seconds = time.perf_counter() - t
        self.model.zero_grad(set_to_none=True)
        return seconds

    def export_onnx(self, path, batch, seq_len):
        """The model as ONNX for onnxruntime: `input_ids [batch, seq_len] -> logits`, torch.onnx's
        TorchScript exporter (opset 17, eager attention, constants folded), the shape fixed to the
        benchmark's (transformers 4.57's masks do not export with symbolic sequence lengths), once
        per shape under the work folder."""
        if os.path.exists(path):
            return path
        torch = self.torch
        import transformers.masking_utils as mu

        from onnx_forms import Logits  # `model(input_ids).logits`, as the ONNX forms export it

        # transformers looks for packed sequences with `torch.diff`, which this exporter cannot
        # write; with one sequence per row its answer is None (as scripts/onnx_forms.py does)
        original = mu.find_packed_sequence_indices
        mu.find_packed_sequence_indices = lambda position_ids: None
        tmp = path + ".part"
        try:
            ids = torch.randint(3, 100, (batch, seq_len))
            torch.onnx.export(Logits(self.model), (ids,), tmp, dynamo=False, opset_version=17, do_constant_folding=True,
                              input_names=["input_ids"], output_names=["logits"])
        finally:
            mu.find_packed_sequence_indices = original
        os.replace(tmp, path)
        return path

    def hf_folder(self, path):
        """The model as a transformers folder (float32 safetensors), once under the work folder."""
        if not os.path.isdir(path):
            tmp = path + ".part"
            self.model.save_pretrained(tmp, safe_serialization=True)
            os.replace(tmp, path)
        return path

    def logits(self, ids):
        with self.torch.no_grad():
            return self.model(self.torch.tensor(ids), use_cache=False).logits.numpy()


ORT_BENCH = """
import json, sys, time
import numpy as np
import onnxruntime as ort
model, ids, iters, threads, out = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
x = np.array(ids, dtype=np.int64)
np.save(out, s.run(None, {"input_ids": x})[0])
t = time.perf_counter()
for _ in range(iters):
    s.run(None, {"input_ids": x})[0][0, 0, 0]
print(ort.__version__, x.size * iters / (time.perf_counter() - t))
"""


def run_ort(python, site, model, ids, iters, threads, logits_out):
    """onnxruntime (CPU provider, its default graph optimizations, `threads` intra-op threads) on
    `ids`: forward tokens/s over `iters` runs after one untimed run, whose logits go to
    `logits_out` (.npy). Its own process: onnxruntime and its numpy come from `site`."""
    env = dict(os.environ, PYTHONPATH=site)
    out = subprocess.run([python, "-c", ORT_BENCH, model, json.dumps(ids), str(iters), str(threads), logits_out],
                         check=True, capture_output=True, text=True, env=env).stdout
    version, rate = out.split()[-2:]
    return version, float(rate)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prunec")
    ap.add_argument("gguf")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--attn", default="eager", help="transformers' attn_implementation (eager, sdpa)")
    ap.add_argument("--work", default="/tmp/prunec-bench-speed")
    ap.add_argument("--no-recipe", action="store_true", help="skip the calibration and the recipe")
    ap.add_argument("--devices", help="also run the recipe with prunec's --devices DEVICES (e.g. cpu:0,cpu:1: one peer per core)")
    ap.add_argument("--lora-steps", type=int, default=3, help="LoRA steps of one batch each (0: no LoRA part; PyTorch's needs peft)")
    ap.add_argument("--out", help="also write the table (Markdown) here")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds of rest before each measurement (see settle)")
    ap.add_argument("--ort-site", help="a folder with onnxruntime and numpy (scripts/fetch-onnxruntime): adds onnxruntime's "
                    "forward on the model exported to ONNX")
    ap.add_argument("--ort-python", default="python3", help="the Python that runs onnxruntime from --ort-site")
    args = ap.parse_args()

    import torch
    import transformers

    os.makedirs(args.work, exist_ok=True)
    with open(os.path.join(args.work, "calib.jsonl"), "w") as f:
        for row in calib_ids():
            f.write(json.dumps({"input_ids": row}) + "\n")
    pt = Torch(args.gguf, args.threads, args.attn)
    ids = bench_ids(pt.vocab, args.batch, args.seq_len)
    rows = {k: ([], []) for k in ("forward", "backward", "calibration", "recipe", "recipe_rss", "recipe_devices", "lora", "ort")}
    # the recipe's PyTorch side needs Torch-Pruning (scripts/bench-speed installs it)
    try:
        import torch_pruning  # noqa: F401

        torch_recipe = not args.no_recipe
    except ImportError:
        torch_recipe = False
        print("no torch_pruning: the recipe runs on prunec's side only", file=sys.stderr)
    torch_parts = []
    if args.ort_site:
        import numpy as np

        onnx_path = pt.export_onnx(os.path.join(args.work, f"model-{args.batch}x{args.seq_len}.onnx"), args.batch, args.seq_len)
        ort_logits = os.path.join(args.work, "ort-logits.npy")
    recipe_passes = []
    loads = []
    if torch_recipe:
        hf_model = pt.hf_folder(os.path.join(args.work, "hf-model"))
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        # A: prunec, B: PyTorch, alternating within each round
        settle(args.pause)
        row = run_prunec_bench(args.prunec, args.gguf, args.batch, args.seq_len, args.iters)
        settle(args.pause)
        f = pt.forward(ids, args.iters)
        settle(args.pause)
        b = pt.backward(ids, args.iters)
        rows["forward"][0].append(row["forward_tokens_per_s"])
        rows["forward"][1].append(f)
        rows["backward"][0].append(row["backward_tokens_per_s"])
        rows["backward"][1].append(b)
        if args.ort_site:
            settle(args.pause)
            ort_version, o = run_ort(args.ort_python, args.ort_site, onnx_path, ids, args.iters, args.threads, ort_logits)
            rows["ort"][0].append(row["forward_tokens_per_s"])
            rows["ort"][1].append(o)
            if r == 0:
                # the same model: onnxruntime's logits against PyTorch's
                diff = float(np.abs(np.load(ort_logits) - pt.logits(ids)).max())
                print(f"onnxruntime vs PyTorch logits: max |diff| {diff:.2e}", file=sys.stderr, flush=True)
                if not diff < 1e-2:
                    raise RuntimeError(f"the ONNX export's logits are off PyTorch's by {diff}")
            print(f"round {r + 1}: forward onnxruntime {o:.0f} tok/s", file=sys.stderr, flush=True)
        print(f"round {r + 1}: forward prunec {row['forward_tokens_per_s']:.0f} torch {f:.0f} tok/s; "
              f"fwd+bwd prunec {row['backward_tokens_per_s']:.0f} torch {b:.0f} tok/s", file=sys.stderr, flush=True)
        if not args.no_recipe:
            settle(args.pause)
            wall, peak, passes, loss = run_prunec_recipe(args.prunec, args.gguf, args.work)
            settle(args.pause)
            c = pt.calibrate(calib_ids())
            rows["recipe"][0].append(wall)
            rows["recipe_rss"][0].append(peak / 2**30)
            if torch_recipe:
                settle(args.pause)
                twall, tpeak, tparts, tloss = run_torch_recipe(sys.executable, hf_model, args.work, args.threads)
                rows["recipe"][1].append(twall)
                rows["recipe_rss"][1].append(tpeak / 2**30)
                # the same calibration on both sides: its loss agrees
                if not abs(tloss - loss) <= 1e-4 * abs(loss):
                    raise RuntimeError(f"the recipes' calibration losses differ: prunec {loss}, Torch-Pruning {tloss}")
                torch_parts.append(tparts)
                print(f"round {r + 1}: recipe on Torch-Pruning {twall:.2f} s, peak {tpeak / 2**30:.2f} GiB "
                      f"({', '.join(f'{k} {v:.2f} s' for k, v in tparts.items())})", file=sys.stderr, flush=True)
            rows["calibration"][0].append(passes.get("score", float("nan")))
            rows["calibration"][1].append(c)
            recipe_passes.append(passes)
            print(f"round {r + 1}: recipe prunec {wall:.2f} s, peak {peak / 2**30:.2f} GiB ({', '.join(f'{k} {v:.2f} s' for k, v in passes.items())}); "
                  f"torch calibration {c:.2f} s", file=sys.stderr, flush=True)
            if args.devices:
                settle(args.pause)
                wall, _, passes, _ = run_prunec_recipe(args.prunec, args.gguf, args.work, args.devices)
                rows["recipe_devices"][0].append(wall)
                print(f"round {r + 1}: recipe prunec --devices {args.devices} {wall:.2f} s "
                      f"({', '.join(f'{k} {v:.2f} s' for k, v in passes.items())})", file=sys.stderr, flush=True)

        if args.lora_steps > 0:
            settle(args.pause)
            p = run_prunec_lora(args.prunec, args.gguf, args.work, ids, args.lora_steps)
            settle(args.pause)
            t = pt.lora(ids, args.lora_steps)
            rows["lora"][0].append(p)
            rows["lora"][1].append(t)
            print(f"round {r + 1}: LoRA prunec {p:.0f} torch+peft {t:.0f} tok/s", file=sys.stderr, flush=True)

    med = lambda xs: statistics.median(xs) if xs else float("nan")
    lines = [
        f"prunec `{args.prunec}` against PyTorch {torch.__version__} eager (transformers {transformers.__version__}, "
        f"attn_implementation={args.attn}, {args.threads} threads) on `{os.path.basename(args.gguf)}` "
        f"({os.cpu_count()} cores); {args.rounds} rounds A B A B, {args.pause:g} s of rest before each measurement, "
        "medians; ratio > 1: prunec faster, except in the recipe's two rows, where the ratio is prunec's share "
        "of the time and of the memory (< 1: prunec lighter).",
        f"Load average (1 min) at the start of each round: {', '.join(f'{x:.1f}' for x in loads)} "
        "(above the core count, other work shared the cores: PyTorch's OpenMP threads suffer from that "
        "more than prunec's rayon pool, so such figures flatter prunec).",
        "",
        "| measure | prunec | PyTorch | ratio |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (("forward", f"forward tokens/s ({args.batch}×{args.seq_len})"),
                       ("backward", f"forward+backward tokens/s ({args.batch}×{args.seq_len})")):
        p, t = med(rows[key][0]), med(rows[key][1])
        lines.append(f"| {label} | {p:.0f} | {t:.0f} | {p / t:.2f} |")
    if args.ort_site:
        p, o = med(rows["ort"][0]), med(rows["ort"][1])
        lines.append(f"| forward tokens/s ({args.batch}×{args.seq_len}); other column: onnxruntime {ort_version} "
                     f"(ONNX export, CPU provider) | {p:.0f} | {o:.0f} | {p / o:.2f} |")
    if args.lora_steps > 0:
        p, t = med(rows["lora"][0]), med(rows["lora"][1])
        lines.append(f"| LoRA training tokens/s ({args.batch}×{args.seq_len} a step, {args.lora_steps} steps; PyTorch: PEFT) | {p:.0f} | {t:.0f} | {p / t:.2f} |")
    if not args.no_recipe:
        p, t = med(rows["calibration"][0]), med(rows["calibration"][1])
        lines.append(f"| calibration 10×64 s (prunec: the score pass; PyTorch: fwd+bwd+\\|w·g\\|) | {p:.2f} | {t:.2f} | {t / p:.2f} |")
        if torch_recipe:
            p, t = med(rows["recipe"][0]), med(rows["recipe"][1])
            lines.append(f"| LLM-Pruner's recipe end to end, wall s (prunec: group,score,prune; PyTorch: Torch-Pruning, "
                         f"scripts/llm_pruner_recipe.py); ratio: prunec's share | {p:.2f} | {t:.2f} | {p / t:.2f} |")
            p, t = med(rows["recipe_rss"][0]), med(rows["recipe_rss"][1])
            lines.append(f"| the recipe's peak RSS GiB (/proc sampled every 5 ms); ratio: prunec's share | {p:.2f} | {t:.2f} | {p / t:.2f} |")
        else:
            lines.append(f"| recipe group,score,prune wall s (prunec process) | {med(rows['recipe'][0]):.2f} | — | — |")
        if args.devices:
            lines.append(f"| recipe wall s, `--devices {args.devices}` | {med(rows['recipe_devices'][0]):.2f} | — | — |")
        keys = sorted({k for ps in recipe_passes for k in ps})
        lines.append("")
        lines.append("prunec recipe passes (median s): " + ", ".join(
            f"{k} {med([ps[k] for ps in recipe_passes if k in ps]):.2f}" for k in keys))
        if torch_parts:
            lines.append("")
            lines.append("Torch-Pruning recipe parts (median s): " + ", ".join(
                f"{k} {med([ps[k] for ps in torch_parts]):.2f}" for k in torch_parts[0]))
    lines.append("")
    # each round's prunec/other ratio (the calibration's: other/prunec, as in the table)
    per_round = []
    for key, (a, b) in rows.items():
        if a and b and len(a) == len(b):
            ratios = [(y / x if key == "calibration" else x / y) for x, y in zip(a, b)]
            per_round.append(f"{key} {', '.join(f'{r:.2f}' for r in ratios)}")
    lines.append("Ratios round by round: " + "; ".join(per_round) + ".")
    lines.append("")
    lines.append("raw: " + json.dumps({k: {"prunec": v[0], "torch": v[1]} for k, v in rows.items()}))
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
