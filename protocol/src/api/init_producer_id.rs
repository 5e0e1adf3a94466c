//! InitProducerId (key 22): a producer id and epoch for an idempotent producer.
//!
//! v0 request: `transactional_id nullable string` (must be null: Strata has no transactions),
//! `transaction_timeout_ms i32` (ignored).
//! v0 response: `error_code i16`, `error_message nullable string`, `producer_id i64`,
//! `producer_epoch i16`.
//!
//! Any broker answers: ids come from blocks the controller hands each broker, so two producers
//! never share one. The producer stamps the id, the epoch and a per-partition sequence number
//! into every batch header; a partition's leader drops a batch it already has (a retry) and
//! refuses one that skips a sequence number.

use bytes::{BufMut, BytesMut};

use super::Body;
use crate::ErrorCode;
use crate::error::DecodeError;
use crate::wire::{Reader, put_nullable_string, put_nullable_string_lossy};

/// InitProducerId request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitProducerIdRequest {
    /// Must be `None` (no transactions).
    pub transactional_id: Option<String>,
    /// Ignored (no transactions).
    pub transaction_timeout_ms: i32,
}

impl Body for InitProducerIdRequest {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        put_nullable_string(out, self.transactional_id.as_deref());
        out.put_i32(self.transaction_timeout_ms);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            transactional_id: r.nullable_string("transactional id")?,
            transaction_timeout_ms: r.i32("transaction timeout")?,
        })
    }
}

/// InitProducerId response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for an error.
    pub message: Option<String>,
    /// The producer id (−1 on error).
    pub producer_id: i64,
    /// The producer epoch (−1 on error).
    pub producer_epoch: i16,
}

impl Default for InitProducerIdResponse {
    fn default() -> Self {
        Self {
            error: ErrorCode::None,
            message: None,
            producer_id: -1,
            producer_epoch: -1,
        }
    }
}

impl Body for InitProducerIdResponse {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
            producer_id: r.i64("producer id")?,
            producer_epoch: r.i16("producer epoch")?,
        })
    }
}
