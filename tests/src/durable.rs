//! The bare floor of a durable write, for benches: bytes on stable storage
//! only after a real `fdatasync` (`File::sync_data`), in a plain append-only
//! file or in sled.
//!
//! sled 0.34's own `flush` is `pwrite` + `sync_file_range` on Linux: it
//! neither flushes the drive's cache nor the file's metadata, so it is not
//! the floor a messenger that promises durability must pay. [`SyncedSled`]
//! adds the `fdatasync` of sled's data file that such a promise needs.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::Path,
};

/// An append-only file whose [`SyncedLog::sync`] is an `fdatasync`.
#[derive(Debug)]
pub struct SyncedLog {
    file: File,
}

impl SyncedLog {
    /// Creates (or truncates) the log at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Self { file })
    }

    /// Appends `record` (length-prefixed) without syncing.
    pub fn append(&mut self, record: &[u8]) -> io::Result<()> {
        self.file.write_all(&(record.len() as u32).to_be_bytes())?;
        self.file.write_all(record)
    }

    /// `fdatasync`: everything appended so far is on stable storage.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Appends `record` and syncs: one durable write.
    pub fn append_synced(&mut self, record: &[u8]) -> io::Result<()> {
        self.append(record)?;
        self.sync()
    }
}

/// A sled tree whose [`SyncedSled::commit`] ends with an `fdatasync` of
/// sled's data file.
#[derive(Debug)]
pub struct SyncedSled {
    /// The database.
    pub db: sled::Db,
    /// The tree written to.
    pub tree: sled::Tree,
    data: File,
}

impl SyncedSled {
    /// Opens sled at `dir` with a tree named `items`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let db = sled::open(dir).map_err(io::Error::other)?;
        let tree = db.open_tree("items").map_err(io::Error::other)?;
        // sled 0.34 keeps its pages in one file, `db`.
        let data = File::open(dir.join("db"))?;
        Ok(Self { db, tree, data })
    }

    /// Inserts without flushing.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.tree
            .insert(key, value)
            .map(drop)
            .map_err(io::Error::other)
    }

    /// sled's flush, then `fdatasync` of its data file: every insert so far
    /// is on stable storage.
    pub fn commit(&self) -> io::Result<()> {
        self.db.flush().map_err(io::Error::other)?;
        self.data.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synced_log_holds_its_records() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("log");
        let mut log = SyncedLog::create(&path).expect("create");
        log.append_synced(b"hello").expect("append");
        log.append(b"world").expect("append");
        log.sync().expect("sync");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(
            bytes,
            [&[0, 0, 0, 5][..], b"hello", &[0, 0, 0, 5], b"world"].concat()
        );
    }

    #[test]
    fn synced_sled_keeps_what_it_committed() {
        let tmp = tempfile::tempdir().expect("tmp");
        {
            let store = SyncedSled::open(tmp.path()).expect("open");
            store.insert(b"k", b"v").expect("insert");
            store.commit().expect("commit");
        }
        let store = SyncedSled::open(tmp.path()).expect("reopen");
        assert_eq!(
            store.tree.get(b"k").expect("get").as_deref(),
            Some(&b"v"[..])
        );
    }
}
