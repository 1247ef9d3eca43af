//! The archive on disk: safe names from untrusted input, and durable atomic placement
//! (write a temp file on the same filesystem, fsync it, rename, fsync the directory).

use std::io::{ErrorKind, Write};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use thiserror::Error;

/// Temp files live here, inside the archive's filesystem, so the final rename is atomic.
/// The file server never serves anything under it.
pub const TEMP_DIR: &str = ".r2-sync-tmp";

/// Longest file name we produce, in bytes (most filesystems allow 255; leave room for
/// the sidecar's `.json` and collision suffixes).
const MAX_NAME_BYTES: usize = 180;
const MAX_EXT_BYTES: usize = 16;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("archive: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("archive: no free name for {0} after many attempts")]
    NoFreeName(String),
    /// The sidecar failed and the file could not be taken back out either.
    #[error("{cause}; the file could not be taken back out of the archive ({undo}): it stays at {path} without its sidecar until the next attempt")]
    PlacedWithoutSidecar {
        path: String,
        #[source]
        cause: Box<ArchiveError>,
        undo: std::io::Error,
    },
}

impl ArchiveError {
    pub fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
        move |source| ArchiveError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }

    /// The disk is full or over quota.
    pub fn is_disk_full(&self) -> bool {
        match self {
            ArchiveError::Io { source, .. } => is_disk_full(source),
            ArchiveError::PlacedWithoutSidecar { cause, .. } => cause.is_disk_full(),
            ArchiveError::NoFreeName(_) => false,
        }
    }
}

/// ENOSPC (28) or EDQUOT (122): the filesystem has no room for us.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28 | 122))
}

/// Characters a file name must not carry: controls, and the invisible ones that make a name
/// read as another (format characters such as U+202E RIGHT-TO-LEFT OVERRIDE, U+200B, U+FEFF;
/// line and paragraph separators; private use).
pub fn is_unsafe_in_name(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator | G::PrivateUse | G::Surrogate
    ) || "<>:\"|?*".contains(c)
}

/// A file name safe on any filesystem and SMB share: the last path component of the
/// untrusted name, without control, invisible, separator or reserved characters, without
/// leading dots, and at most [`MAX_NAME_BYTES`] long (the extension kept).
pub fn safe_file_name(original: &str, fallback_key: &str) -> String {
    let pick = |raw: &str| -> String {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
        let cleaned: String = last
            .chars()
            .map(|c| if is_unsafe_in_name(c) { '_' } else { c })
            .collect();
        cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace()).to_owned()
    };
    let mut name = pick(original);
    if name.is_empty() {
        name = pick(fallback_key);
    }
    if name.is_empty() {
        name = "file".to_owned();
    }
    truncate_keeping_extension(&name, MAX_NAME_BYTES)
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= MAX_EXT_BYTES => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    format!("{}{ext}", truncate_at_char(stem, max - ext.len()))
}

/// `<yyyy>/<mm>/<media_id>-<safe name>`, relative to the archive, from the approval date.
pub fn relative_path(media_id: i64, approved: DateTime<Utc>, original: &str, key: &str) -> PathBuf {
    let name = format!("{media_id}-{}", safe_file_name(original, key));
    PathBuf::from(format!("{:04}", approved.year()))
        .join(format!("{:02}", approved.month()))
        .join(name)
}

/// `name.ext` → `name-<n>.ext`, for collisions.
pub fn with_suffix(rel: &Path, n: u32) -> PathBuf {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    rel.with_file_name(format!("{stem}-{n}{ext}"))
}

/// The sidecar's path: the file's path plus `.json`.
pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// True when `rel` is a plain relative path that stays inside its root.
pub fn is_contained(rel: &Path) -> bool {
    rel.components().all(|c| matches!(c, Component::Normal(_))) && rel.components().next().is_some()
}

fn fsync_dir(dir: &Path) -> Result<(), ArchiveError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ArchiveError::io("fsync directory", dir))
}

