use super::*;

use futures_executor::block_on;

fn open() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.redb")).unwrap();
    (dir, ledger)
}

/// Walks `e` along the pipeline to `to` (each step a checked move), storing it durably.
fn walk(ledger: &Ledger, e: &mut Entry, to: Stage) {
    for stage in to.way_from_claimed() {
        block_on(ledger.set(e, stage, Persist::WithNext)).unwrap();
    }
    block_on(ledger.save(e, Persist::Now)).unwrap();
}

fn archived(id: u64, stage: Stage, ledger: &Ledger) -> Entry {
    let mut e = Entry::new(id, format!("uploads/{id}.mp4"));
    e.archive_path = Some(format!("2026/11/{id}-a.mp4"));
    e.size = Some(id * 10);
    e.bytes_done = id * 10;
    e.sha256 = Some(format!("{:064x}", id));
    e.content_type = Some("video/mp4".into());
    e.original_filename = Some("a.mp4".into());
    walk(ledger, &mut e, stage);
    e
}

#[test]
fn set_get_update_remove_round_trip() {
    let (_dir, ledger) = open();
    assert_eq!(ledger.get(7).unwrap(), None);
    let mut e = Entry::new(7, "uploads/7.mp4");
    e.bytes_done = 42;
    block_on(ledger.save(&mut e, Persist::Now)).unwrap();
    assert_eq!(ledger.get(7).unwrap().unwrap().bytes_done, 42);
    ledger.set_blocking(&mut e, Stage::Downloading).unwrap();
    assert_eq!(ledger.get(7).unwrap().unwrap().stage(), Stage::Downloading);
    let updated = ledger.update(7, |e| e.attempts = 3).unwrap().unwrap();
    assert_eq!((updated.attempts, updated.stage()), (3, Stage::Downloading));
    assert!(ledger.update(8, |_| {}).unwrap().is_none());
    ledger.remove(7).unwrap();
    assert!(ledger.active().unwrap().is_empty());
    assert!(ledger.counts().unwrap().is_empty(), "{:?}", ledger.counts());
}

#[test]
fn a_move_the_stage_machine_forbids_is_refused_in_every_build() {
    let (_dir, ledger) = open();
    let mut e = archived(4, Stage::Done, &ledger);
    let stored = ledger.get(4).unwrap().unwrap();
    for to in [Stage::Claimed, Stage::Downloading, Stage::Archived, Stage::Failed] {
        let err = block_on(ledger.set(&mut e, to, Persist::Now)).unwrap_err();
        assert!(
            matches!(err, LedgerError::IllegalMove(IllegalMove { media_id: 4, from: Stage::Done, to: t }) if t == to),
            "{err}"
        );
        assert!(ledger.set_blocking(&mut e, to).is_err());
        assert_eq!(e.stage(), Stage::Done, "the entry is unchanged");
    }
    assert_eq!(ledger.get(4).unwrap().unwrap(), stored);
}

#[test]
fn read_only_ledgers_read_everything_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut e = archived(5, Stage::Archived, &Ledger::open(&path).unwrap());
    let before = std::fs::read(&path).unwrap();

    let ledger = Ledger::open_read_only(&path).unwrap();
    assert_eq!(ledger.get(5).unwrap(), Some(e.clone()));
    assert_eq!(ledger.media_for_path("2026/11/5-a.mp4").unwrap(), Some(5));
    assert!(matches!(
        ledger.set_blocking(&mut e, Stage::Archived),
        Err(LedgerError::ReadOnly)
    ));
    assert!(matches!(
        block_on(ledger.save(&mut e, Persist::Soon)),
        Err(LedgerError::ReadOnly)
    ));
    assert!(matches!(ledger.remove(5), Err(LedgerError::ReadOnly)));
    drop(ledger);
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}

