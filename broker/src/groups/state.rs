//! One consumer group's state and the rules that change it: members joining, heartbeating,
//! leaving; the target assignment; each member's reconciliation toward its target.
//!
//! # Epochs and reconciliation (the KIP-848 model)
//!
//! - The **group epoch** goes up whenever the membership or a subscription changes, or a
//!   subscribed topic's partition count changes. The **target assignment** is recomputed for
//!   it (see [`super::assign`]); its epoch is the **assignment epoch**.
//! - Each member has a **member epoch** and an **assigned** set: what it may own now. Moving
//!   toward its target, a member first *revokes* what the target no longer gives it (the
//!   partitions go to `revoking`; the member keeps its epoch), and only once it has confirmed
//!   the revocation (its heartbeat no longer lists them as owned) does it take the target's epoch
//!   and the partitions of its target that no other member still owns or revokes. A partition
//!   that moves is therefore never owned twice, and the other partitions keep flowing.
//! - A heartbeat with an epoch one behind the member's (it missed a response) is accepted;
//!   anything else is fenced.
//!
//! Everything here is pure: the coordinator persists the changed group (as one record) before it
//! answers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use strata_protocol::ErrorCode;
use strata_protocol::api::consumer_group_heartbeat::{JOIN_EPOCH, LEAVE_EPOCH, STATIC_LEAVE_EPOCH};

use super::assign::{self, Partitions, Subscriber};

/// A group member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member id (assigned by the coordinator at join).
    pub id: String,
    /// Static membership: the id a restarted instance comes back with.
    pub instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address as the coordinator saw it.
    pub client_host: String,
    /// The member epoch.
    pub epoch: i32,
    /// The epoch before the last bump (a heartbeat with it is still accepted).
    pub previous_epoch: i32,
    /// Subscribed topic names.
    pub topics: BTreeSet<String>,
    /// Subscribed topic regex (whole-name match), if any.
    pub regex: Option<String>,
    /// Session timeout.
    pub session_timeout_ms: u64,
    /// Longest a revocation may take before the member is removed.
    pub rebalance_timeout_ms: u64,
    /// Partitions the member may own now.
    pub assigned: Partitions,
    /// Partitions the member must give up and has not yet confirmed giving up.
    pub revoking: Partitions,
    /// A static member that left for now (epoch −2): it keeps its partitions until its session
    /// times out or its instance comes back.
    #[serde(default)]
    pub away: bool,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Group {
    /// Group epoch.
    pub epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Target assignment by member id.
    pub target: BTreeMap<String, Partitions>,
    /// Partition count of each subscribed topic when the target was computed.
    pub subscribed: BTreeMap<String, u32>,
    /// Since when (ms since the epoch) the group has had no member; its offsets expire
    /// `groups.offsets_retention` after this and after its last commit.
    #[serde(default)]
    pub empty_since_ms: Option<i64>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The next offset to consume.
    pub offset: i64,
    /// Client metadata.
    pub metadata: Option<String>,
    /// When it was committed (ms since the epoch).
    pub timestamp: i64,
}

/// A refusal: code and message.
pub type Refusal = (ErrorCode, String);

/// A member's heartbeat, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// Member id ("" to join).
    pub member_id: String,
    /// Member epoch (0 join, −1 leave, −2 static leave).
    pub member_epoch: i32,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout (resolved).
    pub session_timeout_ms: u64,
    /// Rebalance timeout (resolved).
    pub rebalance_timeout_ms: u64,
    /// New subscription (names), if it changed.
    pub topics: Option<BTreeSet<String>>,
    /// New subscription regex, if it changed (`Some(None)` clears it).
    pub regex: Option<Option<String>>,
    /// The partitions the member owns, if sent.
    pub owned: Option<Partitions>,
}

/// What a heartbeat leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The member's id.
    pub member_id: String,
    /// Its epoch (−1 after leaving, −2 after a static leave).
    pub member_epoch: i32,
    /// What it may own now.
    pub assignment: Partitions,
    /// Whether it still has partitions to revoke or to receive (it should heartbeat sooner).
    pub pending: bool,
    /// Whether the group changed (and must be persisted).
    pub changed: bool,
    /// A member this one replaced (a static member's earlier instance).
    pub replaced: Option<String>,
}

