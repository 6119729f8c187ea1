//! A model's tokenizer, read from an HF folder (`tokenizer.json`) or built from the
//! `tokenizer.ggml.*` metadata of a GGUF file, on top of HF's `tokenizers` crate.
//!
//! GGUF tokenizers are rebuilt as transformers' GGUF loader (`from_pretrained(gguf_file=...)`)
//! rebuilds them, since that is how HF (and prunec's golden data) tokenize a GGUF model:
//!
//! * `tokenizer.ggml.model = "gpt2"`: a byte-level BPE (vocabulary `tokenizer.ggml.tokens`, merges
//!   `tokenizer.ggml.merges`, ByteLevel decoder) that splits words with GPT-2's regex
//!   (`ByteLevel(use_regex=true)`), whatever `tokenizer.ggml.pre` says. For SmolLM2 this gives
//!   exactly the golden ids. The model's own `tokenizer.json` (and llama.cpp) may split
//!   otherwise: SmolLM2's first isolates every digit (`Digits(individual_digits=true)`), which
//!   differs where spaces precede a digit (`"\n\n  0"`: 1 token instead of 2; 7639 tokens instead of
//!   7658 on `tests/fixtures/smollm2/public.txt`). [`GgufPreTokenizer::Native`] gives that split.
//! * `tokenizer.ggml.model = "llama"`: SentencePiece BPE as HF's `LlamaTokenizerFast` (legacy)
//!   holds it: BPE with byte fallback, `▁` for spaces (and one in front when
//!   `tokenizer.ggml.add_space_prefix`, default true); merges from `tokenizer.ggml.merges`, else
//!   derived from `tokenizer.ggml.scores` as transformers' GGUF converter does.
//!
//! [`Tokenizer::gguf_metadata`] goes the other way, writing an HF `tokenizer.json` as either
//! kind ([`GgufVocabulary`]); a SentencePiece-style BPE gets scores that make llama.cpp's
//! SentencePiece merging apply its BPE merges in their order.
//!
//! Tokens of type CONTROL (3) and UNKNOWN (2) become special tokens (matched in text, skipped by
//! [`Tokenizer::decode`]); USER_DEFINED (4) ones become added, non-special tokens.
//!
//! [`Tokenizer::encode`] never adds special tokens (HF's `add_special_tokens=False`); special
//! tokens written in the text (`<|im_start|>`) are still recognised, as in HF.
//! [`Tokenizer::special_tokens`] says which ones the model's own configuration adds (HF's
//! default, `add_special_tokens=True`), and [`Tokenizer::encode_with_special`] adds them:
//!
//! * an HF folder: as transformers decides it — for the tokenizer classes that rebuild their
//!   post-processor from `add_bos_token`/`add_eos_token` (`LlamaTokenizer`, `CodeLlamaTokenizer`,
//!   `GemmaTokenizer`, `CohereTokenizer`: BOS unless `add_bos_token` is false; `GPTNeoXTokenizer`:
//!   BOS only if it is true), those flags of `tokenizer_config.json`; for any other, the
//!   `post_processor` of `tokenizer.json` (SmolLM2's adds nothing);
//! * a GGUF file: `tokenizer.ggml.add_bos_token` / `add_eos_token`, as llama.cpp reads them
//!   (without them: BOS for a SentencePiece `llama` vocabulary, nothing for `gpt2`). SmolLM2's
//!   says `false`. (transformers' own GGUF loader builds a `LlamaTokenizerFast` for every
//!   LLaMA-architecture file and so adds a BOS even to SmolLM2's; prunec follows the file.)

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{FrontendError, Result};
use crate::gguf::{GgufFile, GgufValue};

/// How a GGUF byte-level BPE (`tokenizer.ggml.model = "gpt2"`) splits text into words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GgufPreTokenizer {
    /// As transformers' GGUF loader does: GPT-2's regex (`ByteLevel(use_regex=true)`) for every
    /// model. prunec's golden data (perplexity, logits) was tokenized so.
    #[default]
    Transformers,
    /// As `tokenizer.ggml.pre` names it, like llama.cpp and the model's own `tokenizer.json`;
    /// see [`NATIVE_PRE_TOKENIZERS`].
    Native,
}

/// GGUF `tokenizer.ggml.pre` names that [`GgufPreTokenizer::Native`] rebuilds, with the HF
/// pre-tokenizer each one stands for (llama.cpp's `llama-vocab.cpp` gives each name a splitting
/// regex; HF's `tokenizer.json` of those models holds the same split):
///
/// * `default`, `gpt-2`, `gpt2`, `phi-2`, `roberta-bpe`: GPT-2's `ByteLevel(use_regex=true)`.
/// * `smollm`, `starcoder`, `refact`, `codeshell`: `Sequence[Digits(individual_digits=true),
///   ByteLevel(add_prefix_space=false, use_regex=true)]` (every digit its own word), as
///   SmolLM2's `tokenizer.json`.
/// * `llama-bpe`, `llama3`, `smaug-bpe`, `dbrx`: LLaMA 3's `Split(regex, isolated)` +
///   `ByteLevel(use_regex=false)`, with `ignore_merges` (as llama.cpp and HF do).
/// * `qwen2`: NFC, then Qwen2's `Split(regex, isolated)` + `ByteLevel(use_regex=false)`.
///
/// Only `smollm` is checked against real ids (those of SmolLM2's own split, by a test).
pub const NATIVE_PRE_TOKENIZERS: &[&str] = &[
    "default",
    "gpt-2",
    "gpt2",
    "phi-2",
    "roberta-bpe",
    "smollm",
    "starcoder",
    "refact",
    "codeshell",
    "llama-bpe",
    "llama3",
    "smaug-bpe",
    "dbrx",
    "qwen2",
];

/// LLaMA 3's splitting regex (HF `tokenizer.json`, `Split` pre-tokenizer).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's splitting regex (HF `tokenizer.json`, `Split` pre-tokenizer).
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_NORMAL: i64 = 1;
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_BYTE: i64 = 6;

/// The two kinds of HF `tokenizer.json` prunec writes into GGUF files, as llama.cpp's
/// `tokenizer.ggml.model` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufVocabulary {
    /// A byte-level BPE (a `ByteLevel` pre-tokenizer, no byte fallback): llama.cpp's `gpt2`.
    ByteLevel,
    /// A SentencePiece-style BPE: byte fallback, spaces made `▁` by a `Replace(" ", "▁")`
    /// normalizer or a `Metaspace` pre-tokenizer (LLaMA 1/2, Gemma, Mistral): llama.cpp's
    /// `llama`. A `Metaspace` that splits the text at each `▁` (`split: true`) is taken too,
    /// though llama.cpp, which does not split, may then join a run of `▁`s that HF keeps apart.
    SentencePiece {
        /// Whether a `▁` goes before the text (a `Prepend("▁")` normalizer, a `Metaspace`
        /// prepending one): llama.cpp's `tokenizer.ggml.add_space_prefix`. Gemma's does not.
        add_space_prefix: bool,
    },
}

