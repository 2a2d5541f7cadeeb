//! `fetch` under an allowlist. web.js's `fetch` calls out through the host function named
//! [`FETCH`] (a host call, as a live context's exposed functions are); the [`Fetcher`] of the
//! run answers it from a thread of its own, with `ureq`, under a [`FetchPolicy`]:
//!
//! - only the allowed origins (scheme, host and port) are reachable, redirects included;
//! - a host name that resolves to a loopback, private, link-local or otherwise internal
//!   address is refused, unless the allowed origin names that address (or `localhost`) itself;
//! - a response body larger than `max_bytes` fails the fetch; so does a request past
//!   `max_requests` in one run;
//! - when the run ends (completed, cancelled, timed out), its requests still in flight stop
//!   at their next read and their answers are dropped.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use url::Url;

use crate::context::{HostCall, Replies};

/// The name web.js's native fetch carries (`cpp/web.cc`).
pub const FETCH: &str = "mcp-v8:fetch";

/// What a fetch answers where no origin is allowed (the shim says it for executions, the
/// live context's dispatcher for contexts: cpp/web.h's hooks carry it).
pub const FETCH_OFF: &str =
    "fetch refused: fetch is off (no origin is allowed: allow some with --allow-fetch, \
                             MCP_V8_ALLOW_FETCH or Engine(allow_fetch=[...]))";

/// Defaults of the limits when fetch is on.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
pub const DEFAULT_MAX_REQUESTS: u32 = 50;
const MAX_REDIRECTS: u32 = 20;
/// A request gives up after this long without finishing (the run's own timeout usually
/// ends it first).
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// How often a request in flight looks whether its run ended.
const POLL: Duration = Duration::from_millis(200);

/// Which origins `fetch` may reach, and its limits. Off (no origin) by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// ASCII serialisations of the allowed origins: `https://api.example.com`,
    /// `http://127.0.0.1:8080`.
    origins: Vec<String>,
    pub max_bytes: u64,
    pub max_requests: u32,
}

impl FetchPolicy {
    /// `origins`: each `scheme://host[:port]` (http or https; a trailing `/` is accepted, a
    /// path, query, fragment or credentials are not).
    pub fn new<S: AsRef<str>>(
        origins: &[S],
        max_bytes: u64,
        max_requests: u32,
    ) -> Result<Self, String> {
        let mut out = Vec::new();
        for origin in origins {
            let text = origin.as_ref().trim();
            let url = Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "{text:?}: only http and https origins can be allowed"
                ));
            }
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return Err(format!(
                    "{text:?}: an origin is scheme://host[:port], without a path"
                ));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(format!("{text:?}: an origin has no credentials"));
            }
            out.push(url.origin().ascii_serialization());
        }
        if max_bytes == 0 || max_requests == 0 {
            return Err("max_fetch_bytes and max_fetch_requests must be at least 1".into());
        }
        Ok(FetchPolicy {
            origins: out,
            max_bytes,
            max_requests,
        })
    }

    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    fn allows(&self, url: &Url) -> bool {
        let origin = url.origin().ascii_serialization();
        self.origins.contains(&origin)
    }
}

/// Answers the fetches of one execution or one live context. `end_run` stops the requests of
/// the run that just ended.
pub(crate) struct Fetcher {
    policy: Arc<FetchPolicy>,
    replies: Arc<Replies>,
    run: Arc<AtomicU64>,
    started_in_run: AtomicU32,
}

fn refusal(message: impl Into<String>) -> Value {
    json!({"name": "TypeError", "message": message.into()})
}

impl Fetcher {
    pub(crate) fn new(policy: FetchPolicy, replies: Arc<Replies>) -> Fetcher {
        Fetcher {
            policy: Arc::new(policy),
            replies,
            run: Arc::new(AtomicU64::new(0)),
            started_in_run: AtomicU32::new(0),
        }
    }

    /// The run in progress ended: its requests stop, the next run counts from zero.
    pub(crate) fn end_run(&self) {
        self.run.fetch_add(1, Ordering::AcqRel);
        self.started_in_run.store(0, Ordering::Release);
    }

