//! One HTTP/1.1 request over a plain `std::net::TcpStream`, for tests of the broker's HTTP
//! listener (and of other servers a test runs, such as Prometheus).
//!
//! Deliberately raw: no client library between the test and the bytes, one connection per
//! request with `Connection: close`, the response read to the end of the stream. Blocking; from
//! async tests call it inside `tokio::task::spawn_blocking`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a connect may take. Every server a test talks to is on loopback, where a connect is
/// answered at once unless something is badly wrong.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Read (and write) timeout of [`get`].
const GET_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP response: status, headers (names lowercased, values trimmed) and the body
/// (de-chunked when sent `Transfer-Encoding: chunked`).
#[derive(Debug)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The header fields in the order received, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, decoded from chunked transfer encoding where it was chunked.
    pub body: String,
}

impl Response {
    /// The value of the first header field called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// If the body is not JSON; the message shows the whole response.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// `GET path` with no body; waits up to 10 s for the answer.
///
/// # Errors
///
/// As [`request`].
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    request(addr, "GET", path, None, b"", GET_TIMEOUT)
}

/// Sends `method path` with `body` (and `Content-Type: content_type` where given) and reads the
/// response to the end of the stream, each read and write bounded by `timeout`. A
/// `Content-Length` is sent when there is a body, and always for POST.
///
/// Write errors are ignored, so that the answer of a server that replies before reading a whole
/// (say, oversized) body is still read; a read error after the whole response head has arrived
/// (the server reset the connection with request bytes unread) keeps what was read.
///
/// # Errors
///
/// If the connection cannot be made, nothing complete arrives before an I/O error, the response
/// has no header end or status code, its chunked body is malformed, or the body is not UTF-8.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(body));
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let Some(split) = head_end else {
        read?;
        return Err(invalid(format!(
            "{method} {path}: no header end in {:?}",
            String::from_utf8_lossy(&raw)
        )));
    };
    parse(&raw[..split], &raw[split + 4..])
        .map_err(|e| invalid(format!("{method} {path}: {e} in {:?}", String::from_utf8_lossy(&raw))))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The response from its head (without the blank line) and the bytes after it.
fn parse(head: &[u8], body: &[u8]) -> Result<Response, String> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status code")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    let body = String::from_utf8(body).map_err(|e| format!("body not UTF-8 ({e})"))?;
    Ok(Response { status, headers, body })
}

/// Decodes a `Transfer-Encoding: chunked` body (chunk extensions ignored, trailers dropped).
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line without CRLF")?;
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|l| l.split(';').next())
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or("a bad chunk size")?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = raw.get(..size).ok_or("a chunk shorter than its size")?;
        out.extend_from_slice(chunk);
        raw = raw.get(size + 2..).ok_or("a chunk without CRLF after it")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_chunked_response() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked",
            b"5;x=y\r\nhello\r\n1\r\n!\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.body, "hello!");
    }

    #[test]
    fn a_truncated_chunk_is_an_error() {
        assert!(dechunk(b"5\r\nhel").is_err());
        assert!(parse(b"garbage", b"").is_err());
    }
}
