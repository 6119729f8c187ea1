//! Parquet files as the Hugging Face hub serves datasets (`test-00000-of-00001.parquet`...):
//! read row by row with the `parquet` crate's record API (no Arrow), each row turned into a JSON
//! object, so that Parquet and JSONL rows reach the evaluation code in one form.
//!
//! Compression: snappy (the hub's default), zstd, lz4 and gzip.

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

/// Checks the Thrift of a Parquet file's footer (its `FileMetaData`, compact protocol) before
/// the parquet crate decodes it: the crate (60.1) skips an unknown field's `list<bool>` without
/// consuming a byte per element, so a 600-byte footer declaring lists of 2^31 booleans keeps it
/// busy for minutes. Here every list or map element costs at least one byte, as the protocol
/// encodes them, so a count past the bytes left is refused and the walk is linear in the
/// footer's size. A file without a plain footer is left to the crate's own errors.
fn check_footer(bytes: &[u8]) -> std::result::Result<(), String> {
    let n = bytes.len();
    if n < 12 || &bytes[n - 4..] != b"PAR1" {
        return Ok(());
    }
    let len = u32::from_le_bytes([bytes[n - 8], bytes[n - 7], bytes[n - 6], bytes[n - 5]]) as usize;
    let Some(start) = (n - 8).checked_sub(len) else { return Ok(()) };
    let mut walk = ThriftWalk { bytes: &bytes[start..n - 8], at: 0 };
    walk.value(12, 64).map_err(|e| format!("its footer's metadata {e}"))
}

/// Checks the Thrift of every page header of every column chunk, as [`check_footer`] checks the
/// footer: the crate reads page headers with the same skipping code. The chunks' places come
/// from the footer the crate has decoded; the walk follows each chunk's pages as the crate's
/// page reader does (header, then `compressed_page_size` bytes) and may walk, in all, as many
/// bytes as the reader may read ([`READS_PER_BYTE`]), so overlapping chunks cannot make it
/// quadratic.
fn check_pages(bytes: &[u8], metadata: &parquet::file::metadata::ParquetMetaData) -> std::result::Result<(), String> {
    let mut budget = bytes.len() as u64 * READS_PER_BYTE + (1 << 20);
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for (c, chunk) in group.columns().iter().enumerate() {
            let at = |pos: u64| format!("column chunk {c} of row group {g}: its page header at byte {pos}");
            let start = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset());
            let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(chunk.compressed_size())) else {
                return Err(format!("column chunk {c} of row group {g} has a negative offset or size"));
            };
            let end = start.checked_add(len).filter(|&e| e <= bytes.len() as u64);
            let end = end.ok_or_else(|| format!("column chunk {c} of row group {g} lies past the end of the file"))?;
            let mut pos = start;
            while pos < end {
                let mut walk = ThriftWalk { bytes: &bytes[pos as usize..end as usize], at: 0 };
                let size = walk.page_header().map_err(|e| format!("{} {e}", at(pos)))?;
                let size = u64::try_from(size).map_err(|_| format!("{} declares a negative page size", at(pos)))?;
                let step = walk.at as u64 + size;
                budget = budget.checked_sub(walk.at as u64).ok_or_else(overread)?;
                pos = pos.saturating_add(step);
            }
        }
    }
    Ok(())
}