#[test]
fn in_memory_ledgers_work_and_leave_no_file() {
    let ledger = Ledger::in_memory().unwrap();
    let mut e = Entry::new(9, "k");
    block_on(ledger.save(&mut e, Persist::Now)).unwrap();
    assert_eq!(ledger.active().unwrap(), vec![e]);
}

#[test]
fn path_index_follows_archive_path() {
    let (_dir, ledger) = open();
    let mut e = Entry::new(3, "k");
    e.archive_path = Some("2026/11/3-a.mp4".into());
    block_on(ledger.save(&mut e, Persist::Now)).unwrap();
    assert_eq!(ledger.media_for_path("2026/11/3-a.mp4").unwrap(), Some(3));
    e.archive_path = Some("2026/11/3-b.mp4".into());
    walk(&ledger, &mut e, Stage::Done);
    assert_eq!(ledger.media_for_path("2026/11/3-a.mp4").unwrap(), None);
    assert_eq!(ledger.media_for_path("2026/11/3-b.mp4").unwrap(), Some(3));
    ledger.remove(3).unwrap();
    assert_eq!(ledger.media_for_path("2026/11/3-b.mp4").unwrap(), None);
}

#[test]
fn finished_entries_leave_the_active_table_and_counts_follow_every_move() {
    let (_dir, ledger) = open();
    let mut moving = Entry::new(1, "k1");
    walk(&ledger, &mut moving, Stage::Downloaded);
    let done = archived(2, Stage::Done, &ledger);
    let failed = archived(3, Stage::Failed, &ledger);
    let owed = archived(4, Stage::Recorded, &ledger);
    let active: Vec<u64> = ledger.active().unwrap().iter().map(|e| e.media_id).collect();
    assert_eq!(active, vec![1, 4]);
    let counts = ledger.counts().unwrap();
    let expected: BTreeMap<Stage, usize> = [
        (Stage::Downloaded, 1),
        (Stage::Done, 1),
        (Stage::Failed, 1),
        (Stage::Recorded, 1),
    ]
    .into();
    assert_eq!(counts, expected);
    assert_eq!(ledger.get(2).unwrap().unwrap(), ledger.get(2).unwrap().unwrap());
    let back = ledger.get(2).unwrap().unwrap();
    assert_eq!(
        (back.archive_path, back.sha256, back.size),
        (done.archive_path, done.sha256, done.size)
    );
    assert_eq!(ledger.get(3).unwrap().unwrap(), failed, "ended entries are kept whole");
    assert_eq!(ledger.get(4).unwrap().unwrap(), owed);

    walk(&ledger, &mut moving, Stage::Done);
    let counts = ledger.counts().unwrap();
    assert_eq!(counts.get(&Stage::Done), Some(&2));
    assert_eq!(counts.get(&Stage::Downloaded), None);
    assert_eq!(ledger.active().unwrap().len(), 1);
}

#[test]
fn scans_filter_by_stage_media_and_time_newest_first_up_to_a_limit() {
    let (_dir, ledger) = open();
    for id in 1..=6 {
        archived(id, if id % 2 == 0 { Stage::Done } else { Stage::Failed }, &ledger);
    }
    let mut claimed = Entry::new(7, "k7");
    block_on(ledger.save(&mut claimed, Persist::Now)).unwrap();
    let ids = |q: Query| {
        let mut out = Vec::new();
        ledger
            .scan(&q, |e| {
                out.push(e.unwrap().media_id);
                true
            })
            .unwrap();
        out
    };
    assert_eq!(
        ids(Query::default()),
        vec![7, 5, 3, 1, 6, 4, 2],
        "in flight, ended, done"
    );
    let failed = Query {
        stages: vec![Stage::Failed],
        ..Query::default()
    };
    assert_eq!(ids(failed.clone()), vec![5, 3, 1]);
    assert_eq!(
        ids(Query {
            limit: Some(2),
            ..failed
        }),
        vec![5, 3]
    );
    assert_eq!(
        ids(Query {
            media_id: Some(4),
            ..Query::default()
        }),
        vec![4]
    );
    let future = entry::now_secs() + 3600;
    assert!(ids(Query {
        since: Some(future),
        ..Query::default()
    })
    .is_empty());
}