/// The topics a subscription covers: its names that exist plus the regex's matches.
/// `matches` decides a regex match (the coordinator caches compiled regexes).
fn resolve<'a>(
    m: &'a Member,
    topics: &'a BTreeMap<String, u32>,
    matches: &impl Fn(&str, &str) -> bool,
) -> BTreeSet<&'a str> {
    let mut out: BTreeSet<&str> = m
        .topics
        .iter()
        .filter(|t| topics.contains_key(*t))
        .map(String::as_str)
        .collect();
    if let Some(re) = &m.regex {
        out.extend(
            topics
                .keys()
                .filter(|t| !crate::topics::is_internal(t) && matches(re, t))
                .map(String::as_str),
        );
    }
    out
}

fn remove_all(from: &mut Partitions, what: &Partitions) {
    for (t, ps) in what {
        if let Some(s) = from.get_mut(t) {
            s.retain(|p| !ps.contains(p));
            if s.is_empty() {
                from.remove(t);
            }
        }
    }
}

fn intersect(a: &Partitions, b: &Partitions) -> Partitions {
    a.iter()
        .filter_map(|(t, ps)| {
            let other = b.get(t)?;
            let s: BTreeSet<i32> = ps.intersection(other).copied().collect();
            (!s.is_empty()).then(|| (t.clone(), s))
        })
        .collect()
}

fn minus(a: &Partitions, b: &Partitions) -> Partitions {
    let mut out = a.clone();
    remove_all(&mut out, b);
    out
}