/// Creates `dir` and its parents, fsyncing each parent that gained an entry.
fn create_dirs_durably(dir: &Path) -> Result<(), ArchiveError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        // Made by a placement racing this one, which may not have fsynced the parent yet:
        // fsync it here too, so this file is not recorded on a directory a power cut loses.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ArchiveError::io("create directory", dir)(e)),
    }
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Neither the file `root/rel` nor its sidecar exists.
pub fn is_free(root: &Path, rel: &Path) -> bool {
    root.join(rel).symlink_metadata().is_err() && root.join(sidecar_path(rel)).symlink_metadata().is_err()
}

/// The first free path under `root` starting from `rel` (`rel`, then `-2`, `-3`…): neither
/// the file nor its sidecar may exist.
pub fn free_name(root: &Path, rel: &Path) -> Result<PathBuf, ArchiveError> {
    first_name(rel, |candidate| is_free(root, candidate))
}

/// Like [`free_name`], but a path whose sidecar names `media_id` may be taken too: it may
/// hold a placement of this media the ledger never recorded (a crash before the next ledger
/// write); the placement keeps it only if it is these very bytes ([`file_matches`]).
pub fn reusable_name(root: &Path, rel: &Path, media_id: i64) -> Result<PathBuf, ArchiveError> {
    first_name(rel, |candidate| {
        is_free(root, candidate) || sidecar_identity(root, candidate).is_some_and(|id| id.media_id == media_id)
    })
}

fn first_name(rel: &Path, usable: impl Fn(&Path) -> bool) -> Result<PathBuf, ArchiveError> {
    assert!(is_contained(rel), "archive paths are built by relative_path");
    let mut chosen = rel.to_path_buf();
    let mut n = 1;
    while !usable(&chosen) {
        n += 1;
        if n > 10_000 {
            return Err(ArchiveError::NoFreeName(rel.display().to_string()));
        }
        chosen = with_suffix(rel, n);
    }
    Ok(chosen)
}

/// Whose file a sidecar says the file beside it is.
#[derive(serde::Deserialize)]
struct Identity {
    media_id: i64,
}

/// Sidecars are small; anything bigger is not one of ours.
const MAX_SIDECAR_BYTES: u64 = 1 << 20;

