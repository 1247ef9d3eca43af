use super::*;
use crate::probe::ProbeError;
use crate::storage::StorageError;
use crate::sync::download::DownloadError;

/// The reasons `sync::file` gives for a permanent failure, from the real error types.
#[test]
fn failure_reasons_get_their_label() {
    let rejected = ProbeError::Rejected {
        file: "/a/.r2-sync-tmp/7.part".into(),
        reason: "no audio or video stream".into(),
    };
    let timeout = ProbeError::Timeout {
        file: "/a/2026/03/7-x.mp4".into(),
        secs: 120,
    };
    let size = DownloadError::SizeMismatch {
        expected: 10,
        actual: 9,
    };
    let checksum = DownloadError::ChecksumMismatch {
        etag: "abc".into(),
        actual: "def".into(),
    };
    let cases = [
        (rejected.to_string(), FailReason::Ffprobe),
        (timeout.to_string(), FailReason::Ffprobe),
        (format!("{size} (after 3 downloads)"), FailReason::Size),
        (format!("{checksum} (after 3 downloads)"), FailReason::Checksum),
        ("object is gone from the bucket".into(), FailReason::ObjectGone),
        (StorageError::Setup("x".into()).to_string(), FailReason::Other),
        (String::new(), FailReason::Other),
    ];
    for (reason, label) in cases {
        assert_eq!(FailReason::of(&reason), label, "{reason:?}");
    }
}

/// A file name quoted inside the reason cannot choose the label.
#[test]
fn only_the_start_of_the_reason_counts() {
    let sneaky = ProbeError::Rejected {
        file: "/a/2026/03/7-checksum mismatch.mp4".into(),
        reason: "size mismatch".into(),
    };
    assert_eq!(FailReason::of(&sneaky.to_string()), FailReason::Ffprobe);
    assert_eq!(FailReason::of("cannot run ffprobe (x): gone"), FailReason::Other);
}

fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
}

#[test]
fn renders_prometheus_text_with_every_label_from_the_start() {
    let m = Metrics::new();
    let text = m.render();
    for reason in FailReason::ALL {
        let series = format!("r2sync_files_failed_total{{reason=\"{}\"}}", reason.as_str());
        assert_eq!(line(&text, &series), Some("0"), "{series} in\n{text}");
    }
    assert_eq!(line(&text, "r2sync_ledger_entries{stage=\"fail_pending\"}"), Some("0"));
    assert!(text.contains("# TYPE r2sync_pass_duration_seconds histogram"), "{text}");
    assert_eq!(line(&text, "r2sync_last_successful_pass_timestamp_seconds"), Some("0"));

    m.file_synced(100);
    m.file_synced(23);
    m.file_failed("ffprobe rejected x: y");
    m.http_request(HttpRoute::File, 206, 4096);
    m.http_request(HttpRoute::Health, 200, 15);
    m.http_request(HttpRoute::File, 404, 21);
    m.observe_ledger(&BTreeMap::from([
        (Stage::Archived, 2),
        (Stage::FailPending, 1),
        (Stage::Done, 5),
    ]));
    {
        let _a = m.transfer();
        let _b = m.transfer();
        assert_eq!(line(&m.render(), "r2sync_transfers_in_flight"), Some("2"));
    }
    m.pass_finished(0.5, false);
    let text = m.render();
    for (series, value) in [
        ("r2sync_files_synced_total", "2"),
        ("r2sync_bytes_synced_total", "123"),
        ("r2sync_files_failed_total{reason=\"ffprobe\"}", "1"),
        ("r2sync_http_requests_total{route=\"file\",status=\"206\"}", "1"),
        ("r2sync_http_requests_total{route=\"health\",status=\"200\"}", "1"),
        ("r2sync_http_requests_total{route=\"file\",status=\"404\"}", "1"),
        ("r2sync_bytes_served_total", "4096"),
        ("r2sync_owed_db_writes", "3"),
        ("r2sync_ledger_entries{stage=\"done\"}", "5"),
        ("r2sync_ledger_entries{stage=\"claimed\"}", "0"),
        ("r2sync_transfers_in_flight", "0"),
        ("r2sync_pass_duration_seconds_count", "1"),
        ("r2sync_last_successful_pass_timestamp_seconds", "0"),
    ] {
        assert_eq!(line(&text, series), Some(value), "{series} in\n{text}");
    }
    let before = now_secs();
    m.pass_finished(0.1, true);
    let stamp: u64 = line(&m.render(), "r2sync_last_successful_pass_timestamp_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!((before..=now_secs()).contains(&stamp));
}
