//! The coordinator's assignor: which member of a group should own which partition (the *target
//! assignment*), balanced and sticky.
//!
//! - **Balanced**: when every member subscribes to the same topics, the members' partition counts
//!   differ by at most one. With different subscriptions, members keep what they may, orphans go
//!   to the least loaded eligible member (topics with the fewest subscribers first), then
//!   partitions move from a member to an eligible one with at least two fewer until none can.
//! - **Sticky**: a member keeps every partition of its previous target that it is still eligible
//!   for, up to its share; only the excess and the orphaned partitions move.
//!
//! Pure and deterministic (members and partitions are walked in sorted order), so the same inputs
//! give the same assignment on any broker.

use std::collections::{BTreeMap, BTreeSet};

/// Partitions by topic.
pub type Partitions = BTreeMap<String, BTreeSet<i32>>;

/// What one member asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber<'a> {
    /// Member id.
    pub id: &'a str,
    /// The existing topics it subscribes to (names and regex matches, resolved).
    pub topics: BTreeSet<&'a str>,
    /// Its previous target assignment.
    pub previous: &'a Partitions,
}

/// Computes the target assignment of every member (members with nothing get an empty entry).
/// `partition_counts` gives each existing topic's partition count.
pub fn assign(members: &[Subscriber<'_>], partition_counts: &BTreeMap<String, u32>) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = members.iter().map(|m| (m.id.to_string(), Partitions::new())).collect();
    if members.is_empty() {
        return out;
    }
    let homogeneous = members.windows(2).all(|w| w[0].topics == w[1].topics);
    if homogeneous {
        let all: Vec<(&str, i32)> = members[0]
            .topics
            .iter()
            .flat_map(|t| (0..partition_counts.get(*t).copied().unwrap_or(0) as i32).map(move |p| (*t, p)))
            .collect();
        let eligible: Vec<usize> = (0..members.len()).collect();
        let mut load = vec![0usize; members.len()];
        balance(members, &all, &eligible, &mut load, &mut out);
    } else {
        heterogeneous(members, partition_counts, &mut out);
    }
    out
}

/// Spreads `parts` over the `eligible` members: each gets `parts / n` or one more; members keep
/// their previous partitions up to that share (those with the most previous ones get the larger
/// shares); the rest go to the least loaded, lowest index first.
fn balance(
    members: &[Subscriber<'_>],
    parts: &[(&str, i32)],
    eligible: &[usize],
    load: &mut [usize],
    out: &mut BTreeMap<String, Partitions>,
) {
    if eligible.is_empty() || parts.is_empty() {
        return;
    }
    let n = eligible.len();
    let base = parts.len() / n;
    let extra = parts.len() % n;
    let kept_of = |i: usize| -> Vec<(&str, i32)> {
        parts
            .iter()
            .copied()
            .filter(|(t, p)| members[i].previous.get(*t).is_some_and(|s| s.contains(p)))
            .collect()
    };
    let mut kept: Vec<(usize, Vec<(&str, i32)>)> = eligible.iter().map(|&i| (i, kept_of(i))).collect();
    // The larger shares go to the members that already hold the most (ties: the least loaded
    // overall, then the lowest index), which keeps the most partitions in place.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        kept[b]
            .1
            .len()
            .cmp(&kept[a].1.len())
            .then(load[kept[a].0].cmp(&load[kept[b].0]))
            .then(a.cmp(&b))
    });
    let mut quota = vec![base; n];
    for &k in order.iter().take(extra) {
        quota[k] += 1;
    }
    let mut taken: BTreeSet<(&str, i32)> = BTreeSet::new();
    let mut counts = vec![0usize; n];
    for (k, (i, list)) in kept.iter_mut().enumerate() {
        for tp in list.iter() {
            if counts[k] == quota[k] {
                break;
            }
            // A partition two members both held (a stale previous target) stays with the first.
            if taken.insert(*tp) {
                add(out, members[*i].id, tp);
                counts[k] += 1;
            }
        }
    }
    for tp in parts {
        if taken.contains(tp) {
            continue;
        }
        let Some(k) = (0..n)
            .filter(|&k| counts[k] < quota[k])
            .min_by_key(|&k| (load[kept[k].0] + counts[k], k))
        else {
            break;
        };
        taken.insert(*tp);
        add(out, members[kept[k].0].id, tp);
        counts[k] += 1;
    }
    for (k, (i, _)) in kept.iter().enumerate() {
        load[*i] += counts[k];
    }
}

