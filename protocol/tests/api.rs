//! Every request and response round-trips through its codec and through whole frames; arbitrary
//! and truncated bytes never panic and never parse as something they are not.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use strata_protocol::ErrorCode;
use strata_protocol::api::create_topics::CreatableTopic as Creatable;
use strata_protocol::api::*;
use strata_protocol::frame::{self, FrameError, RequestError, RequestHeader};

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{0,40}"
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn bytes_field() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn configs() -> impl Strategy<Value = Vec<ConfigEntry>> {
    proptest::collection::vec(
        (name(), name()).prop_map(|(key, value)| ConfigEntry { key, value }),
        0..4,
    )
}

fn topics<P: std::fmt::Debug>(p: impl Strategy<Value = P>) -> impl Strategy<Value = Vec<TopicData<P>>> {
    proptest::collection::vec(
        (name(), proptest::collection::vec(p, 0..4)).prop_map(|(name, partitions)| TopicData { name, partitions }),
        0..4,
    )
}

fn topic_results() -> impl Strategy<Value = Vec<TopicResult>> {
    proptest::collection::vec(
        (name(), error_code(), proptest::option::of(name())).prop_map(|(name, error, message)| TopicResult {
            name,
            error,
            message,
        }),
        0..5,
    )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::ApiVersions(ApiVersionsRequest)),
        proptest::option::of(proptest::collection::vec(name(), 0..5))
            .prop_map(|topics| Request::Metadata(MetadataRequest { topics })),
        (
            proptest::collection::vec(
                (name(), any::<i32>(), any::<i16>(), configs()).prop_map(
                    |(name, num_partitions, replication_factor, configs)| {
                        Creatable {
                            name,
                            num_partitions,
                            replication_factor,
                            configs,
                        }
                    }
                ),
                0..4
            ),
            any::<i32>(),
            any::<bool>()
        )
            .prop_map(
                |(topics, timeout_ms, validate_only)| Request::CreateTopics(CreateTopicsRequest {
                    topics,
                    timeout_ms,
                    validate_only
                })
            ),
        (proptest::collection::vec(name(), 0..5), any::<i32>())
            .prop_map(|(names, timeout_ms)| Request::DeleteTopics(DeleteTopicsRequest { names, timeout_ms })),
        (
            any::<i16>(),
            any::<i32>(),
            topics(
                (any::<i32>(), bytes_field()).prop_map(|(partition, records)| ProducePartition { partition, records })
            )
        )
            .prop_map(|(acks, timeout_ms, topics)| Request::Produce(ProduceRequest {
                acks,
                timeout_ms,
                topics
            })),
        (
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
            topics((any::<i32>(), any::<i64>(), any::<i32>(), any::<i64>()).prop_map(
                |(partition, fetch_offset, partition_max_bytes, current_leader_term)| {
                    FetchPartition {
                        partition,
                        fetch_offset,
                        partition_max_bytes,
                        current_leader_term,
                    }
                }
            ))
        )
            .prop_map(
                |(max_wait_ms, min_bytes, max_bytes, topics)| Request::Fetch(FetchRequest {
                    max_wait_ms,
                    min_bytes,
                    max_bytes,
                    topics
                })
            ),
        topics(
            (any::<i32>(), any::<i64>(), any::<i64>()).prop_map(|(partition, timestamp, current_leader_term)| {
                ListOffsetsPartition {
                    partition,
                    timestamp,
                    current_leader_term,
                }
            })
        )
        .prop_map(|topics| Request::ListOffsets(ListOffsetsRequest { topics })),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(raft_message(), 0..6)
        )
            .prop_map(
                |(from_node, to_node, messages)| Request::RaftMessages(RaftMessagesRequest {
                    from_node,
                    to_node,
                    messages
                })
            ),
        (
            proptest::collection::vec(
                (name(), any::<i32>(), ids()).prop_map(|(topic, partition, replicas)| ReassignablePartition {
                    topic,
                    partition,
                    replicas
                }),
                0..4
            ),
            any::<i32>()
        )
            .prop_map(|(partitions, timeout_ms)| Request::AlterPartitionReassignments(
                AlterPartitionReassignmentsRequest { partitions, timeout_ms }
            )),
        Just(Request::ListPartitionReassignments(
            ListPartitionReassignmentsRequest {}
        )),
        (any::<i32>(), any::<i32>()).prop_map(|(broker_id, timeout_ms)| Request::DecommissionBroker(
            DecommissionBrokerRequest { broker_id, timeout_ms }
        )),
        (any::<i32>(), name())
            .prop_map(|(node_id, address)| Request::BrokerRegistration(BrokerRegistrationRequest { node_id, address })),
        (
            any::<u64>(),
            proptest::collection::vec(
                (name(), any::<u32>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
                    |(topic, partition, topic_id, term, high_watermark)| LedPartition {
                        topic,
                        partition,
                        topic_id,
                        term,
                        high_watermark,
                    }
                ),
                0..4
            )
        )
            .prop_map(
                |(from_node, leaders)| Request::LeaderAnnouncements(LeaderAnnouncementsRequest { from_node, leaders })
            ),
        (name(), any::<i8>())
            .prop_map(|(key, key_type)| Request::FindCoordinator(FindCoordinatorRequest { key, key_type })),
        (
            name(),
            name(),
            any::<i32>(),
            topics((any::<i32>(), any::<i64>(), proptest::option::of(name())).prop_map(
                |(partition, committed_offset, metadata)| OffsetCommitPartition {
                    partition,
                    committed_offset,
                    metadata
                }
            ))
        )
            .prop_map(|(group_id, member_id, member_epoch, topics)| Request::OffsetCommit(
                OffsetCommitRequest {
                    group_id,
                    member_id,
                    member_epoch,
                    topics
                }
            )),
        (
            name(),
            proptest::option::of(proptest::collection::vec(
                (name(), ids()).prop_map(|(name, partitions)| OffsetFetchTopic { name, partitions }),
                0..4
            ))
        )
            .prop_map(|(group_id, topics)| Request::OffsetFetch(OffsetFetchRequest { group_id, topics })),
        (
            (name(), name(), any::<i32>(), proptest::option::of(name())),
            (
                any::<i32>(),
                any::<i32>(),
                proptest::option::of(names()),
                proptest::option::of(name()),
                proptest::option::of(topic_partitions())
            )
        )
            .prop_map(
                |(
                    (group_id, member_id, member_epoch, instance_id),
                    (
                        rebalance_timeout_ms,
                        session_timeout_ms,
                        subscribed_topic_names,
                        subscribed_topic_regex,
                        owned_partitions,
                    ),
                )| {
                    Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
                        group_id,
                        member_id,
                        member_epoch,
                        instance_id,
                        rebalance_timeout_ms,
                        session_timeout_ms,
                        subscribed_topic_names,
                        subscribed_topic_regex,
                        owned_partitions,
                    })
                }
            ),
        names().prop_map(|states_filter| Request::ListGroups(ListGroupsRequest { states_filter })),
        names().prop_map(|group_ids| Request::DescribeGroups(DescribeGroupsRequest { group_ids })),
        names().prop_map(|group_ids| Request::DeleteGroups(DeleteGroupsRequest { group_ids })),
    ]
}

