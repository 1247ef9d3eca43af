//! The command line.

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "r2-sync",
    version,
    about = "Archive approved media from Cloudflare R2 and serve it behind a tunnel"
)]
#[command(after_help = "All settings come from environment variables; see the README.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scheduled sync passes and the file server (the container's entry point; the default).
    Run,
    /// Sync passes on the schedule, without the file server.
    Sync {
        /// One pass, then exit: 0 when every file succeeded, 1 otherwise.
        #[arg(long)]
        once: bool,
    },
    /// The file server alone.
    Serve,
    /// What the ledger holds: a summary, or with a filter the matching entries.
    Status {
        /// Machine-readable: the summary as JSON, or one JSON entry per line when filtering.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filters: crate::status::Filters,
    },
    /// Migration, shadow step: compare every shadow copy (SHADOW_DIR) with the old service's
    /// copy of the same media; exit 0 only when none differs.
    ShadowReport {
        /// One JSON object per finding, then {"summary": ...}.
        #[arg(long)]
        json: bool,
    },
    /// Migration, after cutover: hash the files the old service archived, give them the
    /// sidecars they lack and record them in the ledger, so they are served like the rest.
    Adopt {
        /// Read at most this many bytes per second (e.g. 50M), to spare the array.
        #[arg(long, value_parser = crate::cutover::parse_rate)]
        max_rate: Option<u64>,
        /// One JSON object per file, then {"summary": ...}.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration and reach PostgreSQL, the bucket, ffprobe and the archive.
    Check,
    /// Print a signed download link for a media file (to test the tunnel).
    Token {
        #[arg(long)]
        media_id: u64,
        #[arg(long, default_value_t = 0)]
        user_id: u64,
        /// Link lifetime, e.g. 1h or 30m.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Base URL of the tunnel, e.g. https://files.example.com
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
    },
    /// Exit 0 when the local /health answers 200 (the container's HEALTHCHECK).
    Healthcheck,
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    crate::config::parse_duration(raw)
}
