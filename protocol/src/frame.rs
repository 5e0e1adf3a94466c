//! Frames: the unit on the wire.
//!
//! ```text
//! request frame:  [length u32][api_key i16][api_version i16][correlation_id i32][client_id nullable string][body]
//! response frame: [length u32][correlation_id i32][error_code i16][body]
//! ```
//!
//! `length` counts the bytes after itself. A response's `error_code` is the request-level
//! outcome: `NONE` means the body is the API's response; anything else (unknown API,
//! unsupported version, malformed body, broker shutting down) means the body is just an error
//! message (nullable string) and carries the correlation id so the client can match it.
//!
//! What goes wrong where:
//! - a length over the configured maximum, or a header that does not parse, means the stream can
//!   no longer be trusted: [`FrameError`], and the connection is closed;
//! - an unknown API, unsupported version or malformed body parsed *after* a good header gets an
//!   error response ([`RequestError`]) and the connection keeps serving.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::api::{ApiKey, Request, Response};
use crate::error::DecodeError;
use crate::error_code::ErrorCode;
use crate::wire::{Reader, put_nullable_string, put_string_lossy};

/// Default largest frame (64 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;
/// Size of the length prefix.
pub const LENGTH_LEN: usize = 4;
/// Smallest request header: api key, version, correlation id, null client id.
pub const MIN_REQUEST_HEADER_LEN: usize = 2 + 2 + 4 + 2;
/// Response header: correlation id and error code.
pub const RESPONSE_HEADER_LEN: usize = 4 + 2;

/// A frame the connection cannot continue after. The connection is closed.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The length prefix exceeds the configured maximum.
    #[error("frame of {length} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Declared length.
        length: u64,
        /// The limit.
        max: usize,
    },
    /// The frame is shorter than its header.
    #[error("frame of {length} bytes is shorter than a header")]
    TooShort {
        /// Declared length.
        length: usize,
    },
    /// The header does not parse.
    #[error("malformed frame header: {0}")]
    Header(#[from] DecodeError),
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A request's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// Raw API key (may be one this broker does not know).
    pub api_key: i16,
    /// API version.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// Free-form client name, for logs.
    pub client_id: Option<String>,
}

/// Why a well-framed request cannot be served; answered with an error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The code.
    pub code: ErrorCode,
    /// Detail for the client.
    pub message: String,
}

/// A request as read off the wire: its header, and its body or why the body is unusable.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingRequest {
    /// Header.
    pub header: RequestHeader,
    /// The decoded body.
    pub body: Result<Request, RequestError>,
}

/// A response as read off the wire, body not yet decoded (decoding needs the API and version,
/// which the client knows from the correlation id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// Matches the request's.
    pub correlation_id: i32,
    /// Request-level outcome.
    pub error: ErrorCode,
    /// The body (the API response, or an error message if `error` is not `NONE`).
    pub body: Bytes,
}

impl RawResponse {
    /// Decodes the body as the response to a request of `key` and `version`.
    ///
    /// # Errors
    /// The request-level error (with the broker's message) if there is one, else a decode error.
    pub fn decode(self, key: ApiKey, version: i16) -> Result<Response, RequestError> {
        if !self.error.is_ok() {
            let message = Reader::new(self.body)
                .nullable_string("error message")
                .ok()
                .flatten()
                .unwrap_or_default();
            return Err(RequestError {
                code: self.error,
                message,
            });
        }
        Response::decode(key, version, self.body).map_err(|e| RequestError {
            code: ErrorCode::InvalidRequest,
            message: format!("malformed response: {e}"),
        })
    }
}

