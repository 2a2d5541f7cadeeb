//! The connections of one run. Each run has an [`Agent`] of its own; every socket it opens is
//! registered with that agent before it connects, and [`end`] shuts them all down: a connect
//! in progress, a TLS handshake, a wait for the response head or a body read blocked on one of
//! them returns at once, from whichever thread ends the run. No request polls for the end.
//!
//! The resolver applies the internal-address rule ([`super::addresses`]); TLS is rustls with
//! one configuration for the whole process.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, RustlsConnector,
    ShutdownHandle, Transport,
};
use ureq::{Agent, Error};

use super::addresses;
use super::policy::FetchPolicy;

/// Why a request could not be made, in our words (carried through ureq as `Error::Other`).
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The host name did not resolve.
    NoSuchHost(String),
    /// Every address of the host name is internal.
    Internal {
        host: String,
        ip: IpAddr,
        block: &'static addresses::Block,
    },
    /// The run ended while the request was being made.
    Stopped,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoSuchHost(host) => write!(f, "the name {host} did not resolve"),
            Refusal::Internal { host, ip, block } => write!(
                f,
                "{host} resolves to {ip}, an internal address ({}, {}); allow that address as \
                 an origin to reach it",
                block.name, block.rfc
            ),
            Refusal::Stopped => write!(f, "the execution ended"),
        }
    }
}

impl std::error::Error for Refusal {}

fn refusal(r: Refusal) -> Error {
    Error::Other(Box::new(r))
}

/// A new agent for one run under `policy`.
pub(crate) fn agent(policy: &FetchPolicy) -> Agent {
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0) // followed by the caller, under the policy
        .proxy(None) // never from the environment: the resolver is the gate
        .allow_non_standard_methods(true)
        .timeout_connect(Some(policy.connect_timeout))
        .timeout_recv_response(Some(policy.response_timeout))
        .timeout_per_read(Some(policy.response_timeout))
        .timeout_per_write(Some(policy.response_timeout))
        // Unless the script sets its own, servers see this engine, not the HTTP library.
        .user_agent(ureq::config::AutoHeaderValue::Provided(Arc::new(format!(
            "mcp-v8/{}",
            env!("CARGO_PKG_VERSION")
        ))))
        .build();
    Agent::with_parts(config, Tcp.chain(Tls), PolicyResolver)
}

/// Ends a run: every socket of `agent` (and of its clones) shuts down, and it opens no more.
pub(crate) fn end(agent: &Agent) {
    agent.clone().shutdown();
}

/// A socket registered for shutdown before it connects. The lock orders `connect(2)` against
/// `shutdown(2)`: either the shutdown comes first and the socket never connects, or the connect
/// has begun and the shutdown aborts it (Linux ends a connect in SYN_SENT on shutdown).
struct Handle {
    socket: Socket,
    shut: Mutex<bool>,
}

impl ShutdownHandle for Handle {
    fn shutdown(&self) {
        let mut shut = self.shut.lock().unwrap_or_else(|e| e.into_inner());
        *shut = true;
        // An error only when the socket has not begun to connect: then it never will.
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

impl Handle {
    fn is_shut(&self) -> bool {
        *self.shut.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens TCP connections, each registered with the agent before it connects.
#[derive(Debug)]
struct Tcp;

impl Connector<()> for Tcp {
    type Out = Conn;

    fn connect(&self, details: &ConnectionDetails, _: Option<()>) -> Result<Option<Conn>, Error> {
        let deadline = details
            .timeout
            .not_zero()
            .and_then(|t| Instant::now().checked_add(*t));
        let mut last = None;
        for addr in details.addrs.iter() {
            match connect_one(*addr, details, deadline) {
                Ok(conn) => return Ok(Some(conn)),
                // This address did not answer; the next one may.
                Err(Error::Io(e)) if another_address_may_work(&e) => last = Some(Error::Io(e)),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::HostNotFound))
    }
}

fn another_address_may_work(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::AddrNotAvailable
    )
}

fn connect_one(
    addr: SocketAddr,
    details: &ConnectionDetails,
    deadline: Option<Instant>,
) -> Result<Conn, Error> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    let handle = Arc::new(Handle {
        socket,
        shut: Mutex::new(false),
    });
    // Fails once the run has ended.
    let weak: Weak<dyn ShutdownHandle> = Arc::downgrade(&handle) as Weak<dyn ShutdownHandle>;
    (details.register_shutdown)(weak).map_err(|_| refusal(Refusal::Stopped))?;
    let in_progress = {
        let shut = handle.shut.lock().unwrap_or_else(|e| e.into_inner());
        if *shut {
            return Err(refusal(Refusal::Stopped));
        }
        match handle.socket.connect(&SockAddr::from(addr)) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) => return Err(e.into()),
        }
    };
    if in_progress {
        wait_writable(&handle.socket, deadline).map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                Error::Timeout(details.timeout.reason)
            } else {
                e.into()
            }
        })?;
        if let Some(e) = handle.socket.take_error()? {
            return Err(if handle.is_shut() {
                refusal(Refusal::Stopped)
            } else {
                e.into()
            });
        }
    }
    if handle.is_shut() {
        return Err(refusal(Refusal::Stopped));
    }
    handle.socket.set_nonblocking(false)?;
    let config = details.config;
    Ok(Conn {
        handle,
        buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        read_timeout: None,
        write_timeout: None,
    })
}

