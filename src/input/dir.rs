//! Directory inputs: listing every regular file below a directory in path
//! order, and reading one of them whole as a record.
//!
//! A run lists a directory several times (for its fingerprint, for each
//! pass that reads it, and to check it did not change before the commit),
//! so what a listing skips is said once per process ([`warn_once`]), not
//! once per listing.

use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::stream::{decode, kind_of, Compression};

/// One thing found below a directory input.
#[derive(Debug)]
pub(crate) enum Entry {
    /// A regular file (or a symbolic link to one).
    File {
        /// Where to open it.
        path: PathBuf,
        /// `<directory>/<relative path>`.
        origin: Arc<str>,
        /// Its size as stored.
        size: u64,
    },
    /// Something that could not be listed or inspected: a rejected record.
    Unreadable {
        /// `<directory>/<relative path>`.
        origin: Arc<str>,
        /// Why.
        reason: String,
    },
}

impl Entry {
    /// `<directory>/<relative path>`.
    pub fn origin(&self) -> &Arc<str> {
        match self {
            Entry::File { origin, .. } | Entry::Unreadable { origin, .. } => origin,
        }
    }

    /// The bytes this entry stands for in the input's total.
    pub fn size(&self) -> u64 {
        match self {
            Entry::File { size, .. } => *size,
            Entry::Unreadable { .. } => 0,
        }
    }
}

/// Directories left out of every listing: the run's output folder, so that
/// a run never reads its own outputs or their temporaries as input. They
/// are known by device and inode, so that any path to them (`.`, `..`,
/// through a symbolic link) is recognized, as comparing canonical paths
/// would, without canonicalizing each directory listed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LeftOut(Vec<(u64, u64)>);

impl LeftOut {
    /// The directories at `paths` (those that do not exist yet cannot be
    /// in a listing, and are ignored).
    pub fn of(paths: &[PathBuf]) -> LeftOut {
        LeftOut(
            paths
                .iter()
                .filter_map(|p| fs::metadata(p).ok())
                .filter(Metadata::is_dir)
                .map(|m| (m.dev(), m.ino()))
                .collect(),
        )
    }

    fn contains(&self, meta: &Metadata) -> bool {
        meta.is_dir() && self.0.contains(&(meta.dev(), meta.ino()))
    }
}

/// What identifies the contents of `dir` for a run's fingerprint: the
/// number of files below it and a digest (FNV-1a) of each one's path, size
/// and modification time. A file edited in place changes this even when
/// the directory's own size and time stay the same.
pub(crate) fn identity(dir: &Path, left_out: &LeftOut) -> String {
    let entries = match list(dir, left_out) {
        Ok(entries) => entries,
        Err(e) => return format!("unlisted: {e}"),
    };
    let mut digest = 0xCBF2_9CE4_8422_2325u64;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            digest = (digest ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
    };
    for entry in &entries {
        match entry {
            Entry::File { path, origin, size } => {
                let modified = fs::metadata(path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                mix(origin.as_bytes());
                mix(&size.to_le_bytes());
                mix(&modified.to_le_bytes());
            }
            Entry::Unreadable { origin, reason } => {
                mix(origin.as_bytes());
                mix(reason.as_bytes());
            }
        }
    }
    format!("{} files, digest {digest:016x}", entries.len())
}

/// Lists every regular file below `dir`, recursively, sorted by path.
/// Symbolic links to directories are not followed, and the directories
/// `left_out` are left out (if `dir` is one, nothing is listed). Fails only
/// when `dir` itself cannot be listed; problems below it become
/// [`Entry::Unreadable`].
pub(crate) fn list(dir: &Path, left_out: &LeftOut) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    if left_out.contains(&fs::metadata(dir)?) {
        warn_once(dir, "the output folder, not read as input");
        return Ok(out);
    }
    // Relative paths still to visit, the next one last.
    let mut stack = sorted_children(dir, Path::new(""))?;
    stack.reverse();
    while let Some(rel) = stack.pop() {
        let path = dir.join(&rel);
        let origin = || -> Arc<str> { Arc::from(path.display().to_string()) };
        let link = match fs::symlink_metadata(&path) {
            Ok(meta) => meta.file_type().is_symlink(),
            Err(e) => {
                out.push(unreadable(origin(), &e));
                continue;
            }
        };
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                out.push(unreadable(origin(), &e));
                continue;
            }
        };
        if meta.is_dir() {
            if link {
                warn_once(&path, "symbolic link to a directory, not followed");
                continue;
            }
            if left_out.contains(&meta) {
                log::debug!("{}: the output folder, not read as input", origin());
                continue;
            }
            match sorted_children(dir, &rel) {
                Ok(children) => stack.extend(children.into_iter().rev()),
                Err(e) => out.push(unreadable(origin(), &e)),
            }
        } else if meta.is_file() {
            let origin = origin();
            out.push(Entry::File {
                path,
                origin,
                size: meta.len(),
            });
        } else {
            warn_once(&path, "not a regular file, skipped");
        }
    }
    Ok(out)
}