impl GgufVocabulary {
    /// The kind of the serialized `tokenizer.json` `json`; else why it is neither.
    pub fn of(json: &serde_json::Value) -> std::result::Result<GgufVocabulary, String> {
        let model = &json["model"];
        let kind = model["type"].as_str().unwrap_or("?");
        // a component and, in a `Sequence`, its parts
        let parts = |v: &serde_json::Value, list: &str| -> Vec<serde_json::Value> {
            match v[list].as_array() {
                Some(a) => a.clone(),
                None => vec![v.clone()],
            }
        };
        let normalizers = parts(&json["normalizer"], "normalizers");
        let pre_tokenizers = parts(&json["pre_tokenizer"], "pretokenizers");
        let byte_level = pre_tokenizers.iter().any(|p| p["type"] == "ByteLevel");
        if kind == "BPE" && model["byte_fallback"] != true && byte_level {
            return Ok(GgufVocabulary::ByteLevel);
        }
        if kind != "BPE" {
            return Err(format!("its model is {kind}, not BPE"));
        }
        if model["byte_fallback"] != true {
            return Err("a BPE with neither a ByteLevel pre-tokenizer nor byte fallback".into());
        }
        let replaces_spaces =
            normalizers.iter().any(|n| n["type"] == "Replace" && n["pattern"]["String"] == " " && n["content"] == "▁");
        let prepends = normalizers.iter().any(|n| n["type"] == "Prepend" && n["prepend"] == "▁");
        let metaspace = pre_tokenizers.iter().find(|p| p["type"] == "Metaspace" && p["replacement"] == "▁");
        match metaspace {
            _ if byte_level => Err("a BPE with byte fallback and a ByteLevel pre-tokenizer".into()),
            Some(m) => {
                let scheme = m["prepend_scheme"].as_str();
                let prepend = scheme.map_or(m["add_prefix_space"] == true, |s| s != "never");
                Ok(GgufVocabulary::SentencePiece { add_space_prefix: prepend || prepends })
            }
            None if replaces_spaces => Ok(GgufVocabulary::SentencePiece { add_space_prefix: prepends }),
            None => Err("a BPE with byte fallback that does not write spaces as `▁` (no `Replace(\" \", \"▁\")` normalizer, no `Metaspace` pre-tokenizer)".into()),
        }
    }
}

/// Whether `text` is a SentencePiece byte token (`<0x0A>`).
fn is_byte_token(text: &str) -> bool {
    matches!(text.as_bytes(), [b'<', b'0', b'x', h, l, b'>'] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit())
}

/// A model's tokenizer.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The file it was read from (`tokenizer.json` or the GGUF file), for errors.
    source: PathBuf,
    chat_template: Option<String>,
    /// The beginning-of-sequence token, if the model names one.
    pub bos: Option<u32>,
    /// The end-of-sequence token, if the model names one.
    pub eos: Option<u32>,
    /// The special tokens the configuration adds around a text, when a rule other than the
    /// `tokenizer.json` post-processor decides them (see the module's doc).
    added: Option<SpecialTokens>,
}

/// The special tokens a tokenizer's own configuration puts around every text it encodes (HF's
/// `add_special_tokens=True`): a LLaMA or Gemma tokenizer's BOS before, nothing for SmolLM2's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Before the text (a BOS).
    pub prefix: Vec<u32>,
    /// After the text (an EOS, for the few tokenizers that add one).
    pub suffix: Vec<u32>,
}

impl SpecialTokens {
    /// `prefix`, then `ids`, then `suffix`.
    pub fn around(&self, ids: &[u32]) -> Vec<u32> {
        self.prefix.iter().chain(ids).chain(&self.suffix).copied().collect()
    }
}

