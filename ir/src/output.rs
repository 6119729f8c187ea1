//! Outputs written so that nothing is lost: every file or folder prunec writes is made under a
//! hidden temporary name beside its destination (`.NAME.prunec-tmp-PID`) and renamed into
//! place when complete.
//!
//! A destination is refused when it is an input of the run, holds one, lies inside an input
//! folder, or is (or holds) the current folder. An existing destination is replaced only when
//! asked (`--force`): a file by one atomic rename; a folder only when it is empty or an earlier
//! prunec output (one of its safetensors files carries [`MARKER_KEY`] in its metadata), by
//! renaming the old folder aside (`.NAME.prunec-old-PID`), renaming the new one in and deleting
//! the old one last, so that old and new are never both missing. A file never replaces a
//! folder, nor a folder a file.
//!
//! While they exist, temporary and set-aside paths are registered, so that a handler of
//! SIGINT/SIGTERM can undo unfinished outputs ([`remove_unfinished`]); those left by processes
//! that died without cleaning up are removed (a set-aside folder whose destination is missing is
//! put back) the next time prunec writes into the same folder.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The key, in the `__metadata__` of the safetensors files prunec writes, that marks a folder as
/// a prunec output (which `--force` may replace).
pub const MARKER_KEY: &str = "prunec_output";

/// The value of [`MARKER_KEY`]: `prunec` and its version.
pub fn marker_value() -> String {
    format!("prunec {}", env!("CARGO_PKG_VERSION"))
}

/// Infix of temporary paths: `.NAME.prunec-tmp-PID`.
const TEMP_INFIX: &str = ".prunec-tmp-";
/// Infix of a replaced folder set aside until its successor is in place: `.NAME.prunec-old-PID`.
const OLD_INFIX: &str = ".prunec-old-";
/// The largest safetensors header read when looking for the marker.
const MAX_HEADER: u64 = 100 << 20;

/// Why an output cannot be written where asked.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The destination is an input of the run, holds one, or lies inside an input folder.
    #[error("{path}: refusing to overwrite an input of this run ({reason}); an input is never overwritten, even with --force")]
    Input {
        /// The destination.
        path: PathBuf,
        /// Which input, and how.
        reason: String,
    },
    /// The destination exists and replacing it was not asked for.
    #[error("{path}: already exists; {reason}")]
    Exists {
        /// The destination.
        path: PathBuf,
        /// What to do.
        reason: &'static str,
    },
    /// The destination is never replaced (not a prunec output, a folder where a file goes, the
    /// current folder...).
    #[error("{path}: {reason}")]
    Refused {
        /// The destination.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file system failed.
    #[error("{path}: {source}")]
    Io {
        /// The path being written, renamed or removed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result of this module.
pub type Result<T, E = OutputError> = std::result::Result<T, E>;

/// What an output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// One file.
    File,
    /// A folder of files.
    Folder,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.to_path_buf(), source }
}

/// `path` made absolute (against the current folder): its longest existing prefix resolved
/// (symbolic links, `..`), the rest applied lexically.
pub fn resolve(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    };
    let parts: Vec<Component<'_>> = abs.components().collect();
    for k in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..k].iter().collect();
        if let Ok(mut resolved) = std::fs::canonicalize(&prefix) {
            for part in &parts[k..] {
                match part {
                    Component::ParentDir => {
                        resolved.pop();
                    }
                    Component::Normal(name) => resolved.push(name),
                    _ => {}
                }
            }
            return resolved;
        }
    }
    abs
}

/// Where `dest` is renamed to: its resolved folder joined with its own name (a symbolic link
/// at `dest` itself is not followed: renaming replaces the link). `None` for a root.
fn rename_target(dest: &Path) -> Option<PathBuf> {
    let resolved = resolve(dest);
    let abs = if dest.is_absolute() { dest.to_path_buf() } else { std::env::current_dir().ok()?.join(dest) };
    match (abs.parent(), abs.file_name()) {
        // `abs` ends in a plain name (Path drops a trailing `.`)
        (Some(parent), Some(name)) if !abs.ends_with("..") => Some(resolve(parent).join(name)),
        // `..` or a root: the resolved path itself
        _ => {
            resolved.file_name()?;
            Some(resolved)
        }
    }
}

