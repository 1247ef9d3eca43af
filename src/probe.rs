//! Media validation with ffprobe: the file must parse and hold real audio, video or image
//! streams. The JSON parsing and the verdict are pure, so they are unit-tested apart from
//! the process.

use std::num::NonZeroUsize;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::process::Command;
use tokio::sync::Semaphore;

#[derive(Debug, Error)]
pub enum ProbeError {
    /// The file is not acceptable media: a permanent verdict.
    #[error("ffprobe rejected {file}: {reason}")]
    Rejected { file: String, reason: String },
    #[error("ffprobe on {file} did not finish within {secs}s")]
    Timeout { file: String, secs: u64 },
    #[error("cannot run ffprobe ({program}): {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The memory limit could not be set on the started ffprobe (it is killed, not left
    /// running unbounded): says nothing about the file.
    #[error("cannot limit the memory of ffprobe ({program}, pid {pid}) on {file}: {source}")]
    Limit {
        program: String,
        pid: u32,
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl ProbeError {
    /// A verdict on the file: it is not media ffprobe can read, or one it cannot read within
    /// FFPROBE_TIMEOUT (a hostile or broken file; the README promises both fail the file).
    /// Not being able to run ffprobe says nothing about the file.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ProbeError::Rejected { .. } | ProbeError::Timeout { .. })
    }
}

/// The part of ffprobe's report that goes into the sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    pub container: String,
    pub duration_secs: Option<f64>,
    pub bit_rate: Option<u64>,
    pub streams: Vec<StreamSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    pub index: u32,
    pub kind: String,
    pub codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bit_rate: Option<u64>,
    pub duration_secs: Option<f64>,
}

#[derive(Deserialize)]
struct RawReport {
    #[serde(default)]
    format: Option<RawFormat>,
    #[serde(default)]
    streams: Vec<RawStream>,
}

#[derive(Deserialize)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<String>,
    bit_rate: Option<String>,
}

#[derive(Deserialize)]
struct RawStream {
    index: u32,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    bit_rate: Option<String>,
    duration: Option<String>,
}

fn number<T: std::str::FromStr>(raw: &Option<String>) -> Option<T> {
    raw.as_deref().and_then(|s| s.parse().ok())
}

const IMAGE_CODECS: &[&str] = &["mjpeg", "png", "gif", "webp", "bmp", "tiff", "jpegls", "av1"];

/// Parses ffprobe's `-print_format json -show_format -show_streams` output and decides.
pub fn judge(json: &[u8]) -> Result<ProbeSummary, String> {
    let raw: RawReport = serde_json::from_slice(json).map_err(|e| format!("unreadable ffprobe output: {e}"))?;
    let format = raw.format.ok_or("no container format detected")?;
    let streams: Vec<StreamSummary> = raw
        .streams
        .iter()
        .map(|s| StreamSummary {
            index: s.index,
            kind: s.codec_type.clone().unwrap_or_else(|| "unknown".into()),
            codec: s.codec_name.clone(),
            width: s.width,
            height: s.height,
            bit_rate: number(&s.bit_rate),
            duration_secs: number(&s.duration),
        })
        .collect();
    let summary = ProbeSummary {
        container: format.format_name.unwrap_or_default(),
        duration_secs: number(&format.duration),
        bit_rate: number(&format.bit_rate),
        streams,
    };
    let av = summary
        .streams
        .iter()
        .filter(|s| s.kind == "audio" || s.kind == "video");
    let longest = av
        .clone()
        .filter_map(|s| s.duration_secs)
        .chain(summary.duration_secs)
        .fold(0.0_f64, f64::max);
    let is_image = summary.container.contains("image2")
        || summary.container.ends_with("_pipe")
        || (summary.streams.len() == 1
            && summary.streams[0].kind == "video"
            && summary.streams[0]
                .codec
                .as_deref()
                .is_some_and(|c| IMAGE_CODECS.contains(&c))
            && summary.duration_secs.is_none());
    if is_image {
        return if summary.streams.is_empty() {
            Err("image without any stream".into())
        } else {
            Ok(summary)
        };
    }
    if av.count() == 0 {
        return Err("no audio or video stream".into());
    }
    if longest <= 0.0 {
        return Err("duration is zero or unknown".into());
    }
    Ok(summary)
}

