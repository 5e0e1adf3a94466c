//! BrokerRegistration (key 62): a data-only broker joins a running cluster.
//!
//! v0 request: `node_id i32`, `address string` (the joining broker's client address,
//! `host:port`).
//! v0 response: `error_code i16`, `error_message nullable string`, `voters: [node_id i32,
//! address string]` — the controller quorum, which the new broker follows as a learner of the
//! metadata group.
//!
//! Any broker answers, once the controller has committed the registration. Registering again
//! (a restart, a new address) is allowed; a voter's id is refused.

use bytes::{BufMut, BytesMut};

use super::{Body, MIN_STRING_LEN, MinLen, get_array, put_body_array};
use crate::ErrorCode;
use crate::error::DecodeError;
use crate::wire::{Reader, put_nullable_string_lossy, put_string};

/// BrokerRegistration request: the joining broker's node id and client address.
pub type BrokerRegistrationRequest = BrokerAddress;

/// A broker and its client address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrokerAddress {
    /// Node id.
    pub node_id: i32,
    /// `host:port`.
    pub address: String,
}

impl Body for BrokerAddress {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i32(self.node_id);
        put_string(out, &self.address);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            node_id: r.i32("node id")?,
            address: r.string("address")?,
        })
    }
}

impl MinLen for BrokerAddress {
    const MIN_LEN: usize = 4 + MIN_STRING_LEN;
}

/// BrokerRegistration response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrokerRegistrationResponse {
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for an error.
    pub message: Option<String>,
    /// The controller quorum.
    pub voters: Vec<BrokerAddress>,
}

impl Body for BrokerRegistrationResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        out.put_i16(self.error.code());
        put_nullable_string_lossy(out, self.message.as_deref());
        put_body_array(version, out, &self.voters);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error: ErrorCode::from_code(r.i16("error code")?),
            message: r.nullable_string("error message")?,
            voters: get_array(version, r, "voters")?,
        })
    }
}
