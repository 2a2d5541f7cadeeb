//! The snapshot envelope: what the engine stores and accepts instead of raw V8 blobs.
//!
//! V8 aborts the process on a blob it cannot read, so every blob is wrapped and the
//! wrapper is checked before V8 sees a byte:
//!
//! ```text
//! offset  size  field
//! 0       8     magic "MCPV8SNP"
//! 8       2     format version (little endian), currently 1
//! 10      2     compression: 1 = zstd with the console bootstrap as dictionary
//! 12      16    engine fingerprint (see `fingerprint`)
//! 28      1     length n of the V8 version string
//! 29      n     V8 version, e.g. "10.2.154.26-node.28"
//! 29+n    8     raw blob length (little endian)
//! 37+n    32    SHA-256 of the payload
//! 69+n    ...   payload: the zstd-compressed V8 startup blob
//! ```
//!
//! The key of a snapshot is the lowercase hex SHA-256 of its payload.

use sha2::{Digest, Sha256};
use std::fmt;

pub const MAGIC: &[u8; 8] = b"MCPV8SNP";
pub const FORMAT_VERSION: u16 = 1;
const COMPRESSION_ZSTD: u16 = 1;
/// zstd level: 3 is the sweet spot measured for V8 blobs (466 KB -> ~53 KB).
const ZSTD_LEVEL: i32 = 3;
/// Upper bound on the raw blob a envelope may announce (guards the decompressor).
pub const MAX_RAW_LEN: u64 = 4 << 30;

/// Identifies the engine build whose snapshots are interchangeable: the layout of the
/// host functions and the console bootstrap baked into every snapshot, plus this
/// format. Computed by build.rs from those sources.
pub fn fingerprint() -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(env!("MCP_V8_SNAPSHOT_ABI").as_bytes());
    h.update(FORMAT_VERSION.to_le_bytes());
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    Truncated,
    BadMagic,
    UnsupportedFormat(u16),
    UnsupportedCompression(u16),
    WrongEngine,
    WrongV8 { snapshot: String, running: String },
    ChecksumMismatch,
    TooLarge(u64),
    Corrupt(String),
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "heap snapshot is truncated"),
            Self::BadMagic => write!(f, "not an mcp-v8 heap snapshot (bad magic)"),
            Self::UnsupportedFormat(v) => write!(
                f,
                "heap snapshot format {v} is not supported (this engine reads {FORMAT_VERSION})"
            ),
            Self::UnsupportedCompression(c) => {
                write!(f, "heap snapshot compression {c} is not supported")
            }
            Self::WrongEngine => write!(
                f,
                "heap snapshot was made by an incompatible mcp-v8 engine build"
            ),
            Self::WrongV8 { snapshot, running } => {
                write!(
                    f,
                    "heap snapshot was made by V8 {snapshot}, this engine runs V8 {running}"
                )
            }
            Self::ChecksumMismatch => write!(
                f,
                "heap snapshot is corrupt (SHA-256 of the payload does not match)"
            ),
            Self::TooLarge(n) => write!(f, "heap snapshot announces {n} bytes, more than allowed"),
            Self::Corrupt(m) => write!(f, "heap snapshot is corrupt ({m})"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// A sealed snapshot: the envelope bytes and the key they are stored under.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub envelope: Vec<u8>,
    pub key: String,
    pub raw_len: usize,
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Every snapshot holds the source text of the console bootstrap (V8 keeps function
/// sources); used as a zstd dictionary, that text costs almost nothing to store. The
/// engine fingerprint covers it, so both sides always hold the same dictionary.
const DICTIONARY: &[u8] = include_bytes!("../cpp/js/console.js");

thread_local! {
    static COMPRESSOR: std::cell::RefCell<zstd::bulk::Compressor<'static>> = std::cell::RefCell::new(
        zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, DICTIONARY).expect("zstd dictionary"),
    );
    static DECOMPRESSOR: std::cell::RefCell<zstd::bulk::Decompressor<'static>> = std::cell::RefCell::new(
        zstd::bulk::Decompressor::with_dictionary(DICTIONARY).expect("zstd dictionary"),
    );
}

pub fn seal(raw: &[u8], v8_version: &str) -> Sealed {
    let payload = COMPRESSOR
        .with(|c| c.borrow_mut().compress(raw))
        .expect("zstd compression of an in-memory buffer");
    let digest: [u8; 32] = Sha256::digest(&payload).into();
    let version = v8_version.as_bytes();
    let version = &version[..version.len().min(255)];
    let mut out = Vec::with_capacity(69 + version.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&COMPRESSION_ZSTD.to_le_bytes());
    out.extend_from_slice(&fingerprint());
    out.push(version.len() as u8);
    out.extend_from_slice(version);
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(&digest);
    out.extend_from_slice(&payload);
    Sealed {
        envelope: out,
        key: hex(&digest),
        raw_len: raw.len(),
    }
}

