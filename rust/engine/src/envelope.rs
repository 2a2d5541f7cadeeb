//! The snapshot envelope: what the engine stores and accepts instead of raw V8 blobs.
//!
//! V8 aborts the process on a blob it cannot read, so every blob is wrapped and the
//! wrapper is checked before V8 sees a byte:
//!
//! ```text
//! offset  size  field
//! 0       8     magic "MCPV8SNP"
//! 8       2     format version (little endian): 2 is written, 1 and 2 are read
//! 10      2     compression: 2 = zstd against the shipped snapshot dictionary
//!                            (1 = zstd with the console bootstrap as dictionary, format 1)
//! 12      16    engine fingerprint (see `fingerprint`)
//! 28      16    format 2 only: the dictionary's id (first 16 bytes of its SHA-256)
//! then    1     length n of the V8 version string
//!         n     V8 version, e.g. "10.2.154.26-node.28"
//!         8     raw blob length (little endian)
//!         32    SHA-256 of the payload
//!         ...   payload: the zstd-compressed V8 startup blob
//! ```
//!
//! Format 2 compresses against the raw blob of a near-empty snapshot of this engine
//! (`dict/snapshot-dictionary-N.bin`, made by `examples/snapshot_dictionary.rs` and shipped,
//! since V8 snapshots are not reproducible): most of any snapshot is that base
//! context, so a near-empty snapshot stores in about 5 % of its raw size (format 1: 11 %).
//! The dictionary is named by hash, so a later one can ship beside it and stored heaps
//! keep restoring. The key of a snapshot is the lowercase hex SHA-256 of its payload.

use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;
use zstd::dict::{DecoderDictionary, EncoderDictionary};

pub const MAGIC: &[u8; 8] = b"MCPV8SNP";
pub const FORMAT_VERSION: u16 = 2;
/// Format 1: zstd with the console bootstrap as dictionary.
const COMPRESSION_CONSOLE_DICTIONARY: u16 = 1;
/// Format 2: zstd against the shipped snapshot dictionary named in the header.
const COMPRESSION_SNAPSHOT_DICTIONARY: u16 = 2;
/// zstd level for blobs above `SMALL_BLOB`: 3 is the lowest level whose tables index the whole
/// ~600 KB dictionary (levels 1 and 2 reach only its last 64 KB and 256 KB).
const ZSTD_LEVEL: i32 = 3;
/// Blobs up to this size (a near-empty heap is ~600 KB, most of it the dictionary's base
/// context) are compressed with `small_blob_compressor`'s parameters instead of level 3's: the
/// fast strategy, with a hash table big enough to index the whole dictionary. Measured on a
/// near-empty heap: 30 % less CPU, stored size 4.4 % of raw instead of 4.2 %. Above it they lose
/// (8 % of raw instead of 5.7 % at 1.5 MB) and level 3 is kept. Frames say how to decode them,
/// so the format and the reader do not change.
const SMALL_BLOB: usize = 1 << 20;
/// Upper bound on the raw blob a envelope may announce (guards the decompressor).
pub const MAX_RAW_LEN: u64 = 4 << 30;

/// Identifies the engine builds whose snapshots are interchangeable: the native functions a
/// snapshot refers to, listed in order in `cpp/external_refs.inc` (build.rs hashes the list),
/// plus the envelope format. This is what this build writes.
pub fn fingerprint() -> [u8; 16] {
    static CURRENT: OnceLock<[u8; 16]> = OnceLock::new();
    *CURRENT.get_or_init(|| fingerprint_of(env!("MCP_V8_SNAPSHOT_ABI"), FORMAT_VERSION))
}

/// The reference list of format 1, and of format 2 before the list was append-only: the
/// hash of the host sources as those builds computed it. Both name the same seven natives
/// that still open `cpp/external_refs.inc`.
const LEGACY_ABI_FORMAT1: &str = "d8ecb8b02db678025f716e301e475796";
const LEGACY_ABI_FORMAT2: &str = "cdbf4aa4ced09b9d0f5dc7636584e45b";

