//! A probe that hangs or wants too much memory (a hostile file) ends in a verdict on that
//! file, within FFPROBE_TIMEOUT and within probe::PROBE_MEMORY_LIMIT, whichever ffprobe
//! FFPROBE_PATH names: the limits are set by r2-sync on the child, not by the program.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use r2_sync::probe::{self, ProbeError, PROBE_MEMORY_LIMIT};

fn fake_ffprobe(dir: &Path, script: &str) -> PathBuf {
    let path = dir.join("ffprobe");
    std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// What an accepted probe prints.
const ACCEPTED: &str = r#"{"streams":[{"index":0,"codec_type":"audio","codec_name":"flac","duration":"1.0"}],"format":{"format_name":"flac","duration":"1.0"}}"#;

#[tokio::test]
async fn a_probe_over_the_memory_limit_fails_its_file_and_only_it() {
    let dir = tempfile::tempdir().unwrap();
    // Waits until r2-sync has limited it (as a real ffprobe would be well before it reads a
    // hostile file's tables), then asks for twice the limit at once and, as ffprobe does when
    // an allocation fails, exits 1 saying so. Given the memory, it accepts.
    let hungry = fake_ffprobe(
        dir.path(),
        &format!(
            "while ! grep -q '^Max data size *{PROBE_MEMORY_LIMIT} *{PROBE_MEMORY_LIMIT} ' /proc/$$/limits; do sleep 0.01; done\n\
             exec python3 -c '\nimport sys\ntry:\n    b = bytearray({})\nexcept MemoryError:\n    sys.exit(\"Cannot allocate memory\")\nprint(sys.argv[1])' '{ACCEPTED}'\n",
            2 * PROBE_MEMORY_LIMIT
        ),
    );
    let file = dir.path().join("hostile.mp4");
    std::fs::write(&file, b"whatever").unwrap();
    match probe::probe(&hungry, &file, Duration::from_secs(20)).await {
        Err(ProbeError::Rejected { reason, .. }) => {
            assert_eq!(reason, "exit 1: Cannot allocate memory")
        }
        other => panic!("a probe wanting 2 GiB: {other:?}"),
    }
    // The same program without the limit (python3 given the bytes) would have accepted: the
    // rejection came from the limit, not from the script.
    let output = std::process::Command::new("python3")
        .args(["-c", &format!("b = bytearray({}); print('ok')", 2 * PROBE_MEMORY_LIMIT)])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "ok",
        "unlimited, 2 GiB is granted"
    );
}

#[tokio::test]
async fn a_hanging_probe_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let hanging = fake_ffprobe(
        dir.path(),
        &format!("echo $$ > '{}'\nexec sleep 600\n", pid_file.display()),
    );
    let file = dir.path().join("hangs.mp4");
    std::fs::write(&file, b"whatever").unwrap();
    let start = Instant::now();
    let verdict = probe::probe(&hanging, &file, Duration::from_secs(1)).await;
    assert!(
        matches!(verdict, Err(ProbeError::Timeout { secs: 1, .. })),
        "{verdict:?}"
    );
    assert!(
        verdict.unwrap_err().is_permanent(),
        "a timeout is a verdict on the file"
    );
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    // Killed, not left sleeping: gone, or a zombie until tokio reaps it.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = Path::new("/proc").join(pid.trim()).join("stat");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_to_string(&stat) {
            Err(_) => break,
            Ok(s) if s.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')) => break,
            Ok(s) => assert!(Instant::now() < deadline, "the hanging ffprobe still runs: {s}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
