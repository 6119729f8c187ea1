//! A reader of GGUF files (versions 2 and 3), the format of llama.cpp, with dequantization.
//!
//! [`GgufFile::open`] memory-maps a file and parses its header, its metadata and its tensor
//! infos; every tensor's byte range is checked against the file's size and its type's block size
//! then, so that [`GgufFile::tensor_bytes`] and [`GgufFile::dequantize`] never read out of bounds.
//! Nothing read from the file can make this module panic or allocate without bound: every count
//! and length is checked against the bytes that are left before anything is allocated, offsets use
//! checked arithmetic, and a bad file is an error that names the file (and the tensor, where there
//! is one).
//!
//! [`dequantize`] turns a tensor's bytes into `f32`s exactly as the reference C code of ggml
//! (`dequantize_row_*` in ggml-quants.c) and gguf-py's `gguf.quants.dequantize` do, bit for bit.
//! Supported: F32, F16, BF16, F64, I8, I16, I32, I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
//! Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 and MXFP4 (see
//! [`GgmlType::can_dequantize`]); the other types are read and range-checked, and dequantizing
//! them is an error.
//!
//! Layout: GGUF stores a tensor's dimensions in ggml order (`ne[0]`, the fastest-varying, first);
//! [`GgufTensorInfo::shape`] reverses them into numpy/HF order, and the data that
//! [`GgufFile::dequantize`] returns is row-major in that order. llama.cpp's converter permutes the
//! rows of the q/k projections of LLaMA-like models for its rotary embedding;
//! [`unpermute_rows`] undoes that.
//!
//! The reader is split by concern: `value` (metadata values and reading them), `ggml_type`
//! (tensor types and block layouts), `layout` (the format's constants, tensor infos and where
//! their data lies), `cursor` (a bounded little-endian reader), `parse` (header, metadata and
//! tensor infos), `dequant` (one module per family of quants) and `permute` (the q/k rows).

mod cursor;
mod dequant;
mod ggml_type;
mod layout;
mod parse;
mod permute;
pub mod quant;
mod value;
pub mod write;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{FrontendError, Result};
pub(crate) use cursor::escaped;
pub use dequant::dequantize;
pub use ggml_type::GgmlType;
pub use layout::{GgufTensorInfo, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_MAX_DIMS};
use parse::{corrupt, parse};
pub use permute::{permute_rows, permuted_source_row, unpermute_rows, unpermuted_source_row};
pub use value::GgufValue;

/// A memory-mapped GGUF file: its metadata and tensor infos, parsed and checked. Cloning is cheap
/// (the map is shared).
#[derive(Debug, Clone)]
pub struct GgufFile {
    path: PathBuf,
    mmap: Arc<Mmap>,
    version: u32,
    alignment: usize,
    data_offset: usize,
    // shared, so that a clone (one per lazily read tensor) copies no metadata
    metadata: Arc<BTreeMap<String, GgufValue>>,
    tensors: Arc<Vec<GgufTensorInfo>>,
    index: Arc<BTreeMap<String, usize>>,
}