/// A ledger written by the version before format 2 (the fixture was written with its own
/// `state` crate: `tests/fixtures/ledger-v1.generator.rs.txt`) opens, migrated in place.
#[test]
fn a_format_1_ledger_is_migrated_on_first_open_and_keeps_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ledger-v1.redb");
    std::fs::copy(fixture, &path).unwrap();

    // Read-only (DRY_RUN) reads it as it is, and changes nothing.
    let before = std::fs::read(&path).unwrap();
    let ro = Ledger::open_read_only(&path).unwrap();
    let seen_ro: Vec<Entry> = (1..=29).map(|id| ro.get(id).unwrap().unwrap()).collect();
    drop(ro);
    assert!(std::fs::read(&path).unwrap() == before, "read-only changed the file");

    let ledger = Ledger::open(&path).unwrap();
    let counts = ledger.counts().unwrap();
    let expected: BTreeMap<Stage, usize> = [
        (Stage::Done, 20),
        (Stage::Downloading, 1),
        (Stage::Archived, 1),
        (Stage::Recorded, 1),
        (Stage::FailPending, 1),
        (Stage::Failed, 1),
        (Stage::Abandoned, 1),
        (Stage::Claimed, 1),
        (Stage::Shadowed, 1),
        (Stage::Downloaded, 1),
    ]
    .into();
    assert_eq!(counts, expected);
    let active: Vec<u64> = ledger.active().unwrap().iter().map(|e| e.media_id).collect();
    assert_eq!(active, vec![21, 22, 23, 24, 27, 29]);
    let d = ledger.get(7).unwrap().unwrap();
    assert_eq!(d.stage(), Stage::Done);
    assert_eq!(d.archive_path.as_deref(), Some("2026/11/7-clip 7.mp4"));
    assert_eq!(d.size, Some(7000));
    assert_eq!(d.sha256, Some(format!("{:064x}", 49)));
    assert_eq!((d.created_at, d.updated_at), (1_760_000_007, 1_760_000_107));
    assert_eq!(d.original_filename.as_deref(), Some("clip 7.mp4"));
    assert_eq!(ledger.media_for_path("2026/11/7-clip 7.mp4").unwrap(), Some(7));
    let partial = ledger.get(21).unwrap().unwrap();
    assert_eq!((partial.bytes_done, partial.etag.as_deref()), (262_144, Some("abc")));
    assert_eq!(
        ledger.get(24).unwrap().unwrap().error.as_deref(),
        Some("ffprobe rejected the file: Invalid data found when processing input")
    );
    for (id, ro) in (1..=29).zip(seen_ro) {
        assert_eq!(
            ledger.get(id).unwrap().unwrap(),
            ro,
            "media {id}: read-only and migrated agree"
        );
    }
    drop(ledger);
    // Opening again finds format 2 and changes nothing.
    let again = Ledger::open(&path).unwrap();
    assert_eq!(again.counts().unwrap(), expected);
}

