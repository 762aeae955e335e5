//! Atomic file writes, used by every layer that writes files (run
//! directories, fetched data sets). A reader, or a process killed at any
//! moment — even by SIGKILL — never leaves a half-written file under a real
//! name: on Linux the bytes go into an unnamed file (`O_TMPFILE`) that
//! vanishes with the process, which is linked under a hidden name only when
//! complete and then renamed over the target; elsewhere a hidden temporary
//! file is renamed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Suffix of the hidden names complete files have for an instant before
/// their rename; `.name.pcsim-tmp`.
pub const TEMP_SUFFIX: &str = ".pcsim-tmp";

fn hidden_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}{TEMP_SUFFIX}"))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically (see the module doc).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let hidden = hidden_name(path);
    let written = write_hidden(path, &hidden, bytes);
    let result = written.and_then(|()| std::fs::rename(&hidden, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&hidden);
    }
    result
}

/// The complete bytes under the hidden name.
fn write_hidden(path: &Path, hidden: &Path, bytes: &[u8]) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(result) = linux::write_unnamed(parent(path), hidden, bytes) {
        return result;
    }
    let mut f = std::fs::File::create(hidden)?;
    f.write_all(bytes)
}

#[cfg(target_os = "linux")]
mod linux {
    use rustix::fs::{AtFlags, CWD, Mode, OFlags};
    use std::io::{self, Write};
    use std::os::fd::AsRawFd;
    use std::path::Path;

    /// `None` when the file system has no unnamed files (or /proc is not
    /// mounted): the caller falls back to a named temporary file.
    pub fn write_unnamed(dir: &Path, hidden: &Path, bytes: &[u8]) -> Option<io::Result<()>> {
        let fd = rustix::fs::openat(
            CWD,
            dir,
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .ok()?;
        let mut file = std::fs::File::from(fd);
        if let Err(e) = file.write_all(bytes) {
            return Some(Err(e));
        }
        let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let link = || {
            rustix::fs::linkat(
                CWD,
                proc_path.as_str(),
                CWD,
                hidden,
                AtFlags::SYMLINK_FOLLOW,
            )
        };
        match link() {
            Ok(()) => Some(Ok(())),
            // A complete leftover of a process killed between link and rename.
            Err(rustix::io::Errno::EXIST) => {
                let _ = std::fs::remove_file(hidden);
                Some(link().map_err(io::Error::from))
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two, longer").unwrap();
        // A leftover hidden name from a killed writer is replaced, not an error.
        std::fs::write(hidden_name(&p), b"stale").unwrap();
        write_atomic(&p, b"three").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.csv"]);
    }
}
