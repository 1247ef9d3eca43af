//! The image's probe (the two minimal ffprobes scripts/build-ffprobe.sh makes: the demux-only
//! one asked first, the full one where it cannot settle the file; probe::judge_file) judges as
//! Debian's full ffprobe does: a corpus of files generated here by Debian's ffmpeg (codecs,
//! containers, truncations, garbage, images) goes through r2-sync's own probe code with each,
//! and every verdict (accept or reject, and the whole sidecar summary: container, durations,
//! codecs, dimensions) must be the same. A change of ffmpeg version or of the builds'
//! component lists that alters one fails here, naming the file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use r2_sync::probe::{self, ProbeError, ProbeSummary, Programs};

/// One second of 128x96 test pattern with a tone: `-f lavfi` inputs 0 (video) and 1 (audio).
const INPUTS: &[&str] = &[
    "-f",
    "lavfi",
    "-i",
    "testsrc=duration=1:size=128x96:rate=10",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=440:duration=1",
];

const X264: &[&str] = &["-c:v", "libx264", "-preset", "ultrafast"];
const X265: &[&str] = &[
    "-c:v",
    "libx265",
    "-preset",
    "ultrafast",
    "-x265-params",
    "log-level=none",
];
const VP9: &[&str] = &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"];
const VP8: &[&str] = &["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"];
const AV1: &[&str] = &["-c:v", "libaom-av1", "-cpu-used", "8", "-usage", "realtime"];

/// Encoded samples: name (its extension picks the container) and ffmpeg's output options.
/// Every one is real media both programs must accept.
fn encodings() -> Vec<(&'static str, Vec<&'static str>)> {
    let with = |video: &[&'static str], rest: &[&'static str]| [video, rest].concat();
    vec![
        ("h264-aac.mp4", with(X264, &["-c:a", "aac"])),
        (
            "h264-aac-faststart.mp4",
            with(X264, &["-c:a", "aac", "-movflags", "+faststart"]),
        ),
        (
            "h264-aac-fragmented.mp4",
            with(X264, &["-c:a", "aac", "-movflags", "frag_keyframe+empty_moov"]),
        ),
        ("h264-aac.mov", with(X264, &["-c:a", "aac"])),
        ("h264-aac.ts", with(X264, &["-c:a", "aac"])),
        ("h264-aac.flv", with(X264, &["-c:a", "aac"])),
        ("h264-video-only.mkv", with(X264, &["-an"])),
        ("hevc-aac.mp4", with(X265, &["-tag:v", "hvc1", "-c:a", "aac"])),
        ("hevc-opus.mkv", with(X265, &["-c:a", "libopus"])),
        ("vp9-opus.webm", with(VP9, &["-c:a", "libopus"])),
        ("vp9-aac.mp4", with(VP9, &["-c:a", "aac"])),
        ("vp8-vorbis.webm", with(VP8, &["-c:a", "libvorbis"])),
        ("av1-opus.mkv", with(AV1, &["-c:a", "libopus"])),
        ("av1-aac.mp4", with(AV1, &["-c:a", "aac"])),
        ("av1-opus.webm", with(AV1, &["-c:a", "libopus"])),
        ("mpeg4-mp3.avi", vec!["-c:v", "mpeg4", "-c:a", "libmp3lame"]),
        ("mpeg2-aac.ts", vec!["-c:v", "mpeg2video", "-c:a", "aac"]),
        ("vorbis.ogg", vec!["-vn", "-c:a", "libvorbis"]),
        ("opus.opus", vec!["-vn", "-c:a", "libopus"]),
        ("tone.mp3", vec!["-vn", "-c:a", "libmp3lame"]),
        ("tone.flac", vec!["-vn", "-c:a", "flac"]),
        ("tone.wav", vec!["-vn", "-c:a", "pcm_s16le"]),
        ("tone.m4a", vec!["-vn", "-c:a", "aac"]),
        ("tone.aac", vec!["-vn", "-c:a", "aac", "-f", "adts"]),
        ("still.png", vec!["-an", "-frames:v", "1"]),
        ("still.jpg", vec!["-an", "-frames:v", "1"]),
        ("still.gif", vec!["-an", "-frames:v", "1"]),
        ("still.webp", vec!["-an", "-frames:v", "1", "-c:v", "libwebp"]),
    ]
}