/// HF tokenizer classes (without `Fast`) that rebuild their post-processor from
/// `add_bos_token`/`add_eos_token` when they load (`update_post_processor`), with the default of
/// `add_bos_token` (that of `add_eos_token` is false for all).
const BOS_FLAG_CLASSES: &[(&str, bool)] =
    &[("LlamaTokenizer", true), ("CodeLlamaTokenizer", true), ("GemmaTokenizer", true), ("CohereTokenizer", true), ("GPTNeoXTokenizer", false)];

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// The tokenizer of the model at `path`: an HF folder (its `tokenizer.json`, with bos/eos
    /// from `generation_config.json`, else `config.json`, else `tokenizer_config.json`, and the
    /// chat template from `chat_template.jinja` or `tokenizer_config.json`), or a GGUF file
    /// (built from its `tokenizer.ggml.*` metadata); a `.json` file is read as a `tokenizer.json`.
    pub fn for_model(path: &Path) -> Result<Tokenizer> {
        if path.is_dir() {
            let json = path.join("tokenizer.json");
            if !json.is_file() {
                return Err(FrontendError::Missing {
                    path: json,
                    what:
                        "the model's tokenizer (only `tokenizer.json` is read, not a SentencePiece `tokenizer.model`)"
                            .into(),
                });
            }
            return Tokenizer::from_file(&json);
        }
        if path.extension().is_some_and(|e| e == "json") {
            return Tokenizer::from_file(path);
        }
        if path.extension().is_some_and(|e| e == "onnx") {
            // optimum's exports put `tokenizer.json` beside the model
            let json = path.with_file_name("tokenizer.json");
            if !json.is_file() {
                return Err(FrontendError::Missing {
                    path: json,
                    what: format!("the tokenizer of {} (an ONNX file holds none: put `tokenizer.json` beside it or give --tokenizer)", path.display()),
                });
            }
            return Tokenizer::from_file(&json);
        }
        Tokenizer::from_gguf(&GgufFile::open(path)?)
    }

    /// The tokenizer in the `tokenizer.json` at `path`. The files next to it
    /// (`tokenizer_config.json`, `config.json`, `generation_config.json`, `chat_template.jinja`)
    /// give bos/eos and the chat template when they are there.
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        if !path.is_file() {
            return Err(FrontendError::Missing {
                path: path.to_path_buf(),
                what: "a tokenizer (`tokenizer.json`)".into(),
            });
        }
        let bytes = std::fs::read(path).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
        let inner = crate::error::guarded(path, "tokenizer.json", || {
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| FrontendError::Corrupt {
                path: path.to_path_buf(),
                format: "tokenizer.json",
                reason: e.to_string(),
            })
        })?;
        let mut tok = Tokenizer { inner, source: path.to_path_buf(), chat_template: None, bos: None, eos: None, added: None };
        let dir = path.parent().unwrap_or(Path::new("."));
        tok.read_hf_configs(dir)?;
        Ok(tok)
    }

    /// The tokenizer as llama.cpp's converter writes it in a GGUF file, for a model of `vocab`
    /// tokens: tokens by id with their types, bos/eos (and unknown/padding for SentencePiece),
    /// whether a BOS/EOS is added, and the chat template; ids the tokenizer does not name
    /// (embedding rows beyond it) become `[PAD{id}]` tokens of type unused, as the converter pads
    /// them. Two kinds of `tokenizer.json` are written (see [`GgufVocabulary`]):
    ///
    /// * a byte-level BPE as llama.cpp's `gpt2`, with its merges;
    /// * a SentencePiece-style BPE (byte fallback, `▁` for spaces: LLaMA 2, Gemma, Mistral) as
    ///   llama.cpp's `llama`, with scores that make llama.cpp's SentencePiece merging (the
    ///   adjacent pair whose joined text is the highest-scoring token, ties leftmost) apply the
    ///   BPE merges in their order: the token made by merge `r` scores `−r`, every other token
    ///   less than any of those. `add_space_prefix` says whether a `▁` is put before the text.
    ///   The merges are written too (llama.cpp does not read them for `llama`; transformers and
    ///   prunec take them over the scores).
    ///
    /// Any other tokenizer (WordPiece, Unigram, a BPE without either layout) is an error naming
    /// the file.
    pub fn gguf_metadata(&self, vocab: usize) -> Result<Vec<(String, crate::gguf::GgufValue)>> {
        use crate::gguf::GgufValue as V;
        let bad = |reason: String| FrontendError::Corrupt { path: self.source.clone(), format: "tokenizer.json", reason };
        let json = serde_json::to_value(&self.inner).map_err(|e| bad(e.to_string()))?;
        let model = &json["model"];
        let kind = GgufVocabulary::of(&json).map_err(|reason| FrontendError::NotRecognised {
            path: self.source.clone(),
            expected: "a tokenizer llama.cpp reads (a byte-level BPE, or a SentencePiece-style BPE with byte fallback)",
            reason,
        })?;
        let sentencepiece = matches!(kind, GgufVocabulary::SentencePiece { .. });
        let unk = model["unk_token"].as_str().filter(|_| sentencepiece).and_then(|t| self.inner.token_to_id(t));
        let mut tokens: Vec<Option<(String, i64)>> = vec![None; vocab];
        let mut put = |id: u64, text: &str, ty: i64| -> Result<()> {
            let slot = usize::try_from(id).ok().and_then(|i| tokens.get_mut(i)).ok_or_else(|| bad(format!("token {id} (`{text}`) is beyond the model's {vocab} embeddings")))?;
            *slot = Some((text.to_string(), ty));
            Ok(())
        };
        for (text, id) in model["vocab"].as_object().into_iter().flatten() {
            let ty = if sentencepiece && is_byte_token(text) { TOKEN_TYPE_BYTE } else { TOKEN_TYPE_NORMAL };
            put(id.as_u64().ok_or_else(|| bad(format!("the id of `{text}` is not a number")))?, text, ty)?;
        }
        for t in json["added_tokens"].as_array().into_iter().flatten() {
            let ty = if t["special"] == true { TOKEN_TYPE_CONTROL } else { TOKEN_TYPE_USER_DEFINED };
            put(t["id"].as_u64().unwrap_or(u64::MAX), t["content"].as_str().unwrap_or(""), ty)?;
        }
        if let Some(slot) = unk.and_then(|id| tokens.get_mut(id as usize)).and_then(Option::as_mut) {
            slot.1 = TOKEN_TYPE_UNKNOWN;
        }
        // merges as "a b" lines (tokenizers writes them as pairs since 0.20)
        let merges: Vec<String> = model["merges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| match m {
                serde_json::Value::String(s) => s.clone(),
                pair => pair.as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect::<Vec<_>>().join(" "),
            })
            .collect();
        let scores = sentencepiece.then(|| {
            // the token each merge makes scores minus the merge's rank (its first, when several
            // make it); all others score below every merge
            let rank: HashMap<String, usize> =
                merges.iter().enumerate().rev().map(|(r, m)| (m.replacen(' ', "", 1), r)).collect();
            let lowest = -(merges.len() as f32) - 1.0;
            tokens
                .iter()
                .map(|t| {
                    let rank = t.as_ref().filter(|(_, ty)| *ty == TOKEN_TYPE_NORMAL).and_then(|(text, _)| rank.get(text));
                    V::F32(rank.map_or(lowest, |&r| -(r as f32)))
                })
                .collect::<Vec<_>>()
        });
        const TOKEN_TYPE_UNUSED: i64 = 5;
        let (texts, types): (Vec<V>, Vec<V>) = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let (text, ty) = t.unwrap_or_else(|| (format!("[PAD{i}]"), TOKEN_TYPE_UNUSED));
                (V::String(text), V::I32(ty as i32))
            })
            .unzip();
        let merges = merges.into_iter().map(V::String).collect();
        let mut out = vec![
            ("tokenizer.ggml.model".to_string(), V::String(if sentencepiece { "llama" } else { "gpt2" }.into())),
            ("tokenizer.ggml.tokens".to_string(), V::Array(texts)),
        ];
        if let Some(scores) = scores {
            out.push(("tokenizer.ggml.scores".into(), V::Array(scores)));
        }
        out.push(("tokenizer.ggml.token_type".into(), V::Array(types)));
        out.push(("tokenizer.ggml.merges".into(), V::Array(merges)));
        if let GgufVocabulary::SentencePiece { add_space_prefix } = kind {
            out.push(("tokenizer.ggml.add_space_prefix".into(), V::Bool(add_space_prefix)));
        }
        if let Some(b) = self.bos {
            out.push(("tokenizer.ggml.bos_token_id".into(), V::U32(b)));
        }
        if let Some(e) = self.eos {
            out.push(("tokenizer.ggml.eos_token_id".into(), V::U32(e)));
        }
        if let Some(u) = unk {
            out.push(("tokenizer.ggml.unknown_token_id".into(), V::U32(u)));
        }
        if let Some(p) = self.hf_pad_token()?.filter(|&p| (p as usize) < vocab) {
            out.push(("tokenizer.ggml.padding_token_id".into(), V::U32(p)));
        }
        let added = self.special_tokens().unwrap_or_default();
        out.push(("tokenizer.ggml.add_bos_token".into(), V::Bool(!added.prefix.is_empty())));
        if sentencepiece {
            // llama.cpp adds none unless told (its SentencePiece default is a BOS, not an EOS)
            out.push(("tokenizer.ggml.add_eos_token".into(), V::Bool(!added.suffix.is_empty())));
        }
        if let Some(t) = &self.chat_template {
            out.push(("tokenizer.chat_template".into(), V::String(t.clone())));
        }
        Ok(out)
    }

    /// The padding token of an HF folder, as llama.cpp's converter finds it: `pad_token` of
    /// `tokenizer_config.json`, else `pad_token_id` of `config.json` (none when that is not a
    /// token id: old LLaMA configurations say -1, which the converter skips too).
    fn hf_pad_token(&self) -> Result<Option<u32>> {
        let dir = self.source.parent().unwrap_or(Path::new("."));
        if let Some((_, cfg)) = read_json(&dir.join("tokenizer_config.json"), "tokenizer_config.json")? {
            let text = match cfg.get("pad_token") {
                Some(serde_json::Value::String(s)) => Some(s.as_str()),
                Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()),
                _ => None,
            };
            if let Some(id) = text.and_then(|t| self.inner.token_to_id(t)) {
                return Ok(Some(id));
            }
        }
        match read_json(&dir.join("config.json"), "config.json")? {
            Some((path, cfg)) => Ok(json_token_id(&path, &cfg, "pad_token_id").ok().flatten()),
            None => Ok(None),
        }
    }

    /// The tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata, as transformers
    /// rebuilds it ([`GgufPreTokenizer::Transformers`]).
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        Tokenizer::from_gguf_with(file, GgufPreTokenizer::Transformers)
    }

    /// [`Tokenizer::from_gguf`] with the word split of a byte-level BPE chosen.
    pub fn from_gguf_with(file: &GgufFile, split: GgufPreTokenizer) -> Result<Tokenizer> {
        let path = file.path();
        let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
        let model = file.get_str("tokenizer.ggml.model")?;
        let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
        let n = tokens.len();
        let types = match file.get("tokenizer.ggml.token_type") {
            None => vec![1; n],
            Some(v) => {
                let types = v.as_array().and_then(|a| a.iter().map(GgufValue::as_i64).collect::<Option<Vec<_>>>());
                match types {
                    Some(t) if t.len() == n => t,
                    Some(t) => {
                        return Err(bad(format!("`tokenizer.ggml.token_type` has {} entries for {n} tokens", t.len())))
                    }
                    None => return Err(bad("`tokenizer.ggml.token_type` is not an array of integers".into())),
                }
            }
        };
        let token_id = |key: &str| -> Result<Option<u32>> {
            if file.get(key).is_none() {
                return Ok(None);
            }
            let id = file.get_usize(key)?;
            if id >= n {
                return Err(bad(format!("`{key}` = {id} is not a token id (the vocabulary has {n} tokens)")));
            }
            Ok(u32::try_from(id).ok())
        };
        let bos = token_id("tokenizer.ggml.bos_token_id")?;
        let eos = token_id("tokenizer.ggml.eos_token_id")?;
        let chat_template = match file.get("tokenizer.chat_template") {
            None => None,
            Some(_) => Some(file.get_str("tokenizer.chat_template")?.to_string()),
        };
        let vocab_ids = u32::try_from(n).map_err(|_| bad(format!("{n} tokens are too many")))?;
        let vocab: Vocab = tokens.iter().zip(0..vocab_ids).map(|(t, i)| (t.to_string(), i)).collect();

        let inner = match model {
            "gpt2" => {
                let pre = match (split, file.get("tokenizer.ggml.pre")) {
                    (GgufPreTokenizer::Transformers, _) | (_, None) => "default",
                    (GgufPreTokenizer::Native, Some(_)) => file.get_str("tokenizer.ggml.pre")?,
                };
                let merges = parse_merges(&file.get_str_array("tokenizer.ggml.merges")?).map_err(bad)?;
                byte_level_bpe(vocab, merges, pre).map_err(bad)?
            }
            "llama" => {
                let add_space_prefix = match file.get("tokenizer.ggml.add_space_prefix") {
                    None => true,
                    Some(_) => file.get_bool("tokenizer.ggml.add_space_prefix")?,
                };
                let merges = match file.get("tokenizer.ggml.merges") {
                    Some(_) => parse_merges(&file.get_str_array("tokenizer.ggml.merges")?).map_err(bad)?,
                    None => {
                        let scores = file.get("tokenizer.ggml.scores").ok_or_else(|| {
                            bad("a SentencePiece (`llama`) tokenizer needs `tokenizer.ggml.merges` or `tokenizer.ggml.scores`"
                                .into())
                        })?;
                        let scores = scores
                            .as_array()
                            .and_then(|a| a.iter().map(GgufValue::as_f64).collect::<Option<Vec<_>>>())
                            .filter(|s| s.len() == n)
                            .ok_or_else(|| bad(format!("`tokenizer.ggml.scores` is not an array of {n} numbers")))?;
                        merges_from_scores(&tokens, &scores)
                    }
                };
                let unk = match file.get("tokenizer.ggml.unknown_token_id") {
                    None => None,
                    Some(_) => token_id("tokenizer.ggml.unknown_token_id")?.and_then(|id| tokens.get(id as usize)),
                };
                sentencepiece_bpe(vocab, merges, unk.map(|s| s.to_string()), add_space_prefix).map_err(bad)?
            }
            other => {
                return Err(bad(format!(
                    "tokenizer model `{other}` (`tokenizer.ggml.model`) is not supported (supported: gpt2, llama)"
                )))
            }
        };
        // llama.cpp's rule: `tokenizer.ggml.add_bos_token`, else BOS for SentencePiece only
        let flag = |key: &str, default: bool| -> Result<bool> {
            match file.get(key) {
                None => Ok(default),
                Some(_) => file.get_bool(key),
            }
        };
        let add_bos = flag("tokenizer.ggml.add_bos_token", model == "llama")?;
        let add_eos = flag("tokenizer.ggml.add_eos_token", false)?;
        let added = SpecialTokens {
            prefix: if add_bos { bos.into_iter().collect() } else { Vec::new() },
            suffix: if add_eos { eos.into_iter().collect() } else { Vec::new() },
        };
        let mut tok = Tokenizer { inner, source: path.to_path_buf(), chat_template, bos, eos, added: Some(added) };
        let (mut special, mut user) = (Vec::new(), Vec::new());
        for (&ty, &token) in types.iter().zip(&tokens) {
            match ty {
                TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN => special.push(AddedToken::from(token, true)),
                TOKEN_TYPE_USER_DEFINED => user.push(AddedToken::from(token, false).normalized(false)),
                _ => {}
            }
        }
        tok.inner.add_special_tokens(special).map_err(|e| bad(format!("special tokens: {e}")))?;
        tok.inner.add_tokens(user).map_err(|e| bad(format!("user-defined tokens: {e}")))?;
        Ok(tok)
    }

    /// The ids of `text`, without special tokens added (HF's `add_special_tokens=False`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode_fast(text, false).map_err(|e| self.failed("tokenizing", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The ids of `text` with the tokenizer's special tokens added (HF's default,
    /// `add_special_tokens=True`: a LLaMA tokenizer's BOS, for instance; see
    /// [`Tokenizer::special_tokens`]).
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(added) = &self.added {
            return Ok(added.around(&self.encode(text)?));
        }
        let encoding = self.inner.encode_fast(text, true).map_err(|e| self.failed("tokenizing", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The special tokens the tokenizer's configuration adds around every text (see the
    /// module's doc): what [`Tokenizer::encode_with_special`] adds to [`Tokenizer::encode`].
    pub fn special_tokens(&self) -> Result<SpecialTokens> {
        if let Some(added) = &self.added {
            return Ok(added.clone());
        }
        // the post-processor's: what it puts around a probe text, and around nothing
        let probe = "a";
        let plain = self.encode(probe)?;
        let with = self.encode_with_special(probe)?;
        let at = (0..=with.len().saturating_sub(plain.len())).find(|&i| with.get(i..i + plain.len()) == Some(&plain[..]));
        Ok(match at {
            Some(i) if !plain.is_empty() => {
                SpecialTokens { prefix: with[..i].to_vec(), suffix: with[i + plain.len()..].to_vec() }
            }
            _ => SpecialTokens { prefix: self.encode_with_special("")?, suffix: Vec::new() },
        })
    }

    /// The text of token `id` as the vocabulary holds it (`<s>`, `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| self.failed("decoding", e))
    }

    /// The number of tokens, added tokens included (the rows the embedding needs at least).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The chat template (Jinja), from `tokenizer_config.json`/`chat_template.jinja` or GGUF
    /// `tokenizer.chat_template`.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The id of a token given by its text (`<|im_end|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Writes the tokenizer as an HF `tokenizer.json` at `path`; special tokens that the
    /// configuration adds (a GGUF file's `add_bos_token`) become its post-processor, so that a
    /// `PreTrainedTokenizerFast` adds them as prunec does.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut inner = self.inner.clone();
        if let Some(added) = &self.added {
            if let Some(post) = self.post_processor(added)? {
                inner.with_post_processor(Some(post));
            }
        }
        let json = inner.to_string(false).map_err(|e| self.failed("serializing", e))?;
        std::fs::write(path, json).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })
    }

    /// The `tokenizer_config.json` that makes transformers load the [`Tokenizer::save`]d
    /// `tokenizer.json` as prunec uses it: a `PreTrainedTokenizerFast` (which keeps the saved
    /// post-processor) with the BOS and EOS texts and the chat template. Without it, transformers
    /// would build the class of the model's type (`LlamaTokenizerFast` for a LLaMA), with its own
    /// BOS rule and token names.
    pub fn hf_tokenizer_config(&self) -> serde_json::Value {
        let mut cfg = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": false,
        });
        for (key, id) in [("bos_token", self.bos), ("eos_token", self.eos)] {
            if let Some(text) = id.and_then(|id| self.inner.id_to_token(id)) {
                cfg[key] = text.into();
            }
        }
        if let Some(t) = &self.chat_template {
            cfg["chat_template"] = t.clone().into();
        }
        cfg
    }

    /// A `TemplateProcessing` that puts `added` around a text (`None` when it adds nothing).
    fn post_processor(&self, added: &SpecialTokens) -> Result<Option<TemplateProcessing>> {
        if added.prefix.is_empty() && added.suffix.is_empty() {
            return Ok(None);
        }
        let bad = |reason: String| FrontendError::BadConfig { path: self.source.clone(), reason };
        let names = |ids: &[u32], seq: u8| -> Result<Vec<String>> {
            ids.iter()
                .map(|&id| {
                    let n = self.inner.id_to_token(id).ok_or_else(|| bad(format!("special token {id} is not in the vocabulary")))?;
                    Ok(format!("{n}:{seq}"))
                })
                .collect()
        };
        // as LlamaTokenizerFast writes it: `bos:0 $A:0 eos:0`, and `bos:1 $B:1 eos:1` after it
        let single = [names(&added.prefix, 0)?, vec!["$A:0".to_string()], names(&added.suffix, 0)?].concat();
        let second = [names(&added.prefix, 1)?, vec!["$B:1".to_string()], names(&added.suffix, 1)?].concat();
        let pair = [single.clone(), second].concat();
        let mut specials = Vec::new();
        for &id in added.prefix.iter().chain(&added.suffix) {
            let n = self.inner.id_to_token(id).ok_or_else(|| bad(format!("special token {id} is not in the vocabulary")))?;
            specials.push((n, id));
        }
        specials.sort();
        specials.dedup();
        TemplateProcessing::builder()
            .try_single(single.join(" "))
            .and_then(|b| b.try_pair(pair.join(" ")))
            .map_err(|e| bad(format!("post-processor template: {e}")))?
            .special_tokens(specials)
            .build()
            .map(Some)
            .map_err(|e| bad(format!("post-processor: {e}")))
    }

    /// The file the tokenizer was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    fn failed(&self, what: &str, e: tokenizers::Error) -> FrontendError {
        FrontendError::BadConfig { path: self.source.clone(), reason: format!("{what} failed: {e}") }
    }

    /// bos/eos and the chat template from the HF files in `dir`; later files override earlier
    /// ones: `tokenizer_config.json` (token texts), `config.json`, `generation_config.json` (ids).
    fn read_hf_configs(&mut self, dir: &Path) -> Result<()> {
        // (add_bos_token, add_eos_token, the BOS and EOS texts) for the classes of BOS_FLAG_CLASSES
        let mut flags: Option<(bool, bool, Option<u32>, Option<u32>)> = None;
        if let Some((path, cfg)) = read_json(&dir.join("tokenizer_config.json"), "tokenizer_config.json")? {
            let class = cfg.get("tokenizer_class").and_then(|c| c.as_str()).map(|c| c.strip_suffix("Fast").unwrap_or(c));
            if let Some(&(_, bos_default)) = BOS_FLAG_CLASSES.iter().find(|(name, _)| Some(*name) == class) {
                let flag = |key: &str, default: bool| cfg.get(key).and_then(|v| v.as_bool()).unwrap_or(default);
                let id = |key: &str| {
                    let text = match cfg.get(key) {
                        Some(serde_json::Value::String(s)) => Some(s.as_str()),
                        Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()),
                        _ => None,
                    };
                    text.and_then(|t| self.inner.token_to_id(t))
                };
                flags = Some((flag("add_bos_token", bos_default), flag("add_eos_token", false), id("bos_token"), id("eos_token")));
            }
            for (key, slot) in [("bos_token", &mut self.bos), ("eos_token", &mut self.eos)] {
                let text = match cfg.get(key) {
                    Some(serde_json::Value::String(s)) => Some(s.as_str()),
                    Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()),
                    _ => None,
                };
                if let Some(text) = text {
                    *slot = self.inner.token_to_id(text);
                }
            }
            self.chat_template = match cfg.get("chat_template") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                // A list of named templates: the one named `default`, else the first.
                Some(serde_json::Value::Array(list)) => {
                    let named = |name: Option<&str>| {
                        list.iter().find(|t| name.is_none() || t.get("name").and_then(|n| n.as_str()) == name)
                    };
                    named(Some("default"))
                        .or_else(|| named(None))
                        .and_then(|t| t.get("template"))
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                }
                Some(_) => {
                    return Err(FrontendError::Corrupt {
                        path,
                        format: "tokenizer_config.json",
                        reason: "`chat_template` is neither a string nor a list of templates".into(),
                    })
                }
            };
        }
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            let text =
                std::fs::read_to_string(&jinja).map_err(|source| FrontendError::Io { path: jinja.clone(), source })?;
            self.chat_template = Some(text);
        }
        for name in ["config.json", "generation_config.json"] {
            if let Some((path, cfg)) = read_json(&dir.join(name), name)? {
                for (key, slot) in [("bos_token_id", &mut self.bos), ("eos_token_id", &mut self.eos)] {
                    if let Some(id) = json_token_id(&path, &cfg, key)? {
                        *slot = Some(id);
                    }
                }
            }
        }
        if let Some((add_bos, add_eos, bos, eos)) = flags {
            self.added = Some(SpecialTokens {
                prefix: if add_bos { bos.or(self.bos).into_iter().collect() } else { Vec::new() },
                suffix: if add_eos { eos.or(self.eos).into_iter().collect() } else { Vec::new() },
            });
        }
        Ok(())
    }
}