/// Whether folder `dir` is an earlier prunec output: one of its `*.safetensors` files has
/// [`MARKER_KEY`] in its metadata.
pub fn is_prunec_output(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let path = e.path();
        path.extension().is_some_and(|x| x == "safetensors") && path.is_file() && has_marker(&path)
    })
}

/// Whether the safetensors file `path` carries [`MARKER_KEY`] in its `__metadata__`.
fn has_marker(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER {
        return false;
    }
    let mut header = Vec::new();
    if f.take(n).read_to_end(&mut header).is_err() {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&header)
        .ok()
        .and_then(|h| h.get("__metadata__")?.get(MARKER_KEY)?.as_str().map(|v| v.starts_with("prunec")))
        .unwrap_or(false)
}

/// Whether `dir` is a folder with nothing in it.
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut e| e.next().is_none())
}

/// Checks that an output of `kind` may be written at `dest` in a run reading `inputs` (files or
/// folders), replacing what is there only when `replace` (`--force`) allows it; returns the
/// path the output will be renamed to. See the module documentation for the rules.
pub fn check_destination(dest: &Path, kind: OutputKind, inputs: &[&Path], replace: bool) -> Result<PathBuf> {
    let refused = |reason: String| OutputError::Refused { path: dest.to_path_buf(), reason };
    let target = check_not_input(dest, inputs)?;
    let resolved = resolve(dest);
    if let Ok(cwd) = std::env::current_dir().and_then(std::fs::canonicalize) {
        if cwd.starts_with(&resolved) || cwd.starts_with(&target) {
            return Err(refused("it is the current folder or holds it; never replaced".into()));
        }
    }
    let meta = match std::fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(target),
        Err(e) => return Err(io(dest)(e)),
    };
    check_existing(dest, &target, &meta, kind, replace)?;
    Ok(target)
}

/// Checks that `dest` is not one of `inputs`, does not hold one and does not lie inside an
/// input folder; returns the path it would be renamed to.
pub fn check_not_input(dest: &Path, inputs: &[&Path]) -> Result<PathBuf> {
    let target = rename_target(dest)
        .ok_or_else(|| OutputError::Refused { path: dest.to_path_buf(), reason: "a root folder is never an output".into() })?;
    let resolved = resolve(dest);
    for input in inputs {
        let inp = resolve(input);
        let reason = if inp == resolved || inp == target {
            format!("it is the input {}", input.display())
        } else if inp.starts_with(&resolved) || inp.starts_with(&target) {
            format!("it holds the input {}", input.display())
        } else if inp.is_dir() && (resolved.starts_with(&inp) || target.starts_with(&inp)) {
            format!("it lies inside the input folder {}", input.display())
        } else {
            continue;
        };
        return Err(OutputError::Input { path: dest.to_path_buf(), reason });
    }
    Ok(target)
}

/// Whether what exists at `target` (`meta`) may be replaced by an output of `kind`.
fn check_existing(dest: &Path, target: &Path, meta: &std::fs::Metadata, kind: OutputKind, replace: bool) -> Result<()> {
    let refused = |reason: String| OutputError::Refused { path: dest.to_path_buf(), reason };
    match kind {
        OutputKind::File if meta.is_dir() => Err(refused("is a folder; a file output never replaces a folder".into())),
        OutputKind::File if !replace => {
            Err(OutputError::Exists { path: dest.to_path_buf(), reason: "give --force to replace it" })
        }
        OutputKind::File => Ok(()),
        OutputKind::Folder if meta.file_type().is_symlink() => {
            Err(refused("is a symbolic link; never replaced (write to a new folder)".into()))
        }
        OutputKind::Folder if !meta.is_dir() => Err(refused("exists and is not a folder; never replaced".into())),
        OutputKind::Folder if is_empty_dir(target) => Ok(()),
        OutputKind::Folder if !replace => {
            Err(OutputError::Exists { path: dest.to_path_buf(), reason: "the folder is not empty; give --force to replace it (an earlier prunec output only)" })
        }
        OutputKind::Folder if !is_prunec_output(target) => Err(refused(format!(
            "not replaced, even with --force: it is not an earlier prunec output (none of its safetensors files carries the `{MARKER_KEY}` marker); remove it yourself or write elsewhere"
        ))),
        OutputKind::Folder => Ok(()),
    }
}

