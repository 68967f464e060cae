//! Making what sled wrote survive a power cut.
//!
//! sled 0.34's `flush` on Linux ends with `sync_file_range`: the pages reach
//! the drive, but neither the drive's write cache nor the file's metadata is
//! flushed, and values over its blob threshold (segment size / 16, 32 KiB by
//! default) live in files of their own that sled never syncs at all. Its own
//! thread calls `fsync` about every 500 ms. So after a flush the node calls
//! `fdatasync` on what the flush covers, in the order recovery reads it:
//! new blob files, the blob folder (their names), then the log (`db`), which
//! points at them. Only then is anything acknowledged.

use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime},
};

/// File timestamps may lag the clock by a scheduler tick or so; a blob
/// written this long before the previous sync started is synced again.
const MTIME_SLACK: Duration = Duration::from_secs(2);

/// A sled database's files on disk.
#[derive(Debug)]
pub(crate) struct SledFiles {
    dir: PathBuf,
    /// When the last successful sync started: every blob file written after
    /// it has a modification time at or after it. Held during a sync.
    synced_from: Mutex<Option<SystemTime>>,
}

/// What one sync covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Synced {
    /// Blob files synced (written since the previous sync).
    pub(crate) blobs: usize,
}

impl SledFiles {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            synced_from: Mutex::new(None),
        }
    }

    /// Syncs everything sled has written so far (call after its `flush`).
    /// Blocking: run it off the async runtime.
    pub(crate) fn sync(&self) -> io::Result<Synced> {
        // One sync at a time: a second one waits and then covers what was
        // written meanwhile.
        let mut synced_from = self
            .synced_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let started = SystemTime::now();
        let blobs = self.sync_blobs(synced_from.map(|t| t - MTIME_SLACK))?;
        File::open(self.dir.join("db"))?.sync_data()?;
        *synced_from = Some(started);
        Ok(Synced { blobs })
    }

    /// Syncs the blob files modified at or after `since` (all when `None`)
    /// and, if there were any, the blob folder itself.
    fn sync_blobs(&self, since: Option<SystemTime>) -> io::Result<usize> {
        let folder = self.dir.join("blobs");
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut synced = 0;
        for entry in entries {
            let entry = entry?;
            let modified = match entry.metadata().and_then(|m| m.modified()) {
                Ok(modified) => modified,
                // Removed by sled meanwhile (a rewrite): nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if since.is_some_and(|since| modified < since) {
                continue;
            }
            match File::open(entry.path()) {
                Ok(file) => file.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            synced += 1;
        }
        // The folder holds the new files' names; with no new file there is
        // nothing of it to make durable (an fsync saved per flush).
        if synced > 0 {
            File::open(&folder)?.sync_all()?;
        }
        Ok(synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value over sled's blob threshold, so it lands in a blob file.
    fn large() -> Vec<u8> {
        vec![7u8; 200 * 1024]
    }

    fn age(path: &Path) {
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
    }

    fn blob_files(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir.join("blobs"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn each_sync_covers_the_blob_files_written_since_the_last_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db");
        let db = crate::store::open_waiting_for_lock(&sled::Config::new().path(&path)).unwrap();
        let files = SledFiles::new(&path);
        assert_eq!(files.sync().unwrap(), Synced { blobs: 0 });

        db.insert(b"first", large()).unwrap();
        db.flush().unwrap();
        let written = blob_files(&path);
        assert_eq!(written.len(), 1, "the value went to a blob file");
        assert_eq!(files.sync().unwrap(), Synced { blobs: 1 });

        // Written long before the last sync started: not synced again.
        age(&written[0]);
        assert_eq!(files.sync().unwrap(), Synced { blobs: 0 });

        db.insert(b"second", large()).unwrap();
        db.flush().unwrap();
        assert_eq!(files.sync().unwrap(), Synced { blobs: 1 });
    }

    #[test]
    fn a_database_without_its_log_file_fails_to_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let files = SledFiles::new(&tmp.path().join("missing"));
        assert!(files.sync().is_err());
    }
}