impl GgufFile {
    /// Memory-maps `path` and parses its header, metadata and tensor infos. Honours
    /// `general.alignment` (default 32); checks that every tensor has a known type, whole blocks
    /// along `ne[0]`, an aligned offset and a byte range inside the file.
    ///
    /// Errors: [`FrontendError::Io`] if the file cannot be read; [`FrontendError::Corrupt`] for a
    /// bad header, metadata or tensor info (bad magic, GGUF v1, truncation, impossible counts...);
    /// [`FrontendError::BadTensor`] for a tensor of unknown type or with data outside the file.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io = |source| FrontendError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 24 {
            return Err(corrupt(path, format!("truncated: {len} bytes, shorter than a GGUF header (24 bytes)")));
        }
        // SAFETY: the map is read-only and private to this process; like every reader of
        // memory-mapped model files we assume nobody truncates or rewrites the file meanwhile.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let parsed = parse(&mmap).map_err(|e| e.into_frontend(path))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap: Arc::new(mmap),
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: Arc::new(parsed.metadata),
            tensors: Arc::new(parsed.tensors),
            index: Arc::new(parsed.index),
        })
    }

    /// The file's path, as given to [`GgufFile::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data (`general.alignment`, or 32).
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// The absolute offset of the data section (tensor offsets are relative to it in the file).
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// A string metadata value; [`FrontendError::BadConfig`] naming the key if it is absent or
    /// not a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong_type(key, v, "a string"))
    }

    /// An integer metadata value of any integer type, as `usize`; [`FrontendError::BadConfig`]
    /// naming the key if it is absent, not an integer, negative or too large.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.wrong_type(key, v, "a non-negative integer"))
    }

    /// A numeric metadata value (f32, f64 or any integer) as `f32`;
    /// [`FrontendError::BadConfig`] naming the key if it is absent or not a number.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        match *v {
            GgufValue::F32(x) => Ok(x),
            _ => v.as_f64().map(|x| x as f32).ok_or_else(|| self.wrong_type(key, v, "a number")),
        }
    }

    /// A boolean metadata value; [`FrontendError::BadConfig`] naming the key if it is absent or
    /// not a bool.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong_type(key, v, "a bool"))
    }

    /// An array of strings (`tokenizer.ggml.tokens`...); [`FrontendError::BadConfig`] naming
    /// the key if it is absent or not an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        v.as_array()
            .and_then(|a| a.iter().map(GgufValue::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| self.wrong_type(key, v, "an array of strings"))
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of the tensor named `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The raw bytes of a tensor's data. For an info of this file the range was checked by
    /// [`GgufFile::open`]; an info whose range is not inside the file gives an empty slice.
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> &[u8] {
        let range =
            usize::try_from(info.offset).ok().and_then(|start| Some(start..start.checked_add(info.byte_len())?));
        range.and_then(|r| self.mmap.get(r)).unwrap_or(&[])
    }

    /// The tensor named `name` as `f32`s, row-major in numpy/HF order
    /// ([`GgufTensorInfo::shape`]). [`FrontendError::MissingTensor`] if there is no such tensor;
    /// [`FrontendError::BadTensor`] naming the tensor and its type if the type is not supported.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| FrontendError::MissingTensor { path: self.path.clone(), tensor: name.to_string() })?;
        self.dequantize_tensor(info)
    }

    /// [`GgufFile::dequantize`] of a tensor info (of this file).
    pub fn dequantize_tensor(&self, info: &GgufTensorInfo) -> Result<Vec<f32>> {
        let bytes = self.tensor_bytes(info);
        let values = dequantize(info.ty, bytes, info.n_elements());
        if let Ok(start) = usize::try_from(info.offset) {
            crate::weights::release_pages(&self.mmap, start, bytes.len());
        }
        values.map_err(|reason| FrontendError::BadTensor {
            path: self.path.clone(),
            tensor: info.name.clone(),
            reason,
        })
    }

    /// The memory map of the whole file (shared).
    pub fn mmap(&self) -> Arc<Mmap> {
        Arc::clone(&self.mmap)
    }

    fn require(&self, key: &str) -> Result<&GgufValue> {
        self.metadata.get(key).ok_or_else(|| FrontendError::BadConfig {
            path: self.path.clone(),
            reason: format!("GGUF metadata key `{key}` is missing"),
        })
    }

    fn wrong_type(&self, key: &str, v: &GgufValue, expected: &str) -> FrontendError {
        let shown = match v {
            GgufValue::Array(a) => format!("an array of {} elements", a.len()),
            other => format!("{} {other}", other.type_name()),
        };
        FrontendError::BadConfig {
            path: self.path.clone(),
            reason: format!("GGUF metadata key `{key}` is {shown}, expected {expected}"),
        }
    }
}

#[cfg(test)]
mod tests {
    pub(in crate::gguf) mod support;

    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::gguf::tests::support::{
        assert_bits_eq, fixture, load_safetensors, open_err, small_file, small_file_aligned, Builder, TempFile,
    };

    #[test]
    fn quants_metadata_values() {
        let f = GgufFile::open(&fixture("quants.gguf")).unwrap();
        assert_eq!(f.get("test.u8"), Some(&GgufValue::U8(200)));
        assert_eq!(f.get("test.i8"), Some(&GgufValue::I8(-100)));
        assert_eq!(f.get("test.u16"), Some(&GgufValue::U16(60000)));
        assert_eq!(f.get("test.i16"), Some(&GgufValue::I16(-30000)));
        assert_eq!(f.get("test.u32"), Some(&GgufValue::U32(4_000_000_000)));
        assert_eq!(f.get("test.i32"), Some(&GgufValue::I32(-2_000_000_000)));
        assert_eq!(f.get("test.u64"), Some(&GgufValue::U64((1 << 63) + 5)));
        assert_eq!(f.get("test.i64"), Some(&GgufValue::I64(-(1 << 62))));
        assert_eq!(f.get("test.f32"), Some(&GgufValue::F32(0.15625)));
        assert_eq!(f.get("test.f64"), Some(&GgufValue::F64(1e-300)));
        assert_eq!(f.get("test.bool"), Some(&GgufValue::Bool(true)));
        assert_eq!(f.get_str("test.string").unwrap(), "héllo ✓");
        assert_eq!(
            f.get("test.array_i32"),
            Some(&GgufValue::Array(vec![GgufValue::I32(1), GgufValue::I32(-2), GgufValue::I32(3)]))
        );
        assert_eq!(f.get_str_array("test.array_str").unwrap(), vec!["a", "bc", ""]);
        let nested = f.get("test.array_nested").and_then(GgufValue::as_array).unwrap();
        assert_eq!(nested.len(), 2);
        assert_eq!(nested[0], GgufValue::Array(vec![GgufValue::I32(1), GgufValue::I32(2)]));
        assert_eq!(nested[1], GgufValue::Array(vec![GgufValue::I32(3)]));
        assert_eq!(f.get_usize("test.u8").unwrap(), 200);
        assert_eq!(f.get_usize("test.u32").unwrap(), 4_000_000_000);
        assert_eq!(f.get_usize("general.alignment").unwrap(), 64);
        assert_eq!(f.get_f32("test.f64").unwrap(), 0.0); // 1e-300 underflows f32
        assert_eq!(f.get_f32("test.i16").unwrap(), -30000.0);
        assert!(f.get_bool("test.bool").unwrap());
        assert_eq!(f.get("test.i8").and_then(GgufValue::as_i64), Some(-100));
        assert_eq!(f.get("test.f32").and_then(GgufValue::as_f64), Some(0.15625));
        assert_eq!(f.get_str("general.architecture").unwrap(), "test");
        // wrong types and absent keys: BadConfig naming the key
        for (r, key) in [
            (f.get_usize("test.i8").map(|_| ()), "test.i8"),
            (f.get_usize("test.string").map(|_| ()), "test.string"),
            (f.get_str("test.u8").map(|_| ()), "test.u8"),
            (f.get_f32("test.array_i32").map(|_| ()), "test.array_i32"),
            (f.get_str_array("test.array_i32").map(|_| ()), "test.array_i32"),
            (f.get_bool("test.u8").map(|_| ()), "test.u8"),
            (f.get_str("no.such.key").map(|_| ()), "no.such.key"),
        ] {
            match r {
                Err(e @ FrontendError::BadConfig { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(key) && msg.contains("quants.gguf"), "{msg}");
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn llama_gqa_metadata() {
        let f = GgufFile::open(&fixture("llama-gqa.gguf")).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
        for (key, want) in [
            ("llama.block_count", 4),
            ("llama.context_length", 128),
            ("llama.embedding_length", 64),
            ("llama.feed_forward_length", 176),
            ("llama.attention.head_count", 8),
            ("llama.attention.head_count_kv", 2),
            ("llama.vocab_size", 256),
            ("llama.rope.dimension_count", 8),
            ("llama.attention.key_length", 8),
            ("llama.attention.value_length", 8),
            ("general.file_type", 0),
        ] {
            assert_eq!(f.get_usize(key).unwrap(), want, "{key}");
        }
        assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
        assert_eq!(f.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap(), 1e-6);
        assert_eq!(f.tensors().len(), 1 + 4 * 9 + 1);
        assert!(f.tensor_info("output.weight").is_none(), "tied embeddings: no output.weight");
        assert!(f.tensors().iter().all(|t| t.ty == GgmlType::F32));
        let shape = |n: &str| f.tensor_info(n).unwrap().shape();
        assert_eq!(shape("token_embd.weight"), vec![256, 64]);
        assert_eq!(f.tensor_info("token_embd.weight").unwrap().dims, vec![64, 256]);
        assert_eq!(shape("blk.0.attn_q.weight"), vec![64, 64]);
        assert_eq!(shape("blk.3.attn_k.weight"), vec![16, 64]);
        assert_eq!(shape("blk.1.ffn_down.weight"), vec![64, 176]);
        assert_eq!(shape("output_norm.weight"), vec![64]);
        let info = f.tensor_info("blk.2.ffn_up.weight").unwrap();
        assert_eq!(f.tensor_bytes(info).len(), 176 * 64 * 4);
        assert_eq!(info.byte_len(), 176 * 64 * 4);
        match f.dequantize("output.weight") {
            Err(e @ FrontendError::MissingTensor { .. }) => assert!(e.to_string().contains("output.weight")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn small_file_reads() {
        let t = TempFile::with(&small_file().build());
        let f = GgufFile::open(&t.0).unwrap();
        assert_eq!(f.get_usize("llama.block_count").unwrap(), 2);
        assert_eq!(f.dequantize("a").unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(f.tensor_info("a").unwrap().shape(), vec![2, 4]);
        assert_eq!(f.dequantize("b").unwrap(), vec![-1.0, 0.5, 0.25]);
        // v2 has the same layout
        let mut b = small_file();
        b.version = 2;
        let t2 = TempFile::with(&b.build());
        assert_eq!(GgufFile::open(&t2.0).unwrap().version(), 2);
        // Send + Sync + cheap clone
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        let g = f.clone();
        assert_send_sync(&g);
        assert!(Arc::ptr_eq(&f.mmap(), &g.mmap()));
        // an empty array (gguf-py cannot write one)
        let mut b = Builder::new();
        let mut arr = 8u32.to_le_bytes().to_vec();
        arr.extend(0u64.to_le_bytes());
        b.kv_raw(b"empty", 9, &arr);
        let t3 = TempFile::with(&b.build());
        assert_eq!(GgufFile::open(&t3.0).unwrap().get("empty"), Some(&GgufValue::Array(vec![])));
    }

    #[test]
    #[ignore = "prints the error messages, for reading"]
    fn show_messages() {
        let mut b = small_file();
        b.tensor_raw("late", &[8], 0, 1 << 20);
        println!("{}", open_err(&b.build()).1);
        let mut b = small_file();
        b.tensor_raw("odd", &[8], 99, 0);
        println!("{}", open_err(&b.build()).1);
        let mut v = 0u32.to_le_bytes().to_vec();
        v.extend((1u64 << 60).to_le_bytes());
        let mut b = small_file();
        b.kv_raw(b"big", 9, &v);
        println!("{}", open_err(&b.build()).1);
        let full = small_file().build();
        println!("{}", open_err(&full[..40]).1);
        println!("{}", open_err(&full[..full.len() - 1]).1);
        let mut b = small_file();
        b.version = 1;
        println!("{}", open_err(&b.build()).1);
        println!("{}", open_err(b"GGML\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0").1);
        let f = GgufFile::open(&fixture("quants.gguf")).unwrap();
        println!("{}", f.get_usize("test.i8").unwrap_err());
        println!("{}", f.get_str("test.array_str").unwrap_err());
        println!("{}", f.get_str("nope").unwrap_err());
    }

    #[test]
    fn alignment_is_honoured() {
        for align in [1u32, 8, 64, 256] {
            let b = small_file_aligned(Some(align));
            let t = TempFile::with(&b.build());
            let f = GgufFile::open(&t.0).unwrap();
            assert_eq!(f.alignment(), align as usize);
            assert_eq!(f.data_offset() % align as usize, 0);
            assert_eq!(f.dequantize("b").unwrap(), vec![-1.0, 0.5, 0.25]);
        }
    }

    #[test]
    fn unsupported_type_is_an_error_naming_the_tensor() {
        let mut b = small_file();
        b.tensor("iq", &[256], GgmlType::IQ2_XXS, &[0u8; 66]);
        b.tensor("q81", &[32], GgmlType::Q8_1, &[0u8; 36]);
        let t = TempFile::with(&b.build());
        let f = GgufFile::open(&t.0).unwrap();
        for (name, ty) in [("iq", "iq2_xxs"), ("q81", "q8_1")] {
            match f.dequantize(name) {
                Err(e @ FrontendError::BadTensor { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(name) && msg.contains(ty) && msg.contains("not supported"), "{msg}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(f.tensor_bytes(f.tensor_info("iq").unwrap()).len(), 66);
    }

    // --- a real model, when present ---------------------------------------------------------

    use crate::test_support::smollm2;

    /// A tensor of SmolLM2 with gguf-py's values: name, shape, (index, f32 bits) of some
    /// elements, sum, sum of absolute values.
    type SmolCase = (&'static str, [usize; 2], [(usize, u32); 5], f64, f64);

    #[test]
    fn smollm2_q4_1() {
        let Some(path) = smollm2() else {
            println!("skipped: PRUNEC_OFFLINE is set");
            return;
        };
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(f.get_usize("llama.block_count").unwrap(), 30);
        assert_eq!(f.get_usize("llama.embedding_length").unwrap(), 576);
        assert_eq!(f.get_usize("llama.attention.head_count").unwrap(), 9);
        assert_eq!(f.get_usize("llama.attention.head_count_kv").unwrap(), 3);
        assert_eq!(f.get_usize("llama.rope.dimension_count").unwrap(), 64);
        assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
        assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
        assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
        assert_eq!(f.tensors().len(), 272);
        let count = |t: GgmlType| f.tensors().iter().filter(|i| i.ty == t).count();
        assert_eq!((count(GgmlType::Q4_1), count(GgmlType::F32), count(GgmlType::Q8_0)), (210, 61, 1));
        // Reference values from gguf-py 0.19 (`gguf.quants.dequantize`): elements (bitwise) and
        // the f64 sum and sum of absolute values of the whole tensor.
        let cases: [SmolCase; 5] = [
            (
                "token_embd.weight",
                [49152, 576],
                [(0, 0xbdda3400), (1, 0x3d071400), (12345, 0x3cfe0000), (14155783, 0x3dfd0b00), (28311551, 0xbd2ad000)],
                -15353.04449415207,
                2802153.619805813,
            ),
            (
                "blk.0.attn_norm.weight",
                [576, 1],
                [(0, 0x3c650000), (1, 0x3cc30000), (249, 0x3d6e0000), (295, 0x3d100000), (575, 0xbd1d0000)],
                0.6129436492919922,
                15.815359115600586,
            ),
            (
                "blk.0.attn_k.weight",
                [192, 576],
                [(0, 0xbe1f0000), (1, 0x3eae3000), (12345, 0x3e2e8000), (55303, 0xbf330000), (110591, 0x3eba3000)],
                26.937057495117188,
                29794.78126525879,
            ),
            (
                "blk.0.attn_q.weight",
                [576, 576],
                [(0, 0xbdc54000), (1, 0x3e212000), (12345, 0x3df80000), (165895, 0x3e300000), (331775, 0xbe830000)],
                59.22322082519531,
                63395.39872741699,
            ),
            (
                "blk.29.ffn_down.weight",
                [576, 1536],
                [(0, 0xbe8bf000), (1, 0x3e3ec000), (12345, 0xbd384000), (442375, 0xbc7e0000), (884735, 0x3d680000)],
                49.83570861816406,
                126250.91435241699,
            ),
        ];
        for (name, shape, elements, sum, abs_sum) in cases {
            let info = f.tensor_info(name).unwrap();
            let n: usize = shape.iter().product();
            assert_eq!(info.n_elements(), n, "{name}");
            let data = f.dequantize(name).unwrap();
            for (i, bits) in elements {
                assert_eq!(data[i].to_bits(), bits, "{name}[{i}]");
            }
            let s: f64 = data.iter().map(|&v| f64::from(v)).sum();
            let a: f64 = data.iter().map(|&v| f64::from(v).abs()).sum();
            assert!((s - sum).abs() <= 1e-9 * abs_sum && (a - abs_sum).abs() <= 1e-9 * abs_sum, "{name}: {s} {a}");
        }
        // q rows un-permute with 9 heads, k rows with 3
        let q = f.dequantize("blk.0.attn_q.weight").unwrap();
        assert_eq!(unpermute_rows(&q, 9, 576, 576).unwrap().len(), q.len());
        let k = f.dequantize("blk.0.attn_k.weight").unwrap();
        assert!(unpermute_rows(&k, 3, 192, 576).is_ok());
    }

    /// Full comparison against a safetensors of gguf-py dequantizations (name -> flat F32), made
    /// by hand: `PRUNEC_GGUF_REFERENCE=ref.safetensors` (and `PRUNEC_SMOLLM2_GGUF` for the model).
    #[test]
    fn smollm2_against_reference_dump_when_given() {
        let (Some(path), Some(reference)) = (smollm2(), std::env::var_os("PRUNEC_GGUF_REFERENCE")) else {
            println!("skipped: set PRUNEC_GGUF_REFERENCE to a gguf-py dump to compare whole tensors");
            return;
        };
        let f = GgufFile::open(&path).unwrap();
        for (name, (_, want)) in load_safetensors(Path::new(&reference)) {
            let got = f.dequantize(&name).unwrap();
            assert_bits_eq(&name, &got, &want);
            println!("{name}: {} elements equal bitwise", got.len());
        }
    }
}
