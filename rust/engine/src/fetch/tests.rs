//! Requests against real loopback servers started by the tests: slow heads, stalled bodies,
//! and the end of the run during a connect, a head wait and a body read.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::request::{self, Answer};
use super::*;

/// Long enough for any of these servers to be reached on a busy machine; never a bound on
/// speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A server on loopback that answers its first connection with `script` (after reading the
/// request head); `ready` hears once the request has arrived.
fn serve(script: impl FnOnce(&mut TcpStream) + Send + 'static) -> (String, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let (ready, heard) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            line.clear();
        }
        let _ = ready.send(());
        script(&mut stream);
    });
    (origin, heard)
}

fn get(url: &str) -> request::Request {
    let json = serde_json::json!([{"url": url, "method": "GET", "headers": []}]).to_string();
    request::parse(&json, &[]).unwrap()
}

fn policy(origin: &str) -> FetchPolicy {
    FetchPolicy::new(&[origin], DEFAULT_MAX_BYTES, DEFAULT_MAX_REQUESTS).unwrap()
}

/// Runs the request on a thread of its own, as the Fetcher does.
fn start(url: &str, policy: FetchPolicy, run: &Arc<Run>) -> mpsc::Receiver<Answer> {
    let (tx, rx) = mpsc::channel();
    let request = get(url);
    let run = run.clone();
    thread::spawn(move || {
        let _ = tx.send(request::perform(request, &policy, &run));
    });
    rx
}

fn error_of(answer: Answer) -> String {
    match answer {
        Ok((head, _)) => panic!("the fetch succeeded: {head}"),
        Err(message) => message,
    }
}

#[test]
fn a_server_slower_than_any_poll_interval_is_waited_for() {
    let (origin, _) = serve(|s| {
        thread::sleep(Duration::from_secs(1));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslow!");
    });
    let p = policy(&origin);
    let run = Arc::new(Run::new(&p));
    let (head, body) = request::perform(get(&format!("{origin}/x")), &p, &run).unwrap();
    assert_eq!(head["status"], 200);
    assert_eq!(head["statusText"], "OK");
    assert_eq!(body, b"slow!");
}

#[test]
fn the_wait_bounds_a_head_that_never_comes_and_a_body_that_stalls() {
    let (origin, _) = serve(|s| {
        thread::sleep(PATIENCE);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
    });
    let mut p = policy(&origin);
    p.response_timeout = Duration::from_secs(1);
    let run = Arc::new(Run::new(&p));
    let message = error_of(request::perform(get(&format!("{origin}/")), &p, &run));
    assert_eq!(
        message,
        format!("fetch failed: {origin} sent no response head within 1 s")
    );

    let (origin, _) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf");
        thread::sleep(PATIENCE);
    });
    let mut p = policy(&origin);
    p.response_timeout = Duration::from_secs(1);
    let message = error_of(request::perform(get(&format!("{origin}/")), &p, &run));
    assert_eq!(
        message,
        format!("fetch failed: the response body from {origin} stalled: no data for 1 s")
    );
}

#[test]
fn the_end_of_the_run_stops_a_request_waiting_for_its_head() {
    let (origin, heard) = serve(|s| {
        thread::sleep(PATIENCE * 10);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
    });
    let p = policy(&origin);
    let run = Arc::new(Run::new(&p));
    let answer = start(&format!("{origin}/"), p, &run);
    heard.recv_timeout(PATIENCE).unwrap();
    run.end();
    // The request returns: the server still has ten minutes to go.
    let answer = answer
        .recv_timeout(PATIENCE)
        .expect("the request kept waiting");
    assert_eq!(error_of(answer), "fetch failed: the execution ended");
}

#[test]
fn the_end_of_the_run_stops_a_body_that_stalled() {
    let (server_saw, closed) = mpsc::channel();
    let (origin, heard) = serve(move |s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf");
        // Reads nothing more: the client closing its end shows here as the end of the stream.
        let mut buf = [0u8; 1];
        let _ = std::io::Read::read(s, &mut buf);
        let _ = server_saw.send(());
    });
    let p = policy(&origin);
    let run = Arc::new(Run::new(&p));
    let answer = start(&format!("{origin}/"), p, &run);
    heard.recv_timeout(PATIENCE).unwrap();
    thread::sleep(Duration::from_millis(200)); // into the body read, most likely
    run.end();
    let answer = answer
        .recv_timeout(PATIENCE)
        .expect("the request kept reading");
    assert_eq!(error_of(answer), "fetch failed: the execution ended");
    closed
        .recv_timeout(PATIENCE)
        .expect("the connection stayed open after the run ended");
}

/// Whether a TCP connection to `port` is in SYN_SENT (`/proc/net/tcp`, state 02).
fn syn_sent_to(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(3) == Some(&"02")
            && fields
                .get(2)
                .and_then(|remote| remote.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port)
    })
}

#[test]
fn the_end_of_the_run_stops_a_connect_in_progress() {
    // A listener with a backlog of 0 takes one connection into its accept queue, then drops
    // new SYNs while nobody accepts: a connect to it stays in SYN_SENT.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&any.into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let _queued = TcpStream::connect(addr).unwrap();
    assert!(!syn_sent_to(addr.port()));
    let origin = format!("http://{addr}");
    let mut p = policy(&origin);
    p.connect_timeout = PATIENCE * 10; // only the end of the run can stop it in time
    let run = Arc::new(Run::new(&p));
    let answer = start(&format!("{origin}/"), p, &run);
    let mut waited = Duration::ZERO;
    while !syn_sent_to(addr.port()) && waited < PATIENCE {
        thread::sleep(Duration::from_millis(20));
        waited += Duration::from_millis(20);
    }
    assert!(syn_sent_to(addr.port()), "the connect never started");
    run.end();
    let message = error_of(answer.recv_timeout(PATIENCE).expect("the connect went on"));
    assert_eq!(message, "fetch failed: the execution ended");
    assert!(!syn_sent_to(addr.port()), "the connect is still pending");
}

