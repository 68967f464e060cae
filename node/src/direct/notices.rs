//! `/meshchat/notice/1`: profiles, presence heartbeats and typing, between
//! peers. Nothing here waits for a flush; a notice is answered at once.

use libp2p::{
    request_response::{self, ResponseChannel},
    PeerId,
};

use super::notice_wire::{Notice, NoticeResponse};
use crate::{
    actor::Actor,
    framing::{Inbound, WireError},
    keys::public_key_of,
};

impl Actor {
    /// Sends a notice; its answer is only looked at for a profile.
    pub(crate) fn send_notice(&mut self, peer: PeerId, notice: Notice) {
        let id = self
            .swarm
            .behaviour_mut()
            .notice
            .send_request(&peer, Inbound::Request(notice));
        self.notices.insert(id);
    }

    pub(crate) fn on_notice_event(
        &mut self,
        event: request_response::Event<Inbound<Notice>, NoticeResponse>,
    ) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let response = self.on_notice(peer, request);
                self.answer_notice(channel, response);
            }
            E::Message {
                peer,
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if self.notices.remove(&request_id) {
                    if let NoticeResponse::Profile(Some(signed)) = response {
                        if public_key_of(&peer) == Some(signed.peer) {
                            self.accept_profile(signed);
                        }
                    }
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "notice failed");
                self.notices.remove(&request_id);
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound notice failed");
            }
            E::ResponseSent { .. } => {}
        }
    }

    fn on_notice(&mut self, peer: PeerId, notice: Inbound<Notice>) -> NoticeResponse {
        let Some(from) = public_key_of(&peer) else {
            return NoticeResponse::Error(WireError::NotMember);
        };
        if self.chats.store().is_blocked(&from) {
            return NoticeResponse::Error(WireError::NotMember);
        }
        match notice {
            Inbound::Refused(error) => {
                self.refused(peer, format!("notice frame: {error}"));
                NoticeResponse::Error(error)
            }
            Inbound::Request(Notice::Profile(signed)) => {
                if signed.peer == from {
                    self.accept_profile(signed);
                }
                NoticeResponse::Noted
            }
            Inbound::Request(Notice::GetProfile) => {
                NoticeResponse::Profile(self.chats.store().profile(&self.chats.me()).ok().flatten())
            }
            Inbound::Request(Notice::Heartbeat(beat)) => {
                self.on_heartbeat(from, beat);
                NoticeResponse::Noted
            }
            Inbound::Request(Notice::Typing { chat }) => {
                self.on_typing(peer, from, chat);
                NoticeResponse::Noted
            }
        }
    }

    fn answer_notice(
        &mut self,
        channel: ResponseChannel<NoticeResponse>,
        response: NoticeResponse,
    ) {
        if self
            .swarm
            .behaviour_mut()
            .notice
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!("peer went away before our answer to its notice");
        }
    }
}
