//! The disk under the data directory: telling a full disk from other I/O
//! errors, the space held in reserve so the database can always be reopened,
//! and whether there is room to write again.
//!
//! sled 0.34 remembers the first I/O error of a write or flush (its "global
//! error") and fails every later write with it until the database is opened
//! again, and writes that never reached the disk stay visible in its memory.
//! So after a fault the node reopens the database from what is on disk
//! (`Store::reopen`), which needs some free space: sled zeroes the rest of its
//! last segment (up to 512 KiB) and writes a new snapshot. The reserve file
//! guarantees that space on a disk that filled up.

use std::{
    fmt,
    fs::{self, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Bytes kept in `storage.reserve` while storage works, released when the
/// disk fills up so the database can be reopened.
pub(crate) const RESERVE_BYTES: u64 = 1 << 20;
/// Free bytes sled needs to reopen the database.
pub(crate) const REOPEN_BYTES: u64 = 640 << 10;
/// Free bytes needed, besides a re-created reserve, before writes resume.
pub(crate) const RESUME_BYTES: u64 = 2 << 20;

/// Whether the node's storage takes writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    /// Writes work.
    Ok,
    /// The disk is full: writes are refused until there is room again.
    Full,
    /// An I/O error: writes are refused until a probe write succeeds.
    Failed,
}

/// Why the node refuses writes for now. Reads are still served, and the node
/// recovers by itself once the disk takes writes again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageFault {
    /// [`StorageState::Full`] or [`StorageState::Failed`].
    pub state: StorageState,
    /// The data directory whose disk failed.
    pub dir: PathBuf,
    /// The operating system's description of the error.
    pub detail: String,
}

impl fmt::Display for StorageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        match self.state {
            StorageState::Full => write!(
                f,
                "disk full in {dir}: free space, meshchat recovers by itself"
            ),
            _ => write!(
                f,
                "storage error in {dir} ({}): writes are paused and meshchat retries by \
                 itself; check the disk if this lasts",
                self.detail
            ),
        }
    }
}

impl StorageFault {
    /// The fault a sled error means, if it is an I/O error (sled's other
    /// errors are about the data, not the disk).
    pub(crate) fn of_sled(error: &sled::Error, dir: &Path) -> Option<Self> {
        match error {
            sled::Error::Io(io) => Some(Self::of_io(io, dir)),
            _ => None,
        }
    }

    pub(crate) fn of_io(error: &io::Error, dir: &Path) -> Self {
        Self {
            state: if is_full(error) {
                StorageState::Full
            } else {
                StorageState::Failed
            },
            dir: dir.to_path_buf(),
            detail: error.to_string(),
        }
    }
}

/// Whether an I/O error means "no space" (or quota). sled re-creates the
/// errors it keeps, so the kind survives but the OS error number does not.
fn is_full(error: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// Bytes an unprivileged writer may still use on the disk holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> io::Result<u64> {
    fs2::available_space(dir)
}

/// The reserve file: [`RESERVE_BYTES`] of real (incompressible) data, or
/// nothing when the node runs without one.
#[derive(Debug, Clone)]
pub(crate) struct Reserve {
    path: Option<PathBuf>,
}

impl Reserve {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path: Some(path) }
    }

    /// No reserve: a full disk must free [`REOPEN_BYTES`] by itself.
    pub(crate) fn none() -> Self {
        Self { path: None }
    }

    fn len(&self) -> u64 {
        self.path
            .as_ref()
            .and_then(|p| fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    /// Bytes it takes to make the reserve whole.
    pub(crate) fn missing_bytes(&self) -> u64 {
        match self.path {
            Some(_) => RESERVE_BYTES.saturating_sub(self.len()),
            None => 0,
        }
    }

    /// Creates the reserve unless it is already whole. A failure (no room)
    /// leaves no partial file behind.
    pub(crate) fn ensure(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.missing_bytes() == 0 {
            return Ok(());
        }
        let result = write_random(path, RESERVE_BYTES);
        if result.is_err() {
            let _ = fs::remove_file(path);
        }
        result
    }

    /// Deletes the reserve, giving its space back; returns whether it existed.
    pub(crate) fn release(&self) -> bool {
        self.path
            .as_ref()
            .is_some_and(|p| fs::remove_file(p).is_ok())
    }
}

/// Writes `len` random bytes (a compressing file system cannot shrink them)
/// to `path` and syncs them.
fn write_random(path: &Path, len: u64) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut written = 0;
    while written < len {
        rand::thread_rng().fill_bytes(&mut chunk);
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_all()
}

/// A small file system for tests that fill a disk: a tmpfs mounted on a
/// temporary directory (needs root, as in CI), unmounted on drop.
#[cfg(test)]
pub(crate) struct SmallDisk {
    dir: tempfile::TempDir,
}

#[cfg(test)]
impl SmallDisk {
    /// Mounts `mib` MiB of tmpfs, or says loudly why the test cannot run.
    pub(crate) fn mount(mib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "\n*** SKIPPED: cannot mount a tmpfs (needs root; CI has it). \
                 The disk-full test did not run. ***\n"
            );
            return None;
        }
        Some(Self { dir })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file until it takes no more.
    pub(crate) fn fill(&self) {
        let mut file = fs::File::create(self.path().join("filler")).expect("filler");
        let chunk = vec![0xa5u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while file.write_all(&small).is_ok() {}
    }

    /// Frees what [`SmallDisk::fill`] took, and returns once the space is
    /// back. The blocks of an unlinked file return only when its last open
    /// descriptor closes, and a child another test forks at that moment
    /// holds a copy of every descriptor until it execs (one such reopen
    /// failed with ENOSPC in a parallel run).
    pub(crate) fn free(&self) {
        fs::remove_file(self.path().join("filler")).expect("remove filler");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while free_bytes(self.path()).unwrap_or(0) < 1024 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the filler's space never came back"
            );
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_from_other_errors_even_through_sled() {
        let dir = Path::new("/data");
        let enospc = io::Error::from_raw_os_error(28);
        // sled keeps its first error and hands out copies made like this.
        let copied = io::Error::new(enospc.kind(), format!("{enospc:?}"));
        for error in [enospc, copied] {
            let fault = StorageFault::of_sled(&sled::Error::Io(error), dir).unwrap();
            assert_eq!(fault.state, StorageState::Full);
            assert_eq!(
                fault.to_string(),
                "disk full in /data: free space, meshchat recovers by itself"
            );
        }
        let eio = sled::Error::Io(io::Error::from_raw_os_error(5));
        let fault = StorageFault::of_sled(&eio, dir).unwrap();
        assert_eq!(fault.state, StorageState::Failed);
        assert!(fault.to_string().contains("retries by itself"), "{fault}");
        assert!(StorageFault::of_sled(&sled::Error::Unsupported("x".into()), dir).is_none());
    }

    #[test]
    fn the_reserve_is_whole_or_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let reserve = Reserve::new(tmp.path().join("storage.reserve"));
        assert_eq!(reserve.missing_bytes(), RESERVE_BYTES);
        reserve.ensure().unwrap();
        assert_eq!(reserve.missing_bytes(), 0);
        assert_eq!(
            fs::metadata(tmp.path().join("storage.reserve"))
                .unwrap()
                .len(),
            RESERVE_BYTES
        );
        assert!(reserve.release());
        assert!(!reserve.release());
        assert!(free_bytes(tmp.path()).unwrap() > 0);
    }
}