/// A walk over compact-protocol Thrift that checks sizes and consumes nothing else.
struct ThriftWalk<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl ThriftWalk<'_> {
    fn byte(&mut self) -> std::result::Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("ends early")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("has a varint longer than 64 bits".into())
    }

    fn skip(&mut self, n: u64) -> std::result::Result<(), String> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(format!("declares {n} bytes where {left} are left"));
        }
        self.at += n as usize;
        Ok(())
    }

    /// Walks a `PageHeader` struct and returns its `compressed_page_size` (field 3, an i32), or 0
    /// where it has none (the crate refuses such a header itself).
    fn page_header(&mut self) -> std::result::Result<i64, String> {
        let (mut id, mut size) = (0i64, 0i64);
        loop {
            let head = self.byte()?;
            if head == 0 {
                return Ok(size);
            }
            id = match head >> 4 {
                0 => zigzag(self.varint()?),
                delta => id + i64::from(delta),
            };
            match head & 0x0f {
                1 | 2 => {}
                5 if id == 3 => size = zigzag(self.varint()?),
                t => self.value(t, 64)?,
            }
        }
    }

    /// Walks `count` elements of at least `min` bytes each.
    fn elements(&mut self, count: u64, min: u64, ty: &[u8], depth: u8) -> std::result::Result<(), String> {
        let left = (self.bytes.len() - self.at) as u64;
        if count.saturating_mul(min) > left {
            return Err(format!("declares {count} elements in {left} bytes"));
        }
        for _ in 0..count {
            for &t in ty {
                self.value(t, depth)?;
            }
        }
        Ok(())
    }

    /// Walks one value of type `ty` (as a list element: a boolean is one byte).
    fn value(&mut self, ty: u8, depth: u8) -> std::result::Result<(), String> {
        let depth = depth.checked_sub(1).ok_or("nests more than 64 levels")?;
        match ty {
            1..=3 => self.skip(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            13 => self.skip(16), // a UUID (Thrift 0.19)
            8 => {
                let len = self.varint()?;
                self.skip(len)
            }
            9 | 10 => {
                let head = self.byte()?;
                let count = if head >> 4 == 15 { self.varint()? } else { u64::from(head >> 4) };
                self.elements(count, 1, &[head & 0x0f], depth)
            }
            11 => {
                let count = self.varint()?;
                if count == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                self.elements(count, 2, &[kv >> 4, kv & 0x0f], depth)
            }
            12 => loop {
                let head = self.byte()?;
                if head == 0 {
                    return Ok(());
                }
                if head >> 4 == 0 {
                    self.varint()?; // the field id, in full
                }
                match head & 0x0f {
                    1 | 2 => {} // a boolean field is its header
                    t => self.value(t, depth)?,
                }
            },
            t => Err(format!("has a value of unknown type {t}")),
        }
    }
}

/// A zigzag-encoded integer's value.
fn zigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// Opens `path` and names its top-level columns, reading only the footer.
fn open(path: &Path) -> Result<(SerializedFileReader<Bounded>, Vec<String>)> {
    let bytes = std::fs::read(path).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
    check_footer(&bytes).map_err(|e| corrupt(path, e))?;
    let bytes = Bytes::from(bytes);
    let reader = SerializedFileReader::new(Bounded::new(bytes.clone())).map_err(|e| corrupt(path, e))?;
    check_pages(&bytes, reader.metadata()).map_err(|e| corrupt(path, e))?;
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

    /// The parquet crate skips an unknown field's `list<bool>` without reading its bytes, in page
    /// headers as in the footer: a header declaring 2^31 booleans kept it busy for seconds. The
    /// file here is a real one whose first page header gains such a field (8 bytes, taken from
    /// the end of the page's data, so that every offset in the footer stays right).
    #[test]
    fn a_page_header_of_a_huge_boolean_list_is_refused_at_once() {
        let real = fixture("piqa/validation-00000-of-00001.parquet");
        let bytes = std::fs::read(&real).unwrap();
        let (reader, _) = open(&real).unwrap();
        let chunk = &reader.metadata().row_groups()[0].columns()[0];
        let start = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset()) as usize;
        let mut walk = ThriftWalk { bytes: &bytes[start..], at: 0 };
        let size = walk.page_header().unwrap() as usize;
        let stop = start + walk.at - 1;
        assert_eq!(bytes[stop], 0, "a struct ends in its stop byte");
        // field 100 (its id in full), a list of 2^31 - 1 booleans (the most an i32 counts), then the header's stop byte
        let evil = [0x09, 0xc8, 0x01, 0xf1, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00];
        let mut file = bytes[..stop].to_vec();
        file.extend_from_slice(&evil);
        file.extend_from_slice(&bytes[stop + 1..start + walk.at + size - (evil.len() - 1)]);
        file.extend_from_slice(&bytes[start + walk.at + size..]);
        assert_eq!(file.len(), bytes.len());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evil-page.parquet");
        std::fs::write(&path, &file).unwrap();
        let err = read_rows(&path).unwrap_err().to_string();
        assert!(err.contains("evil-page.parquet") && err.contains("column chunk 0 of row group 0: its page header"), "{err}");
        // refused by the walk, before the crate reads the header
        assert!(err.contains("declares 2147483647 elements"), "{err}");
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