/// Truncated copies: (sample, fraction of its bytes kept).
const TRUNCATIONS: &[(&str, f64)] = &[
    ("h264-aac.mp4", 0.1),
    ("h264-aac.mp4", 0.5),
    ("h264-aac.mp4", 0.95),
    ("h264-aac-faststart.mp4", 0.05),
    ("h264-aac-faststart.mp4", 0.5),
    ("h264-aac-faststart.mp4", 0.9),
    ("h264-aac-fragmented.mp4", 0.4),
    ("h264-aac.mov", 0.5),
    ("hevc-opus.mkv", 0.5),
    ("vp9-opus.webm", 0.3),
    ("vp9-opus.webm", 0.8),
    ("h264-aac.ts", 0.5),
    ("mpeg4-mp3.avi", 0.5),
    ("tone.mp3", 0.5),
    ("tone.flac", 0.5),
    ("still.png", 0.5),
];

fn ffmpeg(dir: &Path, name: &str, options: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(INPUTS)
        .args(options)
        .arg(&out)
        .status()
        .expect("ffmpeg is required for the tests (apt-get install ffmpeg; the README's test command does)");
    assert!(status.success(), "ffmpeg failed to generate {name} with {options:?}");
    out
}

/// Bytes that look random but are the same every run (xorshift), so a verdict on them is too.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// `mp4` with its movie header's duration (`mvhd`, version 0: 4 bytes at +20 from the box
/// type) set to the largest 32-bit value: 49.7 days at the millisecond time scale ffmpeg writes.
fn huge_duration(mp4: &[u8]) -> Vec<u8> {
    let at = mp4
        .windows(4)
        .position(|w| w == b"mvhd")
        .expect("an mp4 has an mvhd box");
    assert_eq!(mp4[at + 4], 0, "mvhd version 0 expected");
    let mut out = mp4.to_vec();
    out[at + 20..at + 24].copy_from_slice(&u32::MAX.to_be_bytes());
    out
}

/// The corpus: (file, whether both programs must accept it; None where either verdict is fair).
fn corpus(dir: &Path) -> Vec<(PathBuf, Option<bool>)> {
    let mut files: Vec<(PathBuf, Option<bool>)> = encodings()
        .iter()
        .map(|(name, options)| (ffmpeg(dir, name, options), Some(true)))
        .collect();
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let mut write = |name: &str, bytes: &[u8], accept: Option<bool>| {
        std::fs::write(dir.join(name), bytes).unwrap();
        files.push((dir.join(name), accept));
    };
    for (i, (name, kept)) in TRUNCATIONS.iter().enumerate() {
        let bytes = read(name);
        let cut = (bytes.len() as f64 * kept) as usize;
        write(
            &format!("cut{i}-{}pct-{name}", (kept * 100.0) as u32),
            &bytes[..cut],
            None,
        );
    }
    let mp4 = read("h264-aac-faststart.mp4");
    write("empty.mp4", b"", Some(false));
    write("random.mp4", &noise(64 << 10, 1), Some(false));
    write("random.mkv", &noise(64 << 10, 2), Some(false));
    write("random.bin", &noise(3 << 10, 3), Some(false));
    write(
        "text.mp4",
        "Not a video, only text.\n".repeat(200).as_bytes(),
        Some(false),
    );
    write(
        "mp4-header-then-garbage.mp4",
        &[&mp4[..32], &noise(64 << 10, 4)].concat(),
        Some(false),
    );
    write("huge-duration.mp4", &huge_duration(&mp4), None);
    files
}

/// What r2-sync makes of a probe: the sidecar summary, or the rejection's reason.
#[derive(Debug, PartialEq)]
enum Verdict {
    Accepted(ProbeSummary),
    Rejected(String),
    TimedOut,
}