/// A migration cut short (here: the first chunk moved, the rest not) leaves every entry in
/// exactly one place, and the next open finishes it.
#[test]
fn an_interrupted_migration_finishes_on_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut v1 = txn.open_table(migrate::V1_ENTRIES).unwrap();
            let mut paths = txn.open_table(tables::V1_PATHS).unwrap();
            for id in 1..=25_000u64 {
                let mut e = Entry::new(id, format!("k{id}"));
                e.set_stage_from_storage(if id % 1000 == 0 { Stage::Archived } else { Stage::Done });
                e.archive_path = Some(format!("2026/10/{id}-x.mp4"));
                v1.insert(id, serde_json::to_string(&e).unwrap().as_str()).unwrap();
                paths.insert(format!("2026/10/{id}-x.mp4").as_str(), id).unwrap();
            }
            v1.insert(25_001, "{not json").unwrap();
        }
        txn.commit().unwrap();
        migrate::move_one_chunk_for_tests(&db);
    }
    let ledger = Ledger::open(&path).unwrap();
    let counts = ledger.counts().unwrap();
    assert_eq!(counts.get(&Stage::Done), Some(&24_975));
    assert_eq!(counts.get(&Stage::Archived), Some(&25));
    assert_eq!(ledger.active().unwrap().len(), 25);
    assert_eq!(ledger.media_for_path("2026/10/24999-x.mp4").unwrap(), Some(24_999));
    let damaged = ledger.get(25_001).unwrap_err();
    assert!(damaged.to_string().contains("media 25001"), "{damaged}");
}