/// ffprobe runs at once in this process: it is CPU-bound, so more than one per core would
/// only add memory and switching (a pass has many files in flight).
fn runs() -> &'static Semaphore {
    static RUNS: OnceLock<Semaphore> = OnceLock::new();
    RUNS.get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, NonZeroUsize::get)))
}

/// The data memory (heap and other private writable mappings: RLIMIT_DATA) one ffprobe may
/// use. A hostile file can declare frames or tables of gigabytes; past this ffprobe's
/// allocations fail, it exits with an error and the file is rejected, while the service and
/// the other probes (at most one per core, see [`runs`]) keep their memory. RLIMIT_DATA rather
/// than RLIMIT_AS: address space that is only reserved (glibc's 64 MiB per-thread arenas, a
/// full ffprobe's ~215 mapped libraries) is not memory used, and would make a limit of
/// address space fail real files on machines with many cores. Debian's full ffprobe and the
/// image's both probe a 4K HEVC file within a quarter of it (`prlimit --data=268435456`).
pub const PROBE_MEMORY_LIMIT: u64 = 1 << 30;

/// Runs ffprobe on `file`, bounded by `timeout` (the child is killed if it runs over) and by
/// [`PROBE_MEMORY_LIMIT`].
pub async fn probe(program: &Path, file: &Path, timeout: Duration) -> Result<ProbeSummary, ProbeError> {
    let shown = file.display().to_string();
    let _run = runs().acquire().await.expect("the semaphore is never closed");
    let child = Command::new(program)
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            "--",
        ])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    limit_memory(&child, program, &shown)?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|source| ProbeError::Spawn {
            program: program.display().to_string(),
            source,
        })?,
        Err(_) => {
            return Err(ProbeError::Timeout {
                file: shown,
                secs: timeout.as_secs(),
            })
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error output");
        let reason = format!(
            "exit {}: {}",
            output.status.code().unwrap_or(-1),
            first.chars().take(300).collect::<String>()
        );
        return Err(ProbeError::Rejected { file: shown, reason });
    }
    judge(&output.stdout).map_err(|reason| ProbeError::Rejected { file: shown, reason })
}

/// Sets [`PROBE_MEMORY_LIMIT`] on the started child. It is set after the spawn (prlimit on the
/// child's pid; the workspace forbids the unsafe `pre_exec` that would set it before exec), so
/// what ffprobe allocates in its first instants is not bounded, but it is counted: an
/// allocation that takes the child over the limit fails whenever it comes. A child already
/// gone (a fast probe) needs no limit; any other failure kills it (dropping `child` does).
fn limit_memory(child: &tokio::process::Child, program: &Path, file: &str) -> Result<(), ProbeError> {
    use rustix::process::{prlimit, Pid, Resource, Rlimit};
    let Some(pid) = child.id() else { return Ok(()) };
    let limit = Rlimit {
        current: Some(PROBE_MEMORY_LIMIT),
        maximum: Some(PROBE_MEMORY_LIMIT),
    };
    let target = i32::try_from(pid).ok().and_then(Pid::from_raw);
    match target.map(|p| prlimit(Some(p), Resource::Data, limit)) {
        Some(Ok(_)) | Some(Err(rustix::io::Errno::SRCH)) => Ok(()),
        Some(Err(e)) => Err(e.into()),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a process id",
        )),
    }
    .map_err(|source| ProbeError::Limit {
        program: program.display().to_string(),
        pid,
        file: file.to_owned(),
        source,
    })
}

/// The ffprobes a file is judged by: `full` (FFPROBE_PATH) and, when set, `demux`
/// (FFPROBE_DEMUX_PATH: the image's build without video decoders, `ffprobe-demux`).
#[derive(Debug, Clone, Copy)]
pub struct Programs<'a> {
    pub full: &'a Path,
    pub demux: Option<&'a Path>,
}

/// MP4/MOV (ISO BMFF) as ffprobe names it. Its header declares every track's codec,
/// dimensions and duration; decoding a video stream's first frames adds only what the verdict
/// and the sidecar leave out (pixel format, profile, reference frames). Other containers (MPEG-TS,
/// FLV) leave dimensions to the decoder, or report durations differently once it has run
/// (Matroska), so they are always judged by the full ffprobe (tests/it/probe_corpus.rs).
const DECLARING_CONTAINER: &str = "mov,mp4,m4a,3gp,3g2,mj2";