impl Group {
    /// `empty`, `reconciling` or `stable`.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "empty"
        } else if self.members.values().any(|m| {
            m.epoch != self.assignment_epoch
                || !m.revoking.is_empty()
                || self.target.get(&m.id).is_some_and(|t| *t != m.assigned)
        }) || self.epoch != self.assignment_epoch
        {
            "reconciling"
        } else {
            "stable"
        }
    }

    /// Removes a member (left, timed out, or fenced); its partitions are free at once.
    pub fn remove_member(&mut self, id: &str) -> bool {
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            self.epoch += 1;
            true
        } else {
            false
        }
    }

    /// Handles one heartbeat. `topics`: every topic's partition count; `new_id` makes a member
    /// id; `matches(regex, topic)`; `max_size`: most members.
    ///
    /// # Errors
    /// `UNKNOWN_MEMBER_ID`, `FENCED_MEMBER_EPOCH`, `GROUP_MAX_SIZE_REACHED`, `INVALID_REQUEST`.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &BTreeMap<String, u32>,
        new_id: impl FnOnce() -> String,
        matches: &impl Fn(&str, &str) -> bool,
        max_size: usize,
    ) -> Result<Outcome, Refusal> {
        let mut changed = false;
        let mut replaced = None;
        let id = match hb.member_epoch {
            JOIN_EPOCH => {
                let same_instance = hb.instance_id.as_ref().and_then(|inst| {
                    self.members
                        .values()
                        .find(|m| m.instance_id.as_ref() == Some(inst))
                        .map(|m| m.id.clone())
                });
                let id = if hb.member_id.is_empty() {
                    new_id()
                } else {
                    hb.member_id.clone()
                };
                if let Some(old_id) = same_instance {
                    // A static member's instance is back (restarted, or rejoining after leaving
                    // for now): it takes over the old member's place, assignment and epoch with
                    // no rebalance. The old member id is fenced.
                    let Some(mut m) = self.members.remove(&old_id) else {
                        unreachable!("found above")
                    };
                    if let Some(t) = self.target.remove(&old_id) {
                        self.target.insert(id.clone(), t);
                    }
                    m.id = id.clone();
                    m.away = false;
                    // The new instance owns nothing: what the old one was revoking is free.
                    m.revoking.clear();
                    m.client_id = hb.client_id.clone();
                    m.client_host = hb.client_host.clone();
                    m.session_timeout_ms = hb.session_timeout_ms;
                    m.rebalance_timeout_ms = hb.rebalance_timeout_ms;
                    self.members.insert(id.clone(), m);
                    if old_id != id {
                        replaced = Some(old_id);
                    }
                    changed = true;
                } else {
                    if self.members.contains_key(&id) {
                        // A member rejoining after it lost its partitions starts over.
                        self.remove_member(&id);
                    }
                    if self.members.len() >= max_size {
                        return Err((
                            ErrorCode::GroupMaxSizeReached,
                            format!("the group has reached its maximum size of {max_size} members"),
                        ));
                    }
                    let topics_given = hb.topics.as_ref().is_some_and(|t| !t.is_empty());
                    let regex_given = hb
                        .regex
                        .as_ref()
                        .is_some_and(|r| r.as_ref().is_some_and(|r| !r.is_empty()));
                    if !topics_given && !regex_given {
                        return Err((
                            ErrorCode::InvalidRequest,
                            "a joining member must subscribe to topic names or a regex".into(),
                        ));
                    }
                    self.members.insert(
                        id.clone(),
                        Member {
                            id: id.clone(),
                            instance_id: hb.instance_id.clone(),
                            client_id: hb.client_id.clone(),
                            client_host: hb.client_host.clone(),
                            epoch: 0,
                            previous_epoch: 0,
                            topics: BTreeSet::new(),
                            regex: None,
                            session_timeout_ms: hb.session_timeout_ms,
                            rebalance_timeout_ms: hb.rebalance_timeout_ms,
                            assigned: Partitions::new(),
                            revoking: Partitions::new(),
                            away: false,
                        },
                    );
                    self.epoch += 1;
                    changed = true;
                }
                id
            }
            LEAVE_EPOCH => {
                let removed = self.remove_member(&hb.member_id);
                return Ok(Outcome {
                    member_id: hb.member_id,
                    member_epoch: LEAVE_EPOCH,
                    assignment: Partitions::new(),
                    pending: false,
                    changed: removed,
                    replaced: None,
                });
            }
            STATIC_LEAVE_EPOCH => {
                let Some(m) = self.members.get_mut(&hb.member_id) else {
                    return Err(unknown_member(&hb.member_id));
                };
                let changed = if m.instance_id.is_some() {
                    let was = m.away;
                    m.away = true;
                    !was
                } else {
                    self.remove_member(&hb.member_id)
                };
                return Ok(Outcome {
                    member_id: hb.member_id,
                    member_epoch: STATIC_LEAVE_EPOCH,
                    assignment: Partitions::new(),
                    pending: false,
                    changed,
                    replaced: None,
                });
            }
            epoch => {
                let Some(m) = self.members.get_mut(&hb.member_id) else {
                    return Err(unknown_member(&hb.member_id));
                };
                if epoch != m.epoch && epoch != m.previous_epoch {
                    return Err((
                        ErrorCode::FencedMemberEpoch,
                        format!(
                            "member epoch {epoch} is not the member's current epoch {}: rejoin",
                            m.epoch
                        ),
                    ));
                }
                if m.away {
                    m.away = false;
                    changed = true;
                }
                hb.member_id.clone()
            }
        };
        let m = self.members.get_mut(&id).expect("member present");
        if let Some(t) = hb.topics
            && t != m.topics
        {
            m.topics = t;
            self.epoch += 1;
            changed = true;
        }
        if let Some(r) = hb.regex {
            let r = r.filter(|r| !r.is_empty());
            if r != m.regex {
                m.regex = r;
                self.epoch += 1;
                changed = true;
            }
        }
        let m = self.members.get_mut(&id).expect("member present");
        // Only a heartbeat at the member's current epoch confirms a revocation: a delayed one
        // from before must not release partitions the member still holds.
        if let Some(owned) = hb.owned.as_ref().filter(|_| hb.member_epoch == m.epoch) {
            let still = intersect(&m.revoking, owned);
            if still != m.revoking {
                m.revoking = still;
                changed = true;
            }
        }
        changed |= self.update_target(topics, matches);
        changed |= self.reconcile(&id);
        let m = &self.members[&id];
        let target = self.target.get(&id).cloned().unwrap_or_default();
        Ok(Outcome {
            member_id: id,
            member_epoch: m.epoch,
            assignment: m.assigned.clone(),
            pending: !m.revoking.is_empty() || target != m.assigned,
            changed,
            replaced,
        })
    }

    /// Recomputes the target assignment if the group epoch moved past it or a subscribed
    /// topic's partition count changed. Returns whether anything changed.
    pub fn update_target(&mut self, topics: &BTreeMap<String, u32>, matches: &impl Fn(&str, &str) -> bool) -> bool {
        let resolved: Vec<(String, BTreeSet<&str>)> = self
            .members
            .values()
            .map(|m| (m.id.clone(), resolve(m, topics, matches)))
            .collect();
        let subscribed: BTreeMap<String, u32> = resolved
            .iter()
            .flat_map(|(_, ts)| ts.iter())
            .map(|t| (t.to_string(), topics[*t]))
            .collect();
        if self.epoch == self.assignment_epoch && subscribed == self.subscribed {
            return false;
        }
        if self.epoch == self.assignment_epoch {
            self.epoch += 1;
        }
        let empty = Partitions::new();
        let subscribers: Vec<Subscriber<'_>> = resolved
            .iter()
            .map(|(id, ts)| Subscriber {
                id,
                topics: ts.clone(),
                previous: self.target.get(id).unwrap_or(&empty),
            })
            .collect();
        let target = assign::assign(&subscribers, &subscribed);
        self.target = target;
        self.subscribed = subscribed;
        self.assignment_epoch = self.epoch;
        true
    }

    /// Moves member `id` toward its target: revokes what the target dropped; once nothing is
    /// being revoked, takes the target epoch and every target partition no other member owns.
    fn reconcile(&mut self, id: &str) -> bool {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let owned_by_others: Partitions = {
            let mut o = Partitions::new();
            for m in self.members.values().filter(|m| m.id != id) {
                for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
                    o.entry(t.clone()).or_default().extend(ps.iter().copied());
                }
            }
            o
        };
        let assignment_epoch = self.assignment_epoch;
        let m = self.members.get_mut(id).expect("member present");
        let before = (m.assigned.clone(), m.revoking.clone(), m.epoch);
        let dropped = minus(&m.assigned, &target);
        if !dropped.is_empty() {
            for (t, ps) in &dropped {
                m.revoking.entry(t.clone()).or_default().extend(ps.iter().copied());
            }
            remove_all(&mut m.assigned, &dropped);
        }
        if m.revoking.is_empty() {
            if m.epoch != assignment_epoch {
                m.previous_epoch = m.epoch;
                m.epoch = assignment_epoch;
            }
            let wanted = minus(&target, &m.assigned);
            let free = minus(&wanted, &owned_by_others);
            for (t, ps) in free {
                m.assigned.entry(t).or_default().extend(ps);
            }
        }
        (m.assigned.clone(), m.revoking.clone(), m.epoch) != before
    }

    /// Checks that a commit from `member_id` at `epoch` may be accepted.
    ///
    /// # Errors
    /// `UNKNOWN_MEMBER_ID`, `STALE_MEMBER_EPOCH`, or `NON_EMPTY_GROUP` for a commit from outside
    /// membership while members are active.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), Refusal> {
        if member_id.is_empty() && epoch < 0 {
            if self.members.is_empty() {
                return Ok(());
            }
            return Err((
                ErrorCode::NonEmptyGroup,
                format!(
                    "the group has {} active member(s); only they may commit (stop them first to set offsets from outside)",
                    self.members.len()
                ),
            ));
        }
        let Some(m) = self.members.get(member_id) else {
            return Err(unknown_member(member_id));
        };
        if epoch != m.epoch && epoch != m.previous_epoch {
            return Err((
                ErrorCode::StaleMemberEpoch,
                format!("commit at member epoch {epoch}, but the member is at epoch {}", m.epoch),
            ));
        }
        Ok(())
    }
}

