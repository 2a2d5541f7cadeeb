//! One fetch: the request a script made, checked; its redirects followed under the policy; its
//! response read whole; and each way it can fail said in one sentence naming the origin.

use std::io::{self, Read};

use serde_json::{json, Value};
use ureq::http::{self, HeaderValue};
use ureq::Timeout;
use url::Url;

use super::net::Refusal;
use super::policy::{self, FetchPolicy};
use super::Run;

const MAX_REDIRECTS: u32 = 20;

pub(crate) struct Request {
    pub url: Url,
    method: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    redirect: String,
}

impl Request {
    pub(crate) fn body_len(&self) -> usize {
        self.body.as_ref().map_or(0, Vec::len)
    }
}

/// The request of web.js's fetch (`[{url, method, headers, body, redirect}]`, the body a
/// marker naming one of `buffers`), or why a script may not make it.
pub(crate) fn parse(args_json: &str, buffers: &[&[u8]]) -> Result<Request, String> {
    let args: Value = serde_json::from_str(args_json).map_err(|e| format!("fetch: {e}"))?;
    let r = args.get(0).ok_or("fetch: no request")?;
    let text = |key: &str| r.get(key).and_then(Value::as_str).map(str::to_string);
    let url =
        Url::parse(&text("url").ok_or("fetch: no url")?).map_err(|e| format!("fetch: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "fetch: the {} scheme is not supported",
            url.scheme()
        ));
    }
    let method = text("method").unwrap_or_else(|| "GET".into());
    if ["CONNECT", "TRACE", "TRACK"]
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m))
    {
        return Err(format!("fetch refused: the {method} method is not allowed"));
    }
    let mut headers = Vec::new();
    for pair in r
        .get("headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(value)) = (
            pair.get(0).and_then(Value::as_str),
            pair.get(1).and_then(Value::as_str),
        ) else {
            return Err("fetch: a header is not a pair of strings".into());
        };
        if !policy::script_may_set(name) {
            return Err(format!(
                "fetch refused: the {name:?} header is set by the client, a script may not set it"
            ));
        }
        // Header values are byte strings: web.js keeps them within Latin-1.
        let value: Option<Vec<u8>> = value.chars().map(|c| u8::try_from(c).ok()).collect();
        let value =
            value.ok_or_else(|| format!("fetch: the value of {name:?} is not a byte string"))?;
        headers.push((name.to_string(), value));
    }
    let body = match r.get("body") {
        Some(Value::Object(marker)) => {
            let index = marker
                .values()
                .next()
                .and_then(Value::as_u64)
                .ok_or("fetch: bad body")? as usize;
            Some(buffers.get(index).ok_or("fetch: bad body")?.to_vec())
        }
        _ => None,
    };
    Ok(Request {
        url,
        method,
        headers,
        body,
        redirect: text("redirect").unwrap_or_else(|| "follow".into()),
    })
}

/// The response head web.js builds its `Response` from, and the body.
pub(crate) type Answer = Result<(Value, Vec<u8>), String>;

/// Makes `request` in `run`: an error once the run has ended says so, whatever the shutdown of
/// its socket made of it.
pub(crate) fn perform(request: Request, policy: &FetchPolicy, run: &Run) -> Answer {
    let answer = follow_redirects(request, policy, &run.agent);
    if answer.is_err() && run.ended() {
        return Err(format!("fetch failed: {}", Refusal::Stopped));
    }
    answer
}

fn follow_redirects(mut request: Request, policy: &FetchPolicy, agent: &ureq::Agent) -> Answer {
    let mut redirected = false;
    for _ in 0..=MAX_REDIRECTS {
        let origin = request.url.origin().ascii_serialization();
        let response = send(&request, agent).map_err(|e| failure(&e, &origin, policy, false))?;
        let status = response.status().as_u16();
        let follows = matches!(status, 301 | 302 | 303 | 307 | 308) && request.redirect != "manual";
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .filter(|_| follows)
            .map(|v| latin1(v.as_bytes()));
        let Some(location) = location else {
            return finish(response, policy, redirected, &request.url);
        };
        if request.redirect == "error" {
            return Err(format!(
                "fetch refused: redirected to {location} (redirect: \"error\")"
            ));
        }
        let next = request.url.join(&location).map_err(|e| {
            format!("fetch failed: {origin} redirected to a bad location {location:?}: {e}")
        })?;
        if !policy.allows(&next) {
            return Err(format!(
                "fetch refused: {origin} redirected to {}, which is not an allowed origin ({})",
                next.origin().ascii_serialization(),
                policy.allowed()
            ));
        }
        follow(&mut request, status, next);
        redirected = true;
    }
    Err(format!("fetch failed: more than {MAX_REDIRECTS} redirects"))
}