/// The JSON object in `path`, if the file is there.
fn read_json(path: &Path, format: &'static str) -> Result<Option<(PathBuf, serde_json::Value)>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| FrontendError::Corrupt {
        path: path.to_path_buf(),
        format,
        reason: e.to_string(),
    })?;
    if !json.is_object() {
        return Err(FrontendError::Corrupt { path: path.to_path_buf(), format, reason: "not a JSON object".into() });
    }
    Ok(Some((path.to_path_buf(), json)))
}

/// A token id of a config (`eos_token_id`: an integer, a list of them (the first is taken) or
/// null).
fn json_token_id(path: &Path, cfg: &serde_json::Value, key: &str) -> Result<Option<u32>> {
    let value = match cfg.get(key) {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(list)) => match list.first() {
            None => return Ok(None),
            Some(v) => v,
        },
        Some(v) => v,
    };
    value.as_u64().and_then(|id| u32::try_from(id).ok()).map(Some).ok_or_else(|| FrontendError::BadConfig {
        path: path.to_path_buf(),
        reason: format!("`{key}` = {value} is not a token id"),
    })
}

/// GGUF merges (`"Ġ t"`) as pairs.
fn parse_merges(merges: &[&str]) -> std::result::Result<Vec<(String, String)>, String> {
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
            _ => Err(format!("`tokenizer.ggml.merges`[{i}] = {m:?} is not two tokens separated by a space")),
        })
        .collect()
}

