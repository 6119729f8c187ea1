//! Parquet files as the Hugging Face hub serves datasets (`test-00000-of-00001.parquet`...):
//! read row by row with the `parquet` crate's record API (no Arrow), each row turned into a JSON
//! object, so that Parquet and JSONL rows reach the evaluation code in one form.
//!
//! Compression: snappy (the hub's default), zstd, lz4 and gzip. The parquet crate is the one
//! vendored under `vendor/parquet` (`PRUNEC.md` there: skipping a Thrift list of booleans reads
//! its bytes); its reads of a file are bounded here ([`Bounded`]).

use std::path::Path;

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, FileReader, Length, SerializedFileReader};
use parquet::record::{Field, Row};
use serde_json::{Map, Value};

use crate::error::{FrontendError, Result};

/// The rows of a Parquet file, each a JSON object keyed by column name.
#[derive(Debug, Clone, PartialEq)]
pub struct ParquetRows {
    /// The top-level columns, in the file's order.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Map<String, Value>>,
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> FrontendError {
    FrontendError::Corrupt { path: path.to_path_buf(), format: "Parquet", reason: reason.to_string() }
}

/// A Parquet file in memory whose reader may take at most a bounded number of bytes from it
/// (every byte a few times over): a malformed file whose pages point back at themselves makes
/// the parquet crate read forever, and is refused instead.
struct Bounded {
    bytes: Bytes,
    left: Arc<AtomicU64>,
}

/// How many times over a file's bytes the reader may read them (and 1 MiB more).
const READS_PER_BYTE: u64 = 16;

impl Bounded {
    fn new(bytes: Bytes) -> Bounded {
        let left = Arc::new(AtomicU64::new(bytes.len() as u64 * READS_PER_BYTE + (1 << 20)));
        Bounded { bytes, left }
    }
}

/// Takes `n` bytes from the budget `left`, or says that it is spent.
fn take(left: &AtomicU64, n: usize) -> std::result::Result<(), String> {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(n as u64))
        .map(|_| ())
        .map_err(|_| overread())
}

/// Why a file whose pages make the reader read too much is refused.
fn overread() -> String {
    format!("its pages make the reader read more than {READS_PER_BYTE} times its size: a malformed file")
}

impl Length for Bounded {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

impl ChunkReader for Bounded {
    type T = BoundedRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<BoundedRead> {
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(self.bytes.len());
        Ok(BoundedRead { bytes: self.bytes.slice(start..), left: Arc::clone(&self.left) })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        take(&self.left, length).map_err(ParquetError::General)?;
        let start = usize::try_from(start).map_err(|_| ParquetError::EOF(format!("offset {start}")))?;
        let end = start.checked_add(length).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| ParquetError::EOF(format!("{length} bytes at {start} of a {}-byte file", self.bytes.len())))?;
        Ok(self.bytes.slice(start..end))
    }
}

/// A reader of a [`Bounded`] file from an offset.
struct BoundedRead {
    bytes: Bytes,
    left: Arc<AtomicU64>,
}

impl Read for BoundedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.bytes.len());
        // a read at the end costs a byte too: a file may make the reader skip billions of
        // empty fields there
        take(&self.left, n.max(1)).map_err(std::io::Error::other)?;
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = self.bytes.slice(n..);
        Ok(n)
    }
}

/// Opens `path` and names its top-level columns, reading only the footer.
fn open(path: &Path) -> Result<(SerializedFileReader<Bounded>, Vec<String>)> {
    let bytes = std::fs::read(path).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
    let reader = SerializedFileReader::new(Bounded::new(Bytes::from(bytes))).map_err(|e| corrupt(path, e))?;
    let columns = reader
        .metadata()
        .file_metadata()
        .schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    Ok((reader, columns))
}

/// The top-level column names of the Parquet file at `path`.
pub fn columns(path: &Path) -> Result<Vec<String>> {
    crate::error::guarded(path, "Parquet", || Ok(open(path)?.1))
}

/// Reads every row of the Parquet file at `path`. Strings stay strings, integers and booleans
/// keep their JSON kinds, lists become arrays and structs objects; binary values must be UTF-8.
pub fn read_rows(path: &Path) -> Result<ParquetRows> {
    crate::error::guarded(path, "Parquet", || read_all(path))
}

fn read_all(path: &Path) -> Result<ParquetRows> {
    let (reader, columns) = open(path)?;
    let iter = reader.get_row_iter(None).map_err(|e| corrupt(path, e))?;
    let mut rows = Vec::new();
    for (i, row) in iter.enumerate() {
        let row = row.map_err(|e| corrupt(path, format!("row {i}: {e}")))?;
        rows.push(row_to_json(&row).map_err(|e| corrupt(path, format!("row {i}: {e}")))?);
    }
    Ok(ParquetRows { columns, rows })
}

