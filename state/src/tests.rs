use super::*;

fn open() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.redb")).unwrap();
    (dir, ledger)
}

#[test]
fn put_get_update_remove_round_trip() {
    let (_dir, ledger) = open();
    assert_eq!(ledger.get(7).unwrap(), None);
    let mut e = Entry::new(7, "uploads/7.mp4");
    e.bytes_done = 42;
    ledger.put(&e).unwrap();
    assert_eq!(ledger.get(7).unwrap().unwrap().bytes_done, 42);
    let updated = ledger.update(7, |e| e.stage = Stage::Downloading).unwrap().unwrap();
    assert_eq!(updated.stage, Stage::Downloading);
    assert_eq!(ledger.get(7).unwrap().unwrap().stage, Stage::Downloading);
    assert!(ledger.update(8, |_| {}).unwrap().is_none());
    ledger.remove(7).unwrap();
    assert!(ledger.all().unwrap().is_empty());
}

#[test]
fn read_only_ledgers_read_everything_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut e = Entry::new(5, "uploads/5.mp4");
    e.archive_path = Some("2026/11/5-a.mp4".into());
    Ledger::open(&path).unwrap().put(&e).unwrap();
    let before = std::fs::read(&path).unwrap();

    let ledger = Ledger::open_read_only(&path).unwrap();
    assert_eq!(ledger.get(5).unwrap(), Some(e.clone()));
    assert_eq!(ledger.media_for_path("2026/11/5-a.mp4").unwrap(), Some(5));
    assert!(matches!(ledger.put(&e), Err(LedgerError::ReadOnly)));
    assert!(matches!(ledger.commit_later(&e), Err(LedgerError::ReadOnly)));
    assert!(matches!(ledger.remove(5), Err(LedgerError::ReadOnly)));
    drop(ledger);
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}

#[test]
fn in_memory_ledgers_work_and_leave_no_file() {
    let ledger = Ledger::in_memory().unwrap();
    let e = Entry::new(9, "k");
    ledger.put(&e).unwrap();
    assert_eq!(ledger.all().unwrap(), vec![e]);
}

#[test]
fn path_index_follows_archive_path() {
    let (_dir, ledger) = open();
    let mut e = Entry::new(3, "k");
    e.archive_path = Some("2026/11/3-a.mp4".into());
    ledger.put(&e).unwrap();
    assert_eq!(ledger.media_for_path("2026/11/3-a.mp4").unwrap(), Some(3));
    e.archive_path = Some("2026/11/3-b.mp4".into());
    ledger.put(&e).unwrap();
    assert_eq!(ledger.media_for_path("2026/11/3-a.mp4").unwrap(), None);
    assert_eq!(ledger.media_for_path("2026/11/3-b.mp4").unwrap(), Some(3));
    ledger.remove(3).unwrap();
    assert_eq!(ledger.media_for_path("2026/11/3-b.mp4").unwrap(), None);
}

#[test]
fn survives_reopen_and_counts_by_stage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    {
        let ledger = Ledger::open(&path).unwrap();
        for id in 1..=3 {
            let mut e = Entry::new(id, format!("k{id}"));
            e.stage = if id == 3 { Stage::Done } else { Stage::Downloading };
            ledger.put(&e).unwrap();
        }
        // Writes nobody waited for are committed in order, and by the time the ledger closes.
        let mut e = ledger.get(1).unwrap().unwrap();
        e.bytes_done = 98;
        ledger.commit_later(&e).unwrap();
        e.bytes_done = 99;
        ledger.commit_later(&e).unwrap();
        ledger.update(2, |e| e.attempts = 1).unwrap();
        let mut later = ledger.get(3).unwrap().unwrap();
        later.attempts = 5;
        ledger.commit_later(&later).unwrap();
        later.attempts = 6;
        ledger.commit_later(&later).unwrap();
        futures_executor::block_on(ledger.flush()).unwrap();
        assert_eq!(ledger.get(3).unwrap().unwrap().attempts, 6, "flushed: readable at once");
        later.attempts = 5;
        ledger.commit_later(&later).unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.get(1).unwrap().unwrap().bytes_done, 99);
    assert_eq!(ledger.get(3).unwrap().unwrap().attempts, 5);
    let counts = ledger.counts().unwrap();
    assert_eq!(counts.get(&Stage::Downloading), Some(&2));
    assert_eq!(counts.get(&Stage::Done), Some(&1));
}

#[test]
fn second_open_in_the_same_process_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let _first = Ledger::open(&path).unwrap();
    let err = Ledger::open(&path).unwrap_err();
    assert!(matches!(err, LedgerError::InUse { .. }), "{err}");
}

#[test]
fn garbage_file_is_an_open_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    std::fs::write(&path, b"this is not a redb file at all, just some bytes").unwrap();
    let err = Ledger::open(&path).unwrap_err();
    assert!(err.to_string().contains("ledger.redb"), "{err}");
}