    pub(crate) fn dispatch(&self, call: HostCall<'_>) {
        let id = call.id;
        let fail = |message: String| {
            self.replies
                .post(id, false, &refusal(message).to_string(), &[]);
        };
        let n = self.started_in_run.fetch_add(1, Ordering::AcqRel) + 1;
        if n > self.policy.max_requests {
            return fail(format!(
                "fetch refused: more than {} requests in one execution (max_fetch_requests)",
                self.policy.max_requests
            ));
        }
        let request = match parse_request(call.args_json, &call.buffers) {
            Ok(r) => r,
            Err(e) => return fail(format!("fetch: {e}")),
        };
        if !self.policy.allows(&request.url) {
            return fail(not_allowed(&request.url, &self.policy));
        }
        let policy = self.policy.clone();
        let replies = self.replies.clone();
        let run = self.run.clone();
        let mine = run.load(Ordering::Acquire);
        let spawned = std::thread::Builder::new()
            .name("mcp-v8-fetch".into())
            .spawn(move || {
                let stopped = || run.load(Ordering::Acquire) != mine;
                let answer = perform(request, &policy, &stopped);
                if stopped() {
                    return; // nobody waits for it any more
                }
                match answer {
                    Ok((head, body)) => replies.post(id, true, &head.to_string(), &[&body]),
                    Err(message) => replies.post(id, false, &refusal(message).to_string(), &[]),
                }
            });
        if spawned.is_err() {
            fail("fetch: no thread for the request".into());
        }
    }
}

fn not_allowed(url: &Url, policy: &FetchPolicy) -> String {
    let origin = url.origin().ascii_serialization();
    if policy.origins.is_empty() {
        format!("fetch refused: {origin} is not an allowed origin (no origin is allowed: allow some with --allow-fetch)")
    } else {
        format!(
            "fetch refused: {origin} is not an allowed origin (allowed: {})",
            policy.origins.join(", ")
        )
    }
}

struct Request {
    url: Url,
    method: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    redirect: String,
}

fn parse_request(args_json: &str, buffers: &[&[u8]]) -> Result<Request, String> {
    let args: Value = serde_json::from_str(args_json).map_err(|e| e.to_string())?;
    let r = args.get(0).ok_or("no request")?;
    let text = |key: &str| r.get(key).and_then(Value::as_str).map(str::to_string);
    let url = Url::parse(&text("url").ok_or("no url")?).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the {} scheme is not supported", url.scheme()));
    }
    let headers = r
        .get("headers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|pair| {
                    Some((
                        pair.get(0)?.as_str()?.to_string(),
                        pair.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let body = match r.get("body") {
        Some(Value::Object(marker)) => {
            let index = marker
                .values()
                .next()
                .and_then(Value::as_u64)
                .ok_or("bad body")? as usize;
            Some(buffers.get(index).ok_or("bad body")?.to_vec())
        }
        _ => None,
    };
    Ok(Request {
        url,
        method: text("method").unwrap_or_else(|| "GET".into()),
        headers,
        body,
        redirect: text("redirect").unwrap_or_else(|| "follow".into()),
    })
}

fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64 // 100.64/10, shared
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xFE00) == 0xFC00 // unique local
                || (seg[0] & 0xFFC0) == 0xFE80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| internal(IpAddr::V4(v4)))
        }
    }
}

/// Resolves `netloc`, refusing internal addresses unless the URL names one (an IP literal or
/// `localhost`): a public name that resolves to a private address is how a sandbox reaches
/// what it should not.
fn resolve(netloc: &str) -> io::Result<Vec<SocketAddr>> {
    let host = netloc.rsplit_once(':').map_or(netloc, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let named_internal = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok();
    let addrs: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
    if named_internal {
        return Ok(addrs);
    }
    let public: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| !internal(a.ip()))
        .collect();
    if public.is_empty() && !addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{host} resolves to an internal address; allow that address as an origin to reach it"),
        ));
    }
    Ok(public)
}

type Answer = Result<(Value, Vec<u8>), String>;

