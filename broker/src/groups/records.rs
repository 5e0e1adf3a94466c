//! The records of `__consumer_offsets`: what the coordinator writes and replays.
//!
//! Keys start with an `i16` record type; a null value is a tombstone (the key's state is gone).
//!
//! | type | key                                              | value                                                        |
//! |------|--------------------------------------------------|--------------------------------------------------------------|
//! | 1    | `group string, topic string, partition i32`      | `version i16 (0), offset i64, metadata nullable string, commit_timestamp i64` |
//! | 2    | `group string`                                   | the whole [`Group`] as JSON (members, epochs, target)          |
//!
//! The latest record of a key wins; replaying the partition from its start rebuilds every group
//! it holds.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use strata_protocol::wire::{Reader, put_nullable_string, put_string};

use super::state::{Committed, Group};

/// Key type of a committed offset.
const OFFSET_KEY: i16 = 1;
/// Key type of a group's state.
const GROUP_KEY: i16 = 2;

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
}

impl GroupRecord {
    /// Key and value bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_i16(OFFSET_KEY);
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
                key.put_i16(GROUP_KEY);
                put_string(&mut key, group);
                let value = value
                    .as_ref()
                    .map(|g| Bytes::from(serde_json::to_vec(g).expect("a group serializes")));
                (key.freeze(), value)
            }
        }
    }

    /// Decodes a record; `None` for a type this build does not know or a damaged record.
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
        assert!(GroupRecord::decode(Bytes::from_static(&[0]), None).is_none());
    }
}
