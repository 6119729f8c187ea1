//! Helpers of the GGUF reader's unit tests: fixtures, temporary files, a builder of GGUF files by
//! hand (for broken inputs) and bitwise comparisons. A module of the test module
//! (`gguf::tests::support`), built with the tests only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::gguf::{GgmlType, GgufFile};
use crate::error::FrontendError;

pub(in crate::gguf) fn fixture(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/gguf")).join(name)
}

/// A file in the temporary folder, removed on drop.
pub(in crate::gguf) struct TempFile(pub(in crate::gguf) PathBuf);

impl TempFile {
    pub(in crate::gguf) fn new() -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempFile(std::env::temp_dir().join(format!("prunec-gguf-{}-{n}.gguf", std::process::id())))
    }

    pub(in crate::gguf) fn with(bytes: &[u8]) -> TempFile {
        let t = TempFile::new();
        t.write(bytes);
        t
    }

    pub(in crate::gguf) fn write(&self, bytes: &[u8]) {
        std::fs::write(&self.0, bytes).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `open` must fail; returns the message, after checking that it names the file.
pub(in crate::gguf) fn open_err(bytes: &[u8]) -> (FrontendError, String) {
    let t = TempFile::with(bytes);
    let err = match GgufFile::open(&t.0) {
        Ok(_) => panic!("a bad file opened"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.contains(&t.0.display().to_string()), "message does not name the file: {msg}");
    (err, msg)
}

/// F32 tensors of a safetensors file: name -> (shape, values).
pub(in crate::gguf) fn load_safetensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), ::safetensors::Dtype::F32, "{name}");
            let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

/// Bitwise equality, with the first difference in the message.
pub(in crate::gguf) fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: element {i}: got {} ({:#x}), want {} ({:#x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

/// A GGUF file assembled by hand, for broken inputs.
pub(in crate::gguf) struct Builder {
    pub(in crate::gguf) version: u32,
    kvs: Vec<u8>,
    pub(in crate::gguf) n_kv: u64,
    infos: Vec<u8>,
    pub(in crate::gguf) n_tensors: u64,
    data: Vec<u8>,
    pub(in crate::gguf) alignment: usize,
}

fn gstr(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

impl Builder {
    pub(in crate::gguf) fn new() -> Builder {
        Builder { version: 3, kvs: vec![], n_kv: 0, infos: vec![], n_tensors: 0, data: vec![], alignment: 32 }
    }

    pub(in crate::gguf) fn kv_raw(&mut self, key: &[u8], ty: u32, value: &[u8]) -> &mut Builder {
        self.kvs.extend(gstr(key));
        self.kvs.extend(ty.to_le_bytes());
        self.kvs.extend_from_slice(value);
        self.n_kv += 1;
        self
    }

    pub(in crate::gguf) fn kv_u32(&mut self, key: &str, v: u32) -> &mut Builder {
        self.kv_raw(key.as_bytes(), 4, &v.to_le_bytes())
    }

    pub(in crate::gguf) fn kv_str(&mut self, key: &str, v: &str) -> &mut Builder {
        self.kv_raw(key.as_bytes(), 8, &gstr(v.as_bytes()))
    }

    pub(in crate::gguf) fn tensor_raw(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Builder {
        self.infos.extend(gstr(name.as_bytes()));
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    /// A tensor whose data is `bytes`, placed at the next aligned offset.
    pub(in crate::gguf) fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, bytes: &[u8]) -> &mut Builder {
        while !self.data.len().is_multiple_of(self.alignment) {
            self.data.push(0);
        }
        let offset = self.data.len() as u64;
        self.data.extend_from_slice(bytes);
        self.tensor_raw(name, dims, ty.id(), offset)
    }

    pub(in crate::gguf) fn tensor_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Builder {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, GgmlType::F32, &bytes)
    }

    pub(in crate::gguf) fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend_from_slice(&self.kvs);
        out.extend_from_slice(&self.infos);
        while !out.len().is_multiple_of(self.alignment) {
            out.push(0);
        }
        out.extend_from_slice(&self.data);
        out
    }
}

/// An edit of a [`Builder`], for the table-driven tests.
pub(in crate::gguf) type Edit = Box<dyn Fn(&mut Builder)>;

/// A small valid file: metadata of several types and two tensors.
pub(in crate::gguf) fn small_file() -> Builder {
    small_file_aligned(None)
}

/// [`small_file`] with a `general.alignment`.
pub(in crate::gguf) fn small_file_aligned(alignment: Option<u32>) -> Builder {
    let mut b = Builder::new();
    if let Some(a) = alignment {
        b.alignment = a as usize;
        b.kv_u32("general.alignment", a);
    }
    b.kv_str("general.architecture", "llama").kv_u32("llama.block_count", 2);
    let mut arr = 5u32.to_le_bytes().to_vec(); // array of i32
    arr.extend(3u64.to_le_bytes());
    for v in [1i32, -2, 3] {
        arr.extend(v.to_le_bytes());
    }
    b.kv_raw(b"test.array", 9, &arr);
    b.tensor_f32("a", &[4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    b.tensor_f32("b", &[3], &[-1.0, 0.5, 0.25]);
    b
}
