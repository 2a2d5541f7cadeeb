//! Live contexts through the Rust API: runs that keep their globals, calls, exposed functions
//! answered from another thread, snapshots, and the heap cap that closes a context.

use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

use _engine::{
    ContextOptions, Dispatch, EngineError, HostCall, IsolateOptions, LiveContext, Outcome,
    RunOptions, Status,
};

fn context(isolate: IsolateOptions<'_>) -> LiveContext {
    LiveContext::new(ContextOptions {
        isolate,
        dispatch: None,
        fetch_to_dispatch: false,
    })
    .unwrap()
}

fn run(live: &LiveContext, code: &str) -> Outcome {
    live.run(code, RunOptions::default()).unwrap()
}

fn result(live: &LiveContext, code: &str) -> String {
    let out = run(live, code);
    assert_eq!(out.status, Status::Completed, "{code}: {:?}", out.error);
    out.result.unwrap()
}

/// A byte string's marker in the JSON of values (cpp/values.h).
fn bytes_marker(index: usize) -> String {
    format!("{{\"\\u0000mcp-v8:bytes\":{index}}}")
}

#[test]
fn runs_keep_their_globals_and_redeclare_as_a_repl_does() {
    let live = context(IsolateOptions::default());
    assert_eq!(result(&live, "let n = 1; const k = 'a'; n"), "1");
    assert_eq!(result(&live, "n += 1; [n, k]"), "[2,\"a\"]");
    // REPL mode: a later run may declare the same `let` again.
    assert_eq!(result(&live, "let n = 10; n"), "10");
    let out = run(&live, "console.log('hi'); undefinedName");
    assert_eq!(out.status, Status::Failed);
    assert_eq!(out.console.len(), 1);
    let err = out.error.unwrap();
    assert_eq!(err.name.as_deref(), Some("ReferenceError"));
    assert_eq!((err.line, err.column), (Some(1), Some(20)));
    assert!(err.stack.contains("<input>:1:20"), "{}", err.stack);
}

#[test]
fn a_timeout_stops_the_run_and_the_context_goes_on() {
    let live = context(IsolateOptions::default());
    result(&live, "var count = 1");
    let out = live
        .run(
            "count++; while (true) {}",
            RunOptions {
                timeout: Some(Duration::from_millis(100)),
                ..RunOptions::default()
            },
        )
        .unwrap();
    assert_eq!(out.status, Status::TimedOut);
    assert_eq!(result(&live, "count"), "2");
}

#[test]
fn calls_take_json_arguments_and_bytes() {
    let live = context(IsolateOptions::default());
    result(
        &live,
        "var tools = { sum(...xs) { return xs.reduce((a, b) => a + b, 0); } };\n\
         function bytes(b) { return b.map(x => x * 2); }",
    );
    let out = live
        .call("tools.sum", "[1, 2, 3]", &[], RunOptions::default())
        .unwrap();
    assert_eq!(out.result.as_deref(), Some("6"));
    let out = live
        .call(
            "bytes",
            &format!("[{}]", bytes_marker(0)),
            &[&[1, 2, 3]],
            RunOptions {
                bytes_result: true,
                ..RunOptions::default()
            },
        )
        .unwrap();
    assert_eq!(out.result.as_deref(), Some(bytes_marker(0).as_str()));
    assert_eq!(out.buffers, vec![vec![2u8, 4, 6]]);
    let out = live
        .call("nothing.here", "[]", &[], RunOptions::default())
        .unwrap();
    assert_eq!(out.status, Status::Failed);
}