/// Waits until a connect in progress is done (or failed, or shut down), until `deadline`.
fn wait_writable(socket: &Socket, deadline: Option<Instant>) -> io::Result<()> {
    loop {
        let millis = match deadline {
            None => -1, // no bound
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                left.as_millis().clamp(1, libc::c_int::MAX as u128) as libc::c_int
            }
        };
        let mut fd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        match unsafe { libc::poll(&mut fd, 1, millis) } {
            0 => continue, // the loop sees the deadline
            n if n > 0 => return Ok(()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// A TCP connection over the registered socket.
#[derive(Debug)]
struct Conn {
    handle: Arc<Handle>,
    buffers: LazyBuffers,
    /// The timeouts set on the socket, to set them only when they change.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field(
                "peer",
                &self.socket.peer_addr().ok().and_then(|a| a.as_socket()),
            )
            .finish()
    }
}

/// The socket timeout for `timeout` (already capped by the per-read or per-write one), or the
/// error when it has run out.
fn socket_timeout(timeout: NextTimeout) -> Result<Option<Duration>, Error> {
    if timeout.after.is_zero() {
        return Err(Error::Timeout(timeout.reason));
    }
    Ok(timeout.not_zero().map(|t| *t))
}

fn io_error(e: io::Error, timeout: NextTimeout) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(timeout.reason),
        _ => Error::Io(e),
    }
}

impl Transport for Conn {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        let wanted = socket_timeout(timeout)?;
        if wanted != self.write_timeout {
            self.handle.socket.set_write_timeout(wanted)?;
            self.write_timeout = wanted;
        }
        let output = &self.buffers.output()[..amount];
        (&self.handle.socket)
            .write_all(output)
            .map_err(|e| io_error(e, timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = timeout.for_read();
        let wanted = socket_timeout(timeout)?;
        let started = Instant::now();
        if wanted != self.read_timeout {
            self.handle.socket.set_read_timeout(wanted)?;
            self.read_timeout = wanted;
        }
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.handle.socket).read(input) {
                // A signal: go on with what is left of the timeout (Linux does not restart a
                // socket read that has one).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    let left = wanted.map(|t| t.saturating_sub(started.elapsed()));
                    if left.is_some_and(|l| l.is_zero()) {
                        return Err(Error::Timeout(timeout.reason));
                    }
                    self.handle.socket.set_read_timeout(left)?;
                    self.read_timeout = left;
                }
                Err(e) => return Err(io_error(e, timeout)),
                Ok(n) => break n,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        if self.handle.is_shut() {
            return false;
        }
        // An idle connection has nothing to read: a byte or an end means it is done.
        let socket = &self.handle.socket;
        if socket.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let open =
            matches!((&*socket).read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        socket.set_nonblocking(false).is_ok() && open
    }
}

/// rustls over the TCP connection, one configuration (root certificates and all) for every
/// agent of the process.
#[derive(Debug)]
struct Tls;

static RUSTLS: LazyLock<RustlsConnector> = LazyLock::new(RustlsConnector::default);

impl<In: Transport> Connector<In> for Tls {
    type Out = <RustlsConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        RUSTLS.connect(details, chained)
    }
}

