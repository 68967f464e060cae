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
    *sum = each(sum, t, u64::saturating_add);
}

/// What the counters gained from `before` to `after`.
pub(super) fn since(before: &Traffic, after: &Traffic) -> Traffic {
    each(after, before, u64::saturating_sub)
}

/// `op` applied to each pair of counters.
fn each(a: &Traffic, b: &Traffic, op: fn(u64, u64) -> u64) -> Traffic {
    Traffic {
        gossip_published: op(a.gossip_published, b.gossip_published),
        pushed: op(a.pushed, b.pushed),
        received_by_push: op(a.received_by_push, b.received_by_push),
        received_by_gossip: op(a.received_by_gossip, b.received_by_gossip),
        received_by_sync: op(a.received_by_sync, b.received_by_sync),
        received_from_relays: op(a.received_from_relays, b.received_from_relays),
        couriers_sent: op(a.couriers_sent, b.couriers_sent),
        couriers_failed: op(a.couriers_failed, b.couriers_failed),
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
