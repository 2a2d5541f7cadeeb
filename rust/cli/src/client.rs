//! A small blocking HTTP client for the mcp-v8 API, with errors worth printing.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

pub enum CliError {
    Usage(String),
    Connect(String),
    Http { status: u16, message: String },
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) => write!(f, "{m}"),
            CliError::Connect(m) => write!(f, "{m}"),
            CliError::Http { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(120))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: &str, path: &str, query: &[(&str, String)]) -> ureq::Request {
        let mut req = self
            .agent
            .request(method, &format!("{}{}", self.base, path));
        for (k, v) in query {
            req = req.query(k, v);
        }
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        req
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.finish(self.request("GET", path, query).call(), &[])
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.finish(self.request("POST", path, &[]).send_json(body), &[])
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.finish(self.request("PATCH", path, &[]).send_json(body), &[])
    }

    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.finish(self.request("DELETE", path, &[]).call(), &[])
    }

    /// Like `post`, but answers with these status codes are returned, not errors.
    pub fn post_allow(&self, path: &str, body: &Value, allow: &[u16]) -> Result<Value, CliError> {
        self.finish(self.request("POST", path, &[]).send_json(body), allow)
    }

    fn finish(
        &self,
        result: Result<ureq::Response, ureq::Error>,
        allow: &[u16],
    ) -> Result<Value, CliError> {
        match result {
            Ok(resp) => resp.into_json().map_err(|e| CliError::Connect(format!("bad response from {}: {e}", self.base))),
            Err(ureq::Error::Status(status, resp)) => {
                let body: Value = resp.into_json().unwrap_or(Value::Null);
                if allow.contains(&status) {
                    return Ok(body);
                }
                let message = body["error"].as_str().map(str::to_string).unwrap_or_else(|| "no error message".into());
                Err(CliError::Http { status, message })
            }
            Err(ureq::Error::Transport(t)) => Err(CliError::Connect(format!(
                "cannot reach the mcp-v8 server at {} ({t}); is it running? (set --url or MCP_V8_URL)",
                self.base
            ))),
        }
    }
}

/// `s` percent-encoded as one path segment: every byte but unreserved ones escaped.
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