fn perform(mut request: Request, policy: &FetchPolicy, stopped: &dyn Fn() -> bool) -> Answer {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(POLL)
        .timeout_write(Duration::from_secs(10))
        .resolver(|netloc: &str| resolve(netloc))
        .build();
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut redirected = false;
    for _ in 0..=MAX_REDIRECTS {
        if stopped() {
            return Err("fetch stopped: the execution ended".into());
        }
        let mut call = agent.request(&request.method, request.url.as_str());
        for (name, value) in &request.headers {
            call = call.set(name, value);
        }
        let response = match &request.body {
            Some(body) => call.send_bytes(body),
            None => call.call(),
        };
        let response = match response {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(format!("fetch failed: {t}")),
        };
        let status = response.status();
        if matches!(status, 301 | 302 | 303 | 307 | 308) && request.redirect != "manual" {
            let Some(location) = response.header("location") else {
                return finish(
                    response,
                    policy,
                    redirected,
                    &request.url,
                    stopped,
                    deadline,
                );
            };
            if request.redirect == "error" {
                return Err(format!(
                    "fetch refused: redirected to {location} (redirect: \"error\")"
                ));
            }
            let next = request
                .url
                .join(location)
                .map_err(|e| format!("fetch failed: bad redirect location {location:?}: {e}"))?;
            if !policy.allows(&next) {
                return Err(format!(
                    "fetch refused: redirect to {} ({})",
                    next.origin().ascii_serialization(),
                    not_allowed(&next, policy).trim_start_matches("fetch refused: ")
                ));
            }
            if status == 303 || (matches!(status, 301 | 302) && request.method == "POST") {
                if request.method != "HEAD" {
                    request.method = "GET".into();
                }
                request.body = None;
                request.headers.retain(|(k, _)| {
                    !k.eq_ignore_ascii_case("content-type")
                        && !k.eq_ignore_ascii_case("content-length")
                });
            }
            request.url = next;
            redirected = true;
            continue;
        }
        let url = request.url.clone();
        return finish(response, policy, redirected, &url, stopped, deadline);
    }
    Err(format!("fetch failed: more than {MAX_REDIRECTS} redirects"))
}

fn finish(
    response: ureq::Response,
    policy: &FetchPolicy,
    redirected: bool,
    url: &Url,
    stopped: &dyn Fn() -> bool,
    deadline: Instant,
) -> Answer {
    let too_large = || {
        format!(
            "fetch failed: the response body is larger than {} bytes (max_fetch_bytes)",
            policy.max_bytes
        )
    };
    if let Some(length) = response
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if length > policy.max_bytes {
            return Err(too_large());
        }
    }
    let mut headers = Vec::new();
    for name in response.headers_names() {
        for value in response.all(&name) {
            headers.push(json!([name, value]));
        }
    }
    let head = json!({
        "status": response.status(),
        "statusText": response.status_text(),
        "url": url.as_str(),
        "redirected": redirected,
        "headers": headers,
        "body": {"\u{0}mcp-v8:bytes": 0},
    });
    let mut reader = response.into_reader();
    let mut body = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if stopped() {
            return Err("fetch stopped: the execution ended".into());
        }
        if Instant::now() > deadline {
            return Err("fetch failed: the response took too long".into());
        }
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if (body.len() + n) as u64 > policy.max_bytes {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("fetch failed while reading the body: {e}")),
        }
    }
    Ok((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_checked() {
        let p = FetchPolicy::new(
            &["https://API.example.com/", "http://127.0.0.1:8080"],
            10,
            1,
        )
        .unwrap();
        assert_eq!(
            p.origins(),
            ["https://api.example.com", "http://127.0.0.1:8080"]
        );
        assert!(p.allows(&Url::parse("https://api.example.com:443/x?y").unwrap()));
        assert!(!p.allows(&Url::parse("http://api.example.com/").unwrap()));
        assert!(!p.allows(&Url::parse("http://127.0.0.1:8081/").unwrap()));
        for bad in [
            "ftp://h",
            "https://h/path",
            "https://u:p@h",
            "not a url",
            "https://h/?q",
        ] {
            assert!(FetchPolicy::new(&[bad], 10, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.1.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
        ] {
            assert!(internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2001:4860:4860::8888", "172.32.0.1"] {
            assert!(!internal(ip.parse().unwrap()), "{ip}");
        }
        // Named by the URL itself: allowed.
        assert!(resolve("127.0.0.1:80").is_ok());
        assert!(resolve("localhost:80").is_ok());
    }
}