#[test]
fn terminal_stages_never_move_and_owed_stages_only_forward() {
    for from in Stage::ALL {
        for to in Stage::ALL {
            if from.is_terminal() && from != Stage::Shadowed && from != to {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }
    assert!(
        !Stage::Archived.can_move_to(Stage::Claimed),
        "an archived file is never re-downloaded"
    );
    assert!(
        !Stage::Recorded.can_move_to(Stage::Abandoned),
        "a recorded file always gets deleted"
    );
    assert!(
        Stage::Downloading.can_move_to(Stage::Claimed),
        "a changed object restarts"
    );
}

mod stage_machine {
    use super::*;
    use proptest::prelude::*;

    /// What the pipeline may try to do to an entry; `Crash` reopens the ledger.
    #[derive(Debug, Clone)]
    enum Event {
        Move(Stage),
        Progress(u64),
        Crash,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0..Stage::ALL.len()).prop_map(|i| Event::Move(Stage::ALL[i])),
            (0u64..1 << 30).prop_map(Event::Progress),
            Just(Event::Crash),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Applying only allowed moves, with crashes anywhere: what was durably stored is what
        /// comes back, terminal stages never move, and Done is only reached through Recorded.
        #[test]
        fn allowed_moves_survive_crashes_and_keep_invariants(events in proptest::collection::vec(event(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ledger.redb");
            let mut ledger = Ledger::open(&path).unwrap();
            let mut expected = Entry::new(1, "k");
            ledger.put(&expected).unwrap();
            let mut visited = vec![Stage::Claimed];
            for ev in events {
                match ev {
                    Event::Move(next) => {
                        if expected.stage.can_move_to(next) {
                            expected.stage = next;
                            ledger.put(&expected).unwrap();
                            visited.push(next);
                        }
                    }
                    Event::Progress(bytes) => {
                        if expected.stage == Stage::Downloading {
                            expected.bytes_done = bytes;
                            ledger.put(&expected).unwrap();
                        }
                    }
                    Event::Crash => {
                        drop(ledger);
                        ledger = Ledger::open(&path).unwrap();
                    }
                }
                prop_assert_eq!(ledger.get(1).unwrap().unwrap(), expected.clone());
            }
            for pair in visited.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                prop_assert!(!(a.is_terminal() && a != Stage::Shadowed && a != b), "{} moved to {}", a, b);
                if b == Stage::Done && a != Stage::Done {
                    prop_assert_eq!(a, Stage::Recorded);
                }
                if b == Stage::Failed && a != Stage::Failed {
                    prop_assert_eq!(a, Stage::FailPending);
                }
            }
        }
    }
}

mod stored_records {
    use super::*;
    use proptest::prelude::*;

    /// Writes `raw` as the stored record of media 1, bypassing `put`.
    fn store_raw(ledger: &Ledger, raw: &str) {
        ledger
            .write(redb::Durability::Immediate, |entries, _| {
                entries.insert(1u64, raw).map_err(storage("insert"))?;
                Ok(())
            })
            .unwrap();
    }

    fn json_ish() -> impl Strategy<Value = String> {
        let valid = serde_json::to_string(&Entry::new(1, "k")).unwrap();
        prop_oneof![
            any::<String>(),
            "\\{\"media_id\":[0-9]{1,3},\"stage\":\"[a-z_]{0,12}\".{0,40}\\}",
            (0..valid.len()).prop_map(move |cut| valid[..cut].to_owned()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever bytes a disk error or an older version left in a record, reading it gives
        /// a clear error naming the media, never a panic or a silently wrong entry.
        #[test]
        fn damaged_records_are_reported_not_trusted(raw in json_ish()) {
            let dir = tempfile::tempdir().unwrap();
            let ledger = Ledger::open(&dir.path().join("ledger.redb")).unwrap();
            store_raw(&ledger, &raw);
            match ledger.get(1) {
                Ok(Some(entry)) => {
                    // Only a well-formed record is trusted, and read back as written.
                    let parsed: Entry = serde_json::from_str(&raw).expect("accepted records parse");
                    prop_assert_eq!(entry, parsed);
                }
                Ok(None) => prop_assert!(false, "a stored record vanished"),
                Err(e) => prop_assert!(e.to_string().contains("media 1"), "{}", e),
            }
            let _ = ledger.all();
            let _ = ledger.counts();
        }
    }
}

#[test]
fn concurrent_commits_are_grouped_and_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    {
        let ledger = std::sync::Arc::new(Ledger::open(&path).unwrap());
        let threads: Vec<_> = (0..32u64)
            .map(|t| {
                let ledger = std::sync::Arc::clone(&ledger);
                std::thread::spawn(move || {
                    for i in 0..20u64 {
                        let mut e = Entry::new(t * 100 + i, format!("k{t}-{i}"));
                        e.archive_path = Some(format!("2026/01/{t}-{i}.mp4"));
                        ledger.put(&e).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 640 waited-for entries; callers arriving while a commit is written or within its
        // spacing share the next one.
        let commits = ledger.commits();
        assert!((1..320).contains(&commits), "{commits} commits for 640 entries");
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.all().unwrap().len(), 32 * 20);
    assert_eq!(ledger.media_for_path("2026/01/31-19.mp4").unwrap(), Some(3119));
}

#[test]
fn async_commits_wait_for_the_disk() {
    let (_dir, ledger) = open();
    let e = Entry::new(5, "k");
    futures_executor::block_on(ledger.commit(&e)).unwrap();
    assert_eq!(ledger.get(5).unwrap(), Some(e));
}
