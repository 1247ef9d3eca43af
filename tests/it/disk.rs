//! A full archive filesystem: a clear error, the temp file removed, the object kept in R2,
//! and the pass goes on with what fits. Needs root to mount a small tmpfs (the CI machine
//! runs as root); it fails, never skips, without it.

use crate::common;

use common::{media, object_key, NewMedia, Rig};

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "mounting a tmpfs needs root: this test simulates a full disk with one"
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        drop(std::process::Command::new("umount").arg("-l").arg(&self.0).status());
    }
}

#[tokio::test]
async fn a_full_archive_keeps_the_object_and_archives_what_fits() {
    let rig = Rig::new().await;
    let small_archive = rig.dir.path().join("small-archive");
    let _fs = Tmpfs::mount(&small_archive, "6m");

    let mut big = vec![0u8; 12 << 20];
    rand::fill(&mut big[..]);
    rig.storage()
        .put(&object_key("uploads/big.mp4"), &big, "video/mp4")
        .await
        .unwrap();
    let big_id = rig
        .insert_media(&NewMedia::approved("uploads/big.mp4", "big.mp4"))
        .await;
    let src = tempfile::tempdir().unwrap();
    let clip = std::fs::read(media::video(src.path(), "clip.mp4", 1)).unwrap();
    rig.storage()
        .put(&object_key("uploads/clip.mp4"), &clip, "video/mp4")
        .await
        .unwrap();
    let clip_id = rig
        .insert_media(&NewMedia::approved("uploads/clip.mp4", "clip.mp4"))
        .await;

    let out = rig
        .command(&["sync", "--once"])
        .env("ARCHIVE_DIR", &small_archive)
        // One at a time, so the small file is not caught in the moment the big one fills the disk.
        .env("SYNC_CONCURRENCY", "1")
        .output()
        .await
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{logs}");
    assert!(logs.contains("No space left on device"), "a clear error: {logs}");

    let c = rig.db.client().await;
    let status = |id: i64| {
        let c = &c;
        async move {
            c.query_one("SELECT status FROM media WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(status(big_id).await, "approved", "retried on a later pass, not failed");
    assert!(
        rig.storage().head(&object_key("uploads/big.mp4")).await.is_ok(),
        "object kept in R2"
    );
    assert_eq!(status(clip_id).await, "archived", "the pass goes on with what fits");
    let leftovers: Vec<_> = common::invariants::archive_files(&small_archive.join(".r2-sync-tmp"));
    assert!(leftovers.is_empty(), "temp file removed: {leftovers:?}");
}
