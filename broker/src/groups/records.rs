//! The records of `__consumer_offsets`: what the coordinator writes and replays.
//!
//! Keys start with an `i16` record type; a null value is a tombstone (the key's state is gone).
//!
//! | type | key                                              | value                                                        |
//! |------|--------------------------------------------------|--------------------------------------------------------------|
//! | 1    | `group string, topic string, partition i32`      | `version i16 (0), offset i64, metadata nullable string, commit_timestamp i64` |
//! | 2    | `group string`                                   | the whole [`Group`] as JSON (members, epochs, target)          |
//! | 3    | `snapshot_id i64`                                | none: a snapshot of every group begins                        |
//! | 4    | `snapshot_id i64`                                | none: that snapshot is complete                               |
//! | 5, 6 | as 1 and 2                                       | as 1 and 2, inside a snapshot                                 |
//!
//! The latest record of a key wins; replaying the partition from its start rebuilds every group
//! it holds.
//!
//! # Snapshots
//!
//! The coordinator periodically writes the whole state of a partition's groups between a begin
//! and an end marker (consecutive entries), and every replica then deletes its log's segments
//! below the begin marker, so the partition stays about one snapshot plus what changed since.
//! Replay ([`Replay`]) applies a snapshot only once its end marker is read: it *replaces* the
//! state. A snapshot cut short (the coordinator died while writing it) is followed by ordinary
//! records from the next coordinator, which abandon it; snapshot records without their begin
//! marker (the log starts inside a snapshot) are skipped — a complete snapshot always follows,
//! because the log is only ever cut below a complete one.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use strata_protocol::wire::{Reader, put_nullable_string, put_string};

use super::state::{Committed, Group};

/// Key type of a committed offset.
const OFFSET_KEY: i16 = 1;
/// Key type of a group's state.
const GROUP_KEY: i16 = 2;
/// Key type of a snapshot's begin marker.
const SNAPSHOT_BEGIN_KEY: i16 = 3;
/// Key type of a snapshot's end marker.
const SNAPSHOT_END_KEY: i16 = 4;
/// Added to a record's key type inside a snapshot.
const IN_SNAPSHOT: i16 = 4;

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupRecord {
    /// A committed offset (`None`: deleted).
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The commit.
        value: Option<Committed>,
    },
    /// A group's state (`None`: the group was deleted).
    Group {
        /// Group id.
        group: String,
        /// Its state.
        value: Option<Box<Group>>,
    },
    /// A snapshot begins.
    SnapshotBegin(u64),
    /// The snapshot of this id is complete.
    SnapshotEnd(u64),
}

impl GroupRecord {
    /// Key and value bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        self.encode_as(false)
    }

    /// Key and value bytes, marked as part of a snapshot if `in_snapshot`.
    pub fn encode_as(&self, in_snapshot: bool) -> (Bytes, Option<Bytes>) {
        let shift = if in_snapshot { IN_SNAPSHOT } else { 0 };
        let mut key = BytesMut::new();
        match self {
            GroupRecord::SnapshotBegin(id) | GroupRecord::SnapshotEnd(id) => {
                key.put_i16(if matches!(self, GroupRecord::SnapshotBegin(_)) {
                    SNAPSHOT_BEGIN_KEY
                } else {
                    SNAPSHOT_END_KEY
                });
                key.put_u64(*id);
                (key.freeze(), None)
            }
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_i16(OFFSET_KEY + shift);
                put_string(&mut key, group);
                put_string(&mut key, topic);
                key.put_i32(*partition);
                let value = value.as_ref().map(|c| {
                    let mut v = BytesMut::new();
                    v.put_i16(0);
                    v.put_i64(c.offset);
                    put_nullable_string(&mut v, c.metadata.as_deref());
                    v.put_i64(c.timestamp);
                    v.freeze()
                });
                (key.freeze(), value)
            }
            GroupRecord::Group { group, value } => {
                key.put_i16(GROUP_KEY + shift);
                put_string(&mut key, group);
                let value = value
                    .as_ref()
                    .map(|g| Bytes::from(serde_json::to_vec(g).expect("a group serializes")));
                (key.freeze(), value)
            }
        }
    }

    /// Decodes a record and whether it is inside a snapshot; `None` for a type this build does
    /// not know or a damaged record.
    pub fn decode_marked(key: Bytes, value: Option<Bytes>) -> Option<(GroupRecord, bool)> {
        let mut k = Reader::new(key.clone());
        match k.i16("record type").ok()? {
            SNAPSHOT_BEGIN_KEY => Some((GroupRecord::SnapshotBegin(k.u64("snapshot id").ok()?), false)),
            SNAPSHOT_END_KEY => Some((GroupRecord::SnapshotEnd(k.u64("snapshot id").ok()?), false)),
            t if t == OFFSET_KEY + IN_SNAPSHOT || t == GROUP_KEY + IN_SNAPSHOT => {
                let mut unmarked = BytesMut::from(&key[..]);
                unmarked[..2].copy_from_slice(&(t - IN_SNAPSHOT).to_be_bytes());
                Some((Self::decode(unmarked.freeze(), value)?, true))
            }
            _ => Some((Self::decode(key, value)?, false)),
        }
    }

    /// A snapshot marker's record, read from the key alone (`None` for every other record,
    /// which is not decoded).
    pub fn marker(key: &[u8]) -> Option<GroupRecord> {
        let (t, id) = (key.get(..2)?, key.get(2..10)?);
        let id = u64::from_be_bytes(id.try_into().ok()?);
        match i16::from_be_bytes([t[0], t[1]]) {
            SNAPSHOT_BEGIN_KEY => Some(GroupRecord::SnapshotBegin(id)),
            SNAPSHOT_END_KEY => Some(GroupRecord::SnapshotEnd(id)),
            _ => None,
        }
    }

    /// Decodes an ordinary record; `None` for any other type or a damaged record.
    pub fn decode(key: Bytes, value: Option<Bytes>) -> Option<GroupRecord> {
        let mut k = Reader::new(key);
        match k.i16("record type").ok()? {
            OFFSET_KEY => {
                let group = k.string("group").ok()?;
                let topic = k.string("topic").ok()?;
                let partition = k.i32("partition").ok()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let mut r = Reader::new(v);
                        let _version = r.i16("version").ok()?;
                        Some(Committed {
                            offset: r.i64("offset").ok()?,
                            metadata: r.nullable_string("metadata").ok()?,
                            timestamp: r.i64("timestamp").ok()?,
                        })
                    }
                };
                Some(GroupRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            GROUP_KEY => {
                let group = k.string("group").ok()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(Box::new(serde_json::from_slice(&v).ok()?)),
                };
                Some(GroupRecord::Group { group, value })
            }
            _ => None,
        }
    }
}

