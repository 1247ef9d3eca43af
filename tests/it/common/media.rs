//! Test media made at test time by the real ffmpeg: short testsrc videos with audio, a
//! corrupt file and a truncated one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Generates `seconds` of 160x120 testsrc video with a sine tone into `dir/name`; the
/// container follows the extension (mp4, mkv).
pub fn video(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    video_sized(dir, name, seconds, "160x120", 0)
}

/// Like [`video`] at `size` (e.g. `320x240`) with `noise` (0-100) added to every frame, which
/// makes it barely compressible: 3 s of noisy 320x240 are a few MB.
pub fn video_sized(dir: &Path, name: &str, seconds: u32, size: &str, noise: u32) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=duration={seconds}:size={size}:rate=15"),
        ])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={seconds}")])
        .args(["-vf", &format!("noise=alls={noise}:allf=t")])
        .args([
            "-c:v",
            "mpeg4",
            "-q:v",
            if noise > 0 { "2" } else { "5" },
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&out)
        .status()
        .expect("ffmpeg is required for the tests (apt-get install ffmpeg; the README's test command does)");
    assert!(status.success(), "ffmpeg failed to generate {name}");
    out
}

/// Random bytes with a video extension.
pub fn corrupt(dir: &Path, name: &str, len: usize) -> PathBuf {
    let out = dir.join(name);
    let bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&out, bytes).unwrap();
    out
}

/// The first half of a real mp4 (the index sits at the end, so nothing is playable).
pub fn truncated(dir: &Path, name: &str) -> PathBuf {
    let full = video(dir, &format!("full-{name}"), 2);
    let bytes = std::fs::read(&full).unwrap();
    let out = dir.join(name);
    std::fs::write(&out, &bytes[..bytes.len() / 2]).unwrap();
    out
}

/// A fifth of a second of a `hz` sine tone as PCM WAV (a few KB): distinct tones give
/// distinct files, so a test can tell which object was fetched.
pub fn tone(dir: &Path, name: &str, hz: u32) -> PathBuf {
    tone_lasting(dir, name, hz, 0.2)
}

/// [`tone`] lasting `seconds` (16 KB a second).
pub fn tone_lasting(dir: &Path, name: &str, hz: u32, seconds: f32) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency={hz}:duration={seconds}:sample_rate=8000"))
        .arg(&out)
        .status()
        .expect("ffmpeg is required for the tests (apt-get install ffmpeg; the README's test command does)");
    assert!(status.success(), "ffmpeg failed to generate {name}");
    out
}