#[test]
fn a_request_after_the_end_of_its_run_is_not_made() {
    let (origin, _) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    });
    let p = policy(&origin);
    let run = Arc::new(Run::new(&p));
    run.end();
    let message = error_of(request::perform(get(&format!("{origin}/")), &p, &run));
    assert_eq!(message, "fetch failed: the execution ended");
}

#[test]
fn failures_are_one_sentence_naming_the_origin() {
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let p = policy(&origin);
    let run = Arc::new(Run::new(&p));
    assert_eq!(
        error_of(request::perform(get(&format!("{origin}/")), &p, &run)),
        format!("fetch failed: {origin} refused the connection")
    );

    let (origin, _) = serve(|s| {
        let _ = s.shutdown(Shutdown::Both);
    });
    let p = policy(&origin);
    assert_eq!(
        error_of(request::perform(get(&format!("{origin}/")), &p, &run)),
        format!("fetch failed: {origin} closed the connection without answering")
    );

    let (origin, _) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf");
    });
    let p = policy(&origin);
    assert_eq!(
        error_of(request::perform(get(&format!("{origin}/")), &p, &run)),
        format!("fetch failed: {origin} closed the connection before the whole body arrived")
    );

    // TLS: a plain HTTP server behind an https origin.
    let (origin, _) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let origin = origin.replace("http://", "https://");
    let p = policy(&origin);
    let message = error_of(request::perform(get(&format!("{origin}/")), &p, &run));
    assert!(
        message.starts_with(&format!(
            "fetch failed: the TLS connection to {origin} failed ("
        )),
        "{message}"
    );

    let p = policy("http://no-such-host.invalid");
    assert_eq!(
        error_of(request::perform(
            get("http://no-such-host.invalid/"),
            &p,
            &run
        )),
        "fetch failed: the name no-such-host.invalid did not resolve"
    );
}

#[test]
fn scripts_may_not_set_framing_or_routing_headers() {
    let request = |name: &str| {
        let json = serde_json::json!([{"url": "http://h/", "headers": [[name, "x"]]}]).to_string();
        request::parse(&json, &[]).map(|_| ())
    };
    for name in [
        "host",
        "content-length",
        "transfer-encoding",
        "proxy-authorization",
        "expect",
    ] {
        assert_eq!(
            request(name),
            Err(format!(
                "fetch refused: the {name:?} header is set by the client, a script may not set it"
            ))
        );
    }
    for name in ["cookie", "origin", "authorization", "x-custom"] {
        assert_eq!(request(name), Ok(()), "{name}");
    }
    let json = serde_json::json!([{"url": "http://h/", "method": "TRACE"}]).to_string();
    assert!(request::parse(&json, &[]).is_err());
}

/// A fetch of web.js (`[{url, method, headers, body, redirect}]`), its body naming buffer 0.
fn call(url: &str, method: &str, with_body: bool) -> String {
    let body = if with_body {
        serde_json::json!({"\u{0}mcp-v8:bytes": 0})
    } else {
        Value::Null
    };
    serde_json::json!([{"url": url, "method": method, "headers": [], "body": body}]).to_string()
}

#[test]
fn a_fetch_run_applies_the_policy_counts_its_requests_and_ends_them() {
    let (origin, arrived) = serve(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let run = FetchRun::new(FetchPolicy::new(&[origin.as_str()], 10, 2).unwrap());
    assert!(run.admit().is_ok() && run.admit().is_ok());
    assert_eq!(
        run.admit().unwrap_err(),
        "fetch refused: more than 2 requests in one execution (max_fetch_requests)"
    );
    let refused = |args: &str, body: &[u8]| match run.perform(args, &[body]) {
        Ok((head, _)) => panic!("the fetch succeeded: {head}"),
        Err(message) => message,
    };
    assert!(refused(&call("http://other.example/", "GET", false), b"")
        .contains("is not an allowed origin"));
    assert_eq!(
        refused(&call(&format!("{origin}/"), "POST", true), b"eleven byte"),
        "fetch refused: the request body is 11 bytes, more than 10 (max_fetch_bytes)"
    );
    let (head, body) = run
        .perform(&call(&format!("{origin}/"), "POST", true), &[b"ten bytes!"])
        .unwrap();
    assert_eq!((head["status"].as_u64(), body), (Some(200), b"ok".to_vec()));
    arrived.recv_timeout(PATIENCE).unwrap();

    let (origin, arrived) = serve(|_| thread::sleep(PATIENCE)); // never answers
    let run = Arc::new(FetchRun::new(policy(&origin)));
    let (tx, rx) = mpsc::channel();
    let waiting = run.clone();
    let url = format!("{origin}/");
    thread::spawn(move || {
        let _ = tx.send(waiting.perform(&call(&url, "GET", false), &[]));
    });
    arrived.recv_timeout(PATIENCE).unwrap();
    run.end();
    let message = error_of(rx.recv_timeout(PATIENCE).expect("the request went on"));
    assert_eq!(message, "fetch failed: the execution ended");
    assert!(run.ended());
}

#[test]
fn a_fetch_run_without_origins_says_fetch_is_off() {
    let run = FetchRun::new(FetchPolicy::new::<&str>(&[], 10, 2).unwrap());
    let Err(message) = run.perform(&call("http://127.0.0.1:1/", "GET", false), &[]) else {
        panic!("fetch went out");
    };
    assert_eq!(message, FETCH_OFF);
}