fn names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(name(), 0..4)
}

fn topic_partitions() -> impl Strategy<Value = Vec<TopicPartitions>> {
    proptest::collection::vec(
        (name(), ids()).prop_map(|(topic, partitions)| TopicPartitions { topic, partitions }),
        0..4,
    )
}

fn described_member() -> impl Strategy<Value = DescribedMember> {
    (
        (name(), proptest::option::of(name()), name(), name(), any::<i32>()),
        (
            names(),
            proptest::option::of(name()),
            topic_partitions(),
            topic_partitions(),
        ),
    )
        .prop_map(
            |(
                (member_id, instance_id, client_id, client_host, member_epoch),
                (subscribed_topic_names, subscribed_topic_regex, assignment, target_assignment),
            )| DescribedMember {
                member_id,
                instance_id,
                client_id,
                client_host,
                member_epoch,
                subscribed_topic_names,
                subscribed_topic_regex,
                assignment,
                target_assignment,
            },
        )
}

fn raft_message() -> impl Strategy<Value = RaftMessage> {
    (name(), any::<u32>(), any::<u64>(), bytes_field()).prop_map(|(topic, partition, topic_id, message)| RaftMessage {
        topic,
        partition,
        topic_id,
        message,
    })
}

fn partition_metadata() -> impl Strategy<Value = PartitionMetadata> {
    (
        error_code(),
        any::<i32>(),
        any::<i32>(),
        any::<i64>(),
        proptest::collection::vec(any::<i32>(), 0..4),
        proptest::collection::vec(any::<i32>(), 0..4),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(error, partition, leader, leader_term, replicas, in_sync, log_start_offset, high_watermark)| {
                PartitionMetadata {
                    error,
                    partition,
                    leader,
                    leader_term,
                    replicas,
                    in_sync,
                    log_start_offset,
                    high_watermark,
                }
            },
        )
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        proptest::collection::vec(
            (any::<i16>(), any::<i16>(), any::<i16>()).prop_map(|(api_key, min_version, max_version)| {
                ApiVersionRange {
                    api_key,
                    min_version,
                    max_version,
                }
            }),
            0..8
        )
        .prop_map(|apis| Response::ApiVersions(ApiVersionsResponse { apis })),
        (
            proptest::collection::vec(
                (any::<i32>(), name(), any::<i32>()).prop_map(|(node_id, host, port)| BrokerMetadata {
                    node_id,
                    host,
                    port
                }),
                0..4
            ),
            any::<i32>(),
            proptest::option::of(name()),
            proptest::collection::vec(
                (
                    error_code(),
                    name(),
                    proptest::collection::vec(partition_metadata(), 0..4),
                    configs()
                )
                    .prop_map(|(error, name, partitions, configs)| TopicMetadata {
                        error,
                        name,
                        partitions,
                        configs
                    }),
                0..4
            )
        )
            .prop_map(
                |(brokers, controller_id, cluster_id, topics)| Response::Metadata(MetadataResponse {
                    brokers,
                    controller_id,
                    cluster_id,
                    topics
                })
            ),
        topic_results().prop_map(|topics| Response::CreateTopics(CreateTopicsResponse { topics })),
        topic_results().prop_map(|topics| Response::DeleteTopics(DeleteTopicsResponse { topics })),
        topics(
            (
                any::<i32>(),
                error_code(),
                any::<i64>(),
                any::<i64>(),
                any::<i64>(),
                any::<i32>(),
                proptest::option::of(name())
            )
                .prop_map(
                    |(partition, error, base_offset, log_append_time, log_start_offset, leader_id, message)| {
                        ProducePartitionResponse {
                            partition,
                            error,
                            base_offset,
                            log_append_time,
                            log_start_offset,
                            leader_id,
                            message,
                        }
                    }
                )
        )
        .prop_map(|topics| Response::Produce(ProduceResponse { topics })),
        topics(
            (
                any::<i32>(),
                error_code(),
                any::<i64>(),
                any::<i64>(),
                any::<i32>(),
                any::<i64>(),
                bytes_field()
            )
                .prop_map(
                    |(partition, error, high_watermark, log_start_offset, leader_id, leader_term, records)| {
                        FetchPartitionResponse {
                            partition,
                            error,
                            high_watermark,
                            log_start_offset,
                            leader_id,
                            leader_term,
                            records,
                        }
                    }
                )
        )
        .prop_map(|topics| Response::Fetch(FetchResponse { topics })),
        topics(
            (
                any::<i32>(),
                error_code(),
                any::<i64>(),
                any::<i64>(),
                any::<i32>(),
                any::<i64>()
            )
                .prop_map(|(partition, error, timestamp, offset, leader_id, leader_term)| {
                    ListOffsetsPartitionResponse {
                        partition,
                        error,
                        timestamp,
                        offset,
                        leader_id,
                        leader_term,
                    }
                })
        )
        .prop_map(|topics| Response::ListOffsets(ListOffsetsResponse { topics })),
        Just(Response::RaftMessages(RaftMessagesResponse)),
        Just(Response::LeaderAnnouncements(LeaderAnnouncementsResponse)),
        proptest::collection::vec(
            (name(), any::<i32>(), error_code(), proptest::option::of(name())).prop_map(
                |(topic, partition, error, message)| PartitionResult {
                    topic,
                    partition,
                    error,
                    message
                }
            ),
            0..4
        )
        .prop_map(|results| Response::AlterPartitionReassignments(AlterPartitionReassignmentsResponse { results })),
        (
            error_code(),
            proptest::collection::vec(
                (name(), any::<i32>(), ids(), ids()).prop_map(|(topic, partition, replicas, target)| {
                    OngoingReassignment {
                        topic,
                        partition,
                        replicas,
                        target,
                    }
                }),
                0..4
            )
        )
            .prop_map(|(error, reassignments)| Response::ListPartitionReassignments(
                ListPartitionReassignmentsResponse { error, reassignments }
            )),
        (
            error_code(),
            proptest::option::of(name()),
            proptest::collection::vec(
                (any::<i32>(), name()).prop_map(|(node_id, address)| BrokerAddress { node_id, address }),
                0..4
            )
        )
            .prop_map(
                |(error, message, voters)| Response::BrokerRegistration(BrokerRegistrationResponse {
                    error,
                    message,
                    voters
                })
            ),
        (error_code(), proptest::option::of(name()), any::<i32>()).prop_map(|(error, message, partitions_moving)| {
            Response::DecommissionBroker(DecommissionBrokerResponse {
                error,
                message,
                partitions_moving,
            })
        }),
        (
            error_code(),
            proptest::option::of(name()),
            any::<i32>(),
            name(),
            any::<i32>()
        )
            .prop_map(|(error, message, node_id, host, port)| Response::FindCoordinator(
                FindCoordinatorResponse {
                    error,
                    message,
                    node_id,
                    host,
                    port
                }
            )),
        (
            proptest::option::of(name()),
            topics(
                (any::<i32>(), error_code())
                    .prop_map(|(partition, error)| OffsetCommitPartitionResponse { partition, error })
            )
        )
            .prop_map(|(message, topics)| Response::OffsetCommit(OffsetCommitResponse { message, topics })),
        (
            error_code(),
            proptest::option::of(name()),
            topics(
                (
                    any::<i32>(),
                    any::<i64>(),
                    proptest::option::of(name()),
                    any::<i64>(),
                    error_code()
                )
                    .prop_map(|(partition, committed_offset, metadata, commit_timestamp, error)| {
                        OffsetFetchPartitionResponse {
                            partition,
                            committed_offset,
                            metadata,
                            commit_timestamp,
                            error,
                        }
                    })
            )
        )
            .prop_map(|(error, message, topics)| Response::OffsetFetch(OffsetFetchResponse {
                error,
                message,
                topics
            })),
        (
            error_code(),
            proptest::option::of(name()),
            name(),
            any::<i32>(),
            any::<i32>(),
            proptest::option::of(topic_partitions())
        )
            .prop_map(
                |(error, message, member_id, member_epoch, heartbeat_interval_ms, assignment)| {
                    Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
                        error,
                        message,
                        member_id,
                        member_epoch,
                        heartbeat_interval_ms,
                        assignment,
                    })
                }
            ),
        (
            error_code(),
            proptest::collection::vec(
                (name(), name(), any::<i32>()).prop_map(|(group_id, state, member_count)| ListedGroup {
                    group_id,
                    state,
                    member_count
                }),
                0..4
            )
        )
            .prop_map(|(error, groups)| Response::ListGroups(ListGroupsResponse { error, groups })),
        proptest::collection::vec(
            (
                error_code(),
                proptest::option::of(name()),
                name(),
                name(),
                any::<i32>(),
                any::<i32>(),
                proptest::collection::vec(described_member(), 0..3)
            )
                .prop_map(
                    |(error, message, group_id, state, group_epoch, assignment_epoch, members)| DescribedGroup {
                        error,
                        message,
                        group_id,
                        state,
                        group_epoch,
                        assignment_epoch,
                        members
                    }
                ),
            0..3
        )
        .prop_map(|groups| Response::DescribeGroups(DescribeGroupsResponse { groups })),
        proptest::collection::vec(
            (name(), error_code(), proptest::option::of(name())).prop_map(|(group_id, error, message)| {
                DeleteGroupResult {
                    group_id,
                    error,
                    message,
                }
            }),
            0..4
        )
        .prop_map(|results| Response::DeleteGroups(DeleteGroupsResponse { results })),
    ]
}