/// A temporary path and, while a replaced folder is set aside, where it is.
#[derive(Debug)]
struct Unfinished {
    temp: PathBuf,
    dest: PathBuf,
    aside: Option<PathBuf>,
}

/// Unfinished outputs of this process, and whether they were removed for good (after a signal:
/// no new ones are registered).
static UNFINISHED: Mutex<(Vec<Unfinished>, bool)> = Mutex::new((Vec::new(), false));

fn unfinished() -> MutexGuard<'static, (Vec<Unfinished>, bool)> {
    UNFINISHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn remove_path(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            // a writer may still be adding files: try again
            for _ in 0..3 {
                if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
                    break;
                }
            }
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Undoes every unfinished output of this process: removes temporary paths, and puts back a
/// replaced folder set aside whose successor is not in place yet (else removes it). For a
/// handler of SIGINT/SIGTERM, just before the process exits; afterwards no output can start.
pub fn remove_unfinished() {
    let mut guard = unfinished();
    for u in guard.0.drain(..) {
        remove_path(&u.temp);
        if let Some(aside) = &u.aside {
            if std::fs::symlink_metadata(&u.dest).is_err() {
                let _ = std::fs::rename(aside, &u.dest);
            } else {
                remove_path(aside);
            }
        }
    }
    guard.1 = true;
}

/// Whether [`remove_unfinished`] ran: outputs of this process were removed under it, so a
/// failure that follows is the interruption's, not the input's.
pub fn interrupted() -> bool {
    unfinished().1
}

/// Whether process `pid` is alive (`None`: cannot tell on this system).
fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// The destination name and process id of a temporary (`.NAME.prunec-tmp-PID`) or set-aside
/// (`.NAME.prunec-old-PID`) entry name, and whether it is set aside.
fn parse_leftover(name: &str) -> Option<(&str, u32, bool)> {
    let rest = name.strip_prefix('.')?;
    for (infix, old) in [(TEMP_INFIX, false), (OLD_INFIX, true)] {
        if let Some(at) = rest.rfind(infix) {
            let pid = rest[at + infix.len()..].parse().ok()?;
            return Some((&rest[..at], pid, old));
        }
    }
    None
}

/// Removes what processes that are gone left in `dir`: their temporary paths, and replaced
/// folders they had set aside (put back where their destination is missing). Returns the paths
/// removed or restored.
pub fn remove_stale(dir: &Path) -> Vec<PathBuf> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return done };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((dest, pid, old)) = name.to_str().and_then(parse_leftover) else { continue };
        if pid == std::process::id() || process_alive(pid) != Some(false) || dest.is_empty() {
            continue;
        }
        let path = entry.path();
        let dest = dir.join(dest);
        if old && std::fs::symlink_metadata(&dest).is_err() {
            if std::fs::rename(&path, &dest).is_ok() {
                done.push(dest);
            }
            continue;
        }
        remove_path(&path);
        done.push(path);
    }
    done
}

/// Writes `bytes` as the file `dest` through a temporary path renamed into place (the rules of
/// [`AtomicPath::file`]); returns `dest`.
pub fn write_file(dest: &Path, bytes: &[u8], inputs: &[&Path], replace: bool) -> Result<PathBuf> {
    let out = AtomicPath::file(dest, inputs, replace)?;
    std::fs::write(out.temp(), bytes).map_err(io(dest))?;
    out.commit()
}

/// A destination and the temporary path that stands for it until [`AtomicPath::commit`].
/// Dropped without commit, the temporary path is removed.
#[derive(Debug)]
pub struct AtomicPath {
    /// The destination as given (for messages).
    shown: PathBuf,
    /// The path renamed to.
    dest: PathBuf,
    temp: PathBuf,
    kind: OutputKind,
    replace: bool,
    committed: bool,
}

impl AtomicPath {
    /// Prepares to write the file `dest` (see [`check_destination`]).
    pub fn file(dest: &Path, inputs: &[&Path], replace: bool) -> Result<AtomicPath> {
        AtomicPath::create(dest, OutputKind::File, inputs, replace)
    }

