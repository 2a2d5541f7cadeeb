//! The Rust API end to end (links libnode through the shim).

use std::time::Duration;

use _engine::{execute, ConsoleLine, Control, IsolateOptions, Level, Options, RunOptions, Status};

#[test]
fn completes_with_json_result() {
    let out = execute("[1, 2].map(x => x * 2)", Options::default()).unwrap();
    assert_eq!(out.status, Status::Completed);
    assert_eq!(out.result.as_deref(), Some("[2,4]"));
    assert!(out.error.is_none());
}

#[test]
fn reports_errors_with_positions() {
    let out = execute("1;\n  undefinedFunction();", Options::default()).unwrap();
    assert_eq!(out.status, Status::Failed);
    let err = out.error.unwrap();
    assert_eq!(err.name.as_deref(), Some("ReferenceError"));
    assert_eq!((err.line, err.column), (Some(2), Some(3)));
    assert!(err.stack.contains("<input>:2:3"), "{}", err.stack);
}

#[test]
fn console_lines_reach_the_callback_in_order() {
    let mut seen: Vec<ConsoleLine> = Vec::new();
    let mut cb = |l: &ConsoleLine| seen.push(l.clone());
    let out = execute(
        "console.log('a'); console.error('b'); 3",
        Options {
            run: RunOptions {
                on_console: Some(&mut cb),
                ..RunOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(out.console, seen);
    assert_eq!(
        seen.iter().map(|l| l.level).collect::<Vec<_>>(),
        vec![Level::Log, Level::Error]
    );
    assert_eq!(seen[1].render(), "[error] b\n");
}

#[test]
fn timeout_and_cancel_are_told_apart() {
    let out = execute(
        "while (true) {}",
        Options {
            run: RunOptions {
                timeout: Some(Duration::from_millis(100)),
                ..RunOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(out.status, Status::TimedOut);

    let control = Control::new();
    control.cancel(); // before the run: it must not start at all
    let out = execute(
        "while (true) {}",
        Options {
            run: RunOptions {
                control: Some(&control),
                ..RunOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(out.status, Status::Cancelled);
}

#[test]
fn snapshot_round_trip_keeps_globals() {
    let first = execute(
        "var n = 41; let s = new Set([1])",
        Options {
            isolate: IsolateOptions {
                snapshot: true,
                ..IsolateOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    let sealed = first.snapshot.expect("snapshot");
    assert_eq!(sealed.key.len(), 64);
    let second = execute(
        "n += 1; [n, s.has(1)]",
        Options {
            isolate: IsolateOptions {
                heap: Some(&sealed.envelope),
                ..IsolateOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(second.result.as_deref(), Some("[42,true]"));
}

#[test]
fn near_empty_snapshots_store_in_under_six_percent_of_their_size() {
    for code in [
        "undefined",
        "var counter = 5; class K {}; const m = new Map([[1, 2]])",
    ] {
        let sealed = execute(
            code,
            Options {
                isolate: IsolateOptions {
                    snapshot: true,
                    ..IsolateOptions::default()
                },
                ..Options::default()
            },
        )
        .unwrap()
        .snapshot
        .expect("snapshot");
        let ratio = sealed.envelope.len() as f64 / sealed.raw_len as f64;
        assert!(
            ratio <= 0.06,
            "{code}: {} of {} bytes",
            sealed.envelope.len(),
            sealed.raw_len
        );
    }
}

#[test]
fn corrupt_envelope_is_refused_before_v8() {
    let first = execute(
        "var n = 1",
        Options {
            isolate: IsolateOptions {
                snapshot: true,
                ..IsolateOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    let mut bytes = first.snapshot.unwrap().envelope;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = execute(
        "n",
        Options {
            isolate: IsolateOptions {
                heap: Some(&bytes),
                ..IsolateOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
}