/// The newest version of `key` this build speaks.
fn newest(key: ApiKey) -> i16 {
    *key.versions().end()
}

fn ids() -> impl Strategy<Value = Vec<i32>> {
    proptest::collection::vec(any::<i32>(), 0..5)
}

proptest! {
    #[test]
    fn requests_round_trip_through_frames(req in request(), correlation_id in any::<i32>(), client_id in proptest::option::of(name())) {
        let header = RequestHeader { api_key: req.api_key() as i16, api_version: newest(req.api_key()), correlation_id, client_id };
        let mut out = BytesMut::new();
        frame::encode_request(&mut out, &header, &req);
        let f = frame::split_frame(&mut out, frame::DEFAULT_MAX_FRAME_BYTES).unwrap().unwrap();
        prop_assert!(out.is_empty());
        let incoming = frame::parse_request(f).unwrap();
        prop_assert_eq!(incoming.header, header);
        prop_assert_eq!(incoming.body, Ok(req));
    }

    #[test]
    fn raft_messages_encoder_writes_what_encode_request_writes(
        from_node in any::<u64>(),
        to_node in any::<u64>(),
        messages in proptest::collection::vec(raft_message(), 0..6),
        correlation_id in any::<i32>(),
        client_id in proptest::option::of(name()),
    ) {
        let header = RequestHeader { api_key: ApiKey::RaftMessages as i16, api_version: 0, correlation_id, client_id };
        let req = Request::RaftMessages(RaftMessagesRequest { from_node, to_node, messages: messages.clone() });
        let mut want = BytesMut::new();
        frame::encode_request(&mut want, &header, &req);

        // Start after unrelated bytes, as a sender appending frames to one buffer does.
        let mut out = BytesMut::from(&b"earlier frames"[..]);
        let mut enc = RaftMessagesEncoder::begin(&mut out, &header, from_node, to_node);
        // Every other message leaves the second half of its bytes out of the buffer, as a sender
        // writing large payloads from where they are does: (position in `out`, bytes).
        let mut left_out: Vec<(usize, &[u8])> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if i % 2 == 0 {
                enc.push(&mut out, &m.topic, m.partition, m.topic_id, |o| {
                    o.extend_from_slice(&m.message);
                    Ok::<(), ()>(())
                }).unwrap();
            } else {
                enc.push_parts(&mut out, &m.topic, m.partition, m.topic_id, |o| {
                    let (kept, rest) = m.message.split_at(m.message.len() / 2);
                    o.extend_from_slice(kept);
                    left_out.push((o.len(), rest));
                    Ok::<usize, ()>(rest.len())
                }).unwrap();
            }
            // A failing message leaves nothing behind.
            prop_assert_eq!(enc.push(&mut out, "x", 1, 2, |o| { o.extend_from_slice(b"partial"); Err("no") }), Err("no"));
        }
        prop_assert_eq!(enc.count(), messages.len());
        prop_assert_eq!(enc.frame_bytes(&out), want.len());
        enc.finish(&mut out);
        prop_assert_eq!(&out[..14], &b"earlier frames"[..]);
        // The bytes sent: `out` with the left-out parts put back where they were noted.
        let mut sent = Vec::new();
        let mut from = 14;
        for (at, rest) in left_out {
            sent.extend_from_slice(&out[from..at]);
            sent.extend_from_slice(rest);
            from = at;
        }
        sent.extend_from_slice(&out[from..]);
        prop_assert_eq!(&sent[..], &want[..]);
    }

    #[test]
    fn responses_round_trip_through_frames(resp in response(), correlation_id in any::<i32>()) {
        let key = resp.api_key();
        let mut out = BytesMut::new();
        frame::encode_response(&mut out, correlation_id, newest(key), &Ok(resp.clone()));
        let f = frame::split_frame(&mut out, frame::DEFAULT_MAX_FRAME_BYTES).unwrap().unwrap();
        let raw = frame::parse_response(f).unwrap();
        prop_assert_eq!(raw.correlation_id, correlation_id);
        prop_assert_eq!(raw.decode(key, newest(key)), Ok(resp));
    }

    #[test]
    fn every_truncation_of_a_request_body_is_an_error_response(req in request()) {
        for version in req.api_key().versions() {
            let mut body = BytesMut::new();
            req.encode(version, &mut body);
            let body = body.freeze();
            for cut in 0..body.len() {
                prop_assert!(Request::decode(req.api_key(), version, body.slice(..cut)).is_err(), "cut at {}", cut);
            }
            // Trailing bytes are refused too.
            let mut long = BytesMut::from(&body[..]);
            long.extend_from_slice(&[0]);
            prop_assert!(Request::decode(req.api_key(), version, long.freeze()).is_err());
        }
    }

    #[test]
    fn every_truncation_of_a_response_body_is_an_error(resp in response()) {
        for version in resp.api_key().versions() {
            let mut body = BytesMut::new();
            resp.encode(version, &mut body);
            let body = body.freeze();
            for cut in 0..body.len() {
                prop_assert!(Response::decode(resp.api_key(), version, body.slice(..cut)).is_err(), "cut at {}", cut);
            }
            let mut long = BytesMut::from(&body[..]);
            long.extend_from_slice(&[0]);
            prop_assert!(Response::decode(resp.api_key(), version, long.freeze()).is_err());
        }
    }

    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let b = Bytes::from(bytes);
        let _ = frame::parse_request(b.clone());
        if let Ok(raw) = frame::parse_response(b.clone()) {
            for key in ApiKey::ALL {
                let _ = raw.clone().decode(key, 0);
            }
        }
        for key in ApiKey::ALL {
            let _ = Request::decode(key, 0, b.clone());
            let _ = Response::decode(key, 0, b.clone());
        }
        let mut src = BytesMut::from(&b[..]);
        while let Ok(Some(f)) = frame::split_frame(&mut src, 1 << 16) {
            let _ = frame::parse_request(f);
        }
    }

    #[test]
    fn arbitrary_bodies_behind_valid_headers_get_error_responses(key in proptest::sample::select(ApiKey::ALL.to_vec()), body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut f = BytesMut::new();
        f.extend_from_slice(&(key as i16).to_be_bytes());
        f.extend_from_slice(&0i16.to_be_bytes());
        f.extend_from_slice(&7i32.to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes());
        f.extend_from_slice(&body);
        let incoming = frame::parse_request(f.freeze()).unwrap();
        prop_assert_eq!(incoming.header.correlation_id, 7);
        if let Err(e) = incoming.body {
            prop_assert_eq!(e.code, ErrorCode::InvalidRequest);
        }
    }
}