async fn judge(programs: Programs<'_>, file: &Path) -> Verdict {
    match probe::judge_file(programs, file, Duration::from_secs(60)).await {
        Ok(summary) => Verdict::Accepted(summary),
        Err(ProbeError::Rejected { reason, .. }) => Verdict::Rejected(without_addresses(&reason)),
        Err(ProbeError::Timeout { .. }) => Verdict::TimedOut,
        Err(e) => panic!("{programs:?} on {}: {e}", file.display()),
    }
}

/// `reason` without the context addresses ffmpeg prints (`[mov,mp4,... @ 0x55d0c5f3e180]`),
/// which differ from run to run and between the two programs.
fn without_addresses(reason: &str) -> String {
    let mut out = String::new();
    let mut rest = reason;
    while let Some(at) = rest.find(" @ 0x") {
        out.push_str(&rest[..at]);
        rest = rest[at + 5..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out + rest
}

/// The minimal ffprobe, built (or found in its cache) by the script the image uses.
pub fn minimal_ffprobe() -> PathBuf {
    built_ffprobe(&[])
}

/// The image's ffprobe-demux: the minimal ffprobe without video decoders.
pub fn minimal_ffprobe_demux() -> PathBuf {
    built_ffprobe(&["--demux-only"])
}

fn built_ffprobe(args: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/build-ffprobe.sh"))
        .args(args)
        .output()
        .expect("run scripts/build-ffprobe.sh");
    assert!(
        out.status.success(),
        "scripts/build-ffprobe.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(path.lines().last().expect("the script prints the program's path"))
}

#[tokio::test]
async fn the_minimal_ffprobe_judges_every_corpus_file_as_debians_does() {
    let (minimal, demux) = (minimal_ffprobe(), minimal_ffprobe_demux());
    let full = PathBuf::from("ffprobe");
    let versions = (
        probe::version(&minimal).await.unwrap(),
        probe::version(&full).await.unwrap(),
    );
    let image_probe = Programs {
        full: &minimal,
        demux: Some(&demux),
    };
    let debian_probe = Programs {
        full: &full,
        demux: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    assert!(files.len() >= 40, "{} files", files.len());

    let mut mismatches = Vec::new();
    let (mut accepted, mut settled) = (0, 0);
    for (file, expected) in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        let (ours, debians) = tokio::join!(judge(image_probe, file), judge(debian_probe, file));
        let demux_alone = probe::probe(&demux, file, Duration::from_secs(60)).await;
        settled += usize::from(demux_alone.is_ok_and(|s| probe::settled_without_decoding(&s)));
        if ours != debians {
            mismatches.push(format!("{name}:\n  minimal: {ours:?}\n  Debian:  {debians:?}"));
            continue;
        }
        let ok = matches!(ours, Verdict::Accepted(_));
        // Shown with --no-capture: the corpus and its verdicts.
        match &ours {
            Verdict::Accepted(s) => {
                let streams: Vec<_> = s
                    .streams
                    .iter()
                    .map(|s| (s.codec.as_deref(), s.width, s.height))
                    .collect();
                println!(
                    "both accept {name}: {} {:?} s {streams:?}",
                    s.container, s.duration_secs
                )
            }
            other => println!("both reject {name}: {other:?}"),
        }
        accepted += usize::from(ok);
        if expected.is_some_and(|e| e != ok) {
            mismatches.push(format!("{name}: both say {ours:?}, expected accepted = {expected:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} files judged differently ({versions:?}):\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
    // The corpus holds both kinds of verdict (truncations may go either way).
    assert!(
        accepted >= encodings().len() && accepted < files.len(),
        "{accepted} accepted"
    );
    // The demux-only ffprobe settled at least every MP4/MOV sample (their truncations may add
    // to it): the comparison above covered its answers, not only the full ffprobe's.
    let mp4s = encodings()
        .iter()
        .filter(|(name, _)| [".mp4", ".mov", ".m4a"].iter().any(|ext| name.ends_with(ext)))
        .count();
    assert!(
        settled >= mp4s,
        "the demux-only ffprobe settled {settled} files, fewer than the {mp4s} MP4/MOV samples"
    );
}