fn fingerprint_of(abi: &str, format: u16) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(abi.as_bytes());
    h.update(format.to_le_bytes());
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Whether an envelope of `format` carrying `fingerprint` restores here: it was made by this
/// build, or by one whose reference list this one's starts with (natives are only appended).
fn accepts(format: u16, given: &[u8]) -> bool {
    static FORMAT1: OnceLock<Vec<[u8; 16]>> = OnceLock::new();
    static FORMAT2: OnceLock<Vec<[u8; 16]>> = OnceLock::new();
    let accepted = if format == 1 {
        FORMAT1.get_or_init(|| vec![fingerprint_of(LEGACY_ABI_FORMAT1, 1)])
    } else {
        FORMAT2.get_or_init(|| {
            let mut all = vec![fingerprint(), fingerprint_of(LEGACY_ABI_FORMAT2, 2)];
            all.extend(
                env!("MCP_V8_SNAPSHOT_ABI_PREFIXES")
                    .split(',')
                    .filter(|abi| !abi.is_empty())
                    .map(|abi| fingerprint_of(abi, 2)),
            );
            all
        })
    };
    accepted.iter().any(|f| f[..] == *given)
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
    UnknownDictionary(String),
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
                "heap snapshot format {v} is not supported (this engine reads 1 and {FORMAT_VERSION})"
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
            Self::UnknownDictionary(id) => write!(
                f,
                "heap snapshot was compressed against dictionary {id}, which this engine does not ship"
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

/// Format 1's dictionary: every snapshot holds the source text of the console bootstrap
/// (V8 keeps function sources). The engine fingerprint covers it.
const CONSOLE_DICTIONARY: &[u8] = include_bytes!("../cpp/js/console.js");

/// Format 2's dictionaries, newest first: each the raw blob of a near-empty snapshot of the
/// engine as it was when the dictionary was made (its base context changes when globals are
/// added). New envelopes use the first; stored ones name theirs, and every one shipped here
/// keeps opening.
const SNAPSHOT_DICTIONARIES: &[&[u8]] = &[
    include_bytes!("../dict/snapshot-dictionary-3.bin"),
    include_bytes!("../dict/snapshot-dictionary-2.bin"),
    include_bytes!("../dict/snapshot-dictionary.bin"),
];
const SNAPSHOT_DICTIONARY: &[u8] = SNAPSHOT_DICTIONARIES[0];

fn ids() -> &'static [[u8; 16]] {
    static IDS: OnceLock<Vec<[u8; 16]>> = OnceLock::new();
    IDS.get_or_init(|| {
        SNAPSHOT_DICTIONARIES
            .iter()
            .map(|d| {
                let digest = Sha256::digest(d);
                let mut id = [0u8; 16];
                id.copy_from_slice(&digest[..16]);
                id
            })
            .collect()
    })
}

/// The id new format 2 envelopes name their dictionary by.
pub fn dictionary_id() -> [u8; 16] {
    ids()[0]
}

// Dictionaries are digested once per process; each thread keeps its own (de)compressor.
fn encoder_dictionary() -> &'static EncoderDictionary<'static> {
    static DICTIONARY: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    DICTIONARY.get_or_init(|| EncoderDictionary::copy(SNAPSHOT_DICTIONARY, ZSTD_LEVEL))
}

/// Dictionary slots: 0 is format 1's, 1 + i is `SNAPSHOT_DICTIONARIES[i]`.
const DICTIONARY_SLOTS: usize = 1 + SNAPSHOT_DICTIONARIES.len();

fn decoder_dictionary(slot: usize) -> &'static DecoderDictionary<'static> {
    static DICTIONARIES: [OnceLock<DecoderDictionary<'static>>; DICTIONARY_SLOTS] =
        [const { OnceLock::new() }; DICTIONARY_SLOTS];
    DICTIONARIES[slot].get_or_init(|| {
        DecoderDictionary::copy(if slot == 0 {
            CONSOLE_DICTIONARY
        } else {
            SNAPSHOT_DICTIONARIES[slot - 1]
        })
    })
}

/// Scratch buffers a thread keeps between executions are dropped above this capacity, so
/// one huge snapshot does not stay resident; below it, the next execution reuses them
/// instead of allocating (and page-faulting) a blob-sized buffer again.
pub const MAX_KEPT_BUFFER: usize = 8 << 20;

fn small_blob_compressor() -> zstd::bulk::Compressor<'static> {
    use zstd::zstd_safe::{CParameter, Strategy};
    let mut c =
        zstd::bulk::Compressor::with_dictionary(1, SNAPSHOT_DICTIONARY).expect("zstd dictionary");
    // Set before the first frame, when zstd digests the dictionary with these parameters (once).
    for p in [
        CParameter::Strategy(Strategy::ZSTD_fast),
        CParameter::WindowLog(21), // dictionary + blob fit in the window
        CParameter::HashLog(17),   // enough to index the whole dictionary
        CParameter::MinMatch(7),
    ] {
        c.set_parameter(p).expect("valid zstd parameter");
    }
    c
}

thread_local! {
    static COMPRESSOR: RefCell<zstd::bulk::Compressor<'static>> = RefCell::new(
        zstd::bulk::Compressor::with_prepared_dictionary(encoder_dictionary()).expect("zstd dictionary"),
    );
    static SMALL_BLOB_COMPRESSOR: RefCell<zstd::bulk::Compressor<'static>> =
        RefCell::new(small_blob_compressor());
    static DECOMPRESSORS: RefCell<[Option<zstd::bulk::Decompressor<'static>>; DICTIONARY_SLOTS]> =
        const { RefCell::new([const { None }; DICTIONARY_SLOTS]) };
    /// Where `seal` compresses to (the payload is then copied into an exact-size envelope).
    static PAYLOAD_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub fn seal(raw: &[u8], v8_version: &str) -> Sealed {
    PAYLOAD_SCRATCH.with(|scratch| {
        // A nested call (a console callback running another execution) gets its own buffer.
        match scratch.try_borrow_mut() {
            Ok(mut buffer) => {
                let sealed = seal_with(raw, v8_version, &mut buffer);
                if buffer.capacity() > MAX_KEPT_BUFFER {
                    *buffer = Vec::new();
                }
                sealed
            }
            Err(_) => seal_with(raw, v8_version, &mut Vec::new()),
        }
    })
}

fn seal_with(raw: &[u8], v8_version: &str, payload: &mut Vec<u8>) -> Sealed {
    payload.clear();
    payload.reserve(zstd::zstd_safe::compress_bound(raw.len()));
    let compressor = if raw.len() <= SMALL_BLOB {
        &SMALL_BLOB_COMPRESSOR
    } else {
        &COMPRESSOR
    };
    compressor
        .with(|c| c.borrow_mut().compress_to_buffer(raw, payload))
        .expect("zstd compression into a buffer of the bound's size");
    let digest: [u8; 32] = Sha256::digest(&payload[..]).into();
    let version = v8_version.as_bytes();
    let version = &version[..version.len().min(255)];
    let mut out = Vec::with_capacity(85 + version.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&COMPRESSION_SNAPSHOT_DICTIONARY.to_le_bytes());
    out.extend_from_slice(&fingerprint());
    out.extend_from_slice(&dictionary_id());
    out.push(version.len() as u8);
    out.extend_from_slice(version);
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(&digest);
    out.extend_from_slice(payload);
    Sealed {
        envelope: out,
        key: hex(&digest),
        raw_len: raw.len(),
    }
}

/// Header fields of an envelope whose checksum has been verified.
#[derive(Debug)]
pub struct Opened<'a> {
    /// The envelope's format (1 or 2).
    pub format: u16,
    /// The dictionary its payload needs (a slot of `decoder_dictionary`).
    dictionary: usize,
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
    let expected_compression = match format {
        1 => COMPRESSION_CONSOLE_DICTIONARY,
        2 => COMPRESSION_SNAPSHOT_DICTIONARY,
        _ => return Err(EnvelopeError::UnsupportedFormat(format)),
    };
    let compression = u16::from_le_bytes(take(&mut b, 2)?.try_into().unwrap());
    if compression != expected_compression {
        return Err(EnvelopeError::UnsupportedCompression(compression));
    }
    if !accepts(format, take(&mut b, 16)?) {
        return Err(EnvelopeError::WrongEngine);
    }
    let mut dictionary = 0;
    if format == 2 {
        let id = take(&mut b, 16)?;
        dictionary = 1 + ids()
            .iter()
            .position(|known| known[..] == *id)
            .ok_or_else(|| EnvelopeError::UnknownDictionary(hex(id)))?;
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
        format,
        dictionary,
        key: hex(&actual),
        raw_len,
        payload: b,
    })
}

