"""The forms of ONNX LLMs people have, made from an HF folder: torch.onnx's two exporters (opsets
17-21, the dynamo exporter's optimizer on and off), optimum-onnx's `text-generation-with-past`
(KV cache) and onnxruntime-genai's model builder (fp32 and int4 CPU). Run by
`scripts/make-onnx-forms`, which provides the Python environments; see it for the commands.

  python onnx_forms.py tiny OUT                  a tiny random LLaMA (GQA) folder with a byte-level BPE tokenizer
  python onnx_forms.py torch HF OUT FORM...      FORM: ts17, ts21, dynamo18, dynamo18-opt, ... (exporter, opset, -opt)
  python onnx_forms.py optimum HF OUT            optimum-cli export onnx --task text-generation-with-past
  python onnx_forms.py genai HF OUT PRECISION    python -m onnxruntime_genai.models.builder -p PRECISION -e cpu
  python onnx_forms.py strip FILE                drop the per-node metadata (stack traces) and doc strings
"""
import json
import os
import subprocess
import sys
import warnings

warnings.filterwarnings("ignore")


def tiny(out):
    """A 2-layer LLaMA with grouped-query attention (4 heads, 2 key/value heads, head_dim 16 — onnxruntime's GroupQueryAttention needs a multiple of 16 —,
    hidden 32, MLP 64, vocab 128, tied embeddings), random weights (seed 0; norms 1 + 0.1·N(0, 1)),
    and a byte-level
    BPE tokenizer of 128 tokens (GPT-2's byte alphabet for ASCII, a few merges)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                      rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    # norms as a trained model has them (all ones, as initialized, TorchScript's constant
    # folding would merge them into one initializer)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    model.save_pretrained(out)
    # GPT-2's bytes_to_unicode for the bytes used here
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    b2u = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in [10, 32] + list(range(33, 127)):
        vocab[b2u[b]] = len(vocab)
    merges = []
    for a, b in [("Ġ", "t"), ("h", "e"), ("Ġ", "a"), ("i", "n"), ("Ġt", "he"), ("e", "r"), ("o", "n"), ("Ġ", "s"),
                 ("r", "e"), ("a", "t"), ("e", "n"), ("Ġ", "o"), ("Ġ", "w"), ("Ġ", "c"), ("n", "d"), ("i", "s"),
                 ("Ġ", "b"), ("o", "u"), ("Ġ", "f"), ("e", "s"), ("Ġ", "p"), ("e", "d"), ("in", "g"), ("Ġ", "m"),
                 ("o", "r"), ("a", "n"), ("a", "r"), ("Ġ", "h"), ("l", "l")]:
        vocab[a + b] = len(vocab)
        merges.append((a, b))
    assert len(vocab) == 128, len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                   "model_max_length": 64, "add_bos_token": False, "clean_up_tokenization_spaces": False}, f, indent=1)


class Logits:
    """`model(input_ids).logits`, what the tests' exports wrap."""

    def __new__(cls, model):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids):
                return self.m(input_ids=input_ids, use_cache=False).logits

        return Wrapper(model)


def export_torch(hf, out, forms):
    """Each FORM: `ts{opset}` (TorchScript exporter, eager attention) or `dynamo{opset}[-opt]`
    (torch.export exporter, the default SDPA attention, optimizer off or on, weights in
    external data)."""
    import torch
    from transformers import AutoModelForCausalLM

    os.makedirs(out, exist_ok=True)
    ids = torch.randint(3, 100, (2, 7))
    for form in forms:
        dynamo = form.startswith("dynamo")
        opset = int(form.removeprefix("dynamo").removeprefix("ts").split("-")[0])
        path = os.path.join(out, f"{form}.onnx")
        if dynamo:
            model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
            torch.onnx.export(Logits(model), (ids,), path, dynamo=True, opset_version=opset, optimize=form.endswith("-opt"),
                              input_names=["input_ids"], output_names=["logits"], external_data=True,
                              dynamic_shapes={"input_ids": {0: torch.export.Dim("batch", min=1, max=64),
                                                            1: torch.export.Dim("sequence", min=1, max=4096)}})
        else:
            # transformers 5 looks for packed sequences with `torch.diff`, which this exporter
            # cannot write; with one sequence per row its answer is None (as the fixtures'
            # README says of the first TorchScript fixtures)
            import transformers.masking_utils as mu
            original = mu.find_packed_sequence_indices
            mu.find_packed_sequence_indices = lambda position_ids: None
            try:
                model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32, attn_implementation="eager").eval()
                torch.onnx.export(Logits(model), (ids,), path, dynamo=False, opset_version=opset, do_constant_folding=True,
                                  input_names=["input_ids"], output_names=["logits"],
                                  dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}})
            finally:
                mu.find_packed_sequence_indices = original
        print(path, flush=True)


def optimum(hf, out):
    """optimum-onnx needs transformers < 4.58, which reads the rotary base from `rope_theta`,
    not transformers 5's `rope_parameters`: the folder is given to it with both."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(hf):
            if name != "config.json":
                os.symlink(os.path.abspath(os.path.join(hf, name)), os.path.join(tmp, name))
        with open(os.path.join(hf, "config.json")) as f:
            cfg = json.load(f)
        rope = cfg.get("rope_parameters") or {}
        if "rope_theta" in rope:
            cfg.setdefault("rope_theta", rope["rope_theta"])
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        subprocess.run([sys.executable, "-m", "optimum.commands.optimum_cli", "export", "onnx", "--model", tmp,
                        "--task", "text-generation-with-past", out], check=True)


def genai(hf, out, precision):
    cache = os.path.join(out, ".builder-cache")
    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", hf, "-o", out, "-p", precision,
                    "-e", "cpu", "-c", cache], check=True)
    subprocess.run(["rm", "-rf", cache], check=True)


def strip(path):
    """Per-node metadata (the dynamo exporter's stack traces) and doc strings take most of a
    tiny export's bytes and no importer reads them."""
    import onnx
    m = onnx.load(path, load_external_data=False)
    for n in m.graph.node:
        del n.metadata_props[:]
        n.doc_string = ""
    m.graph.doc_string = ""
    m.doc_string = ""
    onnx.save(m, path)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"tiny": lambda: tiny(*args), "torch": lambda: export_torch(args[0], args[1], args[2:]),
     "optimum": lambda: optimum(*args), "genai": lambda: genai(*args), "strip": lambda: strip(*args)}[cmd]()
