//! The file system's own promise, through a real mount: what fsync made durable survives a
//! cut, and nothing else does.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::PowerCutFs;

fn mounted() -> (tempfile::TempDir, PowerCutFs) {
    let dir = tempfile::tempdir().unwrap();
    let fs = PowerCutFs::mount(dir.path()).expect("mount the power-cut file system");
    (dir, fs)
}

fn fsync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn write(path: &Path, bytes: &[u8], fsync: bool) {
    let mut f = File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    if fsync {
        f.sync_data().unwrap();
    }
}

#[test]
fn only_what_was_fsynced_survives_a_cut() {
    let (_dir, mut fs) = mounted();
    let root = fs.mountpoint().to_path_buf();
    write(&root.join("durable"), b"kept", true);
    write(&root.join("unsynced-data"), b"data", false);
    fs::create_dir(root.join("d")).unwrap();
    fsync_dir(&root);
    // Not in a durable directory entry: lost whole, though its data was fsynced.
    write(&root.join("d/no-entry"), b"x", true);
    // Appended to after the fsync: the appended bytes are lost.
    let mut f = OpenOptions::new().append(true).open(root.join("durable")).unwrap();
    f.write_all(b" and more").unwrap();
    drop(f);
    assert_eq!(fs::read(root.join("durable")).unwrap(), b"kept and more");

    fs.power_cut(0.0, 1).unwrap();
    assert_eq!(fs::read(root.join("durable")).unwrap(), b"kept");
    assert_eq!(
        fs::read(root.join("unsynced-data")).unwrap(),
        b"",
        "its entry was made durable, its data never was"
    );
    assert!(root.join("d").is_dir());
    assert!(!root.join("d/no-entry").exists());
    let stats = fs.stats();
    assert!(
        stats.file_syncs >= 2 && stats.dir_syncs >= 1 && stats.cuts == 1,
        "{stats:?}"
    );
}

#[test]
fn a_rename_is_durable_in_both_directories_once_either_is_fsynced() {
    let (_dir, mut fs) = mounted();
    let root = fs.mountpoint().to_path_buf();
    for d in ["tmp", "tmp3", "a", "b"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    fsync_dir(&root);
    write(&root.join("tmp/1"), b"one", true);
    write(&root.join("tmp/2"), b"two", true);
    write(&root.join("tmp3/3"), b"three", true);
    fsync_dir(&root.join("tmp"));
    fsync_dir(&root.join("tmp3"));
    fs::rename(root.join("tmp/1"), root.join("a/1")).unwrap();
    fs::rename(root.join("tmp/2"), root.join("b/2")).unwrap();
    fs::rename(root.join("tmp3/3"), root.join("b/3")).unwrap();
    // The target of 1, the source of 2; 3's directories are never fsynced.
    fsync_dir(&root.join("a"));
    fs::remove_file(root.join("b/2")).unwrap();
    fsync_dir(&root.join("tmp"));

    fs.power_cut(0.0, 2).unwrap();
    assert_eq!(fs::read(root.join("a/1")).unwrap(), b"one");
    assert!(!root.join("tmp/1").exists(), "the rename moved it: one name only");
    assert!(
        !root.join("b/2").exists() && !root.join("tmp/2").exists(),
        "renamed out of a durable directory, then unlinked: gone"
    );
    assert_eq!(fs::read(root.join("tmp3/3")).unwrap(), b"three", "the rename was lost");
    assert!(!root.join("b/3").exists());
}

#[test]
fn a_rename_over_a_file_and_a_truncation_follow_the_same_rules() {
    let (_dir, mut fs) = mounted();
    let root = fs.mountpoint().to_path_buf();
    write(&root.join("f"), b"old", true);
    fsync_dir(&root);
    write(&root.join(".f.tmp"), b"new", true);
    fs::rename(root.join(".f.tmp"), root.join("f")).unwrap();
    let g = File::create(root.join("g")).unwrap();
    g.set_len(10).unwrap();
    g.sync_all().unwrap();
    g.set_len(3).unwrap();
    drop(g);
    // The rename and g's entry are not durable yet: the old f comes back, g is gone.
    fs.power_cut(0.0, 3).unwrap();
    assert_eq!(fs::read(root.join("f")).unwrap(), b"old");
    assert!(!root.join(".f.tmp").exists());
    assert!(!root.join("g").exists());

    write(&root.join(".f.tmp"), b"new", true);
    fs::rename(root.join(".f.tmp"), root.join("f")).unwrap();
    let g = File::create(root.join("g")).unwrap();
    g.set_len(10).unwrap();
    g.sync_all().unwrap();
    g.set_len(3).unwrap();
    drop(g);
    fsync_dir(&root);
    fs.power_cut(0.0, 4).unwrap();
    assert_eq!(fs::read(root.join("f")).unwrap(), b"new");
    assert!(!root.join(".f.tmp").exists());
    assert_eq!(fs::metadata(root.join("g")).unwrap().len(), 10, "the fsynced length");
}

#[test]
fn what_was_written_back_in_time_may_survive_too() {
    let (_dir, mut fs) = mounted();
    let root = fs.mountpoint().to_path_buf();
    write(&root.join("a"), b"aaa", false);
    fs::create_dir(root.join("d")).unwrap();
    fs.power_cut(1.0, 5).unwrap();
    assert_eq!(fs::read(root.join("a")).unwrap(), b"aaa", "everything written back");
    assert!(root.join("d").is_dir());
    let stats = fs.stats();
    assert!(stats.kept >= 3 && stats.lost == 0, "{stats:?}");
}

#[test]
fn non_replacing_renames_and_directory_rules_hold() {
    let (_dir, fs) = mounted();
    let root = fs.mountpoint().to_path_buf();
    write(&root.join("a"), b"a", false);
    write(&root.join("b"), b"b", false);
    let replaced = rustix::fs::renameat_with(
        rustix::fs::CWD,
        root.join("a"),
        rustix::fs::CWD,
        root.join("b"),
        rustix::fs::RenameFlags::NOREPLACE,
    );
    assert_eq!(replaced, Err(rustix::io::Errno::EXIST));
    fs::create_dir(root.join("d")).unwrap();
    write(&root.join("d/x"), b"x", false);
    assert!(fs::remove_dir(root.join("d")).is_err(), "not empty");
    assert!(fs::remove_file(root.join("d")).is_err(), "a directory");
    let mut names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "d"]);
    assert!(File::create_new(root.join("a")).is_err(), "O_EXCL");
}

#[test]
fn a_file_may_keep_the_first_of_its_pending_writes_only() {
    let (_dir, mut fs) = mounted();
    let root = fs.mountpoint().to_path_buf();
    write(&root.join("f"), b"", true);
    fsync_dir(&root);
    // Each write a request of its own, made in this order.
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(root.join("f"))
            .unwrap();
        for chunk in [&b"aaaa"[..], b"bbbb", b"cccc"] {
            f.write_all(chunk).unwrap();
        }
        drop(f);
        fs.power_cut(0.5, seed).unwrap();
        let kept = fs::read(root.join("f")).unwrap();
        assert!(
            [&b""[..], b"aaaa", b"aaaabbbb", b"aaaabbbbcccc"].contains(&kept.as_slice()),
            "a prefix of the writes, in order: {kept:?}"
        );
        seen.insert(kept);
    }
    assert!(seen.len() >= 3, "all, none and some were kept over 40 cuts: {seen:?}");
    assert!(fs.stats().torn > 0, "{:?}", fs.stats());
}