    /// Prepares to write the folder `dest` (see [`check_destination`]). The caller creates the
    /// folder [`AtomicPath::temp`] and writes into it.
    pub fn folder(dest: &Path, inputs: &[&Path], replace: bool) -> Result<AtomicPath> {
        AtomicPath::create(dest, OutputKind::Folder, inputs, replace)
    }

    /// Prepares to write an output of `kind` at `dest`.
    pub fn create(dest: &Path, kind: OutputKind, inputs: &[&Path], replace: bool) -> Result<AtomicPath> {
        // what a killed run left first (a set-aside folder may come back), then the checks
        if let Some(parent) = rename_target(dest).as_deref().and_then(Path::parent) {
            remove_stale(parent);
        }
        let target = check_destination(dest, kind, inputs, replace)?;
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(OutputError::Refused { path: dest.to_path_buf(), reason: "a root folder is never an output".into() });
        };
        let temp = parent.join(format!(".{}{TEMP_INFIX}{}", name.to_string_lossy(), std::process::id()));
        {
            let mut guard = unfinished();
            if guard.1 {
                return Err(OutputError::Refused { path: dest.to_path_buf(), reason: "interrupted".into() });
            }
            guard.0.push(Unfinished { temp: temp.clone(), dest: target.clone(), aside: None });
        }
        // an earlier output of this process for the same destination, abandoned
        remove_path(&temp);
        Ok(AtomicPath { shown: dest.to_path_buf(), dest: target, temp, kind, replace, committed: false })
    }

    /// The temporary path to write to.
    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// The path the output is renamed to.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the temporary path into place, replacing what the destination holds when that
    /// was allowed (checked again now: the destination may have changed since). Returns the
    /// destination as given.
    pub fn commit(mut self) -> Result<PathBuf> {
        // what is there now may differ from what was checked when writing started
        let target = check_destination(&self.shown, self.kind, &[], self.replace)?;
        if target != self.dest {
            return Err(OutputError::Refused { path: self.shown.clone(), reason: "the destination moved while it was written".into() });
        }
        let mut guard = unfinished();
        let entry = guard.0.iter().position(|u| u.temp == self.temp);
        let occupied = self.kind == OutputKind::Folder && self.dest.is_dir() && !is_empty_dir(&self.dest);
        if !occupied {
            // a file replaces a file atomically; a folder goes where nothing, or an empty folder, is
            std::fs::rename(&self.temp, &self.dest).map_err(io(&self.shown))?;
        } else {
            let name = self.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let aside = self.dest.with_file_name(format!(".{name}{OLD_INFIX}{}", std::process::id()));
            remove_path(&aside);
            std::fs::rename(&self.dest, &aside).map_err(io(&self.shown))?;
            if let Some(k) = entry {
                guard.0[k].aside = Some(aside.clone());
            }
            if let Err(e) = std::fs::rename(&self.temp, &self.dest) {
                let _ = std::fs::rename(&aside, &self.dest);
                if let Some(k) = entry {
                    guard.0[k].aside = None;
                }
                return Err(io(&self.shown)(e));
            }
            // the new folder is in place: the old one goes last (a signal now removes it too)
            drop(guard);
            remove_path(&aside);
            guard = unfinished();
        }
        guard.0.retain(|u| u.temp != self.temp);
        self.committed = true;
        Ok(self.shown.clone())
    }
}