/// A byte-level BPE with the pre-tokenizer that llama.cpp's `pre` name stands for
/// ([`NATIVE_PRE_TOKENIZERS`]).
fn byte_level_bpe(
    vocab: Vocab,
    merges: Vec<(String, String)>,
    pre: &str,
) -> std::result::Result<tokenizers::Tokenizer, String> {
    let byte_level = |use_regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    let split = |regex: &str| {
        Split::new(
            tokenizers::pre_tokenizers::split::SplitPattern::Regex(regex.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::Split)
        .map_err(|e| format!("pre-tokenizer regex: {e}"))
    };
    let mut normalizer = None;
    let mut ignore_merges = false;
    let pre_tokenizer = match pre {
        "default" | "gpt-2" | "gpt2" | "phi-2" | "roberta-bpe" => byte_level(true),
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                byte_level(true),
            ]))
        }
        "llama-bpe" | "llama3" | "smaug-bpe" | "dbrx" => {
            ignore_merges = true;
            PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(vec![split(LLAMA3_SPLIT)?, byte_level(false)]))
        }
        "qwen2" => {
            normalizer = Some(NormalizerWrapper::NFC(NFC));
            PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(vec![split(QWEN2_SPLIT)?, byte_level(false)]))
        }
        other => {
            return Err(format!(
                "byte-level BPE pre-tokenizer `{other}` (`tokenizer.ggml.pre`) is not supported (supported: {})",
                NATIVE_PRE_TOKENIZERS.join(", ")
            ))
        }
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| format!("BPE model: {e}"))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    if let Some(n) = normalizer {
        tok.with_normalizer(Some(n)).map_err(|e| format!("normalizer: {e}"))?;
    }
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::new(false, true, true))));
    Ok(tok)
}