fn unknown_member(id: &str) -> Refusal {
    (
        ErrorCode::UnknownMemberId,
        format!("member {id:?} is not in the group (it left, timed out or was replaced): rejoin"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn no_regex(_: &str, _: &str) -> bool {
        false
    }

    fn hb(id: &str, epoch: i32, owned: Option<&Partitions>) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: epoch,
            instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 60_000,
            topics: (epoch == 0).then(|| ["t".to_string()].into_iter().collect()),
            regex: None,
            owned: owned.cloned(),
        }
    }

    fn join(g: &mut Group, id: &str, t: &BTreeMap<String, u32>) -> Outcome {
        let id2 = id.to_string();
        g.heartbeat(hb("", 0, None), t, move || id2, &no_regex, 100).unwrap()
    }

    #[test]
    fn a_partition_moves_only_after_its_revocation() {
        let t = topics(&[("t", 4)]);
        let mut g = Group::default();
        let a = join(&mut g, "a", &t);
        assert_eq!(assign::count(&a.assignment), 4);
        assert_eq!(g.state(), "stable");
        let b = join(&mut g, "b", &t);
        // b's partitions are still a's: it gets nothing yet, and must come back soon.
        assert_eq!(assign::count(&b.assignment), 0);
        assert!(b.pending);
        // a is told to give up two; until it confirms, it keeps its epoch.
        let a2 = g
            .heartbeat(
                hb("a", a.member_epoch, Some(&a.assignment)),
                &t,
                String::new,
                &no_regex,
                100,
            )
            .unwrap();
        assert_eq!(assign::count(&a2.assignment), 2);
        assert_eq!(a2.member_epoch, a.member_epoch);
        let b2 = g
            .heartbeat(
                hb("b", b.member_epoch, Some(&Partitions::new())),
                &t,
                String::new,
                &no_regex,
                100,
            )
            .unwrap();
        assert_eq!(assign::count(&b2.assignment), 0, "nothing is free while a revokes");
        // a confirms: now b gets its two.
        let a3 = g
            .heartbeat(
                hb("a", a2.member_epoch, Some(&a2.assignment)),
                &t,
                String::new,
                &no_regex,
                100,
            )
            .unwrap();
        assert_eq!(a3.member_epoch, g.assignment_epoch);
        let b3 = g
            .heartbeat(
                hb("b", b2.member_epoch, Some(&b2.assignment)),
                &t,
                String::new,
                &no_regex,
                100,
            )
            .unwrap();
        assert_eq!(assign::count(&b3.assignment), 2);
        assert!(intersect(&a3.assignment, &b3.assignment).is_empty());
        assert!(!b3.pending);
        assert_eq!(g.state(), "stable");
    }

    #[test]
    fn fencing_and_leaving() {
        let t = topics(&[("t", 2)]);
        let mut g = Group::default();
        let a = join(&mut g, "a", &t);
        let err = g
            .heartbeat(hb("a", a.member_epoch + 5, None), &t, String::new, &no_regex, 100)
            .unwrap_err();
        assert_eq!(err.0, ErrorCode::FencedMemberEpoch);
        assert_eq!(
            g.heartbeat(hb("zz", 3, None), &t, String::new, &no_regex, 100)
                .unwrap_err()
                .0,
            ErrorCode::UnknownMemberId
        );
        assert!(g.check_commit("a", a.member_epoch).is_ok());
        assert_eq!(
            g.check_commit("a", a.member_epoch + 1).unwrap_err().0,
            ErrorCode::StaleMemberEpoch
        );
        assert_eq!(g.check_commit("", -1).unwrap_err().0, ErrorCode::NonEmptyGroup);
        let left = g
            .heartbeat(hb("a", LEAVE_EPOCH, None), &t, String::new, &no_regex, 100)
            .unwrap();
        assert!(left.changed);
        assert_eq!(g.state(), "empty");
        assert_eq!(
            g.check_commit("a", a.member_epoch).unwrap_err().0,
            ErrorCode::UnknownMemberId
        );
        assert!(g.check_commit("", -1).is_ok());
    }

    #[test]
    fn a_static_member_comes_back_without_a_rebalance() {
        let t = topics(&[("t", 4)]);
        let mut g = Group::default();
        let mut h = hb("", 0, None);
        h.instance_id = Some("i1".into());
        let a = g.heartbeat(h.clone(), &t, || "a".into(), &no_regex, 100).unwrap();
        let b = join(&mut g, "b", &t);
        let _ = g.heartbeat(
            hb("a", a.member_epoch, Some(&a.assignment)),
            &t,
            String::new,
            &no_regex,
            100,
        );
        let a2 = g
            .heartbeat(
                hb("a", g.members["a"].epoch, Some(&g.members["a"].assigned.clone())),
                &t,
                String::new,
                &no_regex,
                100,
            )
            .unwrap();
        let _ = g.heartbeat(
            hb("b", b.member_epoch, Some(&Partitions::new())),
            &t,
            String::new,
            &no_regex,
            100,
        );
        let epoch = g.epoch;
        // The instance restarts (kill -9): it joins again with the same instance id.
        let back = g.heartbeat(h, &t, || "a-new".into(), &no_regex, 100).unwrap();
        assert_eq!(back.replaced.as_deref(), Some("a"));
        assert_eq!(back.assignment, a2.assignment);
        assert_eq!(g.epoch, epoch, "no rebalance");
        assert_eq!(
            g.check_commit("a", a2.member_epoch).unwrap_err().0,
            ErrorCode::UnknownMemberId
        );
    }

    #[test]
    fn partition_count_change_bumps_the_epoch() {
        let mut g = Group::default();
        let a = join(&mut g, "a", &topics(&[("t", 2)]));
        let more = topics(&[("t", 3)]);
        let a2 = g
            .heartbeat(
                hb("a", a.member_epoch, Some(&a.assignment)),
                &more,
                String::new,
                &no_regex,
                100,
            )
            .unwrap();
        assert!(a2.member_epoch > a.member_epoch);
        assert_eq!(assign::count(&a2.assignment), 3);
    }
}
