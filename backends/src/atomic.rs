//! Outputs written beside their destination under a temporary name, then renamed into place:
//! [`prunec_ir::output`]'s rules (never over an input; an existing destination replaced only
//! when asked, a folder only when it is an earlier prunec output, never both old and new
//! missing), with the backends' errors.

use std::path::{Path, PathBuf};

use prunec_ir::output::{self, OutputError, OutputKind};

use crate::{BackendError, Result};

impl From<OutputError> for BackendError {
    fn from(e: OutputError) -> BackendError {
        match e {
            OutputError::Input { path, reason } => BackendError::WouldOverwriteInput { path, reason },
            OutputError::Exists { path, reason } => BackendError::OutputExists { path, reason },
            OutputError::Io { path, source } => BackendError::Io { path, source },
            other => BackendError::Output(other),
        }
    }
}

/// A destination and the temporary path that stands for it until [`AtomicPath::commit`].
/// Dropped without commit, the temporary path is removed.
#[derive(Debug)]
pub struct AtomicPath(output::AtomicPath);

impl AtomicPath {
    /// Prepares to write the file `dest`, which must not exist: refuses a destination among
    /// `inputs`, holding one or inside one.
    pub fn new(dest: &Path, inputs: &[&Path]) -> Result<AtomicPath> {
        AtomicPath::file(dest, inputs, false)
    }

    /// Prepares to write the file `dest`, replacing an existing file when `replace` (`--force`).
    pub fn file(dest: &Path, inputs: &[&Path], replace: bool) -> Result<AtomicPath> {
        Ok(AtomicPath(output::AtomicPath::create(dest, OutputKind::File, inputs, replace)?))
    }

    /// Prepares to write the folder `dest` (the caller creates [`AtomicPath::temp`] and fills
    /// it), replacing an existing folder when `replace` and it is empty or an earlier prunec
    /// output.
    pub fn folder(dest: &Path, inputs: &[&Path], replace: bool) -> Result<AtomicPath> {
        Ok(AtomicPath(output::AtomicPath::create(dest, OutputKind::Folder, inputs, replace)?))
    }

    /// Writes `bytes` as the file `dest` through a temporary path renamed into place, replacing
    /// an existing file when `replace`; returns `dest`.
    pub fn write(dest: &Path, bytes: &[u8], inputs: &[&Path], replace: bool) -> Result<PathBuf> {
        Ok(output::write_file(dest, bytes, inputs, replace)?)
    }

    /// The temporary path to write to.
    pub fn temp(&self) -> &Path {
        self.0.temp()
    }

    /// Renames the temporary path into place (replacing an older output there when allowed).
    pub fn commit(self) -> Result<PathBuf> {
        Ok(self.0.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        {
            let a = AtomicPath::new(&dest, &[]).unwrap();
            std::fs::write(a.temp(), b"half").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn committed_output_is_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let a = AtomicPath::new(&dest, &[]).unwrap();
        std::fs::write(a.temp(), b"whole").unwrap();
        a.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_to_overwrite_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("model");
        std::fs::create_dir(&input).unwrap();
        assert!(matches!(AtomicPath::new(&input, &[&input]), Err(BackendError::WouldOverwriteInput { .. })));
        // nor a folder holding the input
        assert!(AtomicPath::new(dir.path(), &[&input]).is_err());
    }

    #[test]
    fn an_existing_file_is_replaced_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("report.json");
        std::fs::write(&dest, "old").unwrap();
        assert!(matches!(AtomicPath::new(&dest, &[]), Err(BackendError::OutputExists { .. })));
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        let a = AtomicPath::file(&dest, &[], true).unwrap();
        std::fs::write(a.temp(), "new").unwrap();
        a.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
    }
}
