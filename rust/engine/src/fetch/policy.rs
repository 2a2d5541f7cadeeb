//! What `fetch` may do: the allowed origins, the limits, and the headers a script may not set.

use std::time::Duration;

use url::Url;

/// Defaults of the limits when fetch is on.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
pub const DEFAULT_MAX_REQUESTS: u32 = 50;
/// How long connecting (TCP and TLS) may take, as undici's `connect.timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for its server when nothing else ends it first: for the response
/// head, and between two reads of the body (undici's `headersTimeout` and `bodyTimeout`).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);

/// Which origins `fetch` may reach, and its limits. Off (no origin) by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// ASCII serialisations of the allowed origins: `https://api.example.com`,
    /// `http://127.0.0.1:8080`.
    origins: Vec<String>,
    pub max_bytes: u64,
    pub max_requests: u32,
    /// The longest a connection (TCP and TLS) may take to set up.
    pub connect_timeout: Duration,
    /// The longest wait for the server: for the response head once the request is sent, and
    /// between two reads of the body (or two writes of the request). The end of the run
    /// (completed, cancelled, timed out) stops a request sooner; this bounds the requests of a
    /// run without a timeout.
    pub response_timeout: Duration,
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
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        })
    }

    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    pub(crate) fn allows(&self, url: &Url) -> bool {
        let origin = url.origin().ascii_serialization();
        self.origins.contains(&origin)
    }

    /// Why `url` is refused: "ORIGIN is not an allowed origin (allowed: ...)".
    pub(crate) fn not_allowed(&self, url: &Url) -> String {
        format!(
            "{} is not an allowed origin ({})",
            url.origin().ascii_serialization(),
            self.allowed()
        )
    }

    /// The allowed origins, for a refusal.
    pub(crate) fn allowed(&self) -> String {
        if self.origins.is_empty() {
            "no origin is allowed: allow some with --allow-fetch".into()
        } else {
            format!("allowed: {}", self.origins.join(", "))
        }
    }
}

/// The headers that frame the message or route it (to another virtual host, through a proxy,
/// into another protocol): the client sets them, a script may not. `Proxy-*` is matched as a
/// prefix. Others (`Cookie`, `Origin`, `Referer`, `User-Agent`, ...) pass, as in server-side
/// runtimes.
const FRAMING_AND_ROUTING: &[&str] = &[
    "connection",
    "content-length",
    "expect",
    "host",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a script may set the request header `name`.
pub(crate) fn script_may_set(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !(FRAMING_AND_ROUTING.contains(&name.as_str()) || name.starts_with("proxy-"))
}

/// The credentials a redirect to another origin drops (the Fetch standard drops
/// `Authorization`; `Cookie` and `Proxy-Authorization` go too, as undici does).
pub(crate) fn credential(name: &str) -> bool {
    ["authorization", "cookie", "proxy-authorization"]
        .iter()
        .any(|c| name.eq_ignore_ascii_case(c))
}

/// The headers that describe a request body, dropped when a redirect turns the request into a
/// GET without one (the Fetch standard's request-body-header names, and `Content-Length`).
pub(crate) fn describes_body(name: &str) -> bool {
    [
        "content-encoding",
        "content-language",
        "content-location",
        "content-type",
        "content-length",
    ]
    .iter()
    .any(|c| name.eq_ignore_ascii_case(c))
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
        assert_eq!(p.response_timeout, DEFAULT_RESPONSE_TIMEOUT);
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
    fn framing_and_routing_headers_are_the_clients() {
        for name in [
            "Host",
            "host",
            "Connection",
            "Content-Length",
            "Transfer-Encoding",
            "TE",
            "Trailer",
            "Upgrade",
            "Keep-Alive",
            "Expect",
            "Proxy-Authorization",
            "proxy-connection",
            "Proxy-Anything",
        ] {
            assert!(!script_may_set(name), "{name}");
        }
        for name in [
            "Cookie",
            "Origin",
            "Referer",
            "User-Agent",
            "Authorization",
            "Content-Type",
            "X-Host",
            "Hostname",
            "Accept-Encoding",
        ] {
            assert!(script_may_set(name), "{name}");
        }
    }
}
