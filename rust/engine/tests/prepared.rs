//! Prepared isolates end to end: an execution runs in the isolate its thread prepared ahead of
//! it when it fits, as it would in a fresh one; one that does not fit makes its own.
//!
//! Each test holds `SERIAL`: the WebAssembly memory cap is a process-wide V8 flag, and one test
//! here reads it while another thread prepares an isolate.

use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use _engine::{
    discard_prepared, execute, prepare, prepared_heap_limit, Control, EngineError, IsolateOptions,
    Options, Outcome, Relay, Replies, RunOptions, Status,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const MB: u64 = 1 << 20;

fn capped(heap_limit_bytes: u64) -> IsolateOptions<'static> {
    IsolateOptions {
        heap_limit_bytes,
        ..IsolateOptions::default()
    }
}

fn run_capped(code: &str, heap_limit_bytes: u64, run: RunOptions<'_>) -> Outcome {
    execute(
        code,
        Options {
            isolate: capped(heap_limit_bytes),
            run,
            ..Options::default()
        },
    )
    .unwrap()
}

/// Runs `code` in the isolate this thread prepared with `heap_limit_bytes`, and checks that it
/// did (the prepared one is gone once the run took it).
fn run_prepared(code: &str, heap_limit_bytes: u64, run: RunOptions<'_>) -> Outcome {
    prepare(&capped(heap_limit_bytes)).unwrap();
    assert_eq!(prepared_heap_limit(), Some(heap_limit_bytes));
    let out = run_capped(code, heap_limit_bytes, run);
    assert_eq!(
        prepared_heap_limit(),
        None,
        "the run did not take the prepared isolate"
    );
    out
}

#[test]
fn a_prepared_isolate_runs_a_script_as_a_fresh_one_does() {
    let _serial = serial();
    let code = "console.log('hi', typeof WebAssembly, typeof fetch);\n\
                const v = await Promise.resolve([1, 2].map(x => x * 2));\n\
                [v, Object.keys(globalThis).sort().join(','), new Error('e').stack.split('\\n')[1]]";
    let fresh = run_capped(code, 64 * MB, RunOptions::default());
    let warm = run_prepared(code, 64 * MB, RunOptions::default());
    assert_eq!(fresh.status, Status::Completed, "{:?}", fresh.error);
    assert_eq!(warm.result, fresh.result);
    assert_eq!(warm.console, fresh.console);
    assert_eq!(
        warm.console[0].text, "hi object function",
        "a plain isolate has WebAssembly"
    );

    let failing = "1;\n  undefinedFunction();";
    let fresh = run_capped(failing, 64 * MB, RunOptions::default());
    let warm = run_prepared(failing, 64 * MB, RunOptions::default());
    let (fresh, warm) = (fresh.error.unwrap(), warm.error.unwrap());
    assert_eq!(
        (warm.name, warm.message, warm.line, warm.column, warm.stack),
        (
            fresh.name,
            fresh.message,
            fresh.line,
            fresh.column,
            fresh.stack
        )
    );
}