/// SentencePiece BPE with byte fallback, as HF's `LlamaTokenizerFast` (legacy) holds it.
fn sentencepiece_bpe(
    vocab: Vocab,
    merges: Vec<(String, String)>,
    unk: Option<String>,
    add_space_prefix: bool,
) -> std::result::Result<tokenizers::Tokenizer, String> {
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).fuse_unk(true).byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let bpe = builder.build().map_err(|e| format!("BPE model: {e}"))?;
    let replace = |from: &str, to: &str| Replace::new(from, to).map_err(|e| format!("replace: {e}"));
    let mut normalizers = Vec::new();
    if add_space_prefix {
        normalizers.push(NormalizerWrapper::Prepend(Prepend::new("▁".into())));
    }
    normalizers.push(NormalizerWrapper::Replace(replace(" ", "▁")?));
    let mut decoders = vec![
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
        DecoderWrapper::Replace(replace("▁", " ")?),
    ];
    if add_space_prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_normalizer(Some(NormalizerWrapper::Sequence(NormalizerSequence::new(normalizers))))
        .map_err(|e| format!("normalizer: {e}"))?;
    tok.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(decoders))));
    Ok(tok)
}

/// BPE merges of a SentencePiece vocabulary, from its scores, exactly as transformers'
/// `GGUFTokenizerSkeleton` builds them: every split of every token into two tokens, the splits of
/// one token ordered by their parts' scores (descending), all merges then ordered by the merged
/// token's score (descending); both sorts are stable.
fn merges_from_scores(tokens: &[&str], scores: &[f64]) -> Vec<(String, String)> {
    // Python's `{t: scores[i] for i, t in enumerate(tokens)}`: first position, last score.
    let mut score: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    for (&t, &s) in tokens.iter().zip(scores) {
        if score.insert(t, s).is_none() {
            order.push(t);
        }
    }
    let known: HashSet<&str> = tokens.iter().copied().collect();
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for &token in &order {
        let piece_score = score.get(token).copied().unwrap_or(0.0);
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(i, _)| token.split_at(i))
            .filter(|(l, r)| known.contains(l) && known.contains(r))
            .map(|(l, r)| (l, r, piece_score))
            .collect();
        let key =
            |m: &(&str, &str, f64)| (score.get(m.0).copied().unwrap_or(0.0), score.get(m.1).copied().unwrap_or(0.0));
        local.sort_by(|a, b| {
            let (a, b) = (key(a), key(b));
            b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1))
        });
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2));
    merges.into_iter().map(|(l, r, _)| (l.to_string(), r.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::smollm2;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/smollm2").join(name)
    }

    /// An I64 tensor of `golden.safetensors`, as u32 ids.
    fn golden_ids(name: &str) -> Vec<u32> {
        let bytes = std::fs::read(fixture("golden.safetensors")).unwrap();
        let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let view = st.tensor(name).unwrap();
        assert_eq!(view.dtype(), ::safetensors::Dtype::I64, "{name}");
        view.data().chunks_exact(8).map(|c| u32::try_from(i64::from_le_bytes(c.try_into().unwrap())).unwrap()).collect()
    }

    const PROMPTS: [&str; 3] = [
        "The capital of France is",
        "Once upon a time, there was a little robot who",
        "To make a cup of tea, first you need to",
    ];

    /// Checks `tok` against every golden tokenization of SmolLM2.
    fn assert_smollm2_golden(tok: &Tokenizer) {
        let text = std::fs::read_to_string(fixture("public.txt")).unwrap();
        let want = golden_ids("public_txt.token_ids");
        assert_eq!(want.len(), 7658);
        let got = tok.encode(&text).unwrap();
        if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
            panic!("public.txt: first difference at token {i}: got {:?}, want {:?}", &got[i..i + 5], &want[i..i + 5]);
        }
        assert_eq!(got.len(), want.len());
        assert_eq!(tok.decode(&got).unwrap(), text);
        for (i, prompt) in PROMPTS.iter().enumerate() {
            assert_eq!(tok.encode(prompt).unwrap(), golden_ids(&format!("input_ids.{i}")), "prompt {i}");
        }
    }

    #[test]
    fn smollm2_gguf_gives_hf_ids() {
        let Some(path) = smollm2() else {
            println!("skipped: PRUNEC_OFFLINE is set");
            return;
        };
        let tok = Tokenizer::for_model(&path).unwrap();
        assert_eq!(tok.vocab_size(), 49152);
        assert_eq!((tok.bos, tok.eos), (Some(1), Some(2)));
        // `tokenizer.ggml.add_bos_token` is false: no special token, as SmolLM2's own tokenizer
        assert_eq!(tok.special_tokens().unwrap(), SpecialTokens::default());
        assert_eq!(tok.encode_with_special(PROMPTS[0]).unwrap(), golden_ids("input_ids.0"));
        assert!(tok.chat_template().unwrap().contains("<|im_start|>"));
        assert_smollm2_golden(&tok);
        // Special tokens written in the text are recognised; decode skips them.
        let ids = tok.encode("<|im_start|>user\nHi<|im_end|>").unwrap();
        assert_eq!((ids[0], ids[ids.len() - 1]), (1, 2));
        assert_eq!(tok.decode(&ids).unwrap(), "user\nHi");
        // SmolLM2's merges never join digits: every digit is its own token.
        let digits = tok.encode("In 2007, x=12345").unwrap();
        let pieces: Vec<String> = digits.iter().map(|&i| tok.decode(&[i]).unwrap()).collect();
        assert_eq!(pieces, ["In", " ", "2", "0", "0", "7", ",", " x", "=", "1", "2", "3", "4", "5"]);
    }

    /// SmolLM2's own split (`tokenizer.ggml.pre = smollm`: digits isolated first) differs from
    /// the golden ids where spaces precede a digit, and round-trips too.
    #[test]
    fn smollm2_native_split_isolates_digits_first() {
        let Some(path) = smollm2() else {
            println!("skipped: PRUNEC_OFFLINE is set");
            return;
        };
        let file = GgufFile::open(&path).unwrap();
        let native = Tokenizer::from_gguf_with(&file, GgufPreTokenizer::Native).unwrap();
        let hf = Tokenizer::from_gguf(&file).unwrap();
        let pieces = |tok: &Tokenizer, text: &str| -> Vec<String> {
            tok.encode(text).unwrap().iter().map(|&i| tok.decode(&[i]).unwrap()).collect()
        };
        assert_eq!(pieces(&native, "\n\n  0. Definitions"), ["\n\n  ", "0", ".", " Definitions"]);
        assert_eq!(pieces(&hf, "\n\n  0. Definitions"), ["\n\n ", " ", "0", ".", " Definitions"]);
        let text = std::fs::read_to_string(fixture("public.txt")).unwrap();
        let ids = native.encode(&text).unwrap();
        assert_eq!(ids.len(), 7639);
        assert_eq!(native.decode(&ids).unwrap(), text);
        for (i, prompt) in PROMPTS.iter().enumerate() {
            assert_eq!(native.encode(prompt).unwrap(), golden_ids(&format!("input_ids.{i}")), "prompt {i}");
        }
    }

    #[test]
    fn hf_folder_gives_the_same_ids() {
        let Some(path) = smollm2() else {
            println!("skipped: PRUNEC_OFFLINE is set");
            return;
        };
        let gguf = Tokenizer::for_model(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        gguf.save(&dir.path().join("tokenizer.json")).unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|endoftext|>"}, "chat_template": "{{ x }}"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"bos_token_id": 1, "eos_token_id": [2, 0]}"#).unwrap();
        let hf = Tokenizer::for_model(dir.path()).unwrap();
        assert_eq!((hf.bos, hf.eos), (Some(1), Some(2)));
        assert_eq!(hf.chat_template(), Some("{{ x }}"));
        assert_eq!(hf.vocab_size(), 49152);
        assert_smollm2_golden(&hf);
        // Without config.json, tokenizer_config.json's token texts give the ids.
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        let hf = Tokenizer::from_file(&dir.path().join("tokenizer.json")).unwrap();
        assert_eq!((hf.bos, hf.eos), (Some(1), Some(0)));
    }

    /// A tiny byte-level BPE written as a tokenizer.json.
    const TINY_JSON: &str = r#"{
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<s>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": {"<s>": 0, "a": 1, "b": 2, "Ġ": 3, "ab": 4, "Ġab": 5},
                  "merges": [["a", "b"], ["Ġ", "ab"]]}
    }"#;

    #[test]
    fn tiny_tokenizer_json() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), TINY_JSON).unwrap();
        std::fs::write(dir.path().join("generation_config.json"), r#"{"eos_token_id": 0}"#).unwrap();
        std::fs::write(dir.path().join("chat_template.jinja"), "{{ messages }}").unwrap();
        let tok = Tokenizer::for_model(dir.path()).unwrap();
        assert_eq!(tok.encode("ab ab<s>a").unwrap(), [4, 5, 0, 1]);
        assert_eq!(tok.decode(&[4, 5, 0, 1]).unwrap(), "ab aba");
        assert_eq!((tok.bos, tok.eos, tok.vocab_size()), (None, Some(0), 6));
        assert_eq!(tok.chat_template(), Some("{{ messages }}"));
    }

    /// TINY_JSON with a LLaMA-style post-processor: `<s>` before every text.
    fn tiny_with_bos_post_processor() -> String {
        let post = r#""post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}}"#;
        let json = TINY_JSON.replace(r#""post_processor": null"#, post);
        assert_ne!(json, TINY_JSON);
        json
    }

    /// Which special tokens a text gets, as transformers decides it: the post-processor, unless
    /// the tokenizer class rebuilds it from `add_bos_token`/`add_eos_token`.
    #[test]
    fn special_tokens_follow_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let bos = SpecialTokens { prefix: vec![0], suffix: vec![] };
        // no post-processor, no flags: nothing
        std::fs::write(dir.path().join("tokenizer.json"), TINY_JSON).unwrap();
        let tok = Tokenizer::for_model(dir.path()).unwrap();
        assert_eq!(tok.special_tokens().unwrap(), SpecialTokens::default());
        assert_eq!(tok.encode_with_special("ab").unwrap(), [4]);
        // a LLaMA-style post-processor: `<s>` first
        std::fs::write(dir.path().join("tokenizer.json"), tiny_with_bos_post_processor()).unwrap();
        let tok = Tokenizer::for_model(dir.path()).unwrap();
        assert_eq!(tok.special_tokens().unwrap(), bos);
        assert_eq!(tok.encode_with_special("ab ab").unwrap(), [0, 4, 5]);
        assert_eq!(tok.encode("ab ab").unwrap(), [4, 5]);
        // the classes that rebuild their post-processor: their flags, with their defaults
        let cases = [
            (r#"{"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "add_bos_token": false}"#, SpecialTokens::default()),
            (r#"{"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>"}"#, bos.clone()),
            (r#"{"tokenizer_class": "GemmaTokenizerFast", "bos_token": {"content": "<s>"}, "add_bos_token": true}"#, bos.clone()),
            (r#"{"tokenizer_class": "GPTNeoXTokenizerFast", "bos_token": "<s>"}"#, SpecialTokens::default()),
            (r#"{"tokenizer_class": "GPTNeoXTokenizerFast", "bos_token": "<s>", "add_bos_token": true, "add_eos_token": true, "eos_token": "<s>"}"#, SpecialTokens { prefix: vec![0], suffix: vec![0] }),
            // any other class keeps the post-processor
            (r#"{"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "add_bos_token": false}"#, bos.clone()),
        ];
        for (cfg, want) in cases {
            std::fs::write(dir.path().join("tokenizer_config.json"), cfg).unwrap();
            let tok = Tokenizer::for_model(dir.path()).unwrap();
            assert_eq!(tok.special_tokens().unwrap(), want, "{cfg}");
            assert_eq!(tok.encode_with_special("ab").unwrap(), want.around(&[4]), "{cfg}");
        }
        // without a post-processor, a LLaMA class without flags still adds its BOS
        std::fs::write(dir.path().join("tokenizer.json"), TINY_JSON).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>"}"#).unwrap();
        assert_eq!(Tokenizer::for_model(dir.path()).unwrap().special_tokens().unwrap(), bos);
    }

    /// A GGUF tokenizer's rule (here: a BOS) is saved as the post-processor, with a
    /// tokenizer_config.json that keeps it: read back, the folder adds the same tokens.
    #[test]
    fn saved_tokenizers_keep_their_special_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), TINY_JSON).unwrap();
        let mut tok = Tokenizer::for_model(dir.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        for added in [SpecialTokens { prefix: vec![0], suffix: vec![] }, SpecialTokens { prefix: vec![0], suffix: vec![0] }, SpecialTokens::default()] {
            tok.bos = Some(0);
            tok.added = Some(added.clone());
            tok.save(&out.path().join("tokenizer.json")).unwrap();
            let cfg = tok.hf_tokenizer_config();
            assert_eq!((cfg["tokenizer_class"].as_str(), cfg["bos_token"].as_str()), (Some("PreTrainedTokenizerFast"), Some("<s>")));
            std::fs::write(out.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
            let back = Tokenizer::for_model(out.path()).unwrap();
            assert_eq!(back.special_tokens().unwrap(), added);
            assert_eq!(back.encode_with_special("ab ab").unwrap(), added.around(&[4, 5]));
        }
        // a special token outside the vocabulary is refused, not written
        tok.added = Some(SpecialTokens { prefix: vec![99], suffix: vec![] });
        let err = tok.save(&out.path().join("tokenizer.json")).unwrap_err().to_string();
        assert!(err.contains("special token 99"), "{err}");
    }

    #[test]
    fn missing_tokenizer_json_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tokenizer::for_model(dir.path()).unwrap_err();
        assert!(matches!(&err, FrontendError::Missing { path, .. } if path.ends_with("tokenizer.json")), "{err}");
        let err = Tokenizer::from_file(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(&err, FrontendError::Missing { path, .. } if path.ends_with("nope.json")), "{err}");
    }

    #[test]
    fn corrupt_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("tokenizer.json");
        std::fs::write(&json, r#"{"model": {"type": "BPE", "vocab": {"a": 0"#).unwrap();
        let err = Tokenizer::for_model(dir.path()).unwrap_err();
        assert!(
            matches!(&err, FrontendError::Corrupt { path, format: "tokenizer.json", .. } if *path == json),
            "{err}"
        );
        std::fs::write(&json, TINY_JSON).unwrap();
        let cfg = dir.path().join("tokenizer_config.json");
        std::fs::write(&cfg, "{").unwrap();
        let err = Tokenizer::for_model(dir.path()).unwrap_err();
        assert!(matches!(&err, FrontendError::Corrupt { path, .. } if *path == cfg), "{err}");
        std::fs::remove_file(&cfg).unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"eos_token_id": -1}"#).unwrap();
        let err = Tokenizer::for_model(dir.path()).unwrap_err();
        assert!(matches!(&err, FrontendError::BadConfig { reason, .. } if reason.contains("eos_token_id")), "{err}");
        // Not a GGUF file.
        let not_gguf = dir.path().join("model.gguf");
        std::fs::write(&not_gguf, "hello").unwrap();
        assert!(Tokenizer::for_model(&not_gguf).is_err());
    }

    #[test]
    fn gpt2_merges_must_be_pairs() {
        assert_eq!(parse_merges(&["a b", "Ġ t"]).unwrap(), [("a".into(), "b".into()), ("Ġ".into(), "t".into())]);
        assert!(parse_merges(&["ab"]).unwrap_err().contains("[0]"));
        assert!(parse_merges(&["a "]).is_err());
    }

    #[test]
    fn unknown_pre_tokenizer_is_refused_by_name() {
        let err = byte_level_bpe(Vocab::new(), Vec::new(), "falcon").unwrap_err();
        assert!(err.contains("`falcon`") && err.contains("smollm"), "{err}");
        for pre in NATIVE_PRE_TOKENIZERS {
            byte_level_bpe(Vocab::new(), Vec::new(), pre).unwrap();
        }
    }

    /// SentencePiece merges from scores, in transformers' order.
    #[test]
    fn sentencepiece_merges_from_scores() {
        let tokens = ["<unk>", "▁", "a", "b", "ab", "▁a", "▁ab", "<0x41>"];
        let scores = [0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, 0.0];
        let merges = merges_from_scores(&tokens, &scores);
        let merges: Vec<(&str, &str)> = merges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        // "▁ab" splits as ("▁", "ab") and ("▁a", "b"): "▁" scores higher, so it comes first.
        assert_eq!(merges, [("a", "b"), ("▁", "a"), ("▁", "ab"), ("▁a", "b")]);
        let vocab = tokens.iter().zip(0u32..).map(|(t, i)| (t.to_string(), i)).collect();
        let inner = sentencepiece_bpe(vocab, merges_from_scores(&tokens, &scores), Some("<unk>".into()), true).unwrap();
        let tok = Tokenizer { inner, source: PathBuf::from("x.gguf"), chat_template: None, bos: None, eos: None, added: None };
        // " ab" -> "▁▁ab": "▁" then "▁ab"; "A" falls back to its byte.
        assert_eq!(tok.encode("ab").unwrap(), [6]);
        assert_eq!(tok.encode(" ab").unwrap(), [1, 6]);
        assert_eq!(tok.encode("A").unwrap(), [1, 7]);
        assert_eq!(tok.decode(&[6, 1, 7]).unwrap(), "ab A");
    }

    /// The kinds of `tokenizer.json` written into GGUF files, and the ones refused.
    #[test]
    fn gguf_vocabulary_of_tokenizer_layouts() {
        use serde_json::json;
        let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
        let prepend = json!({"type": "Prepend", "prepend": "▁"});
        let bpe = |byte_fallback: bool| json!({"type": "BPE", "byte_fallback": byte_fallback});
        let of = |normalizer: serde_json::Value, pre: serde_json::Value, model: serde_json::Value| {
            GgufVocabulary::of(&json!({"normalizer": normalizer, "pre_tokenizer": pre, "model": model}))
        };
        let byte_level = json!({"type": "Sequence", "pretokenizers": [{"type": "Digits"}, {"type": "ByteLevel"}]});
        assert_eq!(of(json!(null), byte_level.clone(), bpe(false)), Ok(GgufVocabulary::ByteLevel));
        let sp = |add_space_prefix| Ok(GgufVocabulary::SentencePiece { add_space_prefix });
        // Gemma: spaces replaced, nothing prepended; LLaMA 2: Prepend then Replace
        assert_eq!(of(replace.clone(), json!(null), bpe(true)), sp(false));
        assert_eq!(of(json!({"type": "Sequence", "normalizers": [prepend, replace]}), json!(null), bpe(true)), sp(true));
        // Mistral, LLaMA since transformers 4.4x: a Metaspace pre-tokenizer
        for (scheme, prefix) in [("first", true), ("always", true), ("never", false)] {
            let metaspace = json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": false});
            assert_eq!(of(json!(null), metaspace, bpe(true)), sp(prefix), "{scheme}");
        }
        let refused = [
            (of(json!(null), json!(null), json!({"type": "WordPiece"})), "WordPiece"),
            (of(json!(null), json!(null), json!({"type": "Unigram"})), "Unigram"),
            (of(json!(null), json!(null), bpe(true)), "`▁`"),
            (of(json!(null), json!(null), bpe(false)), "neither"),
            (of(replace.clone(), byte_level, bpe(true)), "ByteLevel"),
        ];
        for (got, needle) in refused {
            assert!(got.as_ref().is_err_and(|e| e.contains(needle)), "{got:?}, not an error naming {needle}");
        }
    }

    /// A WordPiece `tokenizer.json` written into a GGUF file: an error naming the file.
    #[test]
    fn wordpiece_tokenizers_are_refused_for_gguf_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1, "##b": 2}}
        });
        std::fs::write(&path, json.to_string()).unwrap();
        let err = Tokenizer::from_file(&path).unwrap().gguf_metadata(8).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains("WordPiece"), "{err}");
    }

    /// The SentencePiece fixture (Gemma's layout) as llama.cpp's `llama` vocabulary: types,
    /// scores from the merges' ranks, no space prefix.
    #[test]
    fn sentencepiece_gguf_metadata() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sentencepiece/tokenizer.json");
        let keys: HashMap<String, GgufValue> = Tokenizer::from_file(&path).unwrap().gguf_metadata(260).unwrap().into_iter().collect();
        let list = |key: &str| keys[key].as_array().unwrap().to_vec();
        assert_eq!(keys["tokenizer.ggml.model"].as_str(), Some("llama"));
        assert_eq!(keys["tokenizer.ggml.add_space_prefix"], GgufValue::Bool(false));
        assert_eq!(keys["tokenizer.ggml.add_bos_token"], GgufValue::Bool(true));
        assert_eq!(keys["tokenizer.ggml.unknown_token_id"].as_i64(), Some(3));
        let (tokens, types, scores) = (list("tokenizer.ggml.tokens"), list("tokenizer.ggml.token_type"), list("tokenizer.ggml.scores"));
        assert_eq!((tokens.len(), types.len(), scores.len()), (260, 260, 260));
        let merges = list("tokenizer.ggml.merges");
        let token = |i: usize| tokens[i].as_str().unwrap().to_string();
        let ty = |i: usize| types[i].as_i64().unwrap();
        let score = |i: usize| scores[i].as_f64().unwrap();
        assert_eq!([ty(0), ty(1), ty(2), ty(3)], [TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN]);
        assert_eq!((token(4).as_str(), ty(4)), ("<0x09>", TOKEN_TYPE_BYTE));
        assert_eq!((token(259).as_str(), ty(259)), ("[PAD259]", 5));
        let lowest = -(merges.len() as f64) - 1.0;
        for i in 0..260 {
            let made_by = merges.iter().position(|m| m.as_str().unwrap().replacen(' ', "", 1) == token(i));
            assert_eq!(score(i), made_by.map_or(lowest, |r| -(r as f64)), "token {i} `{}`", token(i));
        }
    }
}