/// Resolves host names, refusing the internal addresses unless the URL names one itself (an
/// IP literal, or `localhost`): a public name that resolves to a private address is how a
/// sandbox reaches what it should not. Only allowed origins get here, so a literal is named by
/// an allowed origin.
#[derive(Debug)]
struct PolicyResolver;

impl Resolver for PolicyResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let host = uri.host().ok_or(Error::HostNotFound)?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let mut out = self.empty();
        if let Ok(ip) = bare.parse::<IpAddr>() {
            out.push(SocketAddr::new(ip, port));
            return Ok(out);
        }
        let addrs: Vec<SocketAddr> = (bare, port)
            .to_socket_addrs()
            .map_err(|_| refusal(Refusal::NoSuchHost(bare.to_string())))?
            .collect();
        for addr in gate(bare, addrs)? {
            if out.try_push(addr).is_err() {
                break; // ureq keeps 16
            }
        }
        Ok(out)
    }
}

/// The addresses of `host` a request may connect to: the public ones, or all of them for
/// `localhost`; an error when none is left.
fn gate(host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Error> {
    let Some(first) = addrs.first().copied() else {
        return Err(refusal(Refusal::NoSuchHost(host.to_string())));
    };
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(addrs);
    }
    let public: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| addresses::internal(a.ip()).is_none())
        .collect();
    if public.is_empty() {
        let block = addresses::internal(first.ip()).expect("filtered out as internal");
        return Err(refusal(Refusal::Internal {
            host: host.to_string(),
            ip: first.ip(),
            block,
        }));
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str) -> Result<Vec<SocketAddr>, Error> {
        let uri: Uri = url.parse().unwrap();
        PolicyResolver
            .resolve(&uri, &Config::default(), NextTimeout::default())
            .map(|a| a.iter().copied().collect())
    }

    #[test]
    fn names_the_url_gives_are_resolved_under_the_rule() {
        // Named by the URL itself: allowed.
        assert_eq!(
            resolve("http://127.0.0.1:81/").unwrap(),
            ["127.0.0.1:81".parse().unwrap()]
        );
        assert_eq!(
            resolve("https://[::1]/").unwrap(),
            ["[::1]:443".parse().unwrap()]
        );
        assert!(resolve("http://localhost:80/").is_ok());
        let Err(Error::Other(e)) = resolve("http://no-such-host.invalid:80/") else {
            panic!("an .invalid name resolved"); // it never does (RFC 6761)
        };
        assert_eq!(
            e.to_string(),
            "the name no-such-host.invalid did not resolve"
        );
    }

    #[test]
    fn a_name_that_resolves_inside_is_refused() {
        let addrs = |list: &[&str]| -> Vec<SocketAddr> {
            list.iter().map(|a| a.parse().unwrap()).collect()
        };
        let Err(Error::Other(e)) = gate("api.example.com", addrs(&["10.0.0.5:443"])) else {
            panic!("an internal address passed");
        };
        assert_eq!(
            e.to_string(),
            "api.example.com resolves to 10.0.0.5, an internal address (private-use, RFC 1918); \
             allow that address as an origin to reach it"
        );
        let Err(Error::Other(e)) = gate("v6.example.com", addrs(&["[64:ff9b::a00:5]:443"])) else {
            panic!("a NAT64 address passed");
        };
        assert!(
            e.to_string().contains("NAT64 well-known prefix, RFC 6052"),
            "{e}"
        );
        // The public addresses of a name that has both are kept, the internal ones dropped.
        assert_eq!(
            gate(
                "mixed.example.com",
                addrs(&["192.168.1.1:80", "8.8.8.8:80"])
            )
            .unwrap(),
            addrs(&["8.8.8.8:80"])
        );
        // localhost is named by the origin itself.
        assert_eq!(
            gate("localhost", addrs(&["127.0.0.1:80", "[::1]:80"])).unwrap(),
            addrs(&["127.0.0.1:80", "[::1]:80"])
        );
    }

    #[test]
    fn the_agent_takes_no_proxy_from_the_environment() {
        let policy = FetchPolicy::new(&["http://127.0.0.1:1"], 1, 1).unwrap();
        assert!(agent(&policy).config().proxy().is_none());
    }
}
