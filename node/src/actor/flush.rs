//! Running the group commit: start a flush when something waits for one,
//! and when it finishes, answer everything it covered.

use super::{commit::Held, *};
use crate::{groups::held_verdicts::Frame, protocol::WireError, store::StoreError};

impl Actor {
    /// Starts a flush on a task of its own if something waits for one and
    /// none is running (called after every event the actor handles, so what
    /// one event held is covered by one flush).
    pub(crate) fn start_flush(&mut self) {
        if !self.commit.begin() {
            return;
        }
        let flush = self.chats.store().handle().flush();
        let done = self.commit.done_tx();
        tokio::spawn(async move {
            let _ = done.send(flush.await).await;
        });
    }

    /// A flush finished: answer, announce and pass on what it covered, or,
    /// if it failed, refuse all of it.
    pub(crate) fn on_flushed(&mut self, result: Result<(), StoreError>) {
        let result = result.map_err(|error| self.chats.store().failed(error));
        if let Err(error) = &result {
            tracing::error!(%error, "flush failed; refusing what waited for it");
        }
        let covered = self.commit.finish(result.is_ok());
        self.settle(covered, &result);
    }

    /// Stopping: the final flush (`result`) covered everything still held;
    /// answer it (the user's sends; peers are gone with the swarm).
    pub(crate) fn settle_at_stop(&mut self, result: Result<(), StoreError>) {
        let result = result.map_err(|error| self.chats.store().failed(error));
        let held = self.commit.finish_all();
        self.settle(held, &result);
    }

    /// Answers, announces and passes on what a flush covered, or refuses
    /// all of it if the flush failed.
    fn settle(&mut self, covered: Vec<Held>, result: &Result<(), StoreError>) {
        let flushed = result.is_ok();
        let mut deposits = Vec::new();
        for held in covered {
            match held {
                Held::Local { outcome, reply } => {
                    let answer = match result {
                        Ok(()) => Ok(outcome),
                        Err(error) => {
                            self.chats.local_write_lost(&outcome);
                            Err(match self.chats.store().fault() {
                                Some(fault) => NodeError::Store(StoreError::Unavailable(fault)),
                                // The push and the publish left before this
                                // flush: say so, the user may see it arrive.
                                None => NodeError::Io(format!(
                                    "storage: {error}; the write may already have reached \
                                     its recipients, and comes back from them once this \
                                     device can write again"
                                )),
                            })
                        }
                    };
                    let _ = reply.send(answer);
                }
                Held::Deposit(deposit) => deposits.push(deposit),
                Held::Push { ingest, channel } => {
                    let response = if flushed {
                        let receipt = self.ingested(ingest);
                        Response::Pushed {
                            stored: receipt.stored,
                            rejected: receipt.rejected,
                        }
                    } else {
                        self.ingest_failed(&ingest);
                        Response::Error(WireError::Storage("storage failed".into()))
                    };
                    self.answer_sync(channel, response);
                }
                Held::Gossip {
                    ingest,
                    message_id,
                    propagation_source,
                } => {
                    let receipt = if flushed {
                        Some(self.ingested(*ingest))
                    } else {
                        self.ingest_failed(&ingest);
                        None
                    };
                    let frame = Frame {
                        message_id,
                        propagation_source,
                    };
                    self.judge_gossip(receipt, frame);
                }
                Held::Synced {
                    ingest,
                    key,
                    chat,
                    heads,
                    more,
                } => {
                    let peer = ingest.peer;
                    if flushed {
                        self.ingested(ingest);
                        self.continue_sync(peer, key, chat, &heads, more);
                    } else {
                        self.ingest_failed(&ingest);
                    }
                }
                Held::Mail(page) => self.mail_flushed(page, flushed),
            }
        }
        if !deposits.is_empty() {
            self.deposits_flushed(deposits, flushed);
        }
    }
}