#[test]
fn queued_writes_land_in_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    {
        let ledger = Ledger::open(&path).unwrap();
        let mut e = Entry::new(1, "k1");
        walk(&ledger, &mut e, Stage::Downloading);
        let mut other = Entry::new(2, "k2");
        walk(&ledger, &mut other, Stage::Downloading);
        // Writes nobody waited for are committed in order, and by the time the ledger closes.
        e.bytes_done = 98;
        block_on(ledger.save(&mut e, Persist::Soon)).unwrap();
        e.bytes_done = 99;
        block_on(ledger.save(&mut e, Persist::Soon)).unwrap();
        ledger.update(2, |e| e.attempts = 1).unwrap();
        let mut later = archived(3, Stage::Failed, &ledger);
        later.attempts = 5;
        block_on(ledger.save(&mut later, Persist::Soon)).unwrap();
        later.attempts = 6;
        block_on(ledger.save(&mut later, Persist::Soon)).unwrap();
        block_on(ledger.flush()).unwrap();
        assert_eq!(ledger.get(3).unwrap().unwrap().attempts, 6, "flushed: readable at once");
        later.attempts = 5;
        block_on(ledger.save(&mut later, Persist::Soon)).unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.get(1).unwrap().unwrap().bytes_done, 99);
    assert_eq!(ledger.get(2).unwrap().unwrap().attempts, 1);
    assert_eq!(ledger.get(3).unwrap().unwrap().attempts, 5);
    let counts = ledger.counts().unwrap();
    assert_eq!(counts.get(&Stage::Downloading), Some(&2));
    assert_eq!(counts.get(&Stage::Failed), Some(&1));
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
            block_on(ledger.save(&mut expected, Persist::Now)).unwrap();
            let mut visited = vec![Stage::Claimed];
            for ev in events {
                match ev {
                    Event::Move(next) => {
                        let allowed = expected.stage().can_move_to(next);
                        let before = expected.clone();
                        let moved = ledger.set_blocking(&mut expected, next);
                        prop_assert_eq!(moved.is_ok(), allowed, "{} -> {}", before.stage(), next);
                        if allowed {
                            visited.push(next);
                        } else {
                            prop_assert_eq!(&expected, &before);
                        }
                    }
                    Event::Progress(bytes) => {
                        if expected.stage() == Stage::Downloading {
                            expected.bytes_done = bytes;
                            block_on(ledger.save(&mut expected, Persist::Now)).unwrap();
                        }
                    }
                    Event::Crash => {
                        drop(ledger);
                        ledger = Ledger::open(&path).unwrap();
                    }
                }
                let stored = ledger.get(1).unwrap().unwrap();
                if expected.stage() == Stage::Done {
                    // A done entry keeps what serving and audit need, not the transfer's details.
                    prop_assert_eq!(stored.stage(), Stage::Done);
                    prop_assert_eq!(&stored.archive_path, &expected.archive_path);
                } else {
                    prop_assert_eq!(stored, expected.clone());
                }
                let counted: usize = ledger.counts().unwrap().values().sum();
                prop_assert_eq!(counted, 1);
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

    /// Writes `raw` as the stored record of media 1 in the table for `stage`, bypassing `set`.
    fn store_raw(ledger: &Ledger, home: tables::Home, raw: &[u8]) {
        let Store::Writable(db) = &ledger.db else {
            unreachable!()
        };
        write_txn(db, Durability::Immediate, |t| {
            match (home, std::str::from_utf8(raw)) {
                (tables::Home::Done, _) => t.done.insert(1u64, raw).map(drop),
                (tables::Home::Active, Ok(text)) => t.active.insert(1u64, text).map(drop),
                (_, Ok(text)) => t.ended.insert(1u64, text).map(drop),
                (_, Err(_)) => t.done.insert(1u64, raw).map(drop),
            }
            .map_err(storage("insert"))
        })
        .unwrap();
    }

    fn json_ish() -> impl Strategy<Value = Vec<u8>> {
        let valid = serde_json::to_string(&Entry::new(1, "k")).unwrap();
        let mut e = Entry::new(1, "k");
        e.set_stage_from_storage(Stage::Done);
        let compact = done::encode(&e);
        prop_oneof![
            any::<String>().prop_map(String::into_bytes),
            "\\{\"media_id\":[0-9]{1,3},\"stage\":\"[a-z_]{0,12}\".{0,40}\\}".prop_map(String::into_bytes),
            (0..valid.len()).prop_map(move |cut| valid.as_bytes()[..cut].to_vec()),
            (0..compact.len()).prop_map(move |cut| compact[..cut].to_vec()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever bytes a disk error or an older version left in a record, reading it gives
        /// a clear error naming the media, never a panic or a silently wrong entry; and a
        /// good write replaces it.
        #[test]
        fn damaged_records_are_reported_not_trusted(raw in json_ish(), home in 0..3usize) {
            let home = [tables::Home::Active, tables::Home::Ended, tables::Home::Done][home];
            let dir = tempfile::tempdir().unwrap();
            let ledger = Ledger::open(&dir.path().join("ledger.redb")).unwrap();
            store_raw(&ledger, home, &raw);
            match ledger.get(1) {
                Ok(Some(entry)) => {
                    // Only a well-formed record is trusted.
                    let reencoded = match entry.stage() {
                        Stage::Done => done::encode(&entry),
                        _ => serde_json::to_vec(&entry).unwrap(),
                    };
                    let again = match entry.stage() {
                        Stage::Done => done::decode(1, &reencoded).unwrap(),
                        _ => serde_json::from_slice(&reencoded).unwrap(),
                    };
                    prop_assert_eq!(entry, again);
                }
                Ok(None) => prop_assert!(false, "a stored record vanished"),
                Err(e) => prop_assert!(e.to_string().contains("media 1"), "{}", e),
            }
            let scanned = ledger.scan(&Query::default(), |_| true);
            prop_assert!(scanned.is_ok());
            let mut fresh = Entry::new(1, "k");
            block_on(ledger.save(&mut fresh, Persist::Now)).unwrap();
            prop_assert_eq!(ledger.get(1).unwrap(), Some(fresh));
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
                        ledger.set_blocking(&mut e, Stage::Claimed).unwrap();
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
    assert_eq!(ledger.active().unwrap().len(), 32 * 20);
    assert_eq!(ledger.counts().unwrap().get(&Stage::Claimed), Some(&(32 * 20)));
    assert_eq!(ledger.media_for_path("2026/01/31-19.mp4").unwrap(), Some(3119));
}

#[test]
fn async_commits_wait_for_the_disk() {
    let (_dir, ledger) = open();
    let mut e = Entry::new(5, "k");
    block_on(ledger.set(&mut e, Stage::Downloading, Persist::Now)).unwrap();
    assert_eq!(ledger.get(5).unwrap(), Some(e));
}
