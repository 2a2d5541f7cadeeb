//! `fetch` under an allowlist. web.js's `fetch` calls out through the host function named
//! [`FETCH`] (a host call, as a live context's exposed functions are); the [`Fetcher`] of the
//! execution or live context answers it from a thread of its own, with `ureq`, under a
//! [`FetchPolicy`]:
//!
//! - only the allowed origins (scheme, host and port) are reachable, redirects included; a
//!   redirect to another origin drops the credentials (`Authorization`, `Cookie`,
//!   `Proxy-Authorization`);
//! - a host name that resolves to an internal address (the special-purpose blocks of
//!   [`addresses`]) is refused, unless the allowed origin names that address (or `localhost`);
//! - a script may not set the headers that frame or route the request (`Host`,
//!   `Content-Length`, `Proxy-*`, ...);
//! - a response body larger than `max_bytes` fails the fetch; so does a request past
//!   `max_requests` in one run;
//! - a request waits for its server as long as its run lasts, at most
//!   [`FetchPolicy::response_timeout`] for the response head and between two reads of the body
//!   (and [`FetchPolicy::connect_timeout`] to connect);
//! - when the run ends (completed, cancelled, timed out), the sockets of its requests are shut
//!   down by the thread that ends it ([`net`]): whatever a request was blocked on returns at
//!   once, and its answer is dropped.

mod addresses;
mod net;
mod policy;
mod request;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::host_calls::{HostCall, Replies};

pub use policy::{
    FetchPolicy, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BYTES, DEFAULT_MAX_REQUESTS,
    DEFAULT_RESPONSE_TIMEOUT,
};

/// The name web.js's native fetch carries (`cpp/web.cc`).
pub const FETCH: &str = "mcp-v8:fetch";

/// What a fetch answers where no origin is allowed (the shim says it for executions, the
/// live context's dispatcher for contexts: cpp/web.h's hooks carry it).
pub const FETCH_OFF: &str =
    "fetch refused: fetch is off (no origin is allowed: allow some with --allow-fetch, \
                             MCP_V8_ALLOW_FETCH or Engine(allow_fetch=[...]))";

/// Answers a fetch where fetch is off (a live context made without a policy).
pub(crate) fn refuse_off(replies: &Replies, call_id: u64) {
    let json = json!({"name": "TypeError", "message": FETCH_OFF}).to_string();
    replies.post(call_id, false, &json, &[]);
}

/// The requests of one run: their agent (whose sockets [`Run::end`] shuts down) and count.
struct Run {
    agent: ureq::Agent,
    started: AtomicU32,
    ended: AtomicBool,
}

impl Run {
    fn new(policy: &FetchPolicy) -> Run {
        Run {
            agent: net::agent(policy),
            started: AtomicU32::new(0),
            ended: AtomicBool::new(false),
        }
    }

    fn end(&self) {
        self.ended.store(true, Ordering::Release);
        net::end(&self.agent);
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

/// Answers the fetches of one execution or one live context. `end_run` stops the requests of
/// the run that just ended.
pub(crate) struct Fetcher {
    policy: Arc<FetchPolicy>,
    replies: Arc<Replies>,
    /// The run in progress, made at its first fetch.
    run: Mutex<Option<Arc<Run>>>,
}

fn refusal(message: impl Into<String>) -> Value {
    json!({"name": "TypeError", "message": message.into()})
}

impl Fetcher {
    pub(crate) fn new(policy: FetchPolicy, replies: Arc<Replies>) -> Fetcher {
        Fetcher {
            policy: Arc::new(policy),
            replies,
            run: Mutex::new(None),
        }
    }

    fn current(&self) -> Arc<Run> {
        let mut run = self.run.lock().unwrap_or_else(|e| e.into_inner());
        run.get_or_insert_with(|| Arc::new(Run::new(&self.policy)))
            .clone()
    }

    /// The run in progress ended: the sockets of its requests shut down (a request blocked on
    /// one returns at once and answers nobody), the next run counts from zero.
    pub(crate) fn end_run(&self) {
        let run = self.run.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(run) = run {
            run.end();
        }
    }

    pub(crate) fn dispatch(&self, call: HostCall<'_>) {
        let id = call.id;
        let fail = |message: String| {
            self.replies
                .post(id, false, &refusal(message).to_string(), &[]);
        };
        let run = self.current();
        let n = run.started.fetch_add(1, Ordering::AcqRel) + 1;
        if n > self.policy.max_requests {
            return fail(format!(
                "fetch refused: more than {} requests in one execution (max_fetch_requests)",
                self.policy.max_requests
            ));
        }
        let request = match request::parse(call.args_json, &call.buffers) {
            Ok(r) => r,
            Err(message) => return fail(message),
        };
        if !self.policy.allows(&request.url) {
            return fail(format!(
                "fetch refused: {}",
                self.policy.not_allowed(&request.url)
            ));
        }
        let policy = self.policy.clone();
        let replies = self.replies.clone();
        let spawned = std::thread::Builder::new()
            .name("mcp-v8-fetch".into())
            .spawn(move || {
                let answer = request::perform(request, &policy, &run);
                if run.ended() {
                    return; // nobody waits for it any more
                }
                match answer {
                    Ok((head, body)) => replies.post(id, true, &head.to_string(), &[&body]),
                    Err(message) => replies.post(id, false, &refusal(message).to_string(), &[]),
                }
            });
        if spawned.is_err() {
            fail("fetch failed: no thread for the request".into());
        }
    }
}

#[cfg(test)]
mod tests;