/// Opens and decompresses an envelope into the raw V8 blob.
pub fn unseal(envelope: &[u8], v8_version: &str) -> Result<Vec<u8>, EnvelopeError> {
    let mut raw = Vec::new();
    unseal_into(envelope, v8_version, &mut raw)?;
    Ok(raw)
}

/// [`unseal`] into `raw` (cleared first), reusing its allocation. On error `raw` is left
/// empty: no partial blob ever reaches V8.
pub fn unseal_into(
    envelope: &[u8],
    v8_version: &str,
    raw: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    raw.clear();
    let opened = open(envelope, v8_version)?;
    let want =
        usize::try_from(opened.raw_len).map_err(|_| EnvelopeError::TooLarge(opened.raw_len))?;
    raw.try_reserve_exact(want)
        .map_err(|_| EnvelopeError::TooLarge(opened.raw_len))?;
    let written = DECOMPRESSORS
        .with(|slots| {
            let mut slots = slots.borrow_mut();
            let slot = &mut slots[opened.dictionary];
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::with_prepared_dictionary(
                    decoder_dictionary(opened.dictionary),
                )?);
            }
            slot.as_mut()
                .expect("set above")
                .decompress_to_buffer(opened.payload, raw)
        })
        .map_err(|e| {
            raw.clear();
            EnvelopeError::Corrupt(e.to_string())
        })?;
    if written as u64 != opened.raw_len || raw.len() != written {
        raw.clear();
        return Err(EnvelopeError::Corrupt(format!(
            "{} bytes instead of {}",
            written, opened.raw_len
        )));
    }
    Ok(())
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
    fn small_and_large_blobs_round_trip_into_a_reused_buffer() {
        // Below SMALL_BLOB one compressor, above it the other; the buffer keeps its allocation.
        let small = blob();
        let large: Vec<u8> = (0..SMALL_BLOB as u32 + 4096)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | (i % 7) as u8)
            .collect();
        let mut raw = Vec::new();
        for original in [&large, &small, &large] {
            let sealed = seal(original, V);
            assert_eq!(open(&sealed.envelope, V).unwrap().key, sealed.key);
            unseal_into(&sealed.envelope, V, &mut raw).unwrap();
            assert_eq!(&raw, original);
        }
        assert!(raw.capacity() >= large.len());
        // A refused envelope leaves no blob behind, whatever the buffer held.
        let mut bad = seal(&small, V).envelope;
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            unseal_into(&bad, V, &mut raw).unwrap_err(),
            EnvelopeError::ChecksumMismatch
        );
        assert!(raw.is_empty());
        // An announced length below the real one is refused even when the reused buffer has
        // room for more.
        let sealed = seal(&small, V).envelope;
        let at = 45 + V.len();
        let mut short = sealed.clone();
        let announced = u64::from_le_bytes(short[at..at + 8].try_into().unwrap()) - 1;
        short[at..at + 8].copy_from_slice(&announced.to_le_bytes());
        raw.reserve(large.len());
        let err = unseal_into(&short, V, &mut raw).unwrap_err();
        assert!(matches!(err, EnvelopeError::Corrupt(_)), "{err}");
        assert!(raw.is_empty());
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

    /// An envelope as format 1 wrote it.
    fn seal_v1(raw: &[u8], v8_version: &str) -> Vec<u8> {
        let payload = zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, CONSOLE_DICTIONARY)
            .unwrap()
            .compress(raw)
            .unwrap();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&COMPRESSION_CONSOLE_DICTIONARY.to_le_bytes());
        out.extend_from_slice(&fingerprint_of(LEGACY_ABI_FORMAT1, 1));
        out.push(v8_version.len() as u8);
        out.extend_from_slice(v8_version.as_bytes());
        out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&payload));
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn format_1_envelopes_keep_opening() {
        let raw = blob();
        let old = seal_v1(&raw, V);
        assert_eq!(open(&old, V).unwrap().format, 1);
        assert_eq!(unseal(&old, V).unwrap(), raw);
        // A format 1 header with format 2's fingerprint is another engine's.
        let mut mixed = old.clone();
        mixed[12..28].copy_from_slice(&fingerprint());
        assert_eq!(unseal(&mixed, V).unwrap_err(), EnvelopeError::WrongEngine);
    }

    #[test]
    fn heaps_of_a_shorter_reference_list_keep_opening() {
        let raw = blob();
        let mut sealed = seal(&raw, V).envelope;
        let older = env!("MCP_V8_SNAPSHOT_ABI_PREFIXES")
            .split(',')
            .filter(|abi| !abi.is_empty())
            .chain([LEGACY_ABI_FORMAT2]);
        for abi in older {
            sealed[12..28].copy_from_slice(&fingerprint_of(abi, 2));
            assert_eq!(unseal(&sealed, V).unwrap(), raw, "{abi}");
        }
        sealed[12..28].copy_from_slice(&fingerprint_of("a list this build never had", 2));
        assert_eq!(unseal(&sealed, V).unwrap_err(), EnvelopeError::WrongEngine);
    }

    #[test]
    fn an_unknown_dictionary_is_named() {
        let mut sealed = seal(&blob(), V).envelope;
        assert_eq!(&sealed[28..44], &dictionary_id());
        sealed[30] ^= 1;
        let err = unseal(&sealed, V).unwrap_err();
        assert!(matches!(err, EnvelopeError::UnknownDictionary(_)), "{err}");
        assert!(err.to_string().contains("does not ship"));
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
