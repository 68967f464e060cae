//! gossipsub peer scoring: what a peer loses for sending group changes the
//! node rejects, and what a low score costs it.
//!
//! The node reports every gossiped frame to gossipsub as `Accept`, `Ignore`
//! or `Reject` (`groups/gossip.rs`). Each `Reject` counts as an invalid
//! message delivery against the peer that passed the frame on; the penalty is
//! `INVALID_DELIVERY_WEIGHT` times the square of that count, which decays to
//! a tenth in an hour. With the thresholds below, the third rejected frame
//! takes a peer from 0 to -90: below [`GRAYLIST_THRESHOLD`], so the node
//! ignores everything the peer sends over gossipsub, stops publishing and
//! gossiping to it and prunes it from every mesh. Honest members lose nothing:
//! a frame is only rejected when it can never be valid, and honest nodes
//! never forward what they have not accepted. Group changes still reach a
//! graylisted peer, and it can still send, by anti-entropy sync over
//! `/meshchat/sync/1`, where every change is judged on its own.

use std::time::Duration;

use libp2p::gossipsub::{
    score_parameter_decay, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
};

/// Below this score a peer receives no gossip (IHAVE) from the node.
pub const GOSSIP_THRESHOLD: f64 = -10.0;
/// Below this score the node publishes nothing to the peer.
pub const PUBLISH_THRESHOLD: f64 = -50.0;
/// Below this score the node ignores every gossipsub message from the peer.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;
/// Penalty per rejected frame, squared: 1 → -10, 2 → -40, 3 → -90.
pub const INVALID_DELIVERY_WEIGHT: f64 = -10.0;
/// Most a peer can earn by being first to deliver valid frames, so good
/// behaviour cannot buy room for more than one extra rejected frame.
pub const MAX_POSITIVE_SCORE: f64 = 10.0;

/// The thresholds above, as gossipsub takes them.
pub(crate) fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        // Peer exchange is off; opportunistic grafting picks peers that
        // delivered at least half the maximum.
        accept_px_threshold: MAX_POSITIVE_SCORE,
        opportunistic_graft_threshold: MAX_POSITIVE_SCORE / 2.0,
    }
}

/// Scoring across topics. Group topics get [`group_topic_params`] as the node
/// subscribes to them.
pub(crate) fn peer_score_params() -> PeerScoreParams {
    PeerScoreParams {
        topic_score_cap: MAX_POSITIVE_SCORE,
        // Members of one group often share a public address (an office, a
        // household, carrier-grade NAT); penalising that would split groups.
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    }
}

/// Scoring on one group's topic.
pub(crate) fn group_topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        // Chats are quiet for hours: time in the mesh and message rates say
        // nothing about a peer, so they neither reward nor penalise.
        time_in_mesh_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: score_parameter_decay(Duration::from_secs(600)),
        first_message_deliveries_cap: MAX_POSITIVE_SCORE,
        invalid_message_deliveries_weight: INVALID_DELIVERY_WEIGHT,
        invalid_message_deliveries_decay: score_parameter_decay(Duration::from_secs(3600)),
        ..TopicScoreParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_valid_and_three_rejections_graylist() {
        peer_score_params().validate().unwrap();
        thresholds().validate().unwrap();
        group_topic_params().validate().unwrap();
        let penalty = |n: f64| INVALID_DELIVERY_WEIGHT * n * n;
        assert!(penalty(2.0) > GRAYLIST_THRESHOLD);
        assert!(penalty(3.0) < GRAYLIST_THRESHOLD);
        assert!(penalty(4.0) + MAX_POSITIVE_SCORE < GRAYLIST_THRESHOLD);
    }
}
