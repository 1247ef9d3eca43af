//! Row 3's context (formerly `bench/file_floor.py`): the kernel's part of the file work a pass
//! does for COUNT small files, with nothing else: per file a temp file of SIZE bytes written,
//! renamed into a month directory, a sidecar of ~600 bytes written beside it; one syncfs per
//! 64 files (a pass shares one among the files finishing together). Measured as the system CPU
//! seconds of the calling thread: the harness's own user time is not the kernel's work.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use crate::procfs;

#[derive(Debug, thiserror::Error)]
pub enum FileFloorError {
    #[error("file floor: {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FileFloorError + 'a {
    move |source| FileFloorError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The system CPU seconds the file work for `count` files of `size` bytes under `root` took.
pub fn file_floor(root: &Path, count: u32, size: usize) -> Result<f64, FileFloorError> {
    let tmp = root.join(".tmp");
    let month = root.join("2026").join("11");
    std::fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
    std::fs::create_dir_all(&month).map_err(io("create", &month))?;
    let mut body = vec![0u8; size];
    let random = Path::new("/dev/urandom");
    File::open(random)
        .and_then(|mut f| f.read_exact(&mut body))
        .map_err(io("read", random))?;
    let sidecar = [b'x'; 600];
    let fs = File::open(root).map_err(io("open", root))?;
    let syncfs = |fs: &File| rustix::fs::syncfs(fs).map_err(|e| io("syncfs", root)(e.into()));
    let before = procfs::thread_sys_secs();
    for i in 0..count {
        let part = tmp.join(format!("{i}.part"));
        File::create(&part)
            .and_then(|mut f| f.write_all(&body))
            .map_err(io("write", &part))?;
        let dest = month.join(format!("{i}-f{i:04}.bin"));
        std::fs::rename(&part, &dest).map_err(io("rename", &part))?;
        let side = dest.with_extension("bin.json");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&side)
            .and_then(|mut f| f.write_all(&sidecar))
            .map_err(io("write", &side))?;
        if i % 64 == 63 {
            syncfs(&fs)?;
        }
    }
    syncfs(&fs)?;
    Ok(procfs::thread_sys_secs() - before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_laid_out_as_a_pass_lays_them() {
        let dir = tempfile::tempdir().unwrap();
        let secs = file_floor(dir.path(), 70, 1000).unwrap();
        assert!(secs >= 0.0);
        let month = dir.path().join("2026/11");
        assert_eq!(std::fs::metadata(month.join("69-f0069.bin")).unwrap().len(), 1000);
        assert_eq!(std::fs::metadata(month.join("0-f0000.bin.json")).unwrap().len(), 600);
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0);
        assert!(
            file_floor(dir.path(), 1, 10).is_err(),
            "sidecars are created, never overwritten"
        );
    }
}