/// Members with different subscriptions: sticky first, then least-loaded placement, then moves
/// that narrow a gap of two or more (each lowers the sum of squared loads, so it ends).
fn heterogeneous(
    members: &[Subscriber<'_>],
    partition_counts: &BTreeMap<String, u32>,
    out: &mut BTreeMap<String, Partitions>,
) {
    let mut topics: Vec<(&str, Vec<usize>)> = members
        .iter()
        .flat_map(|m| m.topics.iter().copied())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(|t| {
            (
                t,
                (0..members.len()).filter(|&i| members[i].topics.contains(t)).collect(),
            )
        })
        .collect();
    topics.sort_by_key(|(t, subs)| (subs.len(), *t));
    let mut owner: BTreeMap<(&str, i32), usize> = BTreeMap::new();
    let mut load = vec![0usize; members.len()];
    for (t, subs) in &topics {
        for p in 0..partition_counts.get(*t).copied().unwrap_or(0) as i32 {
            if let Some(&i) = subs
                .iter()
                .find(|&&i| members[i].previous.get(*t).is_some_and(|s| s.contains(&p)))
            {
                owner.insert((t, p), i);
                load[i] += 1;
            }
        }
    }
    for (t, subs) in &topics {
        for p in 0..partition_counts.get(*t).copied().unwrap_or(0) as i32 {
            if owner.contains_key(&(t, p)) {
                continue;
            }
            let Some(&i) = subs.iter().min_by_key(|&&i| (load[i], i)) else {
                continue;
            };
            owner.insert((t, p), i);
            load[i] += 1;
        }
    }
    let subscribers: BTreeMap<&str, &Vec<usize>> = topics.iter().map(|(t, s)| (*t, s)).collect();
    let bound = owner.len() * members.len() + 1;
    for _ in 0..bound {
        let best = owner
            .iter()
            .filter_map(|(&(t, p), &x)| {
                let y = *subscribers[t].iter().min_by_key(|&&i| (load[i], i))?;
                (load[x] >= load[y] + 2).then_some(((t, p), x, y))
            })
            .max_by_key(|&(_, x, y)| load[x] - load[y]);
        let Some((tp, x, y)) = best else { break };
        owner.insert(tp, y);
        load[x] -= 1;
        load[y] += 1;
    }
    for ((t, p), i) in owner {
        add(out, members[i].id, &(t, p));
    }
}

fn add(out: &mut BTreeMap<String, Partitions>, member: &str, (t, p): &(&str, i32)) {
    out.entry(member.to_string())
        .or_default()
        .entry(t.to_string())
        .or_default()
        .insert(*p);
}

/// The number of partitions in `p`.
#[cfg(test)]
pub fn count(p: &Partitions) -> usize {
    p.values().map(BTreeSet::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn run(
        ids: &[&str],
        topics: &[&str],
        prev: &BTreeMap<String, Partitions>,
        pc: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, Partitions> {
        let empty = Partitions::new();
        let members: Vec<Subscriber<'_>> = ids
            .iter()
            .map(|id| Subscriber {
                id,
                topics: topics.iter().copied().collect(),
                previous: prev.get(*id).unwrap_or(&empty),
            })
            .collect();
        assign(&members, pc)
    }

    fn check_balanced_and_complete(a: &BTreeMap<String, Partitions>, total: usize) {
        let sizes: Vec<usize> = a.values().map(count).collect();
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(max - min <= 1, "unbalanced: {sizes:?}");
        let mut all = BTreeSet::new();
        for p in a.values() {
            for (t, ps) in p {
                for x in ps {
                    assert!(all.insert((t.clone(), *x)), "{t}/{x} assigned twice");
                }
            }
        }
        assert_eq!(all.len(), total);
    }

    #[test]
    fn scale_out_and_in_is_balanced_and_sticky() {
        let pc = counts(&[("t", 12)]);
        let one = run(&["a"], &["t"], &BTreeMap::new(), &pc);
        check_balanced_and_complete(&one, 12);
        let ids6 = ["a", "b", "c", "d", "e", "f"];
        let six = run(&ids6, &["t"], &one, &pc);
        check_balanced_and_complete(&six, 12);
        // `a` kept two of its own; nothing else could stay.
        assert!(six["a"]["t"].is_subset(&one["a"]["t"]));
        // A seventh member: only partitions to it move.
        let ids7 = ["a", "b", "c", "d", "e", "f", "g"];
        let seven = run(&ids7, &["t"], &six, &pc);
        check_balanced_and_complete(&seven, 12);
        let moved: usize = ids6.iter().map(|id| count(&six[*id]) - count(&seven[*id])).sum();
        assert_eq!(moved, count(&seven["g"]));
        for id in ids6 {
            assert!(
                seven[id]["t"].is_subset(&six[id]["t"]),
                "{id} got a partition it did not have"
            );
        }
        // Down to two: the survivors keep everything they had.
        let two = run(&["b", "e"], &["t"], &seven, &pc);
        check_balanced_and_complete(&two, 12);
        assert!(seven["b"]["t"].is_subset(&two["b"]["t"]));
        assert!(seven["e"]["t"].is_subset(&two["e"]["t"]));
    }

    #[test]
    fn several_topics_balance_overall() {
        let pc = counts(&[("x", 3), ("y", 3), ("z", 1)]);
        let a = run(&["m1", "m2"], &["x", "y", "z"], &BTreeMap::new(), &pc);
        check_balanced_and_complete(&a, 7);
        // Partition-count change: stays sticky.
        let pc2 = counts(&[("x", 4), ("y", 3), ("z", 1)]);
        let b = run(&["m1", "m2"], &["x", "y", "z"], &a, &pc2);
        check_balanced_and_complete(&b, 8);
        let kept: usize = ["m1", "m2"]
            .iter()
            .map(|id| {
                a[*id]
                    .iter()
                    .map(|(t, ps)| {
                        ps.iter()
                            .filter(|p| b[*id].get(t).is_some_and(|s| s.contains(p)))
                            .count()
                    })
                    .sum::<usize>()
            })
            .sum();
        assert!(kept >= 6, "only {kept} of 7 partitions stayed");
    }

    #[test]
    fn different_subscriptions_only_get_their_topics() {
        let pc = counts(&[("x", 4), ("y", 2)]);
        let empty = Partitions::new();
        let members = vec![
            Subscriber {
                id: "a",
                topics: ["x"].into_iter().collect(),
                previous: &empty,
            },
            Subscriber {
                id: "b",
                topics: ["x", "y"].into_iter().collect(),
                previous: &empty,
            },
            Subscriber {
                id: "c",
                topics: ["y"].into_iter().collect(),
                previous: &empty,
            },
        ];
        let a = assign(&members, &pc);
        assert!(!a["a"].contains_key("y"));
        assert!(!a["c"].contains_key("x"));
        let total: usize = a.values().map(count).sum();
        assert_eq!(total, 6);
        let sizes: Vec<usize> = a.values().map(count).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
    }

    #[test]
    fn more_members_than_partitions_and_unknown_topics() {
        let pc = counts(&[("t", 2)]);
        let a = run(&["a", "b", "c"], &["t", "missing"], &BTreeMap::new(), &pc);
        assert_eq!(a.len(), 3);
        check_balanced_and_complete(&a, 2);
        assert!(run(&[], &["t"], &BTreeMap::new(), &pc).is_empty());
    }
}