/// Turns `request` into the one a redirect with `status` to `next` asks for (the Fetch
/// standard's HTTP-redirect fetch).
fn follow(request: &mut Request, status: u16, next: Url) {
    let to_get = (status == 303 && !matches!(request.method.as_str(), "GET" | "HEAD"))
        || (matches!(status, 301 | 302) && request.method == "POST");
    if to_get {
        request.method = "GET".into();
        request.body = None;
        request.headers.retain(|(k, _)| !policy::describes_body(k));
    }
    if next.origin() != request.url.origin() {
        request.headers.retain(|(k, _)| !policy::credential(k));
    }
    request.url = next;
}

fn send(request: &Request, agent: &ureq::Agent) -> Result<http::Response<ureq::Body>, ureq::Error> {
    let mut builder = http::Request::builder()
        .method(request.method.as_bytes())
        .uri(request.url.as_str());
    for (name, value) in &request.headers {
        let value = HeaderValue::from_bytes(value).map_err(|e| ureq::Error::Http(e.into()))?;
        builder = builder.header(name.as_str(), value);
    }
    match &request.body {
        Some(body) => agent.run(builder.body(body.as_slice())?),
        None => agent.run(builder.body(())?),
    }
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn finish(
    response: http::Response<ureq::Body>,
    policy: &FetchPolicy,
    redirected: bool,
    url: &Url,
) -> Answer {
    let origin = url.origin().ascii_serialization();
    let too_large = || {
        format!(
            "fetch failed: the response body from {origin} is larger than {} bytes (max_fetch_bytes)",
            policy.max_bytes
        )
    };
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > policy.max_bytes) {
        return Err(too_large());
    }
    let headers: Vec<Value> = response
        .headers()
        .iter()
        .map(|(name, value)| json!([name.as_str(), latin1(value.as_bytes())]))
        .collect();
    let status = response.status();
    let head = json!({
        "status": status.as_u16(),
        "statusText": status.canonical_reason().unwrap_or(""),
        "url": url.as_str(),
        "redirected": redirected,
        "headers": headers,
        "body": {"\u{0}mcp-v8:bytes": 0},
    });
    let mut reader = response.into_body().into_reader();
    let mut body = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if (body.len() + n) as u64 > policy.max_bytes {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failure(&ureq::Error::from(e), &origin, policy, true)),
        }
    }
    Ok((head, body))
}

/// One sentence for `error`, met while waiting for the head of the response from `origin`, or
/// (`in_body`) while reading its body.
pub(crate) fn failure(
    error: &ureq::Error,
    origin: &str,
    policy: &FetchPolicy,
    in_body: bool,
) -> String {
    use ureq::Error as E;
    let wait = seconds(policy.response_timeout);
    if let E::Other(other) = error {
        if let Some(refusal) = other.downcast_ref::<Refusal>() {
            return match refusal {
                Refusal::Internal { .. } => format!("fetch refused: {refusal}"),
                Refusal::NoSuchHost(_) | Refusal::Stopped => format!("fetch failed: {refusal}"),
            };
        }
    }
    let sentence = match error {
        E::Timeout(Timeout::Connect | Timeout::Resolve) => format!(
            "could not connect to {origin} within {}",
            seconds(policy.connect_timeout)
        ),
        E::Timeout(Timeout::SendRequest | Timeout::SendBody | Timeout::PerWrite) => {
            format!("{origin} did not take the request within {wait}")
        }
        E::Timeout(_) if in_body => {
            format!("the response body from {origin} stalled: no data for {wait}")
        }
        E::Timeout(_) => format!("{origin} sent no response head within {wait}"),
        E::HostNotFound => format!("the host of {origin} did not resolve"),
        E::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
            let inner = e.get_ref().map(ToString::to_string).unwrap_or_default();
            format!("the TLS connection to {origin} failed ({inner})")
        }
        E::Io(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => format!("{origin} refused the connection"),
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                format!("{origin} is unreachable")
            }
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
                if in_body =>
            {
                format!("{origin} closed the connection before the whole body arrived")
            }
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => {
                format!("{origin} closed the connection without answering")
            }
            _ if in_body => format!("reading the response body from {origin} failed ({e})"),
            _ => format!("the request to {origin} failed ({e})"),
        },
        E::Protocol(e) if in_body => format!("{origin} sent a malformed response body ({e})"),
        E::Protocol(e) => format!("{origin} sent a response that is not HTTP/1.1 ({e})"),
        E::LargeResponseHeader(_, limit) => {
            format!("{origin} sent a response head larger than {limit} bytes")
        }
        E::Tls(e) => format!("the TLS connection to {origin} failed ({e})"),
        E::Rustls(e) => format!("the TLS connection to {origin} failed ({e})"),
        E::Decompress(_, e) => format!("the response body from {origin} does not decompress ({e})"),
        E::BadUri(e) => format!("the URL is not one the client can send ({e})"),
        E::Http(e) => format!("the request is not valid HTTP ({e})"),
        other => format!("the request to {origin} failed ({other})"),
    };
    format!("fetch failed: {sentence}")
}

/// `d` for a message: `300 s`, `0.5 s`.
fn seconds(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
}
