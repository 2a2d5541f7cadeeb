//! `fetch` from scripts, through the engine: off without a policy, answered for an allowed
//! origin (a loopback server started here), refused for another origin and past the request
//! limit, in one-shot executions and in a live context.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;

use _engine::fetch::{DEFAULT_MAX_BYTES, DEFAULT_MAX_REQUESTS, FETCH_OFF};
use _engine::{
    execute, ContextOptions, FetchPolicy, IsolateOptions, LiveContext, Options, Outcome,
    RunOptions, Status,
};

/// A loopback server answering every request with `200 hello <path>`; its origin.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break; // the end of the request head
                }
            }
            let body = format!("hello {path}");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    origin
}

fn policy(origins: &[&str], max_requests: u32) -> FetchPolicy {
    FetchPolicy::new(origins, DEFAULT_MAX_BYTES, max_requests).unwrap()
}

fn execute_with(code: &str, fetch: Option<&FetchPolicy>) -> Outcome {
    execute(
        code,
        Options {
            isolate: IsolateOptions {
                fetch,
                ..IsolateOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap()
}

fn error_message(out: Outcome) -> String {
    assert_eq!(out.status, Status::Failed, "{:?}", out.result);
    let err = out.error.unwrap();
    assert_eq!(err.name.as_deref(), Some("TypeError"), "{}", err.message);
    err.message
}

#[test]
fn without_a_policy_fetch_is_off() {
    let out = execute_with("await fetch('http://127.0.0.1:9/')", None);
    assert_eq!(error_message(out), FETCH_OFF);
}

#[test]
fn an_allowed_origin_answers() {
    let origin = serve();
    let allowed = policy(&[&origin], DEFAULT_MAX_REQUESTS);
    let code =
        format!("const r = await fetch('{origin}/a?b=1');\n[r.status, r.ok, await r.text()]");
    let out = execute_with(&code, Some(&allowed));
    assert_eq!(
        out.result.as_deref(),
        Some("[200,true,\"hello /a?b=1\"]"),
        "{:?}",
        out.error
    );
}

#[test]
fn another_origin_and_requests_past_the_limit_are_refused() {
    let origin = serve();
    let other = serve();
    let allowed = policy(&[&origin], 1);
    let out = execute_with(&format!("await fetch('{other}/')"), Some(&allowed));
    assert_eq!(
        error_message(out),
        format!("fetch refused: {other} is not an allowed origin (allowed: {origin})")
    );
    let code = format!("await (await fetch('{origin}/1')).text();\nawait fetch('{origin}/2')");
    let out = execute_with(&code, Some(&allowed));
    assert_eq!(
        error_message(out),
        "fetch refused: more than 1 requests in one execution (max_fetch_requests)"
    );
}

#[test]
fn a_live_context_fetches_under_its_policy_and_counts_each_run_apart() {
    let origin = serve();
    let allowed = policy(&[&origin], 1);
    let live = LiveContext::new(ContextOptions {
        isolate: IsolateOptions {
            fetch: Some(&allowed),
            ..IsolateOptions::default()
        },
        dispatch: None,
        fetch_to_dispatch: false,
    })
    .unwrap();
    for run in ["first", "second"] {
        let out = live
            .run(
                &format!("await (await fetch('{origin}/{run}')).text()"),
                RunOptions::default(),
            )
            .unwrap();
        assert_eq!(
            out.result,
            Some(format!("\"hello /{run}\"")),
            "{:?}",
            out.error
        );
    }
}
