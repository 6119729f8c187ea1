//! A little-endian reader over a GGUF file's bytes that never reads past the end, and the
//! escaping of keys and names read from the file for messages.

/// A little-endian reader over the file's bytes that never reads past the end.
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let bytes = self.pos.checked_add(n).and_then(|end| self.buf.get(self.pos..end)).ok_or_else(|| {
            format!(
                "truncated: {what} needs {n} bytes at offset {}, but the file has {} bytes",
                self.pos,
                self.buf.len()
            )
        })?;
        self.pos += n;
        Ok(bytes)
    }

    pub(super) fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let b = self.take(N, what)?;
        <[u8; N]>::try_from(b).map_err(|_| format!("internal: short read of {what}"))
    }

    pub(super) fn u8(&mut self, what: &str) -> std::result::Result<u8, String> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 length, then bytes.
    pub(super) fn bytes_string(&mut self, what: &str) -> std::result::Result<&'a [u8], String> {
        let len = self.u64(what)?;
        let remaining = self.remaining();
        let n = usize::try_from(len).ok().filter(|&n| n <= remaining).ok_or_else(|| {
            format!("{what}: string length {len} at offset {} exceeds the {remaining} bytes left", self.pos - 8)
        })?;
        self.take(n, what)
    }

    /// A GGUF string that must be UTF-8 (keys, tensor names).
    pub(super) fn utf8_string(&mut self, what: &str) -> std::result::Result<String, String> {
        let start = self.pos;
        let b = self.bytes_string(what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| format!("{what} at offset {start} is not valid UTF-8: {:?}", lossy(b)))
    }
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", escaped(&s[..i])),
        None => escaped(&s),
    }
}

/// A key or name from the file as messages show it: control characters (an ANSI escape, a
/// newline), quotes and backslashes escaped, so that a message is one plain line.
pub(crate) fn escaped(s: &str) -> String {
    s.escape_debug().to_string()
}
