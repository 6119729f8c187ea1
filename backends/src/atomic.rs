//! Outputs written beside their destination under a temporary name, then renamed into place.

use std::path::{Path, PathBuf};

use crate::{BackendError, Result};

/// A destination and the temporary path that stands for it until [`AtomicPath::commit`].
/// Dropped without commit, the temporary path is removed.
#[derive(Debug)]
pub struct AtomicPath {
    dest: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl AtomicPath {
    /// Prepares to write `dest` (a file or a folder). Refuses a destination among `inputs`.
    pub fn new(dest: &Path, inputs: &[&Path]) -> Result<AtomicPath> {
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let d = canon(dest);
        for input in inputs {
            let i = canon(input);
            if d == i || i.starts_with(&d) {
                return Err(BackendError::WouldOverwriteInput { path: dest.to_path_buf() });
            }
        }
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let temp = parent.join(format!(".{name}.prunec-tmp-{}", std::process::id()));
        Ok(AtomicPath { dest: dest.to_path_buf(), temp, committed: false })
    }

    /// The temporary path to write to.
    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// Renames the temporary path into place (replacing an older output there).
    pub fn commit(mut self) -> Result<PathBuf> {
        let io = |source, path: &Path| BackendError::Io { path: path.to_path_buf(), source };
        if self.dest.is_dir() {
            std::fs::remove_dir_all(&self.dest).map_err(|e| io(e, &self.dest))?;
        }
        std::fs::rename(&self.temp, &self.dest).map_err(|e| io(e, &self.dest))?;
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for AtomicPath {
    fn drop(&mut self) {
        if !self.committed {
            if self.temp.is_dir() {
                let _ = std::fs::remove_dir_all(&self.temp);
            } else {
                let _ = std::fs::remove_file(&self.temp);
            }
        }
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
}
