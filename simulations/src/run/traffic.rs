//! Signed changes sent and received by every node, by path: how many
//! copies of a change the network carried to get it to each member.

use meshchat_node::Traffic;

use super::nodes::SimNode;

/// Every node's change counters added up (a stopped node counts nothing).
pub(super) async fn total(nodes: &[SimNode]) -> Traffic {
    let mut sum = Traffic::default();
    for node in nodes {
        if let Ok(status) = node.node.network().status().await {
            add(&mut sum, &status.traffic);
        }
    }
    sum
}

fn add(sum: &mut Traffic, t: &Traffic) {
    sum.gossip_published += t.gossip_published;
    sum.pushed += t.pushed;
    sum.received_by_push += t.received_by_push;
    sum.received_by_gossip += t.received_by_gossip;
    sum.received_by_sync += t.received_by_sync;
    sum.received_from_relays += t.received_from_relays;
    sum.couriers_sent += t.couriers_sent;
    sum.couriers_failed += t.couriers_failed;
}

/// What the counters gained from `before` to `after`.
pub(super) fn since(before: &Traffic, after: &Traffic) -> Traffic {
    Traffic {
        gossip_published: after
            .gossip_published
            .saturating_sub(before.gossip_published),
        pushed: after.pushed.saturating_sub(before.pushed),
        received_by_push: after
            .received_by_push
            .saturating_sub(before.received_by_push),
        received_by_gossip: after
            .received_by_gossip
            .saturating_sub(before.received_by_gossip),
        received_by_sync: after
            .received_by_sync
            .saturating_sub(before.received_by_sync),
        received_from_relays: after
            .received_from_relays
            .saturating_sub(before.received_from_relays),
        couriers_sent: after.couriers_sent.saturating_sub(before.couriers_sent),
        couriers_failed: after.couriers_failed.saturating_sub(before.couriers_failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_share_is_what_each_counter_gained() {
        let before = Traffic {
            gossip_published: 3,
            received_by_sync: 10,
            ..Traffic::default()
        };
        let mut after = before.clone();
        add(
            &mut after,
            &Traffic {
                gossip_published: 2,
                received_by_gossip: 7,
                couriers_failed: 1,
                ..Traffic::default()
            },
        );
        let gained = since(&before, &after);
        assert_eq!(gained.gossip_published, 2);
        assert_eq!(gained.received_by_gossip, 7);
        assert_eq!(gained.received_by_sync, 0);
        assert_eq!(gained.couriers_failed, 1);
    }
}