/// Header fields of an envelope whose checksum has been verified.
#[derive(Debug)]
pub struct Opened<'a> {
    pub key: String,
    pub raw_len: u64,
    pub payload: &'a [u8],
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], EnvelopeError> {
    if buf.len() < n {
        return Err(EnvelopeError::Truncated);
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// Checks everything but decompression: magic, format, engine, V8 version, checksum.
pub fn open<'a>(envelope: &'a [u8], v8_version: &str) -> Result<Opened<'a>, EnvelopeError> {
    let mut b = envelope;
    if take(&mut b, 8)? != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    let format = u16::from_le_bytes(take(&mut b, 2)?.try_into().unwrap());
    if format != FORMAT_VERSION {
        return Err(EnvelopeError::UnsupportedFormat(format));
    }
    let compression = u16::from_le_bytes(take(&mut b, 2)?.try_into().unwrap());
    if compression != COMPRESSION_ZSTD {
        return Err(EnvelopeError::UnsupportedCompression(compression));
    }
    if take(&mut b, 16)? != fingerprint() {
        return Err(EnvelopeError::WrongEngine);
    }
    let n = take(&mut b, 1)?[0] as usize;
    let version = take(&mut b, n)?;
    if version != v8_version.as_bytes() {
        return Err(EnvelopeError::WrongV8 {
            snapshot: String::from_utf8_lossy(version).into_owned(),
            running: v8_version.to_string(),
        });
    }
    let raw_len = u64::from_le_bytes(take(&mut b, 8)?.try_into().unwrap());
    if raw_len > MAX_RAW_LEN {
        return Err(EnvelopeError::TooLarge(raw_len));
    }
    let digest = take(&mut b, 32)?;
    let actual: [u8; 32] = Sha256::digest(b).into();
    if actual.as_slice() != digest {
        return Err(EnvelopeError::ChecksumMismatch);
    }
    Ok(Opened {
        key: hex(&actual),
        raw_len,
        payload: b,
    })
}

/// Opens and decompresses an envelope into the raw V8 blob.
pub fn unseal(envelope: &[u8], v8_version: &str) -> Result<Vec<u8>, EnvelopeError> {
    let opened = open(envelope, v8_version)?;
    let raw = DECOMPRESSOR
        .with(|d| {
            d.borrow_mut()
                .decompress(opened.payload, opened.raw_len as usize)
        })
        .map_err(|e| EnvelopeError::Corrupt(e.to_string()))?;
    if raw.len() as u64 != opened.raw_len {
        return Err(EnvelopeError::Corrupt(format!(
            "{} bytes instead of {}",
            raw.len(),
            opened.raw_len
        )));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "10.2.154.26-node.1";

    fn blob() -> Vec<u8> {
        (0..100_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn round_trip_and_key_is_payload_sha256() {
        let raw = blob();
        let sealed = seal(&raw, V);
        assert_eq!(sealed.key.len(), 64);
        assert!(sealed.envelope.len() < raw.len() / 5);
        let opened = open(&sealed.envelope, V).unwrap();
        assert_eq!(opened.key, sealed.key);
        assert_eq!(hex(&Sha256::digest(opened.payload)), sealed.key);
        assert_eq!(unseal(&sealed.envelope, V).unwrap(), raw);
    }

    #[test]
    fn every_single_byte_flip_is_refused() {
        let sealed = seal(&blob(), V);
        for i in (0..sealed.envelope.len()).step_by(7) {
            let mut bad = sealed.envelope.clone();
            bad[i] ^= 0x40;
            assert!(unseal(&bad, V).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn truncation_and_foreign_bytes_are_refused() {
        let sealed = seal(&blob(), V);
        for cut in [0, 5, 8, 20, 40, sealed.envelope.len() - 1] {
            assert!(unseal(&sealed.envelope[..cut], V).is_err());
        }
        assert_eq!(
            unseal(b"definitely not a snapshot", V).unwrap_err(),
            EnvelopeError::BadMagic
        );
        let err = unseal(&sealed.envelope, "11.3.0").unwrap_err();
        assert!(matches!(err, EnvelopeError::WrongV8 { .. }), "{err}");
    }
}