#[test]
fn each_prepared_isolate_is_fresh() {
    let _serial = serial();
    let leave = "globalThis.leaked = 1; var declared = 2; Array.prototype.extra = 3; 'left'";
    let look = "[typeof leaked, typeof declared, typeof [].extra]";
    assert_eq!(
        run_prepared(leave, 64 * MB, RunOptions::default())
            .result
            .as_deref(),
        Some("\"left\"")
    );
    assert_eq!(
        run_prepared(look, 64 * MB, RunOptions::default())
            .result
            .as_deref(),
        Some(r#"["undefined","undefined","undefined"]"#)
    );
    // Prepared again before the next run, not reused: the second run finds nothing either.
    run_prepared(leave, 64 * MB, RunOptions::default());
    assert_eq!(
        run_capped(look, 64 * MB, RunOptions::default())
            .result
            .as_deref(),
        Some(r#"["undefined","undefined","undefined"]"#)
    );
}

#[test]
fn the_clock_of_a_prepared_isolate_starts_with_its_execution() {
    let _serial = serial();
    prepare(&capped(64 * MB)).unwrap();
    thread::sleep(Duration::from_millis(500)); // the isolate waits, prepared
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0;
    let out = run_capped(
        "[performance.timeOrigin, performance.now(), Date.now()]",
        64 * MB,
        RunOptions::default(),
    );
    assert_eq!(prepared_heap_limit(), None);
    let times: Vec<f64> = serde_json::from_str(out.result.as_deref().unwrap()).unwrap();
    let (origin, now, date) = (times[0], times[1], times[2]);
    // The origin is when the execution started (a few ms of margin for a coarse clock), not
    // 500 ms earlier when the isolate was made; performance.now() counts from there.
    assert!(
        origin >= started_ms - 5.0,
        "origin {origin} before the start {started_ms}"
    );
    assert!((0.0..400.0).contains(&now), "performance.now() = {now}");
    assert!(date >= started_ms - 5.0, "Date.now() {date}");
}

#[test]
fn an_execution_that_does_not_fit_makes_its_own_isolate_and_leaves_the_prepared_one() {
    let _serial = serial();
    prepare(&capped(64 * MB)).unwrap();
    // Another heap cap, a snapshot to make, a heap to restore: none runs in it.
    let other_cap = run_capped("'x'", 32 * MB, RunOptions::default());
    assert_eq!(other_cap.status, Status::Completed);
    assert_eq!(prepared_heap_limit(), Some(64 * MB));
    let snapshot = execute(
        "var kept = 41; 'y'",
        Options {
            isolate: IsolateOptions {
                snapshot: true,
                heap_limit_bytes: 64 * MB,
                ..IsolateOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    let heap = snapshot.snapshot.expect("a snapshot").envelope;
    assert_eq!(prepared_heap_limit(), Some(64 * MB));
    let restored = execute(
        "kept + 1",
        Options {
            isolate: IsolateOptions {
                heap: Some(&heap),
                heap_limit_bytes: 64 * MB,
                ..IsolateOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(restored.result.as_deref(), Some("42"));
    assert_eq!(prepared_heap_limit(), Some(64 * MB));
    // Another thread never runs in this thread's isolate.
    let elsewhere = thread::spawn(|| {
        run_capped("'z'", 64 * MB, RunOptions::default());
        prepared_heap_limit()
    })
    .join()
    .unwrap();
    assert_eq!(elsewhere, None);
    assert_eq!(prepared_heap_limit(), Some(64 * MB));
    // The one that fits takes it.
    run_capped("1", 64 * MB, RunOptions::default());
    assert_eq!(prepared_heap_limit(), None);

    // What cannot be prepared is refused, and nothing is held then.
    for refused in [
        IsolateOptions {
            snapshot: true,
            ..IsolateOptions::default()
        },
        IsolateOptions {
            heap: Some(&heap),
            ..IsolateOptions::default()
        },
    ] {
        assert!(matches!(prepare(&refused), Err(EngineError::Internal(_))));
        assert_eq!(prepared_heap_limit(), None);
    }
    prepare(&capped(0)).unwrap();
    assert_eq!(prepared_heap_limit(), Some(0));
    discard_prepared();
    assert_eq!(prepared_heap_limit(), None);
}

#[test]
fn the_heap_cap_holds_in_a_prepared_isolate() {
    let _serial = serial();
    let out = run_prepared(
        "const hog = []; while (true) hog.push(new Array(10000).fill(1.5));",
        16 * MB,
        RunOptions::default(),
    );
    assert_eq!(out.status, Status::Failed);
    assert!(out.heap_limit_exceeded);
    assert_eq!(
        out.error.unwrap().stack,
        "HeapLimitError: heap limit exceeded: the script used more than 16 MB"
    );
    // ArrayBuffer memory counts against the same cap.
    let out = run_prepared(
        "new Uint8Array(64 * 1024 * 1024).length",
        16 * MB,
        RunOptions::default(),
    );
    assert!(out.heap_limit_exceeded, "{:?}", out.result);
}

#[test]
fn timeout_and_cancel_stop_a_script_in_a_prepared_isolate() {
    let _serial = serial();
    let out = run_prepared(
        "while (true) {}",
        64 * MB,
        RunOptions {
            timeout: Some(Duration::from_millis(200)),
            ..RunOptions::default()
        },
    );
    assert_eq!(out.status, Status::TimedOut);

    let control = Control::new();
    let (started, running) = mpsc::channel();
    let out = thread::scope(|s| {
        let execution = s.spawn(|| {
            let mut cb = |_: &_| {
                let _ = started.send(());
            };
            run_prepared(
                "console.log('started'); while (true) {}",
                64 * MB,
                RunOptions {
                    control: Some(&control),
                    // A bound for a broken cancel, far beyond any wait for the thread.
                    timeout: Some(Duration::from_secs(60)),
                    on_console: Some(&mut cb),
                    ..RunOptions::default()
                },
            )
        });
        running.recv().unwrap();
        control.cancel();
        execution.join().unwrap()
    });
    assert_eq!(out.status, Status::Cancelled);
}

#[test]
fn preparing_an_isolate_does_not_change_the_webassembly_cap_of_a_running_one() {
    let _serial = serial();
    // The execution (capped at 16 MB) pauses on a fetch; meanwhile this thread prepares an
    // isolate capped at 256 MB; then the execution grows a WebAssembly memory as far as it can.
    let code = "try { await fetch('http://127.0.0.1:9/'); } catch (e) {}\n\
                const mem = new WebAssembly.Memory({initial: 1, maximum: 65536});\n\
                let grown = 0;\n\
                try { while (true) { mem.grow(16); grown += 16; } } catch (e) {}\n\
                grown * 64 * 1024";
    let replies = Arc::new(Replies::new());
    let (called, call) = mpsc::channel::<u64>();
    let called = Mutex::new(called);
    let relay = Relay {
        dispatch: Box::new(move |c| {
            let _ = called.lock().unwrap().send(c.id);
        }),
        replies: replies.clone(),
    };
    let execution = thread::spawn(move || {
        execute(
            code,
            Options {
                isolate: capped(16 * MB),
                run: RunOptions {
                    timeout: Some(Duration::from_secs(60)),
                    ..RunOptions::default()
                },
                fetch_relay: Some(relay),
                ..Options::default()
            },
        )
        .unwrap()
    });
    let id = call.recv_timeout(Duration::from_secs(60)).unwrap();
    prepare(&capped(256 * MB)).unwrap();
    replies.post(id, false, r#"{"name":"TypeError","message":"paused"}"#, &[]);
    let out = execution.join().unwrap();
    discard_prepared();
    assert_eq!(out.status, Status::Completed, "{:?}", out.error);
    let grown: u64 = out.result.unwrap().parse().unwrap();
    assert!(grown > 0 && grown <= 16 * MB, "grew {grown} bytes");
}
