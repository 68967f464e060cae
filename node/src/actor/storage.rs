//! Storage faults, the actor's side. When the store records a fault (a full
//! disk, an I/O error), the user hears of it at once (`Event::Storage`, and
//! every refused write says what to do), the database is reopened from what
//! is on disk (dropping writes sled held in memory but never wrote), and once
//! the disk has room again a probe write is made and writes resume, without
//! restarting the node. Reads are served throughout.

use super::*;
use crate::disk::{self, Reserve, StorageFault, StorageState};

/// How often a node with a storage fault checks whether it can recover.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Recovery from a storage fault.
pub(crate) struct StorageWatch {
    reserve: Reserve,
    /// The fault the user was told about; `None` while writes work.
    reported: Option<StorageFault>,
    /// Relay deposits refused as "unavailable" so far: a new one may be the
    /// first sign of a fault (the mailbox writes to the database directly).
    refused_deposits: u64,
}

impl StorageWatch {
    /// Sets the reserve aside (best effort: a disk too full for it still runs).
    pub(crate) fn new(reserve: Reserve) -> Self {
        if let Err(error) = reserve.ensure() {
            tracing::warn!(%error, bytes = disk::RESERVE_BYTES, "cannot set space aside for recovering from a full disk");
        }
        Self {
            reserve,
            reported: None,
            refused_deposits: 0,
        }
    }

    pub(crate) fn fault(&self) -> Option<&StorageFault> {
        self.reported.as_ref()
    }
}

impl Actor {
    /// Runs after every event the actor handles: a fault the store has just
    /// recorded is reported and the database reopened at once, so nothing it
    /// held in memory without writing is ever served.
    pub(crate) fn notice_storage_fault(&mut self) {
        if self.storage.reported.is_some() {
            return;
        }
        let Some(fault) = self.chats.store().fault() else {
            return;
        };
        self.emit(Event::Storage {
            state: fault.state,
            dir: fault.dir.clone(),
            message: fault.to_string(),
        });
        self.storage.reported = Some(fault);
        self.reopen_store();
    }

    /// Every [`PROBE_INTERVAL`]: reopens the database if that is still to do,
    /// and resumes writes once the disk has room and a probe write succeeds.
    pub(crate) async fn storage_tick(&mut self) {
        let refused = self.metrics.refused_unavailable;
        let newly_refused = refused > self.storage.refused_deposits;
        self.storage.refused_deposits = refused;
        let Some(fault) = self.storage.reported.clone() else {
            if newly_refused {
                // A flush reports (and records) the error sled keeps, if any.
                let _ = self.chats.store().flush().await;
                self.notice_storage_fault();
            }
            return;
        };
        if self.chats.store().needs_reopen() {
            self.reopen_store();
            return;
        }
        let needed = disk::RESUME_BYTES + self.storage.reserve.missing_bytes();
        match disk::free_bytes(&fault.dir) {
            Ok(free) if free >= needed => {}
            _ => return,
        }
        if let Err(error) = self.storage.reserve.ensure() {
            tracing::debug!(%error, "the disk does not take writes yet");
            return;
        }
        if let Err(error) = self.chats.store().resume().await {
            // The probe failed: a new fault is recorded, reopen next tick.
            tracing::warn!(%error, "storage probe failed");
            return;
        }
        self.storage.reported = None;
        tracing::info!(dir = %fault.dir.display(), "storage recovered");
        self.drive(crate::engine::Input::StorageRecovered);
        self.emit(Event::Storage {
            state: StorageState::Ok,
            message: format!("storage works again in {}", fault.dir.display()),
            dir: fault.dir,
        });
    }

    /// Reopens the database from disk, when nothing holds the old one and
    /// there is room for sled to open (it writes a little while opening).
    fn reopen_store(&mut self) {
        if !self.commit.is_idle() {
            // Deposits written to the old database are waiting for their
            // (failing) flush; they are refused, then the next tick reopens.
            return;
        }
        let Some(dir) = self.storage.reported.as_ref().map(|f| f.dir.clone()) else {
            return;
        };
        self.storage.reserve.release();
        if disk::free_bytes(&dir).map_or(true, |free| free < disk::REOPEN_BYTES) {
            // Keep serving reads from the old database until there is room.
            return;
        }
        // The relay's mailboxes count what the database held; recount.
        self.mailbox = None;
        match self.chats.store_mut().reopen() {
            Ok(()) => tracing::info!("database reopened; writes resume once the disk has room"),
            Err(error) => tracing::warn!(%error, "cannot reopen the database yet"),
        }
        if let Some(limits) = self.config.mailbox.clone() {
            let db = self.chats.store().handle();
            match crate::mailbox::Mailbox::open(self.chats.identity().clone(), limits, db) {
                Ok(mailbox) => self.mailbox = Some(mailbox),
                Err(error) => tracing::error!(%error, "cannot reopen the mailboxes"),
            }
        }
    }
}