#[test]
fn unknown_api_and_version_get_unsupported_version() {
    for (key, version) in [(999i16, 0i16), (ApiKey::Produce as i16, 1), (ApiKey::Fetch as i16, -1)] {
        let header = RequestHeader {
            api_key: key,
            api_version: version,
            correlation_id: 42,
            client_id: Some("c".into()),
        };
        let mut out = BytesMut::new();
        frame::encode_request(&mut out, &header, &Request::ApiVersions(ApiVersionsRequest));
        let f = frame::split_frame(&mut out, 1 << 20).unwrap().unwrap();
        let incoming = frame::parse_request(f).unwrap();
        assert_eq!(incoming.header.correlation_id, 42);
        assert_eq!(incoming.body.unwrap_err().code, ErrorCode::UnsupportedVersion);
    }
}

#[test]
fn oversized_frames_are_refused_before_buffering() {
    let mut src = BytesMut::new();
    src.extend_from_slice(&(100u32 << 20).to_be_bytes());
    src.extend_from_slice(b"abc");
    let cap_before = src.capacity();
    assert!(matches!(
        frame::split_frame(&mut src, 1 << 20),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(src.capacity(), cap_before, "nothing reserved for a refused frame");
    // A frame too short for a header is fatal for the connection, not a panic.
    let mut src = BytesMut::from(&[0u8, 0, 0, 3, 1, 2, 3][..]);
    let f = frame::split_frame(&mut src, 1 << 20).unwrap().unwrap();
    assert!(matches!(
        frame::parse_request(f),
        Err(FrameError::TooShort { length: 3 })
    ));
}

#[test]
fn incomplete_frames_wait_for_more_bytes() {
    let header = RequestHeader {
        api_key: ApiKey::Metadata as i16,
        api_version: 0,
        correlation_id: 1,
        client_id: None,
    };
    let mut full = BytesMut::new();
    frame::encode_request(
        &mut full,
        &header,
        &Request::Metadata(MetadataRequest {
            topics: Some(vec!["t".into()]),
        }),
    );
    for cut in 0..full.len() {
        let mut part = BytesMut::from(&full[..cut]);
        assert!(frame::split_frame(&mut part, 1 << 20).unwrap().is_none(), "cut {cut}");
    }
}

#[test]
fn error_responses_carry_the_message() {
    let mut out = BytesMut::new();
    let err = RequestError {
        code: ErrorCode::UnsupportedVersion,
        message: "fetch v9 is not supported".into(),
    };
    frame::encode_response(&mut out, 5, 9, &Err(err.clone()));
    let f = frame::split_frame(&mut out, 1 << 20).unwrap().unwrap();
    let raw = frame::parse_response(f).unwrap();
    assert_eq!(raw.correlation_id, 5);
    assert_eq!(raw.decode(ApiKey::Fetch, 9), Err(err));
}

#[test]
fn api_keys_are_pinned() {
    let pinned = [
        (ApiKey::Produce, 0),
        (ApiKey::Fetch, 1),
        (ApiKey::ListOffsets, 2),
        (ApiKey::Metadata, 3),
        (ApiKey::OffsetCommit, 8),
        (ApiKey::OffsetFetch, 9),
        (ApiKey::FindCoordinator, 10),
        (ApiKey::DescribeGroups, 15),
        (ApiKey::ListGroups, 16),
        (ApiKey::ApiVersions, 18),
        (ApiKey::CreateTopics, 19),
        (ApiKey::DeleteTopics, 20),
        (ApiKey::InitProducerId, 22),
        (ApiKey::DeleteGroups, 42),
        (ApiKey::AlterPartitionReassignments, 45),
        (ApiKey::ListPartitionReassignments, 46),
        (ApiKey::BrokerRegistration, 62),
        (ApiKey::ConsumerGroupHeartbeat, 68),
        (ApiKey::RaftMessages, 1000),
        (ApiKey::DecommissionBroker, 1001),
        (ApiKey::LeaderAnnouncements, 1002),
    ];
    assert_eq!(pinned.len(), ApiKey::ALL.len());
    for (k, v) in pinned {
        assert_eq!(k as i16, v);
        assert_eq!(ApiKey::from_i16(v), Some(k));
    }
    assert_eq!(ApiVersionsResponse::supported().apis.len(), ApiKey::ALL.len());
    let names: std::collections::HashSet<_> = ApiKey::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names.len(), ApiKey::ALL.len(), "API names are distinct");
}

fn raft_messages_frame(body: &[u8]) -> Result<Request, RequestError> {
    let mut f = BytesMut::new();
    f.extend_from_slice(&(ApiKey::RaftMessages as i16).to_be_bytes());
    f.extend_from_slice(&0i16.to_be_bytes());
    f.extend_from_slice(&9i32.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes());
    f.extend_from_slice(body);
    frame::parse_request(f.freeze()).unwrap().body
}

#[test]
fn raft_message_bytes_are_slices_of_the_frame() {
    let req = Request::RaftMessages(RaftMessagesRequest {
        from_node: 1,
        to_node: 2,
        messages: vec![
            RaftMessage {
                topic: "orders".into(),
                partition: u32::MAX,
                topic_id: 42,
                message: Bytes::from_static(b"first"),
            },
            RaftMessage {
                topic: "audit".into(),
                partition: 0,
                topic_id: 7,
                message: Bytes::new(),
            },
        ],
    });
    let mut body = BytesMut::new();
    req.encode(0, &mut body);
    let body = body.freeze();
    let Ok(Request::RaftMessages(got)) = Request::decode(ApiKey::RaftMessages, 0, body.clone()) else {
        panic!("decodes");
    };
    assert_eq!(Request::RaftMessages(got.clone()), req);
    let frame = body.as_ptr_range();
    assert!(frame.contains(&got.messages[0].message.as_ptr()), "zero-copy");
    // The partition travels as an unsigned 32-bit number.
    assert_eq!(got.messages[0].partition, u32::MAX);
}

#[test]
fn malformed_raft_messages_are_invalid_requests() {
    let nodes = [&1u64.to_be_bytes()[..], &2u64.to_be_bytes()[..]].concat();
    let with = |rest: &[u8]| [&nodes[..], rest].concat();
    let entry = |topic_len: i16, msg_len: i32, msg: &[u8]| {
        let mut e = Vec::new();
        e.extend_from_slice(&topic_len.to_be_bytes());
        e.extend_from_slice(b"t");
        e.extend_from_slice(&3u32.to_be_bytes());
        e.extend_from_slice(&4u64.to_be_bytes());
        e.extend_from_slice(&msg_len.to_be_bytes());
        e.extend_from_slice(msg);
        e
    };
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", vec![]),
        ("no message array", nodes.clone()),
        ("huge count", with(&i32::MAX.to_be_bytes())),
        ("negative count", with(&(-2i32).to_be_bytes())),
        ("null array", with(&(-1i32).to_be_bytes())),
        // One entry claimed; the bytes present could hold one, but its message runs past the end.
        (
            "message past the end",
            with(&[&1i32.to_be_bytes()[..], &entry(1, 1000, b"xx")].concat()),
        ),
        (
            "null message",
            with(&[&1i32.to_be_bytes()[..], &entry(1, -1, b"")].concat()),
        ),
        (
            "negative message length",
            with(&[&1i32.to_be_bytes()[..], &entry(1, -5, b"")].concat()),
        ),
        (
            "null topic",
            with(&[&1i32.to_be_bytes()[..], &entry(-1, 0, b"")].concat()),
        ),
        (
            "two claimed, one present",
            with(&[&2i32.to_be_bytes()[..], &entry(1, 2, b"ok")].concat()),
        ),
        (
            "trailing bytes",
            with(&[&1i32.to_be_bytes()[..], &entry(1, 2, b"ok"), &[0]].concat()),
        ),
    ];
    for (what, body) in bad {
        let err = raft_messages_frame(&body).expect_err(what);
        assert_eq!(err.code, ErrorCode::InvalidRequest, "{what}");
    }
    let ok = raft_messages_frame(&with(&[&1i32.to_be_bytes()[..], &entry(1, 2, b"ok")].concat())).unwrap();
    let Request::RaftMessages(r) = ok else { panic!() };
    assert_eq!((r.from_node, r.to_node, r.messages.len()), (1, 2, 1));
    assert_eq!(
        (
            r.messages[0].topic.as_str(),
            r.messages[0].partition,
            r.messages[0].topic_id
        ),
        ("t", 3, 4)
    );
    assert_eq!(&r.messages[0].message[..], b"ok");
}

