//! `fetch` under an allowlist. web.js's `fetch` calls out through the host function named
//! [`FETCH`] (a host call, as a live context's exposed functions are); the [`Fetcher`] of the
//! execution or live context answers it from a thread of its own, with `ureq`, under a
//! [`FetchPolicy`]. An execution may instead hand its calls on (`engine::Relay`): the
//! service's workers make no connection, and the server makes their requests with a
//! [`FetchRun`], the same code under the same policy:
//!
//! - only the allowed origins (scheme, host and port) are reachable, redirects included; a
//!   redirect to another origin drops the credentials (`Authorization`, `Cookie`,
//!   `Proxy-Authorization`);
//! - a host name that resolves to an internal address (the special-purpose blocks of
//!   [`addresses`]) is refused, unless the allowed origin names that address (or `localhost`);
//! - a script may not set the headers that frame or route the request (`Host`,
//!   `Content-Length`, `Proxy-*`, ...);
//! - a response body larger than `max_bytes` fails the fetch, a request body larger than it is
//!   refused; so is a request past `max_requests` in one run;
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

fn refusal(message: impl Into<String>) -> Value {
    json!({"name": "TypeError", "message": message.into()})
}

/// The fetches of one execution under its policy, wherever they are made: in the process that
/// runs the script ([`Fetcher`]), or in a server that makes them for a worker whose calls it
/// relays (the worker makes no connection). Thread-safe: requests run on the caller's threads,
/// and [`FetchRun::end`] (from any thread) shuts their sockets down.
pub struct FetchRun {
    policy: Arc<FetchPolicy>,
    run: Run,
}

/// A request a script may make, ready for [`FetchRun::send`].
pub struct Admitted(request::Request);

impl FetchRun {
    pub fn new(policy: FetchPolicy) -> FetchRun {
        let run = Run::new(&policy);
        FetchRun {
            policy: Arc::new(policy),
            run,
        }
    }

    /// Counts one request of the run; `Err` (the message of the refusal) past `max_requests`.
    /// Once per request, in the order the script made them, before [`FetchRun::check`].
    pub fn admit(&self) -> Result<(), String> {
        let n = self
            .run
            .started
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if n > self.policy.max_requests {
            return Err(format!(
                "fetch refused: more than {} requests in one execution (max_fetch_requests)",
                self.policy.max_requests
            ));
        }
        Ok(())
    }

    /// The request of web.js's fetch (`args_json`, its body a marker naming one of `buffers`),
    /// or why the policy refuses it.
    pub fn check(&self, args_json: &str, buffers: &[&[u8]]) -> Result<Admitted, String> {
        if self.policy.origins().is_empty() {
            return Err(FETCH_OFF.into());
        }
        let request = request::parse(args_json, buffers)?;
        if !self.policy.allows(&request.url) {
            return Err(format!(
                "fetch refused: {}",
                self.policy.not_allowed(&request.url)
            ));
        }
        let size = request.body_len() as u64;
        if size > self.policy.max_bytes {
            return Err(format!(
                "fetch refused: the request body is {size} bytes, more than {} (max_fetch_bytes)",
                self.policy.max_bytes
            ));
        }
        Ok(Admitted(request))
    }

    /// Makes the request (redirects followed under the policy): the response head web.js
    /// builds its `Response` from (its body a marker naming buffer 0) and the body, or the
    /// sentence of the failure. Blocks until the server answers, a limit of the policy, or
    /// [`FetchRun::end`].
    pub fn send(&self, request: Admitted) -> Result<(Value, Vec<u8>), String> {
        request::perform(request.0, &self.policy, &self.run)
    }

    /// [`FetchRun::check`] then [`FetchRun::send`] (the caller counted the request with
    /// [`FetchRun::admit`]).
    pub fn perform(&self, args_json: &str, buffers: &[&[u8]]) -> Result<(Value, Vec<u8>), String> {
        self.send(self.check(args_json, buffers)?)
    }

    /// The run ended: the sockets of its requests shut down (a request blocked on one returns
    /// at once), and it opens no more.
    pub fn end(&self) {
        self.run.end();
    }

    pub fn ended(&self) -> bool {
        self.run.ended()
    }

    /// `{"name": "TypeError", "message": ...}`: how a failed fetch rejects in the script.
    pub fn refusal_json(message: &str) -> String {
        refusal(message).to_string()
    }
}

/// Answers the fetches of one execution or one live context. `end_run` stops the requests of
/// the run that just ended.
pub(crate) struct Fetcher {
    policy: FetchPolicy,
    replies: Arc<Replies>,
    /// The run in progress, made at its first fetch.
    run: Mutex<Option<Arc<FetchRun>>>,
}

impl Fetcher {
    pub(crate) fn new(policy: FetchPolicy, replies: Arc<Replies>) -> Fetcher {
        Fetcher {
            policy,
            replies,
            run: Mutex::new(None),
        }
    }

    fn current(&self) -> Arc<FetchRun> {
        let mut run = self.run.lock().unwrap_or_else(|e| e.into_inner());
        run.get_or_insert_with(|| Arc::new(FetchRun::new(self.policy.clone())))
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
        let request = match run
            .admit()
            .and_then(|()| run.check(call.args_json, &call.buffers))
        {
            Ok(r) => r,
            Err(message) => return fail(message),
        };
        let replies = self.replies.clone();
        let spawned = std::thread::Builder::new()
            .name("mcp-v8-fetch".into())
            .spawn(move || {
                let answer = run.send(request);
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