/// Every group one `__consumer_offsets` partition holds.
#[derive(Debug, Default)]
pub struct Groups {
    /// Group states by id.
    pub groups: BTreeMap<String, Group>,
    /// Committed offsets by group, then (topic, partition).
    pub offsets: BTreeMap<String, BTreeMap<(String, i32), Committed>>,
}

impl Groups {
    /// Applies one record (replay, or after a write).
    pub fn apply(&mut self, record: GroupRecord) {
        match record {
            GroupRecord::SnapshotBegin(_) | GroupRecord::SnapshotEnd(_) => {}
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value: Some(c),
            } => {
                self.offsets.entry(group).or_default().insert((topic, partition), c);
            }
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value: None,
            } => {
                if let Some(o) = self.offsets.get_mut(&group) {
                    o.remove(&(topic, partition));
                    if o.is_empty() {
                        self.offsets.remove(&group);
                    }
                }
            }
            GroupRecord::Group { group, value: Some(g) } => {
                self.groups.insert(group, *g);
            }
            GroupRecord::Group { group, value: None } => {
                self.groups.remove(&group);
            }
        }
    }

    /// Whether a group of that id exists (has state or offsets).
    pub fn exists(&self, group: &str) -> bool {
        self.groups.contains_key(group) || self.offsets.contains_key(group)
    }

    /// Every group and offset as records (a snapshot's content).
    pub fn records(&self) -> impl Iterator<Item = GroupRecord> + '_ {
        let groups = self.groups.iter().map(|(id, g)| GroupRecord::Group {
            group: id.clone(),
            value: Some(Box::new(g.clone())),
        });
        let offsets = self.offsets.iter().flat_map(|(id, o)| {
            o.iter().map(move |((t, p), c)| GroupRecord::Offset {
                group: id.clone(),
                topic: t.clone(),
                partition: *p,
                value: Some(c.clone()),
            })
        });
        groups.chain(offsets)
    }
}

/// Rebuilds [`Groups`] from records in log order, snapshots included (see the module docs).
#[derive(Debug, Default)]
pub struct Replay {
    state: Groups,
    /// A snapshot being read: its id, content so far and size.
    pending: Option<(u64, Groups, u64)>,
    /// Bytes of records since the last complete snapshot (or the log start).
    since_snapshot: u64,
    /// Bytes of the last complete snapshot.
    snapshot_bytes: u64,
}

impl Replay {
    /// Applies the next record of the log, `size` bytes of it.
    pub fn apply(&mut self, record: GroupRecord, in_snapshot: bool, size: u64) {
        self.since_snapshot += size;
        match record {
            GroupRecord::SnapshotBegin(id) => self.pending = Some((id, Groups::default(), size)),
            GroupRecord::SnapshotEnd(id) => {
                if self.pending.as_ref().is_some_and(|(p, _, _)| *p == id)
                    && let Some((_, complete, bytes)) = self.pending.take()
                {
                    self.state = complete;
                    self.snapshot_bytes = bytes + size;
                    self.since_snapshot = 0;
                }
            }
            r if in_snapshot => {
                if let Some((_, g, bytes)) = self.pending.as_mut() {
                    g.apply(r);
                    *bytes += size;
                }
            }
            r => {
                // An ordinary record: any snapshot still open was cut short.
                self.pending = None;
                self.state.apply(r);
            }
        }
    }

