//! Wire error codes.
//!
//! Every code is an explicit, stable `i16` — never derived from enum order — and where Kafka has
//! the same condition Strata uses Kafka's number, so the table reads the same to people who run
//! Kafka. `tests::codes_are_pinned` fails if a number changes.

/// An error code carried in responses (per partition, per topic, or for the whole request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(i16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// An unexpected server error; the message says more.
    UnknownServerError = -1,
    /// Success.
    #[default]
    None = 0,
    /// The requested offset is outside the partition's log (below its start or past its end).
    OffsetOutOfRange = 1,
    /// A batch failed validation (CRC, lengths, record count).
    CorruptBatch = 2,
    /// The topic or partition does not exist.
    UnknownTopicOrPartition = 3,
    /// The partition has no leader right now (an election is in progress). Retriable.
    LeaderNotAvailable = 5,
    /// This broker is not the partition's leader; the response names the leader. Retriable
    /// after refreshing metadata.
    NotLeader = 6,
    /// The request did not complete within its timeout. Retriable.
    RequestTimedOut = 7,
    /// A broker named in the request is not part of the cluster.
    BrokerNotAvailable = 8,
    /// A batch is larger than the topic's maximum message size.
    MessageTooLarge = 10,
    /// The group coordinator is still loading the group's state (after a move or a restart).
    /// Retriable.
    CoordinatorLoadInProgress = 14,
    /// No broker can coordinate the group right now (its partition has no leader). Retriable.
    CoordinatorNotAvailable = 15,
    /// This broker is not the group's coordinator. Retriable after finding the coordinator
    /// again.
    NotCoordinator = 16,
    /// The topic name is not valid (empty, too long, or bad characters).
    InvalidTopic = 17,
    /// Too few in-sync replicas to accept the write. Retriable.
    NotEnoughReplicas = 19,
    /// The `acks` value is not −1, 0 or 1.
    InvalidRequiredAcks = 21,
    /// The generation (epoch) in a group request is not the group's current one.
    IllegalGeneration = 22,
    /// The group id is not valid.
    InvalidGroupId = 24,
    /// The member id is not a member of the group.
    UnknownMemberId = 25,
    /// The session timeout is outside the range the broker allows.
    InvalidSessionTimeout = 26,
    /// The API or version is not supported by this broker.
    UnsupportedVersion = 35,
    /// A topic of that name exists already.
    TopicAlreadyExists = 36,
    /// The partition count is invalid.
    InvalidPartitions = 37,
    /// The replication factor is invalid or larger than the number of brokers.
    InvalidReplicationFactor = 38,
    /// A replica assignment is invalid (unknown or repeated broker ids, no replicas).
    InvalidReplicaAssignment = 39,
    /// A topic config key or value is invalid.
    InvalidConfig = 40,
    /// The request is malformed.
    InvalidRequest = 42,
    /// The broker is shutting down and does not take new work. Retriable (on another broker).
    BrokerShuttingDown = 43,
    /// An idempotent producer's batch does not follow its previous one (a gap in sequence
    /// numbers): an earlier batch was lost. Not retriable as is.
    OutOfOrderSequenceNumber = 45,
    /// An idempotent producer's epoch is older than the partition has seen: another producer
    /// instance took over the id (fenced).
    InvalidProducerEpoch = 47,
    /// The storage engine failed (disk full, I/O error, failed log). Retriable elsewhere.
    StorageError = 56,
    /// The leader term in the request is newer than the term of the replica that got it: that
    /// replica has not yet learned it was deposed (it was paused or cut off). Retriable after a
    /// metadata refresh.
    UnknownLeaderEpoch = 75,
    /// The group has members: it cannot be deleted, nor take commits from outside membership.
    NonEmptyGroup = 68,
    /// The group does not exist.
    GroupIdNotFound = 69,
    /// The group already has as many members as the broker allows.
    GroupMaxSizeReached = 81,
    /// The batch uses a compression codec the topic does not allow.
    UnsupportedCompressionType = 76,
    /// The member's epoch is older than the group has for it: the member was fenced and must
    /// rejoin (with epoch 0, giving up its partitions).
    FencedMemberEpoch = 110,
    /// A static member's instance id is still held by another member (reserved: Strata's
    /// coordinator hands the instance to the newcomer and fences the old member instead).
    UnreleasedInstanceId = 111,
    /// An offset commit at an epoch that is not the member's current (or previous) one, or for a
    /// partition the member neither owns nor is revoking.
    StaleMemberEpoch = 113,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 39] = [
        ErrorCode::UnknownServerError,
        ErrorCode::None,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::CorruptBatch,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::NotLeader,
        ErrorCode::RequestTimedOut,
        ErrorCode::MessageTooLarge,
        ErrorCode::InvalidTopic,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::InvalidRequiredAcks,
        ErrorCode::UnsupportedVersion,
        ErrorCode::TopicAlreadyExists,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::InvalidReplicaAssignment,
        ErrorCode::BrokerNotAvailable,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidRequest,
        ErrorCode::BrokerShuttingDown,
        ErrorCode::OutOfOrderSequenceNumber,
        ErrorCode::InvalidProducerEpoch,
        ErrorCode::StorageError,
        ErrorCode::UnknownLeaderEpoch,
        ErrorCode::UnsupportedCompressionType,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator,
        ErrorCode::IllegalGeneration,
        ErrorCode::InvalidGroupId,
        ErrorCode::UnknownMemberId,
        ErrorCode::InvalidSessionTimeout,
        ErrorCode::NonEmptyGroup,
        ErrorCode::GroupIdNotFound,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::FencedMemberEpoch,
        ErrorCode::UnreleasedInstanceId,
        ErrorCode::StaleMemberEpoch,
    ];

    /// The wire value.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// Parses a wire value; unknown values (from a newer broker) map to `UnknownServerError`.
    pub fn from_code(code: i16) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .unwrap_or(ErrorCode::UnknownServerError)
    }

    /// Whether this is success.
    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }

    /// Whether a client should retry (after refreshing metadata where it applies).
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::LeaderNotAvailable
                | ErrorCode::NotLeader
                | ErrorCode::RequestTimedOut
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::BrokerShuttingDown
                | ErrorCode::StorageError
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator
        )
    }

    /// The stable upper-snake-case name (as used in metrics labels and logs).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            ErrorCode::None => "NONE",
            ErrorCode::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            ErrorCode::CorruptBatch => "CORRUPT_BATCH",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::MessageTooLarge => "MESSAGE_TOO_LARGE",
            ErrorCode::InvalidTopic => "INVALID_TOPIC",
            ErrorCode::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            ErrorCode::InvalidRequiredAcks => "INVALID_REQUIRED_ACKS",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::InvalidReplicaAssignment => "INVALID_REPLICA_ASSIGNMENT",
            ErrorCode::BrokerNotAvailable => "BROKER_NOT_AVAILABLE",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::BrokerShuttingDown => "BROKER_SHUTTING_DOWN",
            ErrorCode::StorageError => "STORAGE_ERROR",
            ErrorCode::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
            ErrorCode::UnsupportedCompressionType => "UNSUPPORTED_COMPRESSION_TYPE",
            ErrorCode::OutOfOrderSequenceNumber => "OUT_OF_ORDER_SEQUENCE_NUMBER",
            ErrorCode::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            ErrorCode::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            ErrorCode::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            ErrorCode::NotCoordinator => "NOT_COORDINATOR",
            ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION",
            ErrorCode::InvalidGroupId => "INVALID_GROUP_ID",
            ErrorCode::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            ErrorCode::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            ErrorCode::NonEmptyGroup => "NON_EMPTY_GROUP",
            ErrorCode::GroupIdNotFound => "GROUP_ID_NOT_FOUND",
            ErrorCode::GroupMaxSizeReached => "GROUP_MAX_SIZE_REACHED",
            ErrorCode::FencedMemberEpoch => "FENCED_MEMBER_EPOCH",
            ErrorCode::UnreleasedInstanceId => "UNRELEASED_INSTANCE_ID",
            ErrorCode::StaleMemberEpoch => "STALE_MEMBER_EPOCH",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_pinned() {
        let pinned: &[(ErrorCode, i16)] = &[
            (ErrorCode::UnknownServerError, -1),
            (ErrorCode::None, 0),
            (ErrorCode::OffsetOutOfRange, 1),
            (ErrorCode::CorruptBatch, 2),
            (ErrorCode::UnknownTopicOrPartition, 3),
            (ErrorCode::LeaderNotAvailable, 5),
            (ErrorCode::NotLeader, 6),
            (ErrorCode::RequestTimedOut, 7),
            (ErrorCode::MessageTooLarge, 10),
            (ErrorCode::InvalidTopic, 17),
            (ErrorCode::NotEnoughReplicas, 19),
            (ErrorCode::InvalidRequiredAcks, 21),
            (ErrorCode::UnsupportedVersion, 35),
            (ErrorCode::TopicAlreadyExists, 36),
            (ErrorCode::InvalidPartitions, 37),
            (ErrorCode::InvalidReplicationFactor, 38),
            (ErrorCode::InvalidReplicaAssignment, 39),
            (ErrorCode::BrokerNotAvailable, 8),
            (ErrorCode::InvalidConfig, 40),
            (ErrorCode::InvalidRequest, 42),
            (ErrorCode::BrokerShuttingDown, 43),
            (ErrorCode::OutOfOrderSequenceNumber, 45),
            (ErrorCode::InvalidProducerEpoch, 47),
            (ErrorCode::StorageError, 56),
            (ErrorCode::UnknownLeaderEpoch, 75),
            (ErrorCode::UnsupportedCompressionType, 76),
            (ErrorCode::CoordinatorLoadInProgress, 14),
            (ErrorCode::CoordinatorNotAvailable, 15),
            (ErrorCode::NotCoordinator, 16),
            (ErrorCode::IllegalGeneration, 22),
            (ErrorCode::InvalidGroupId, 24),
            (ErrorCode::UnknownMemberId, 25),
            (ErrorCode::InvalidSessionTimeout, 26),
            (ErrorCode::NonEmptyGroup, 68),
            (ErrorCode::GroupIdNotFound, 69),
            (ErrorCode::GroupMaxSizeReached, 81),
            (ErrorCode::FencedMemberEpoch, 110),
            (ErrorCode::UnreleasedInstanceId, 111),
            (ErrorCode::StaleMemberEpoch, 113),
        ];
        assert_eq!(pinned.len(), ErrorCode::ALL.len());
        for (c, v) in pinned {
            assert_eq!(c.code(), *v, "{c:?}");
            assert_eq!(ErrorCode::from_code(*v), *c);
        }
        assert_eq!(ErrorCode::from_code(12345), ErrorCode::UnknownServerError);
    }
}