#[test]
fn fetch_v0_carries_no_leader_terms() {
    let req = Request::Fetch(FetchRequest {
        max_wait_ms: 1,
        min_bytes: 2,
        max_bytes: 3,
        topics: vec![TopicData {
            name: "t".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 5,
                partition_max_bytes: 6,
                current_leader_term: 7,
            }],
        }],
    });
    let (mut v0, mut v1) = (BytesMut::new(), BytesMut::new());
    req.encode(0, &mut v0);
    req.encode(1, &mut v1);
    assert_eq!(v1.len(), v0.len() + 8);
    let Ok(Request::Fetch(back)) = Request::decode(ApiKey::Fetch, 0, v0.freeze()) else {
        panic!("v0 decodes")
    };
    assert_eq!(back.topics[0].partitions[0].current_leader_term, -1);
    let resp = Response::Fetch(FetchResponse {
        topics: vec![TopicData {
            name: "t".into(),
            partitions: vec![FetchPartitionResponse {
                partition: 0,
                error: ErrorCode::None,
                high_watermark: 9,
                log_start_offset: 0,
                leader_id: 1,
                leader_term: 4,
                records: Bytes::new(),
            }],
        }],
    });
    let mut v0 = BytesMut::new();
    resp.encode(0, &mut v0);
    let Ok(Response::Fetch(back)) = Response::decode(ApiKey::Fetch, 0, v0.freeze()) else {
        panic!("v0 decodes")
    };
    assert_eq!(back.topics[0].partitions[0].leader_term, -1);
}

