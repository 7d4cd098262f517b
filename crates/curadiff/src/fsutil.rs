//! File helpers: atomic writes, so that a kill at any moment never leaves a half-written file
//! where a complete one is expected; and the cache folder for files curadiff derives or
//! installs once (the metric's classifier, the MNIST digits of the setup script).

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The cache folder:
/// - `$CURADIFF_CACHE` when it is set;
/// - else `$XDG_CACHE_HOME/curadiff` when `XDG_CACHE_HOME` is an absolute path;
/// - else `$HOME/.cache/curadiff`;
/// - else (no home) `curadiff` in the system temporary folder.
///
/// Empty variables count as unset. `scripts/setup-data.sh` follows the same rules.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(
        std::env::var_os("CURADIFF_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`cache_dir`] from the values of `CURADIFF_CACHE`, `XDG_CACHE_HOME` and `HOME`.
fn cache_dir_from(
    curadiff_cache: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    let set = |v: Option<OsString>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(curadiff_cache) {
        return dir;
    }
    if let Some(dir) = set(xdg_cache_home).filter(|p| p.is_absolute()) {
        return dir.join("curadiff");
    }
    if let Some(home) = set(home) {
        return home.join(".cache").join("curadiff");
    }
    std::env::temp_dir().join("curadiff")
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    let tmp = path.with_file_name(name);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// Appends `lines` (complete lines, each ending in a newline) to the record file `path` with
/// one write, then syncs, creating the file. A torn last line left by a kill is closed first,
/// so the new lines start on a line of their own (readers skip the torn one).
pub fn append_lines(path: &Path, lines: &str) -> Result<()> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut text = String::with_capacity(lines.len() + 1);
    if f.metadata().map_err(io)?.len() > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::End(-1)).map_err(io)?;
        f.read_exact(&mut last).map_err(io)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(lines);
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_data().map_err(io)
}

/// Creates a folder and its parents, naming it in the error.
pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_rules() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            cache_dir_from(os("/c"), os("/x"), os("/h")),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache_dir_from(os(""), os("/x"), os("/h")),
            PathBuf::from("/x/curadiff")
        );
        assert_eq!(
            cache_dir_from(None, os("relative"), os("/h")),
            PathBuf::from("/h/.cache/curadiff")
        );
        assert_eq!(
            cache_dir_from(None, None, None),
            std::env::temp_dir().join("curadiff")
        );
    }

    #[test]
    fn appended_lines_start_a_fresh_line_after_a_torn_one() {
        let p = std::env::temp_dir().join(format!("curadiff-append-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        append_lines(&p, "a\n").unwrap();
        append_lines(&p, "b\nc\n").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"torn")
            .unwrap();
        append_lines(&p, "d\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "a\nb\nc\n{\"torn\nd\n"
        );
        std::fs::remove_file(p).ok();
    }
}
