//! ApiVersions (key 18): which APIs and versions the broker speaks.
//!
//! v0 request: empty.
//! v0 response: `apis: [api_key i16, min_version i16, max_version i16]`.

use bytes::{BufMut, BytesMut};

use super::{Body, MinLen, get_array, put_body_array};
use crate::error::DecodeError;
use crate::wire::Reader;

/// ApiVersions request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiVersionsRequest;

impl Body for ApiVersionsRequest {
    fn encode(&self, _version: i16, _out: &mut BytesMut) {}
    fn decode(_version: i16, _r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self)
    }
}

/// One API's supported version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersionRange {
    /// API key (raw: a newer broker may list keys this client does not know).
    pub api_key: i16,
    /// Lowest supported version.
    pub min_version: i16,
    /// Highest supported version.
    pub max_version: i16,
}

impl Body for ApiVersionRange {
    fn encode(&self, _version: i16, out: &mut BytesMut) {
        out.put_i16(self.api_key);
        out.put_i16(self.min_version);
        out.put_i16(self.max_version);
    }
    fn decode(_version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            api_key: r.i16("api key")?,
            min_version: r.i16("min version")?,
            max_version: r.i16("max version")?,
        })
    }
}

impl MinLen for ApiVersionRange {
    const MIN_LEN: usize = 6;
}

/// ApiVersions response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiVersionsResponse {
    /// Supported APIs.
    pub apis: Vec<ApiVersionRange>,
}

impl ApiVersionsResponse {
    /// The versions this build supports.
    pub fn supported() -> Self {
        Self {
            apis: super::ApiKey::ALL
                .into_iter()
                .map(|k| ApiVersionRange {
                    api_key: k as i16,
                    min_version: *k.versions().start(),
                    max_version: *k.versions().end(),
                })
                .collect(),
        }
    }
}

impl Body for ApiVersionsResponse {
    fn encode(&self, version: i16, out: &mut BytesMut) {
        put_body_array(version, out, &self.apis);
    }
    fn decode(version: i16, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            apis: get_array(version, r, "apis")?,
        })
    }
}