#[test]
fn list_offsets_v0_carries_no_leader_terms() {
    let req = Request::ListOffsets(ListOffsetsRequest {
        topics: vec![TopicData {
            name: "t".into(),
            partitions: vec![ListOffsetsPartition {
                partition: 0,
                timestamp: -1,
                current_leader_term: 7,
            }],
        }],
    });
    let (mut v0, mut v1) = (BytesMut::new(), BytesMut::new());
    req.encode(0, &mut v0);
    req.encode(1, &mut v1);
    assert_eq!(v1.len(), v0.len() + 8);
    let Ok(Request::ListOffsets(back)) = Request::decode(ApiKey::ListOffsets, 0, v0.freeze()) else {
        panic!("v0 decodes")
    };
    assert_eq!(back.topics[0].partitions[0].current_leader_term, -1);
    let resp = Response::ListOffsets(ListOffsetsResponse {
        topics: vec![TopicData {
            name: "t".into(),
            partitions: vec![ListOffsetsPartitionResponse {
                partition: 0,
                error: ErrorCode::None,
                timestamp: -1,
                offset: 9,
                leader_id: 1,
                leader_term: 4,
            }],
        }],
    });
    let (mut v0, mut v1) = (BytesMut::new(), BytesMut::new());
    resp.encode(0, &mut v0);
    resp.encode(1, &mut v1);
    assert_eq!(v1.len(), v0.len() + 8);
    let Ok(Response::ListOffsets(back)) = Response::decode(ApiKey::ListOffsets, 0, v0.freeze()) else {
        panic!("v0 decodes")
    };
    assert_eq!(
        (
            back.topics[0].partitions[0].offset,
            back.topics[0].partitions[0].leader_term
        ),
        (9, -1)
    );
}

