//! What a file does next, decided from its ledger entry and from what is on disk. No I/O
//! here, so that every rule is unit-tested; the steps themselves are `fetch`, `place` and
//! `owed`, and `file` runs them in the order these functions give.

use crate::db::MediaRow;
use crate::state::{Entry, Stage};

use super::FileOutcome;

/// A file's next step in this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Claimed/Downloading → Downloaded.
    Fetch,
    /// Downloaded → Archived (or Shadowed).
    Place,
    /// Archived → Recorded: PostgreSQL says archived.
    Record,
    /// Recorded → Done: the object is deleted from the bucket.
    Delete,
    /// The file's turn ends here, so.
    End(FileOutcome),
}

/// The step that takes a file on from `stage`.
pub(super) fn next_step(stage: Stage) -> Step {
    match stage {
        Stage::Claimed | Stage::Downloading => Step::Fetch,
        Stage::Downloaded => Step::Place,
        Stage::Archived => Step::Record,
        Stage::Recorded => Step::Delete,
        // A shadow run's copy is all it makes.
        Stage::Done | Stage::Shadowed => Step::End(FileOutcome::Archived),
        Stage::Abandoned => Step::End(FileOutcome::Abandoned),
        // A failure record owed is settled at the start of a pass (`owed::settle`), not here.
        Stage::FailPending | Stage::Failed => Step::End(FileOutcome::Skipped),
    }
}

/// The ledger entry to continue with: the existing one unless it ended (a row approved again
/// after failing or being abandoned starts over), else a new one. A shadow run keeps its
/// shadowed copies.
pub(super) fn entry_for(existing: Option<Entry>, row: &MediaRow, shadow: bool) -> Entry {
    match existing {
        Some(e) if !e.stage().is_terminal() => e,
        Some(e) if e.stage() == Stage::Shadowed && shadow => e,
        _ => {
            let mut e = Entry::new(row.id as u64, row.r2_key.clone());
            e.content_type = Some(row.content_type.clone());
            e.original_filename = Some(row.original_filename.clone());
            e
        }
    }
}

/// Where `place` finds a downloaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found<P> {
    /// The temp file: moved to the path reserved for it, or (`keep_path` false: something
    /// else took that path since) to a new free one.
    Temp { temp: P, keep_path: bool },
    /// Already at its archive path, renamed there before a crash that came before the next
    /// ledger write: made durable, its sidecar written again, and `temp`, the temp file of a
    /// download the ledger never recorded, removed.
    Placed { placed: P, temp: Option<P> },
}

impl<P> Found<P> {
    /// The downloaded file.
    pub(super) fn file(&self) -> &P {
        match self {
            Found::Temp { temp, .. } => temp,
            Found::Placed { placed, .. } => placed,
        }
    }
}

/// Whether to look for the file at its archive path (hashing it): only when the temp file
/// cannot simply go to the path reserved for it.
pub(super) fn look_for_placed(temp_on_disk: bool, path_free: bool) -> bool {
    !(temp_on_disk && path_free)
}

/// Where the download is, from the temp file (if it is on disk), whether nothing is at the
/// reserved path, and the file at that path if it is exactly the bytes downloaded. None:
/// neither, it must be downloaded again.
pub(super) fn found<P>(temp: Option<P>, path_free: bool, placed: Option<P>) -> Option<Found<P>> {
    match (temp, placed) {
        (Some(temp), _) if path_free => Some(Found::Temp { temp, keep_path: true }),
        (temp, Some(placed)) => Some(Found::Placed { placed, temp }),
        (Some(temp), None) => Some(Found::Temp { temp, keep_path: false }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{entry_for, found, look_for_placed, next_step, Found, Step};
    use crate::db::MediaRow;
    use crate::state::{Entry, Ledger, Stage};
    use crate::storage::ObjectKey;
    use crate::sync::FileOutcome;

    fn row() -> MediaRow {
        MediaRow {
            id: 7,
            user_id: 1,
            title: String::new(),
            description: String::new(),
            original_filename: "clip.mp4".into(),
            content_type: "video/mp4".into(),
            file_size: Some(10),
            r2_key: "media/clip.mp4".into(),
            object_key: ObjectKey::new("media/clip.mp4"),
            status: "approved".into(),
            archive_path: None,
            approved_at: None,
            deleted_at: None,
        }
    }

    /// An entry walked to `stage` the way the pipeline moves it, in a ledger in memory.
    fn at(stage: Stage) -> Entry {
        let ledger = Ledger::in_memory().unwrap();
        let mut e = Entry::new(7, "media/clip.mp4");
        for step in stage.way_from_claimed() {
            ledger.set_blocking(&mut e, step).unwrap();
        }
        e
    }

    /// A file goes claim → fetch → place → record → delete, each step once.
    #[test]
    fn each_stage_has_one_next_step() {
        for (stage, step) in [
            (Stage::Claimed, Step::Fetch),
            (Stage::Downloading, Step::Fetch),
            (Stage::Downloaded, Step::Place),
            (Stage::Archived, Step::Record),
            (Stage::Recorded, Step::Delete),
            (Stage::Done, Step::End(FileOutcome::Archived)),
            (Stage::Shadowed, Step::End(FileOutcome::Archived)),
            (Stage::Abandoned, Step::End(FileOutcome::Abandoned)),
            (Stage::FailPending, Step::End(FileOutcome::Skipped)),
            (Stage::Failed, Step::End(FileOutcome::Skipped)),
        ] {
            assert_eq!(next_step(stage), step, "{stage:?}");
        }
    }

    #[test]
    fn an_entry_that_ended_starts_over_unless_a_shadow_run_shadowed_it() {
        for stage in [Stage::Done, Stage::Failed, Stage::Abandoned, Stage::Shadowed] {
            let fresh = entry_for(Some(at(stage)), &row(), false);
            assert_eq!(fresh.stage(), Stage::Claimed, "{stage:?}");
            assert_eq!(fresh.original_filename.as_deref(), Some("clip.mp4"));
        }
        let kept = entry_for(Some(at(Stage::Shadowed)), &row(), true);
        assert_eq!(kept.stage(), Stage::Shadowed);
        let resumed = entry_for(Some(at(Stage::Downloading)), &row(), false);
        assert_eq!(resumed.stage(), Stage::Downloading);
        assert_eq!(entry_for(None, &row(), false).stage(), Stage::Claimed);
    }

    #[test]
    fn the_temp_file_goes_to_its_reserved_path_unless_an_earlier_copy_is_there() {
        assert!(!look_for_placed(true, true));
        let temp = found(Some("temp"), true, None);
        assert_eq!(
            temp,
            Some(Found::Temp {
                temp: "temp",
                keep_path: true
            })
        );
        for (temp, free) in [(Some("temp"), false), (None, true), (None, false)] {
            assert!(look_for_placed(temp.is_some(), free));
            let placed = found(temp, free, Some("placed")).unwrap();
            assert_eq!(placed, Found::Placed { placed: "placed", temp });
            assert_eq!(placed.file(), &"placed");
        }
        let elsewhere = found(Some("temp"), false, None);
        assert_eq!(
            elsewhere,
            Some(Found::Temp {
                temp: "temp",
                keep_path: false
            })
        );
        assert_eq!(found::<&str>(None, true, None), None);
        assert_eq!(found::<&str>(None, false, None), None);
    }
}