impl Drop for AtomicPath {
    fn drop(&mut self) {
        let mut guard = unfinished();
        guard.0.retain(|u| u.temp != self.temp);
        drop(guard);
        if !self.committed {
            remove_path(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    /// A folder holding a safetensors file whose metadata has the marker (or not).
    fn output_folder(dir: &Path, marked: bool) {
        std::fs::create_dir_all(dir).unwrap();
        let meta = if marked { format!(r#"{{"format":"pt","{MARKER_KEY}":"{}"}}"#, marker_value()) } else { r#"{"format":"pt"}"#.into() };
        let header = format!(r#"{{"__metadata__":{meta}}}"#);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    }

    #[test]
    fn leftover_names_are_parsed() {
        assert_eq!(parse_leftover(".out.prunec-tmp-12"), Some(("out", 12, false)));
        assert_eq!(parse_leftover(".a.b.prunec-old-7"), Some(("a.b", 7, true)));
        assert_eq!(parse_leftover("out.prunec-tmp-12"), None);
        assert_eq!(parse_leftover(".out.prunec-tmp-x"), None);
    }

    #[test]
    fn folders_are_replaced_only_when_they_are_prunec_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        let theirs = dir.path().join("theirs");
        output_folder(&ours, true);
        output_folder(&theirs, false);
        assert!(is_prunec_output(&ours) && !is_prunec_output(&theirs));
        assert!(matches!(check_destination(&ours, OutputKind::Folder, &[], false), Err(OutputError::Exists { .. })));
        assert!(check_destination(&ours, OutputKind::Folder, &[], true).is_ok());
        let e = check_destination(&theirs, OutputKind::Folder, &[], true).unwrap_err();
        assert!(e.to_string().contains("not an earlier prunec output"), "{e}");
        // an empty folder is taken as it is; a file never replaces a folder, nor a folder a file
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(check_destination(&empty, OutputKind::Folder, &[], false).is_ok());
        assert!(check_destination(&empty, OutputKind::File, &[], true).is_err());
        let file = dir.path().join("f.json");
        std::fs::write(&file, "{}").unwrap();
        assert!(check_destination(&file, OutputKind::Folder, &[], true).is_err());
        assert!(matches!(check_destination(&file, OutputKind::File, &[], false), Err(OutputError::Exists { .. })));
        assert!(check_destination(&file, OutputKind::File, &[], true).is_ok());
    }

    #[test]
    fn inputs_are_never_destinations() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        output_folder(&model, true);
        let weights = model.join("model.safetensors");
        for (dest, needle) in [
            (model.clone(), "it is the input"),
            (dir.path().to_path_buf(), "it holds the input"),
            (model.join("config.json"), "inside the input folder"),
            (model.join("sub/../model.safetensors"), "inside the input folder"),
        ] {
            let e = check_destination(&dest, OutputKind::File, &[&model], true).unwrap_err();
            assert!(matches!(&e, OutputError::Input { reason, .. } if reason.contains(needle)), "{dest:?}: {e}");
        }
        for dest in [weights.clone(), dir.path().join("no/such/../../model/./model.safetensors")] {
            let e = check_destination(&dest, OutputKind::File, &[&weights], true).unwrap_err();
            assert!(e.to_string().contains("never overwritten") && e.to_string().contains("it is the input"), "{e}");
        }
    }

    #[test]
    fn replacing_a_folder_keeps_one_of_old_and_new() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        output_folder(&out, true);
        std::fs::write(out.join("old.txt"), "old").unwrap();
        let a = AtomicPath::folder(&out, &[], true).unwrap();
        output_folder(a.temp(), true);
        std::fs::write(a.temp().join("new.txt"), "new").unwrap();
        a.commit().unwrap();
        assert_eq!(names(&out), ["model.safetensors", "new.txt"]);
        assert_eq!(names(dir.path()), ["out"], "no temporary or set-aside folder left");
    }

    #[test]
    fn uncommitted_outputs_and_leftovers_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.json");
        {
            let a = AtomicPath::file(&dest, &[], false).unwrap();
            std::fs::write(a.temp(), "half").unwrap();
        }
        assert!(names(dir.path()).is_empty());
        if process_alive(1) != Some(true) {
            return; // no /proc: leftovers cannot be told from live outputs
        }
        // a process id that no process has (above the kernel's limit)
        let dead = 4_194_304 + 17;
        std::fs::create_dir(dir.path().join(format!(".out{TEMP_INFIX}{dead}"))).unwrap();
        std::fs::write(dir.path().join(format!(".x.json{TEMP_INFIX}{dead}")), "half").unwrap();
        // a replaced folder set aside, its successor never renamed in: put back
        output_folder(&dir.path().join(format!(".kept{OLD_INFIX}{dead}")), true);
        // a live process's temporary path stays
        let live = dir.path().join(format!(".y{TEMP_INFIX}1"));
        std::fs::write(&live, "busy").unwrap();
        let removed = remove_stale(dir.path());
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert_eq!(names(dir.path()), [format!(".y{TEMP_INFIX}1"), "kept".to_string()]);
        assert!(is_prunec_output(&dir.path().join("kept")));
    }
}
