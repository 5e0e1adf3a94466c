//! tokio-util codecs for both ends of a connection (feature `codec`). They only move bytes
//! between a socket buffer and the typed frames of [`crate::frame`]; no I/O happens here.
//!
//! The decoders return `Ok(None)` while a frame is incomplete, so they are cancellation-safe
//! inside `select!` (partial input stays in the `FramedRead` buffer), and check the length
//! prefix against the maximum before reserving memory for the frame.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::api::{Request, Response};
use crate::frame::{
    FrameError, IncomingRequest, RawResponse, RequestError, RequestHeader, encode_request, encode_response,
    parse_request, parse_response, split_frame,
};

/// Server side: decodes requests, encodes responses.
#[derive(Debug, Clone, Copy)]
pub struct ServerCodec {
    /// Largest request frame accepted.
    pub max_frame_bytes: usize,
}

/// A response to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingResponse {
    /// The request's correlation id.
    pub correlation_id: i32,
    /// The request's API version (the response is encoded in it).
    pub api_version: i16,
    /// The response, or a request-level error.
    pub body: Result<Response, RequestError>,
}

impl Decoder for ServerCodec {
    type Item = IncomingRequest;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        match split_frame(src, self.max_frame_bytes)? {
            None => Ok(None),
            Some(frame) => parse_request(frame).map(Some),
        }
    }
}

impl Encoder<OutgoingResponse> for ServerCodec {
    type Error = FrameError;

    fn encode(&mut self, item: OutgoingResponse, dst: &mut BytesMut) -> Result<(), Self::Error> {
        encode_response(dst, item.correlation_id, item.api_version, &item.body);
        Ok(())
    }
}

/// Client side: encodes requests, decodes responses.
#[derive(Debug, Clone, Copy)]
pub struct ClientCodec {
    /// Largest response frame accepted.
    pub max_frame_bytes: usize,
}

/// A request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingRequest {
    /// Header (its `api_key` should match the body's).
    pub header: RequestHeader,
    /// Body.
    pub body: Request,
}

impl Decoder for ClientCodec {
    type Item = RawResponse;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        match split_frame(src, self.max_frame_bytes)? {
            None => Ok(None),
            Some(frame) => parse_response(frame).map(Some),
        }
    }
}

impl Encoder<OutgoingRequest> for ClientCodec {
    type Error = FrameError;

    fn encode(&mut self, item: OutgoingRequest, dst: &mut BytesMut) -> Result<(), Self::Error> {
        encode_request(dst, &item.header, &item.body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MetadataRequest, MetadataResponse};
    use crate::error_code::ErrorCode;

    #[test]
    fn pipelined_requests_decode_in_order_and_partial_input_waits() {
        let mut client = ClientCodec {
            max_frame_bytes: 1 << 20,
        };
        let mut server = ServerCodec {
            max_frame_bytes: 1 << 20,
        };
        let mut wire = BytesMut::new();
        for id in 0..3 {
            let header = RequestHeader {
                api_key: 3,
                api_version: 0,
                correlation_id: id,
                client_id: None,
            };
            client
                .encode(
                    OutgoingRequest {
                        header,
                        body: Request::Metadata(MetadataRequest { topics: None }),
                    },
                    &mut wire,
                )
                .unwrap();
        }
        // Feed the server one byte at a time: nothing decodes early, everything decodes in order.
        let mut buf = BytesMut::new();
        let mut ids = Vec::new();
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(req) = server.decode(&mut buf).unwrap() {
                ids.push(req.header.correlation_id);
            }
        }
        assert_eq!(ids, [0, 1, 2]);

        let mut out = BytesMut::new();
        let ok = OutgoingResponse {
            correlation_id: 1,
            api_version: 0,
            body: Ok(Response::Metadata(MetadataResponse::default())),
        };
        server.encode(ok, &mut out).unwrap();
        let err = RequestError {
            code: ErrorCode::InvalidRequest,
            message: "bad".into(),
        };
        server
            .encode(
                OutgoingResponse {
                    correlation_id: 2,
                    api_version: 0,
                    body: Err(err),
                },
                &mut out,
            )
            .unwrap();
        let r1 = client.decode(&mut out).unwrap().unwrap();
        let r2 = client.decode(&mut out).unwrap().unwrap();
        assert_eq!((r1.correlation_id, r1.error), (1, ErrorCode::None));
        assert_eq!((r2.correlation_id, r2.error), (2, ErrorCode::InvalidRequest));
        assert!(client.decode(&mut out).unwrap().is_none());
    }

    #[test]
    fn oversized_frame_is_a_fatal_error() {
        let mut server = ServerCodec { max_frame_bytes: 1024 };
        let mut buf = BytesMut::from(&[0u8, 0, 8, 0][..]);
        assert!(matches!(
            server.decode(&mut buf),
            Err(FrameError::TooLarge {
                length: 2048,
                max: 1024
            })
        ));
    }
}