/// Whether an entry of `dir` is hidden: a component of its path below
/// `dir` starts with a dot (`.git/...`, `.DS_Store`, Spark's `.crc` files).
pub(crate) fn is_hidden(dir: &Path, entry: &Entry) -> bool {
    let origin = Path::new(&**entry.origin());
    let rel = origin.strip_prefix(dir).unwrap_or(origin);
    rel.components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
}

/// Whether a directory whose listing is `entries` is read as records when
/// `--dir-as` does not say: it has at least one file that is not hidden,
/// and every such file is a record file by its name (JSON Lines, Parquet
/// or WET, optionally `.gz` or `.zst`). Hidden files and empty folders do
/// not count either way.
pub(crate) fn holds_records(dir: &Path, entries: &[Entry]) -> bool {
    let mut visible = entries.iter().filter(|e| !is_hidden(dir, e)).peekable();
    visible.peek().is_some() && visible.all(|e| kind_of(Path::new(&**e.origin())).is_records())
}

/// Logs `what` about `path` as a warning, unless it was logged already by
/// this process.
pub(crate) fn warn_once(path: &Path, what: &str) {
    say_once(log::Level::Warn, path, what);
}

/// Logs `what` about `path` at info level, unless it was logged already by
/// this process.
pub(crate) fn info_once(path: &Path, what: &str) {
    say_once(log::Level::Info, path, what);
}

fn say_once(level: log::Level, path: &Path, what: &str) {
    static SAID: OnceLock<Mutex<HashSet<(PathBuf, String)>>> = OnceLock::new();
    let mut said = SAID
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if said.insert((path.to_owned(), what.to_owned())) {
        log::log!(level, "{}: {what}", path.display());
    }
}

/// The entries of `dir/rel`, as paths relative to `dir`, sorted.
fn sorted_children(dir: &Path, rel: &Path) -> io::Result<Vec<PathBuf>> {
    let mut names = fs::read_dir(dir.join(rel))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort_unstable();
    Ok(names.into_iter().map(|name| rel.join(name)).collect())
}

fn unreadable(origin: Arc<str>, e: &io::Error) -> Entry {
    Entry::Unreadable {
        origin,
        reason: format!("cannot read: {e}"),
    }
}

/// Reads the file at `path` whole into `buf` (cleared first), decompressing
/// `.gz` and `.zst` files. Never reads more than `max + 1` bytes of content;
/// a larger file, an uncompressed file that ends before the size it had when
/// opened and is now smaller, or any IO or decompression error, is the
/// rejection reason.
pub(crate) fn read_file(path: &Path, max: usize, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.clear();
    let compression = kind_of(path).compression;
    let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let stored = file.metadata().map(|m| m.len()).unwrap_or(0);
    if compression == Compression::None && stored > max as u64 {
        return Err(too_large(&format!("{stored} bytes"), max));
    }
    let limit = (max as u64).saturating_add(1);
    if compression == Compression::None {
        buf.reserve(stored.min(limit) as usize);
    }
    file.try_clone()
        .and_then(|reader| decode(reader, compression))
        .and_then(|stream| stream.take(limit).read_to_end(buf))
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() > max {
        let len = buf.len();
        buf.clear();
        return Err(too_large(&format!("at least {len} bytes"), max));
    }
    let now = || file.metadata().map_or(0, |m| m.len());
    if compression == Compression::None && (buf.len() as u64) < stored && now() < stored {
        let len = buf.len();
        buf.clear();
        return Err(format!(
            "file shrank while being read: {stored} bytes at open, ended after {len}"
        ));
    }
    Ok(())
}