#[test]
fn raft_messages_v1_is_unsupported() {
    let header = RequestHeader {
        api_key: ApiKey::RaftMessages as i16,
        api_version: 1,
        correlation_id: 3,
        client_id: None,
    };
    let mut out = BytesMut::new();
    frame::encode_request(
        &mut out,
        &header,
        &Request::RaftMessages(RaftMessagesRequest::default()),
    );
    let f = frame::split_frame(&mut out, 1 << 20).unwrap().unwrap();
    assert_eq!(
        frame::parse_request(f).unwrap().body.unwrap_err().code,
        ErrorCode::UnsupportedVersion
    );
}

fn encoded(req: &Request) -> Vec<u8> {
    let mut out = BytesMut::new();
    req.encode(0, &mut out);
    out.to_vec()
}

#[test]
fn group_request_layouts_match_the_documented_ones() {
    // FindCoordinator: key string, key_type i8.
    let req = Request::FindCoordinator(FindCoordinatorRequest {
        key: "g".into(),
        key_type: find_coordinator::KEY_TYPE_GROUP,
    });
    assert_eq!(encoded(&req), [0, 1, b'g', 0]);

    // ConsumerGroupHeartbeat: a join with every nullable field null, then with them set.
    let join = ConsumerGroupHeartbeatRequest {
        group_id: "g".into(),
        ..Default::default()
    };
    assert_eq!(join.member_epoch, consumer_group_heartbeat::JOIN_EPOCH);
    let mut want = vec![0, 1, b'g', 0, 0]; // group_id, member_id ""
    want.extend_from_slice(&0i32.to_be_bytes()); // member_epoch
    want.extend_from_slice(&(-1i16).to_be_bytes()); // instance_id null
    want.extend_from_slice(&(-1i32).to_be_bytes()); // rebalance_timeout_ms
    want.extend_from_slice(&(-1i32).to_be_bytes()); // session_timeout_ms
    want.extend_from_slice(&(-1i32).to_be_bytes()); // subscribed_topic_names null
    want.extend_from_slice(&(-1i16).to_be_bytes()); // subscribed_topic_regex null
    want.extend_from_slice(&(-1i32).to_be_bytes()); // owned_partitions null
    let req = Request::ConsumerGroupHeartbeat(join.clone());
    assert_eq!(encoded(&req), want);
    assert_eq!(
        Request::decode(ApiKey::ConsumerGroupHeartbeat, 0, Bytes::from(want)),
        Ok(req)
    );

    // Empty and null are different things.
    let set = ConsumerGroupHeartbeatRequest {
        member_epoch: consumer_group_heartbeat::LEAVE_EPOCH,
        subscribed_topic_names: Some(vec![]),
        subscribed_topic_regex: Some(String::new()),
        owned_partitions: Some(vec![TopicPartitions {
            topic: "t".into(),
            partitions: vec![3],
        }]),
        ..join
    };
    let bytes = encoded(&Request::ConsumerGroupHeartbeat(set.clone()));
    let tail = [
        &0i32.to_be_bytes()[..], // subscribed_topic_names []
        &0i16.to_be_bytes(),     // subscribed_topic_regex ""
        &1i32.to_be_bytes(),     // owned_partitions: one
        &[0, 1, b't'],
        &1i32.to_be_bytes(),
        &3i32.to_be_bytes(),
    ]
    .concat();
    assert!(bytes.ends_with(&tail), "{bytes:?}");
    assert_eq!(
        Request::decode(ApiKey::ConsumerGroupHeartbeat, 0, Bytes::from(bytes)),
        Ok(Request::ConsumerGroupHeartbeat(set))
    );

    // OffsetFetch: null topics (all) versus none.
    for (topics, count) in [(None, -1i32), (Some(vec![]), 0)] {
        let req = Request::OffsetFetch(OffsetFetchRequest {
            group_id: "g".into(),
            topics,
        });
        let bytes = encoded(&req);
        assert_eq!(bytes, [&[0, 1, b'g'][..], &count.to_be_bytes()].concat());
        assert_eq!(Request::decode(ApiKey::OffsetFetch, 0, Bytes::from(bytes)), Ok(req));
    }
}