#[test]
fn exposed_functions_are_answered_from_another_thread() {
    let (calls, received) = mpsc::channel::<(u64, String, String)>();
    let calls = Mutex::new(calls);
    let dispatch: Dispatch = Box::new(move |call: HostCall<'_>| {
        let _ = calls.lock().unwrap().send((
            call.id,
            call.name.to_string(),
            call.args_json.to_string(),
        ));
    });
    let live = LiveContext::new(ContextOptions {
        isolate: IsolateOptions::default(),
        dispatch: Some(dispatch),
        fetch_to_dispatch: false,
    })
    .unwrap();
    live.expose("greet").unwrap();
    let replies = live.replies();
    let answerer = thread::spawn(move || {
        for (id, name, args) in received {
            assert_eq!(name, "greet");
            if args == "[\"nobody\"]" {
                let error = r#"{"name":"RangeError","message":"nobody to greet"}"#;
                replies.post(id, false, error, &[]);
            } else {
                replies.post(
                    id,
                    true,
                    &format!("\"hello {}\"", &args[2..args.len() - 2]),
                    &[],
                );
            }
        }
    });
    assert_eq!(result(&live, "await greet('ada')"), "\"hello ada\"");
    let err = run(&live, "await greet('nobody')").error.unwrap();
    assert_eq!(
        (err.name.as_deref(), err.message.as_str()),
        (Some("RangeError"), "nobody to greet")
    );
    // A global that cannot be redefined cannot be exposed over.
    assert!(live.expose("undefined").is_err());
    drop(live); // the dispatcher goes with it, and the answerer's loop ends
    answerer.join().unwrap();
}

#[test]
fn without_a_dispatcher_exposed_functions_and_fetch_reject() {
    let live = context(IsolateOptions::default());
    live.expose("ask").unwrap();
    let err = run(&live, "await ask(1)").error.unwrap();
    assert_eq!(
        (err.name.as_deref(), err.message.as_str()),
        (Some("TypeError"), "no function answers this call")
    );
    let err = run(&live, "await fetch('http://127.0.0.1:9/')")
        .error
        .unwrap();
    assert_eq!(err.name.as_deref(), Some("TypeError"));
    assert!(
        err.message.starts_with("fetch refused: fetch is off"),
        "{}",
        err.message
    );
}

#[test]
fn a_snapshot_carries_the_globals_and_the_context_goes_on() {
    let live = context(IsolateOptions {
        snapshot: true,
        ..IsolateOptions::default()
    });
    result(&live, "var n = 1; let names = ['a']");
    let (sealed, heap_used) = live.snapshot().unwrap();
    assert!(heap_used > 0);
    assert_eq!(
        result(&live, "n += 1; names.push('b'); [n, names]"),
        "[2,[\"a\",\"b\"]]"
    );
    let restored = context(IsolateOptions {
        heap: Some(&sealed.envelope),
        ..IsolateOptions::default()
    });
    assert_eq!(result(&restored, "[n, names]"), "[1,[\"a\"]]");
    // A context made without snapshots cannot take one.
    match restored.snapshot() {
        Err(EngineError::Internal(message)) => {
            assert!(message.contains("cannot make snapshots"), "{message}")
        }
        other => panic!("{:?}", other.map(|(s, _)| s.key)),
    }
}

#[test]
fn going_over_the_heap_cap_closes_the_context() {
    let live = context(IsolateOptions {
        heap_limit_bytes: 16 << 20,
        ..IsolateOptions::default()
    });
    result(&live, "var small = [1, 2, 3]");
    let stats = live.heap_stats().expect("open");
    assert!(stats.used_heap_size > 0 && stats.heap_size_limit > 0);
    let out = run(
        &live,
        "const hog = []; while (true) hog.push(new Array(10000).fill(1.5));",
    );
    assert_eq!(out.status, Status::Failed);
    assert!(out.heap_limit_exceeded);
    assert!(live.is_closed());
    match live.run("small", RunOptions::default()) {
        Err(EngineError::Closed(message)) => {
            assert!(message.contains("heap limit of 16 MB"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(live.heap_stats().is_none());
}

#[test]
fn a_corrupt_heap_is_refused_before_a_context_is_made() {
    let err = LiveContext::new(ContextOptions {
        isolate: IsolateOptions {
            heap: Some(b"not an envelope"),
            ..IsolateOptions::default()
        },
        dispatch: None,
        fetch_to_dispatch: false,
    })
    .err()
    .expect("refused");
    assert!(matches!(err, EngineError::Snapshot(_)), "{err:?}");
}
