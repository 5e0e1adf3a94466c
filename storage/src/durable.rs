//! Small files replaced atomically and durably: Raft hard state, the log-start marker, and
//! similar metadata.
//!
//! [`write_atomic`] writes a temporary file, fsyncs it, renames it over the target and fsyncs
//! the directory, so after a crash the file holds either the old or the new contents, never a
//! mix. The contents are framed with a magic number, length and CRC so that [`read`] can tell a
//! damaged file from a valid one.
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 4 | magic `STRD` |
//! | 4 | 1 | version (1) |
//! | 5 | 4 | payload length, big-endian |
//! | 9 | 4 | CRC-32 of the payload, big-endian |
//! | 13 | n | payload |

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"STRD";
const VERSION: u8 = 1;
const FRAME_LEN: usize = 13;
/// Largest payload accepted (these are small metadata files).
pub const MAX_PAYLOAD: usize = 16 << 20;

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
///
/// # Errors
/// [`Error::Io`].
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync dir", dir))
}

/// Atomically replaces `path` with `payload` (temp file, fsync, rename, fsync directory).
///
/// # Errors
/// [`Error::Io`] from any step; [`Error::InvalidConfig`] if the payload exceeds [`MAX_PAYLOAD`].
pub fn write_atomic(path: &Path, payload: &[u8]) -> Result<()> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Error::InvalidConfig {
            key: "durable file payload",
            reason: format!("{} bytes exceeds {MAX_PAYLOAD}", payload.len()),
        });
    }
    let tmp = tmp_path(path);
    let mut buf = Vec::with_capacity(FRAME_LEN + payload.len());
    buf.extend_from_slice(MAGIC);
    buf.push(VERSION);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    buf.extend_from_slice(payload);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(Error::io("create", &tmp))?;
    f.write_all(&buf).map_err(Error::io("write", &tmp))?;
    f.sync_all().map_err(Error::io("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(Error::io("rename", path))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(dir)
}

/// Reads a file written by [`write_atomic`]. Returns `None` if it does not exist.
///
/// # Errors
/// [`Error::Io`] if reading fails; [`Error::Corruption`] if the frame or CRC is wrong.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path)(e)),
    };
    let corrupt = |reason: &str| Error::corrupt(path, 0, reason);
    if bytes.len() < FRAME_LEN {
        return Err(corrupt("shorter than its frame"));
    }
    if &bytes[..4] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    if bytes[4] != VERSION {
        return Err(corrupt("unknown version"));
    }
    let len = u32::from_be_bytes(bytes[5..9].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_be_bytes(bytes[9..13].try_into().expect("4 bytes"));
    let payload = &bytes[FRAME_LEN..];
    if payload.len() != len {
        return Err(corrupt("length does not match"));
    }
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("crc mismatch"));
    }
    Ok(Some(payload.to_vec()))
}

/// Removes a leftover temporary file of `path` (from a crash during [`write_atomic`]); call it
/// before reading `path` on startup. Errors are ignored: the file usually does not exist.
pub fn remove_stale_tmp(path: &Path) {
    let _ = fs::remove_file(tmp_path(path));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        assert_eq!(read(&p).unwrap(), None);
        write_atomic(&p, b"one").unwrap();
        assert_eq!(read(&p).unwrap().as_deref(), Some(&b"one"[..]));
        write_atomic(&p, b"two!").unwrap();
        assert_eq!(read(&p).unwrap().as_deref(), Some(&b"two!"[..]));
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn damage_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        write_atomic(&p, b"hello world").unwrap();
        let good = fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            fs::write(&p, &bad).unwrap();
            assert!(read(&p).unwrap_err().is_corruption(), "flip at {i}");
        }
        for cut in 0..good.len() {
            fs::write(&p, &good[..cut]).unwrap();
            assert!(read(&p).unwrap_err().is_corruption(), "cut at {cut}");
        }
    }
}