fn too_large(size: &str, max: usize) -> String {
    format!("file of {size} exceeds --max-record-bytes {max}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::testutil::{gz, write, zst};

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                Entry::File { origin, size, .. } => format!("{origin} {size}"),
                Entry::Unreadable { origin, reason } => format!("{origin} !{reason}"),
            })
            .collect()
    }

    #[test]
    fn files_are_listed_recursively_in_path_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("corpus");
        write(&root, "b.txt", b"bb");
        write(&root, "a/z.txt", b"z");
        write(&root, "a/b/c.txt", b"ccc");
        write(&root, "a.txt", b"a");
        write(&root, ".hidden", b"");
        fs::create_dir_all(root.join("empty")).unwrap();
        let got = names(&list(&root, &LeftOut::default()).unwrap());
        let r = root.display();
        assert_eq!(
            got,
            [
                format!("{r}/.hidden 0"),
                format!("{r}/a/b/c.txt 3"),
                format!("{r}/a/z.txt 1"),
                format!("{r}/a.txt 1"),
                format!("{r}/b.txt 2"),
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn directory_links_are_not_followed_and_file_links_are() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        write(&root, "sub/f.txt", b"f");
        std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/f.txt"), root.join("g.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("missing"), root.join("h.txt")).unwrap();
        let got = names(&list(&root, &LeftOut::default()).unwrap());
        let r = root.display();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], format!("{r}/g.txt 1"));
        assert!(got[1].starts_with(&format!("{r}/h.txt !cannot read: ")));
        assert_eq!(got[2], format!("{r}/sub/f.txt 1"));
    }

    #[cfg(unix)]
    #[test]
    fn the_left_out_folders_are_known_by_any_path_to_them() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("corpus");
        write(&root, "a.txt", b"a");
        write(&root, "out/kept.jsonl", b"{}");
        write(&root, "deep/er/out2/.x.tmp", b"t");
        write(&root, "deep/er/keep.txt", b"k");
        // Named through `..`, and through a symbolic link.
        std::os::unix::fs::symlink(root.join("deep"), tmp.path().join("link")).unwrap();
        let left_out = LeftOut::of(&[
            root.join("deep/../out"),
            tmp.path().join("link/er/out2"),
            tmp.path().join("not yet made"),
        ]);
        let got = names(&list(&root, &left_out).unwrap());
        let r = root.display();
        assert_eq!(
            got,
            [format!("{r}/a.txt 1"), format!("{r}/deep/er/keep.txt 1")]
        );
        // The listed folder itself left out: nothing is listed.
        assert!(list(&root, &LeftOut::of(std::slice::from_ref(&root)))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(list(&tmp.path().join("nope"), &LeftOut::default()).is_err());
    }

    #[test]
    fn files_are_read_whole_decompressed_and_limited() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = write(tmp.path(), "a.txt", b"hello");
        let gzip = write(tmp.path(), "a.txt.gz", &gz(b"hello"));
        let zstd = write(tmp.path(), "a.txt.zst", &zst(b"hello"));
        let mut buf = Vec::new();
        for path in [&plain, &gzip, &zstd] {
            read_file(path, 5, &mut buf).unwrap();
            assert_eq!(buf, b"hello");
            assert_eq!(
                read_file(path, 4, &mut buf).unwrap_err(),
                if path == &plain {
                    "file of 5 bytes exceeds --max-record-bytes 4"
                } else {
                    "file of at least 5 bytes exceeds --max-record-bytes 4"
                }
            );
        }
        let broken = write(tmp.path(), "b.gz", &gz(b"hello")[..10]);
        let err = read_file(&broken, 100, &mut buf).unwrap_err();
        assert!(err.starts_with("cannot read: "), "{err}");
        let err = read_file(&tmp.path().join("gone"), 100, &mut buf).unwrap_err();
        assert!(err.starts_with("cannot read: "), "{err}");
    }
}
