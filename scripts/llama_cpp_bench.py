#!/usr/bin/env python3
"""GGUF files side by side in llama.cpp: prefill and decode tokens/s (median of --repeat, one
thread unless --threads), peak resident memory of a fresh process, and (with --text) the
perplexity llama.cpp computes, as a Markdown table with ratios against the first file.

Usage: python3 scripts/llama_cpp_bench.py A.gguf B.gguf ... [--text FILE] [--max-windows 20]
       [--repeat 5] [--threads 1] [--label A=NAME ...]
(llama.cpp from scripts/fetch-llama-cpp; each measurement by scripts/llama_cpp_run.py)."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args, env=None):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout


def llama_cpp(mode, path, *args):
    site = run(ROOT / "scripts" / "fetch-llama-cpp").strip()
    env = dict(os.environ, PYTHONPATH=site)
    return json.loads(run(sys.executable, ROOT / "scripts" / "llama_cpp_run.py", mode, path, *args, env=env))


def measure(files, text=None, max_windows=20, repeat=5, threads=1):
    """[(label, path, bench, ppl or None)] for [(label, path)]."""
    rows = []
    for label, path in files:
        print(f"measuring {Path(path).name} ...", file=sys.stderr)
        bench = llama_cpp("bench", path, "--repeat", str(repeat), "--threads", str(threads))
        ppl = llama_cpp("ppl", path, "--text", text, "--max-windows", str(max_windows)) if text else None
        rows.append((label, Path(path), bench, ppl))
    return rows


def table(rows, heads=("model",)):
    """The Markdown table of `measure`'s rows, ratios against the first; a label may be a tuple,
    one column per element of `heads`."""
    base = rows[0][2]
    has_ppl = any(r[3] for r in rows)
    lines = ["| " + " | ".join(heads) + " | file MiB | prefill tok/s | decode tok/s | peak RSS MiB |" + (" perplexity |" if has_ppl else ""),
             "|" + "---|" * len(heads) + "---:|---:|---:|---:|" + ("---:|" if has_ppl else "")]
    for label, path, b, p in rows:
        mib = path.stat().st_size / 2**20
        ratio = lambda k: f"{b[k]:.0f} ({b[k] / base[k]:.2f}×)"
        names = label if isinstance(label, tuple) else (label,)
        line = (f"| {' | '.join(names)} | {mib:.1f} ({mib / base['model_file_mib']:.2f}×) | {ratio('prefill_tok_s')} | "
                f"{ratio('decode_tok_s')} | {b['peak_rss_mib']:.0f} ({b['peak_rss_mib'] / base['peak_rss_mib']:.2f}×) |")
        if has_ppl:
            line += f" {p['perplexity']:.2f} |" if p else " |"
        lines.append(line)
    windows = next((r[3]["windows"] for r in rows if r[3]), None)
    lines.append("")
    lines.append(f"llama.cpp via llama-cpp-python, {base['threads']} thread(s), prompt {base['prompt_tokens']} tokens, "
                 f"{base['gen_tokens']} decoded, median of {base['repeat']}"
                 + (f"; perplexity over {windows} windows of 128." if windows else "."))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--text")
    p.add_argument("--max-windows", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--label", action="append", default=[], help="FILE=NAME")
    a = p.parse_args()
    labels = dict(l.split("=", 1) for l in a.label)
    files = [(labels.get(f, Path(f).name), f) for f in a.files]
    print(table(measure(files, a.text, a.max_windows, a.repeat, a.threads)))


if __name__ == "__main__":
    main()