fn sidecar_identity(root: &Path, rel: &Path) -> Option<Identity> {
    let path = root.join(sidecar_path(rel));
    let meta = path.symlink_metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_SIDECAR_BYTES {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// `file` is a regular file (not a symlink) of `size` bytes hashing to `sha256`.
pub fn file_matches(file: &Path, size: u64, sha256: &str) -> bool {
    if !file.symlink_metadata().is_ok_and(|m| m.is_file() && m.len() == size) {
        return false;
    }
    sha256_file(file, None).is_ok_and(|(copied, sha)| copied == size && sha.eq_ignore_ascii_case(sha256))
}

/// Size and SHA-256 (hex) of `file`, read at most `max_rate` bytes per second when given.
/// Blocking.
pub fn sha256_file(file: &Path, max_rate: Option<u64>) -> std::io::Result<(u64, String)> {
    use sha2::Digest;
    use std::io::Read;
    use std::time::{Duration, Instant};
    let mut f = std::fs::File::open(file)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (started, mut total) = (Instant::now(), 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((total, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        if let Some(rate) = max_rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(total as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
}

/// Writes `bytes` to `dest` atomically and durably (temp file, fsync, rename, fsync dir).
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let dir = dest.parent().expect("destination has a parent");
    create_dirs_durably(dir)?;
    let tmp = write_temp_durably(dest, bytes)?;
    rename_or_discard(&tmp, dest)?;
    fsync_dir(dir)
}

/// Completes a placement found after a crash: the file made durable (it may have been
/// renamed before its bytes were flushed), its sidecar (re)written durably beside it.
pub fn settle_placed(file: &Path, sidecar: &[u8]) -> Result<(), ArchiveError> {
    std::fs::File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(ArchiveError::io("fsync", file))?;
    write_atomic(&sidecar_path(file), sidecar)
}

/// Who makes a placement durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The placement fsyncs what it wrote and renamed.
    Fsync,
    /// The caller flushes the whole filesystem afterwards (see `flush`).
    Caller,
}

/// Renames a complete, durable temp file to `root/rel` (which must be free) and writes its
/// sidecar beside it. With [`Durability::Fsync`] the sidecar's temp file is fsynced first,
/// then both are renamed into place, so one fsync of the directory makes both durable. With
/// [`Durability::Caller`] nothing is durable before the caller's flush anyway, so the sidecar
/// is written in place, after the file: a crash before the flush may leave the file without
/// a whole sidecar, never a sidecar without its file, and the placement after it rewrites
/// the sidecar ([`settle_placed`]).
pub fn move_into(
    root: &Path,
    temp: &Path,
    rel: &Path,
    sidecar: &[u8],
    durability: Durability,
) -> Result<(), ArchiveError> {
    assert!(is_contained(rel), "archive paths are built by relative_path");
    let dest = root.join(rel);
    let dir = dest.parent().expect("archive paths have a parent");
    let sidecar_dest = sidecar_path(&dest);
    match durability {
        Durability::Fsync => {
            create_dirs_durably(dir)?;
            let sidecar_tmp = write_temp_durably(&sidecar_dest, sidecar)?;
            if let Err(e) = rename_new(temp, &dest) {
                remove_leftover(&sidecar_tmp);
                return Err(e);
            }
            rename_or_discard(&sidecar_tmp, &sidecar_dest).map_err(|e| undo_placement(e, &dest, temp))?;
            fsync_dir(dir)
        }
        Durability::Caller => {
            // The month's directory exists for all but its first file: made when missing.
            // Not looked at after the failed rename: another placement may have made it in
            // between, and the rename must then simply run again.
            match rename_new(temp, &dest) {
                Err(ArchiveError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                    create_dirs_durably(dir)?;
                    rename_new(temp, &dest)?;
                }
                placed => placed?,
            }
            write_new(&sidecar_dest, sidecar).map_err(|e| undo_placement(e, &dest, temp))
        }
    }
}

/// A placement whose sidecar could not be written (a full disk, most often) takes its file
/// back out of the archive, so that a failed placement leaves the archive as it was and the
/// next attempt starts from the temp file again. `dest` was made by this placement (renamed
/// without replacing), so nothing that was there before is touched. Should the rename back
/// fail too, the file stays, as it would have without this; the error returned is the
/// sidecar's, saying so.
fn undo_placement(sidecar: ArchiveError, dest: &Path, temp: &Path) -> ArchiveError {
    match std::fs::rename(dest, temp) {
        Ok(()) => sidecar,
        Err(undo) => ArchiveError::PlacedWithoutSidecar {
            path: dest.display().to_string(),
            cause: Box::new(sidecar),
            undo,
        },
    }
}

/// Removes what a failed step of ours left, on the way to returning that step's error,
/// which is the one that matters: a leftover that cannot be removed either is a hidden
/// `.name.tmp` the next attempt's write replaces.
fn remove_leftover(path: &Path) {
    drop(remove_temp(path));
}

/// Removes a temp file of ours; one already gone is fine.
pub fn remove_temp(path: impl AsRef<Path>) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Renames `from` to `to`, failing if `to` exists: atomically where the filesystem can
/// (`renameat2` with `RENAME_NOREPLACE`), else by looking first.
fn rename_new(from: &Path, to: &Path) -> Result<(), ArchiveError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    let renamed = match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            if to.symlink_metadata().is_ok() {
                Err(std::io::Error::from(ErrorKind::AlreadyExists))
            } else {
                std::fs::rename(from, to)
            }
        }
        other => other.map_err(std::io::Error::from),
    };
    renamed.map_err(ArchiveError::io("rename into", to))
}

/// Writes `bytes` to the new file `dest` (it must not exist), removing what it wrote if
/// that fails.
fn write_new(dest: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(ArchiveError::io("create", dest))?;
    file.write_all(bytes).map_err(|e| {
        remove_leftover(dest);
        ArchiveError::io("write", dest)(e)
    })
}

/// Writes `bytes` to a temp file beside `dest` and fsyncs it; returns the temp file's path.
fn write_temp_durably(dest: &Path, bytes: &[u8]) -> Result<PathBuf, ArchiveError> {
    let dir = dest.parent().expect("destination has a parent");
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("sidecar");
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = std::fs::File::create(&tmp)
        .map_err(ArchiveError::io("create", &tmp))
        .and_then(|mut f| {
            f.write_all(bytes).map_err(ArchiveError::io("write", &tmp))?;
            f.sync_all().map_err(ArchiveError::io("fsync", &tmp))
        });
    if let Err(e) = written {
        remove_leftover(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Renames `tmp` to `dest`, removing `tmp` when that fails.
fn rename_or_discard(tmp: &Path, dest: &Path) -> Result<(), ArchiveError> {
    std::fs::rename(tmp, dest).map_err(|e| {
        remove_leftover(tmp);
        ArchiveError::io("rename into", dest)(e)
    })
}

/// The directory for temp files under `root`, created if needed.
/// This instance's directory for downloads in progress: `<root>/.r2-sync-tmp/<instance>`.
/// Each instance has its own, so two instances sharing one archive (two containers on one
/// share) never take each other's downloads for orphans.
pub fn temp_dir(root: &Path, instance: &str) -> Result<PathBuf, ArchiveError> {
    let dir = instance_temp_dir(root, instance);
    create_dirs_durably(&dir)?;
    Ok(dir)
}

/// [`temp_dir`]'s path, without creating it.
pub fn instance_temp_dir(root: &Path, instance: &str) -> PathBuf {
    root.join(TEMP_DIR).join(safe_file_name(instance, "instance"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn hostile_names_become_safe_single_components() {
        let cases = [
            ("../../etc/passwd", "passwd"),
            ("..", "file"),
            ("", "file"),
            ("a\0b\u{7}c.mp4", "a_b_c.mp4"),
            ("C:\\Users\\x\\evil.mkv", "evil.mkv"),
            ("  .hidden.mp4 ", "hidden.mp4"),
            ("what?<>|*:\".mp4", "what_______.mp4"),
            ("/", "file"),
            ("clip\u{202e}4pm.exe.mp4", "clip_4pm.exe.mp4"),
            ("a\u{2028}b\u{2029}c\u{200b}d\u{feff}e\u{2066}.mp4", "a_b_c_d_e_.mp4"),
            ("\u{feff}\u{200b}", "__"),
        ];
        for (input, expected) in cases {
            let safe = safe_file_name(input, "");
            assert_eq!(safe, expected, "{input:?}");
            assert!(is_contained(Path::new(&safe)));
        }
    }

    #[test]
    fn empty_name_falls_back_to_the_key() {
        assert_eq!(safe_file_name("", "uploads/7/clip.mp4"), "clip.mp4");
        assert_eq!(safe_file_name("...", "../.."), "file");
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.mp4", "é".repeat(600));
        let safe = safe_file_name(&long, "");
        assert!(safe.len() <= MAX_NAME_BYTES, "{}", safe.len());
        assert!(safe.ends_with(".mp4"));
        let no_ext = "x".repeat(1000);
        assert_eq!(safe_file_name(&no_ext, "").len(), MAX_NAME_BYTES);
    }

    #[test]
    fn relative_path_uses_approval_month_and_media_id() {
        let approved = Utc.with_ymd_and_hms(2026, 3, 9, 12, 0, 0).unwrap();
        let rel = relative_path(42, approved, "../../etc/passwd", "k");
        assert_eq!(rel, PathBuf::from("2026/03/42-passwd"));
        assert!(is_contained(&rel));
    }

    #[test]
    fn suffixes_and_containment() {
        assert_eq!(
            with_suffix(Path::new("2026/03/1-a.mp4"), 2),
            PathBuf::from("2026/03/1-a-2.mp4")
        );
        assert_eq!(with_suffix(Path::new("2026/03/1-a"), 3), PathBuf::from("2026/03/1-a-3"));
        assert!(!is_contained(Path::new("../x")));
        assert!(!is_contained(Path::new("/etc/passwd")));
        assert!(!is_contained(Path::new("")));
        assert_eq!(sidecar_path(Path::new("a/b.mp4")), PathBuf::from("a/b.mp4.json"));
    }

    #[test]
    fn place_never_overwrites_and_write_atomic_leaves_no_temp() {
        let root = tempfile::tempdir().unwrap();
        let rel = PathBuf::from("2026/01/5-a.mp4");
        let mut used = Vec::new();
        for i in 0..3 {
            let tmp = root.path().join(format!("t{i}"));
            std::fs::write(&tmp, format!("body{i}")).unwrap();
            let chosen = free_name(root.path(), &rel).unwrap();
            move_into(
                root.path(),
                &tmp,
                &chosen,
                format!("{{\"n\":{i}}}").as_bytes(),
                Durability::Fsync,
            )
            .unwrap();
            used.push(chosen);
        }
        assert_eq!(used[0], rel);
        assert_eq!(used[1], PathBuf::from("2026/01/5-a-2.mp4"));
        assert_eq!(std::fs::read_to_string(root.path().join(&used[0])).unwrap(), "body0");
        let sidecar = root.path().join(sidecar_path(&used[1]));
        assert_eq!(std::fs::read_to_string(sidecar).unwrap(), "{\"n\":1}");
        // A taken destination is refused: the temp file stays, no sidecar temp is left.
        let tmp = root.path().join("t9");
        std::fs::write(&tmp, "body9").unwrap();
        assert!(move_into(root.path(), &tmp, &used[0], b"{}", Durability::Caller).is_err());
        assert_eq!(std::fs::read_to_string(&tmp).unwrap(), "body9");
        assert_eq!(std::fs::read_to_string(root.path().join(&used[0])).unwrap(), "body0");
        write_atomic(&root.path().join("2026/01/5-a.mp4.json"), b"{}").unwrap();
        let names: Vec<_> = std::fs::read_dir(root.path().join("2026/01"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
            "{names:?}"
        );
    }

    #[test]
    fn a_placement_flushed_by_the_caller_makes_its_directory_and_writes_the_sidecar_in_place() {
        let root = tempfile::tempdir().unwrap();
        let rel = PathBuf::from("2026/02/7-b.mp4");
        let tmp = root.path().join("t");
        std::fs::write(&tmp, "body").unwrap();
        move_into(root.path(), &tmp, &rel, b"{\"media_id\":7}", Durability::Caller).unwrap();
        assert!(!tmp.exists(), "the temp file was renamed");
        assert_eq!(std::fs::read_to_string(root.path().join(&rel)).unwrap(), "body");
        let sidecar = root.path().join(sidecar_path(&rel));
        assert_eq!(std::fs::read_to_string(sidecar).unwrap(), "{\"media_id\":7}");
        let mut names: Vec<_> = std::fs::read_dir(root.path().join("2026/02"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["7-b.mp4", "7-b.mp4.json"], "nothing else left beside them");
        // A temp file that is gone fails the placement, and no sidecar is written for it.
        let missing = Path::new("2026/03/8-c.mp4");
        assert!(move_into(
            root.path(),
            &root.path().join("gone"),
            missing,
            b"{}",
            Durability::Caller
        )
        .is_err());
        assert!(!root.path().join(sidecar_path(missing)).exists());
    }

    #[test]
    fn a_placement_whose_sidecar_cannot_be_written_leaves_the_archive_as_it_was() {
        for durability in [Durability::Fsync, Durability::Caller] {
            let root = tempfile::tempdir().unwrap();
            let rel = PathBuf::from("2026/04/9-d.mp4");
            std::fs::create_dir_all(root.path().join("2026/04")).unwrap();
            // Something that cannot be replaced where the sidecar goes.
            let blocker = root.path().join(sidecar_path(&rel));
            std::fs::create_dir(&blocker).unwrap();
            std::fs::write(blocker.join("keep"), "x").unwrap();
            let tmp = root.path().join("t");
            std::fs::write(&tmp, "body").unwrap();
            let placed = move_into(root.path(), &tmp, &rel, b"{}", durability);
            assert!(placed.is_err(), "{durability:?}");
            assert!(
                !root.path().join(&rel).exists(),
                "{durability:?}: the file left in the archive"
            );
            assert_eq!(
                std::fs::read_to_string(&tmp).unwrap(),
                "body",
                "{durability:?}: temp file back"
            );
            assert_eq!(std::fs::read_to_string(blocker.join("keep")).unwrap(), "x");
        }
    }

    #[test]
    fn placements_racing_into_a_new_month_directory_all_land() {
        // The first files of a month race to create its directory; none may fail because
        // another one created it between its rename and its look at the directory.
        const THREADS: usize = 8;
        for round in 0..200 {
            let root = tempfile::tempdir().unwrap();
            let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
            let placing: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (root, start) = (root.path().to_path_buf(), start.clone());
                    std::thread::spawn(move || {
                        let tmp = root.join(format!("t{i}"));
                        std::fs::write(&tmp, "body").unwrap();
                        let rel = PathBuf::from(format!("2026/{:02}/{i}-a.mp4", round % 12 + 1));
                        start.wait();
                        move_into(&root, &tmp, &rel, b"{}", Durability::Caller)
                    })
                })
                .collect();
            for (i, placed) in placing.into_iter().enumerate() {
                let placed = placed.join().unwrap();
                assert!(placed.is_ok(), "round {round}, file {i}: {placed:?}");
            }
        }
    }

    #[test]
    fn an_unrecorded_copy_of_the_same_bytes_is_recognised_and_nothing_else_is() {
        use sha2::Digest;
        let root = tempfile::tempdir().unwrap();
        let rel = PathBuf::from("2026/01/7-clip.mp4");
        let file = root.path().join(&rel);
        let sha = hex::encode(sha2::Sha256::digest(b"abc"));
        let sidecar = |media_id: i64| {
            let json = serde_json::json!({ "media_id": media_id, "size": 3, "sha256": sha, "title": "t" });
            std::fs::write(root.path().join(sidecar_path(&rel)), json.to_string()).unwrap();
        };
        std::fs::create_dir_all(root.path().join("2026/01")).unwrap();
        std::fs::write(&file, "abc").unwrap();
        sidecar(7);
        // The path may be reserved again by the media its sidecar names, and by no other.
        assert_eq!(reusable_name(root.path(), &rel, 7).unwrap(), rel);
        let next = PathBuf::from("2026/01/7-clip-2.mp4");
        assert_eq!(
            reusable_name(root.path(), &rel, 8).unwrap(),
            next,
            "another media's file"
        );
        assert_eq!(free_name(root.path(), &rel).unwrap(), next);
        // Only the very bytes count as placed.
        assert!(file_matches(&file, 3, &sha));
        assert!(!file_matches(&file, 3, &"0".repeat(64)), "other bytes");
        std::fs::write(&file, "ab").unwrap();
        assert!(!file_matches(&file, 3, &sha), "cut short");
        std::fs::write(&file, "abd").unwrap();
        assert!(!file_matches(&file, 3, &sha), "other bytes of that size");
        // A sidecar that is not ours (or was lost to a power cut) reserves nothing.
        std::fs::write(&file, "abc").unwrap();
        std::fs::write(root.path().join(sidecar_path(&rel)), "").unwrap();
        assert_eq!(reusable_name(root.path(), &rel, 7).unwrap(), next);
        sidecar(7);
        std::fs::remove_file(&file).unwrap();
        assert!(!file_matches(&file, 3, &sha), "sidecar without its file");
        // Completing a placement found after a crash writes its sidecar anew.
        std::fs::write(&file, "abc").unwrap();
        settle_placed(&file, b"{\"media_id\":7}").unwrap();
        assert_eq!(
            std::fs::read(root.path().join(sidecar_path(&rel))).unwrap(),
            b"{\"media_id\":7}"
        );
    }
}