#[test]
fn group_response_layouts_match_the_documented_ones() {
    // OffsetCommit: message first, then topics.
    let resp = Response::OffsetCommit(OffsetCommitResponse {
        message: None,
        topics: vec![TopicData {
            name: "t".into(),
            partitions: vec![OffsetCommitPartitionResponse {
                partition: 2,
                error: ErrorCode::StaleMemberEpoch,
            }],
        }],
    });
    let mut out = BytesMut::new();
    resp.encode(0, &mut out);
    let want = [
        &(-1i16).to_be_bytes()[..],
        &1i32.to_be_bytes(),
        &[0, 1, b't'],
        &1i32.to_be_bytes(),
        &2i32.to_be_bytes(),
        &113i16.to_be_bytes(),
    ]
    .concat();
    assert_eq!(&out[..], &want[..]);
    assert_eq!(Response::decode(ApiKey::OffsetCommit, 0, Bytes::from(want)), Ok(resp));

    // ConsumerGroupHeartbeat: a null assignment stays null.
    let resp = Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
        error: ErrorCode::FencedMemberEpoch,
        message: Some("fenced".into()),
        member_id: "m".into(),
        member_epoch: 4,
        heartbeat_interval_ms: 5000,
        assignment: None,
    });
    let mut out = BytesMut::new();
    resp.encode(0, &mut out);
    assert!(out.ends_with(&(-1i32).to_be_bytes()));
    assert_eq!(
        Response::decode(ApiKey::ConsumerGroupHeartbeat, 0, out.freeze()),
        Ok(resp)
    );
}

#[test]
fn hostile_group_array_counts_are_errors() {
    let with_count = |prefix: &[u8], count: i32| Bytes::from([prefix, &count.to_be_bytes()].concat());
    // OffsetFetch topics: nullable, so −1 is fine, −2 and huge are not.
    for count in [-2, i32::MAX, 1] {
        assert!(Request::decode(ApiKey::OffsetFetch, 0, with_count(&[0, 1, b'g'], count)).is_err());
    }
    for key in [ApiKey::ListGroups, ApiKey::DescribeGroups, ApiKey::DeleteGroups] {
        assert!(
            Request::decode(key, 0, with_count(&[], -1)).is_err(),
            "{key:?}: not nullable"
        );
        assert!(Request::decode(key, 0, with_count(&[], i32::MAX)).is_err(), "{key:?}");
        assert!(Request::decode(key, 0, with_count(&[], 0)).is_ok(), "{key:?}");
    }
}