fn row_to_json(row: &Row) -> std::result::Result<Map<String, Value>, String> {
    row.get_column_iter().map(|(name, field)| Ok((name.clone(), field_to_json(field)?))).collect()
}

fn field_to_json(field: &Field) -> std::result::Result<Value, String> {
    Ok(match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => (*n).into(),
        Field::Short(n) => (*n).into(),
        Field::Int(n) => (*n).into(),
        Field::Long(n) => (*n).into(),
        Field::UByte(n) => (*n).into(),
        Field::UShort(n) => (*n).into(),
        Field::UInt(n) => (*n).into(),
        Field::ULong(n) => (*n).into(),
        Field::Float16(x) => f64::from(*x).into(),
        Field::Float(x) => f64::from(*x).into(),
        Field::Double(x) => (*x).into(),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => Value::String(
            std::str::from_utf8(b.data()).map_err(|e| format!("a binary value is not UTF-8: {e}"))?.to_string(),
        ),
        Field::Group(row) => Value::Object(row_to_json(row)?),
        Field::ListInternal(list) => Value::Array(list.elements().iter().map(field_to_json).collect::<std::result::Result<_, _>>()?),
        Field::MapInternal(map) => {
            let mut out = Map::new();
            for (k, v) in map.entries() {
                let key = match field_to_json(k)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, field_to_json(v)?);
            }
            Value::Object(out)
        }
        other => Value::String(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/eval").join(rel)
    }

    #[test]
    fn reads_the_hubs_schemas() {
        let wiki = read_rows(&fixture("wikitext-2-raw-v1/test-00000-of-00001.parquet")).unwrap();
        assert_eq!(wiki.columns, ["text"]);
        assert_eq!(wiki.rows[0]["text"], "");
        assert_eq!(wiki.rows[1]["text"], " = Harbour Lights = \n");
        let arc = read_rows(&fixture("ai2_arc/ARC-Easy/test-00000-of-00001.parquet")).unwrap();
        assert_eq!(arc.columns, ["id", "question", "choices", "answerKey"]);
        assert_eq!(arc.rows[1]["choices"]["label"], serde_json::json!(["1", "2", "3", "4"]));
        assert_eq!(arc.rows[0]["choices"]["text"][0], "a ruler");
        let boolq = read_rows(&fixture("boolq/validation-00000-of-00001.parquet")).unwrap();
        assert_eq!(boolq.rows[1]["answer"], false);
        let hs = read_rows(&fixture("hellaswag/validation-00000-of-00001.parquet")).unwrap();
        assert_eq!(hs.rows[0]["label"], "3");
        assert_eq!(hs.rows[0]["ind"], 24);
        assert_eq!(hs.rows[0]["endings"].as_array().map(Vec::len), Some(4));
        assert_eq!(columns(&fixture("piqa/validation-00000-of-00001.parquet")).unwrap(), ["goal", "sol1", "sol2", "label"]);
    }

    /// `tests/fixtures/hostile/parquet-page-bool-list.parquet` is the piqa file whose first page
    /// header gains an unknown field holding a list of 2^31 - 1 booleans (8 bytes, taken from
    /// the end of the page's data, so that every offset in the footer stays right). Unpatched,
    /// the crate skipped those booleans without reading a byte (6 s in this test); the vendored
    /// crate reads one per element, as the protocol encodes them, and meets the header's end.
    #[test]
    fn a_page_header_of_a_huge_boolean_list_is_refused_at_once() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hostile/parquet-page-bool-list.parquet");
        let real = std::fs::read(fixture("piqa/validation-00000-of-00001.parquet")).unwrap();
        let evil = std::fs::read(&path).unwrap();
        assert_eq!(evil.len(), real.len(), "the same offsets");
        assert!(read_rows(&fixture("piqa/validation-00000-of-00001.parquet")).is_ok());
        let err = read_rows(&path).unwrap_err();
        assert!(matches!(err, FrontendError::Corrupt { format: "Parquet", .. }), "{err}");
        assert!(err.to_string().contains("parquet-page-bool-list.parquet"), "{err}");
    }

    #[test]
    fn a_corrupt_or_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.parquet");
        std::fs::write(&bad, b"PAR1 not really a parquet file").unwrap();
        let err = read_rows(&bad).unwrap_err();
        assert!(matches!(err, FrontendError::Corrupt { format: "Parquet", .. }), "{err}");
        assert!(err.to_string().contains("bad.parquet"), "{err}");
        // a real file cut short loses its footer
        let bytes = std::fs::read(fixture("piqa/validation-00000-of-00001.parquet")).unwrap();
        let cut = dir.path().join("cut.parquet");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read_rows(&cut).unwrap_err().to_string().contains("cut.parquet"));
        let missing = read_rows(&dir.path().join("none.parquet")).unwrap_err();
        assert!(matches!(missing, FrontendError::Io { .. }));
    }
}