/// Splits one frame off the front of `src`: `Ok(None)` if it is not complete yet (after
/// reserving room for it), the frame's bytes after the length prefix otherwise. The length is
/// checked against `max_frame_bytes` before anything is reserved.
///
/// # Errors
/// [`FrameError::TooLarge`].
pub fn split_frame(src: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(prefix) = src.get(..LENGTH_LEN) else {
        return Ok(None);
    };
    let length = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if length > max_frame_bytes {
        return Err(FrameError::TooLarge {
            length: length as u64,
            max: max_frame_bytes,
        });
    }
    let total = LENGTH_LEN + length;
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    src.advance(LENGTH_LEN);
    Ok(Some(src.split_to(length).freeze()))
}

/// Parses a request frame (the bytes after the length prefix).
///
/// # Errors
/// [`FrameError`] if the header is unusable; body problems are in [`IncomingRequest::body`].
pub fn parse_request(frame: Bytes) -> Result<IncomingRequest, FrameError> {
    if frame.len() < MIN_REQUEST_HEADER_LEN {
        return Err(FrameError::TooShort { length: frame.len() });
    }
    let mut r = Reader::new(frame);
    let header = RequestHeader {
        api_key: r.i16("api key")?,
        api_version: r.i16("api version")?,
        correlation_id: r.i32("correlation id")?,
        client_id: r.nullable_string("client id")?,
    };
    let body = r.rest();
    let body = match ApiKey::from_i16(header.api_key) {
        None => Err(RequestError {
            code: ErrorCode::UnsupportedVersion,
            message: format!("unknown api key {}", header.api_key),
        }),
        Some(key) if !key.versions().contains(&header.api_version) => Err(RequestError {
            code: ErrorCode::UnsupportedVersion,
            message: format!(
                "{} v{} is not supported (supported: {:?})",
                key.name(),
                header.api_version,
                key.versions()
            ),
        }),
        Some(key) => Request::decode(key, header.api_version, body).map_err(|e| RequestError {
            code: ErrorCode::InvalidRequest,
            message: format!("malformed {} request: {e}", key.name()),
        }),
    };
    Ok(IncomingRequest { header, body })
}

/// Parses a response frame (the bytes after the length prefix).
///
/// # Errors
/// [`FrameError::TooShort`] if there is no complete header.
pub fn parse_response(frame: Bytes) -> Result<RawResponse, FrameError> {
    if frame.len() < RESPONSE_HEADER_LEN {
        return Err(FrameError::TooShort { length: frame.len() });
    }
    let mut frame = frame;
    let correlation_id = frame.get_i32();
    let error = ErrorCode::from_code(frame.get_i16());
    Ok(RawResponse {
        correlation_id,
        error,
        body: frame,
    })
}

/// Writes a length prefix placeholder, returning where it is.
fn begin_frame(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_u32(0);
    at
}

/// Fills in the length prefix written by [`begin_frame`].
///
/// # Panics
/// If the frame exceeds `u32::MAX` bytes (bodies are bounded far below that).
fn end_frame(out: &mut BytesMut, at: usize) {
    let len = u32::try_from(out.len() - at - LENGTH_LEN).expect("frame fits in u32");
    out[at..at + LENGTH_LEN].copy_from_slice(&len.to_be_bytes());
}

/// Encodes a whole request frame.
pub fn encode_request(out: &mut BytesMut, header: &RequestHeader, body: &Request) {
    let at = begin_frame(out);
    out.put_i16(header.api_key);
    out.put_i16(header.api_version);
    out.put_i32(header.correlation_id);
    put_nullable_string(out, header.client_id.as_deref());
    body.encode(header.api_version, out);
    end_frame(out, at);
}

/// Encodes a whole response frame: the API response, or a request-level error.
pub fn encode_response(out: &mut BytesMut, correlation_id: i32, version: i16, body: &Result<Response, RequestError>) {
    let at = begin_frame(out);
    out.put_i32(correlation_id);
    match body {
        Ok(resp) => {
            out.put_i16(ErrorCode::None.code());
            resp.encode(version, out);
        }
        Err(e) => {
            out.put_i16(e.code.code());
            put_string_lossy(out, &e.message);
        }
    }
    end_frame(out, at);
}