    /// The state (an unfinished snapshot at the end is dropped), the bytes written since the
    /// last complete snapshot, and that snapshot's size.
    pub fn finish(self) -> (Groups, u64, u64) {
        (self.state, self.since_snapshot, self.snapshot_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_replay() {
        let off = GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(Committed {
                offset: 42,
                metadata: Some("m".into()),
                timestamp: 7,
            }),
        };
        let grp = GroupRecord::Group {
            group: "g".into(),
            value: Some(Box::new(Group {
                epoch: 3,
                ..Group::default()
            })),
        };
        let mut groups = Groups::default();
        for r in [&off, &grp] {
            let (k, v) = r.encode();
            let back = GroupRecord::decode(k, v).unwrap();
            assert_eq!(&back, r);
            groups.apply(back);
        }
        assert_eq!(groups.offsets["g"][&("t".to_string(), 3)].offset, 42);
        assert_eq!(groups.groups["g"].epoch, 3);
        let (k, _) = off.encode();
        groups.apply(GroupRecord::decode(k, None).unwrap());
        assert!(!groups.offsets.contains_key("g"));
        assert!(groups.exists("g"));
        assert!(GroupRecord::decode(Bytes::from_static(&[0, 9, 1]), None).is_none());
        assert!(GroupRecord::decode_marked(Bytes::from_static(&[0, 9, 1]), None).is_none());
        assert!(GroupRecord::decode(Bytes::from_static(&[0]), None).is_none());
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    fn offset(group: &str, offset: i64) -> GroupRecord {
        GroupRecord::Offset {
            group: group.into(),
            topic: "t".into(),
            partition: 0,
            value: Some(Committed {
                offset,
                metadata: None,
                timestamp: 0,
            }),
        }
    }

    fn feed(replay: &mut Replay, r: &GroupRecord, in_snapshot: bool) {
        let (k, v) = r.encode_as(in_snapshot);
        let (back, marked) = GroupRecord::decode_marked(k, v).unwrap();
        assert_eq!(marked, in_snapshot);
        replay.apply(back, marked, 10);
    }

    fn committed(g: &Groups, group: &str) -> Option<i64> {
        g.offsets.get(group).map(|o| o[&("t".to_string(), 0)].offset)
    }

    #[test]
    fn a_complete_snapshot_replaces_the_state_and_a_cut_one_is_abandoned() {
        let mut r = Replay::default();
        feed(&mut r, &offset("a", 1), false);
        feed(&mut r, &offset("gone", 1), false);
        // A complete snapshot: only "a" at 2 (the "gone" group was deleted meanwhile).
        feed(&mut r, &GroupRecord::SnapshotBegin(7), false);
        assert_eq!(
            GroupRecord::marker(&GroupRecord::SnapshotBegin(7).encode().0),
            Some(GroupRecord::SnapshotBegin(7))
        );
        assert_eq!(GroupRecord::marker(&offset("a", 1).encode().0), None);
        assert_eq!(GroupRecord::marker(&[0, 3]), None);
        feed(&mut r, &offset("a", 2), true);
        feed(&mut r, &GroupRecord::SnapshotEnd(7), false);
        feed(&mut r, &offset("a", 3), false);
        // A snapshot cut short, then ordinary records of the next coordinator.
        feed(&mut r, &GroupRecord::SnapshotBegin(8), false);
        feed(&mut r, &offset("a", 99), true);
        feed(&mut r, &offset("b", 5), false);
        feed(&mut r, &GroupRecord::SnapshotEnd(8), false);
        let (g, since, snapshot) = r.finish();
        assert_eq!(
            (since, snapshot),
            (50, 30),
            "bytes since the last complete snapshot, and its size"
        );
        assert_eq!(committed(&g, "a"), Some(3));
        assert_eq!(committed(&g, "b"), Some(5));
        assert_eq!(committed(&g, "gone"), None);
    }

    #[test]
    fn a_log_starting_inside_a_snapshot_waits_for_the_next_complete_one() {
        let mut r = Replay::default();
        feed(&mut r, &offset("a", 1), true); // the tail of a snapshot whose beginning is gone
        feed(&mut r, &GroupRecord::SnapshotEnd(3), false);
        feed(&mut r, &offset("a", 2), false);
        feed(&mut r, &GroupRecord::SnapshotBegin(4), false);
        feed(&mut r, &offset("a", 2), true);
        // Unfinished at the end of the log: dropped, the state so far stands.
        assert_eq!(committed(&r.finish().0, "a"), Some(2));
    }
}
