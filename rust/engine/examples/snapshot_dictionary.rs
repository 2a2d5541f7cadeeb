//! Writes the zstd dictionary that snapshot envelopes (format 2) are compressed against:
//! the raw V8 blob of a near-empty snapshot of this engine. V8 snapshots are not
//! reproducible byte for byte, so the dictionary is made once and shipped
//! (rust/engine/dict/snapshot-dictionary-N.bin, newest first in envelope.rs); envelopes name it by hash, so a later
//! dictionary can sit beside it without stranding stored heaps.
//!
//! usage: cargo run --release -p mcp-v8-engine --example snapshot_dictionary -- OUT
use _engine::{envelope, execute, v8_version, IsolateOptions, Options};

fn main() {
    let out = std::env::args()
        .nth(1)
        .expect("usage: snapshot_dictionary OUT");
    let outcome = execute(
        "undefined",
        Options {
            isolate: IsolateOptions {
                snapshot: true,
                ..IsolateOptions::default()
            },
            ..Options::default()
        },
    )
    .expect("the engine runs");
    let sealed = outcome
        .snapshot
        .expect("a completed execution has a snapshot");
    let raw = envelope::unseal(&sealed.envelope, v8_version()).expect("its own envelope opens");
    std::fs::write(&out, &raw).expect("write the dictionary");
    eprintln!("wrote {out}: {} bytes", raw.len());
}
