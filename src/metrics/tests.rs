use super::*;

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
    m.file_failed(FailReason::Ffprobe);
    m.http_request(HttpRoute::File, 206, 4096);
    m.http_request(HttpRoute::Health, 200, 15);
    m.http_request(HttpRoute::File, 404, 21);
    m.file_body(BodyPath::Sendfile);
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
        ("r2sync_file_bodies_total{path=\"sendfile\"}", "1"),
        ("r2sync_file_bodies_total{path=\"buffered\"}", "0"),
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
