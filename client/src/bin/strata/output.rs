//! Standard output: one buffered writer for every command, the `--format` switch, and how
//! record bytes are put into JSON.
//!
//! Nothing writes with `println!` (which panics when the reader has gone): every write returns
//! its `io::Error`, and `main` treats a broken pipe as a quiet, successful end.

use std::io::{BufWriter, Stdout, Write};

use anyhow::Context as _;
use base64::Engine as _;
use serde::Serialize;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: columns and plain lines.
    Text,
    /// For programs: one JSON value per line.
    Json,
}

/// Buffered standard output.
pub struct Out {
    format: Format,
    w: BufWriter<Stdout>,
}

impl Out {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            w: BufWriter::with_capacity(64 << 10, std::io::stdout()),
        }
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Writes `value` as one line of JSON.
    pub fn json_line<T: Serialize + ?Sized>(&mut self, value: &T) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.w, value).map_err(|e| match e.io_error_kind() {
            // Keep the io::Error so a broken pipe is still recognised.
            Some(_) => anyhow::Error::new(std::io::Error::from(e)),
            None => anyhow::Error::new(e),
        })?;
        self.bytes(b"\n")
    }

    /// Writes a line of text.
    pub fn line(&mut self, text: &str) -> anyhow::Result<()> {
        self.bytes(text.as_bytes())?;
        self.bytes(b"\n")
    }

    /// Writes raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> anyhow::Result<()> {
        self.w.write_all(b).context("cannot write to standard output")
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.w.flush().context("cannot write to standard output")
    }
}

/// Whether `e` is, at bottom, a write to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether standard output is a pipe (or terminal) whose reader has gone, e.g. `| head` has
/// exited. A consumer waiting for records checks this, so it ends then instead of at its next
/// write, which may be a long time coming on a quiet topic.
#[cfg(unix)]
pub fn reader_gone() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: `fd` is one valid `pollfd` that outlives the call; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&raw mut fd, 1, 0) };
    // Linux reports a pipe without readers as POLLERR; a hung-up terminal or socket as POLLHUP.
    ready > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

#[cfg(not(unix))]
pub fn reader_gone() -> bool {
    false
}

/// A key or value for JSON: the text if it is valid UTF-8, else base64 (standard alphabet,
/// padded) with `encoding` saying so; `None` for null.
pub struct JsonBytes {
    pub text: Option<String>,
    pub base64: bool,
}

impl JsonBytes {
    pub fn new(bytes: Option<&[u8]>) -> Self {
        match bytes {
            None => Self {
                text: None,
                base64: false,
            },
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => Self {
                    text: Some(s.to_owned()),
                    base64: false,
                },
                Err(_) => Self {
                    text: Some(base64::engine::general_purpose::STANDARD.encode(b)),
                    base64: true,
                },
            },
        }
    }

    /// `Some("base64")` when the text is base64, for an optional `*_encoding` field.
    pub fn encoding(&self) -> Option<&'static str> {
        self.base64.then_some("base64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_text_when_utf8_else_base64() {
        let j = JsonBytes::new(Some("héllo".as_bytes()));
        assert_eq!((j.text.as_deref(), j.encoding()), (Some("héllo"), None));
        let j = JsonBytes::new(Some(&[0xff, 0xfe]));
        assert_eq!((j.text.as_deref(), j.encoding()), (Some("//4="), Some("base64")));
        let j = JsonBytes::new(None);
        assert_eq!((j.encoding(), j.text), (None, None));
    }
}