/// Whether a report from the demux-only ffprobe is the one the full ffprobe would give: an
/// MP4/MOV whose video streams all have a codec and dimensions. Audio and image streams need
/// no such care: the demux-only build has their decoders.
pub fn settled_without_decoding(summary: &ProbeSummary) -> bool {
    let known = |s: &StreamSummary| s.codec.is_some() && s.width.unwrap_or(0) > 0 && s.height.unwrap_or(0) > 0;
    summary.container == DECLARING_CONTAINER && summary.streams.iter().filter(|s| s.kind == "video").all(known)
}

/// Judges `file`. With a demux-only ffprobe, asks it first (a few ms instead of tens: no video
/// frame is decoded) and keeps its answer when [`settled_without_decoding`]; any other answer,
/// a rejection included, is settled by the full ffprobe, so every verdict is the full one's. A
/// timeout of the first is final (the full ffprobe runs the same demuxer on the same bytes),
/// and failing to run either says nothing about the file.
pub async fn judge_file(programs: Programs<'_>, file: &Path, timeout: Duration) -> Result<ProbeSummary, ProbeError> {
    if let Some(demux) = programs.demux {
        match probe(demux, file, timeout).await {
            Ok(summary) if settled_without_decoding(&summary) => return Ok(summary),
            Ok(_) | Err(ProbeError::Rejected { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    probe(programs.full, file, timeout).await
}

/// ffprobe's version line, for `check`.
pub async fn version(program: &Path) -> Result<String, ProbeError> {
    let output = Command::new(program)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| ProbeError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().next().unwrap_or("unknown version").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: &str = r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"h264","width":320,"height":240,"bit_rate":"100000","duration":"2.000000"},{"index":1,"codec_type":"audio","codec_name":"aac","duration":"2.000000"}],"format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"2.000000","bit_rate":"120000"}}"#;

    #[test]
    fn accepts_a_video_and_summarises_it() {
        let s = judge(VIDEO.as_bytes()).unwrap();
        assert_eq!(s.container, "mov,mp4,m4a,3gp,3g2,mj2");
        assert_eq!(s.duration_secs, Some(2.0));
        assert_eq!(s.streams.len(), 2);
        assert_eq!(s.streams[0].width, Some(320));
        assert_eq!(s.streams[1].codec.as_deref(), Some("aac"));
    }

    #[test]
    fn rejects_no_streams_zero_duration_and_garbage() {
        let no_av = r#"{"streams":[{"index":0,"codec_type":"data"}],"format":{"format_name":"mp4","duration":"1.0"}}"#;
        assert!(judge(no_av.as_bytes()).unwrap_err().contains("no audio or video"));
        let zero = r#"{"streams":[{"index":0,"codec_type":"audio","duration":"0.0"}],"format":{"format_name":"mp3","duration":"0.0"}}"#;
        assert!(judge(zero.as_bytes()).unwrap_err().contains("duration"));
        assert!(judge(b"{}").unwrap_err().contains("no container"));
        assert!(judge(b"not json").unwrap_err().contains("unreadable"));
    }

    #[test]
    fn only_an_mp4_with_every_video_stream_described_is_settled_without_decoding() {
        let mp4 = judge(VIDEO.as_bytes()).unwrap();
        assert!(settled_without_decoding(&mp4));
        let audio_only = ProbeSummary {
            streams: vec![mp4.streams[1].clone()],
            ..mp4.clone()
        };
        assert!(settled_without_decoding(&audio_only));
        let mut no_dimensions = mp4.clone();
        no_dimensions.streams[0].width = Some(0);
        assert!(!settled_without_decoding(&no_dimensions));
        let mut no_codec = mp4.clone();
        no_codec.streams[0].codec = None;
        assert!(!settled_without_decoding(&no_codec));
        let ts = ProbeSummary {
            container: "mpegts".into(),
            ..mp4
        };
        assert!(!settled_without_decoding(&ts));
    }

    #[test]
    fn accepts_a_still_image_without_duration() {
        let png = r#"{"streams":[{"index":0,"codec_type":"video","codec_name":"png","width":10,"height":10}],"format":{"format_name":"png_pipe"}}"#;
        assert_eq!(judge(png.as_bytes()).unwrap().streams.len(), 1);
    }
}
