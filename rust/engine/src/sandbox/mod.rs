//! The walls a worker process raises around itself before V8 or any other thread starts
//! ([`enter`]): a network namespace without interfaces (in a new user namespace where the
//! kernel allows one), every capability dropped, resource limits, `PR_SET_NO_NEW_PRIVS`,
//! Landlock filesystem rules (read-only: what the interpreter, the package and V8 read;
//! read-write: only the paths given), and a seccomp-bpf allow-list (`filter.rs`).
//!
//! Landlock and seccomp confine the calling thread and the threads it starts later, and a
//! user namespace cannot be entered by a process with threads: [`enter`] refuses to run in
//! a process that has more than one thread. A forbidden system call raises `SIGSYS`; the
//! handler installed here writes the call's number (4 bytes, native order) to the report
//! descriptor the server gave the worker and ends the process with [`VIOLATION_EXIT`].
//! The server names the number with [`syscall_name`].

mod filter;

use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};

pub use filter::{allowed_syscalls, syscall_name};

/// The exit code of a worker ended by a forbidden system call (128 + SIGSYS).
pub const VIOLATION_EXIT: i32 = 159;

/// What [`enter`] is asked to raise.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Paths read (and executed, for shared libraries) below; those that do not exist are skipped.
    pub read_only: Vec<PathBuf>,
    /// Paths read and written below (a scratch directory; workers pass none: their heaps come
    /// and go as descriptors).
    pub read_write: Vec<PathBuf>,
    /// Where the `SIGSYS` handler writes the number of a forbidden call (-1: nowhere).
    pub report_fd: RawFd,
    /// `RLIMIT_NOFILE`.
    pub max_files: u64,
    /// `RLIMIT_DATA` in bytes (0: unchanged).
    pub max_data_bytes: u64,
    /// Fail (naming what is missing) unless seccomp, the dropped capabilities and Landlock's
    /// filesystem rules are all raised.
    pub require: bool,
}

/// Which walls [`enter`] raised; `missing` names those it could not.
#[derive(Debug, Clone, Default)]
pub struct Walls {
    /// "user+net", "net" or "" (none).
    pub namespaces: String,
    pub capabilities: bool,
    pub no_new_privs: bool,
    /// The Landlock ABI in force (0: none) and whether every rule asked for is enforced.
    pub landlock_abi: i32,
    pub landlock_full: bool,
    pub rlimits: bool,
    pub seccomp: bool,
    /// How many system calls the filter allows (on this architecture).
    pub syscalls_allowed: usize,
    pub missing: Vec<String>,
}

static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

// `si_syscall` in the `SIGSYS` layout of siginfo_t: after si_signo, si_errno, si_code (and
// the padding to 8 bytes), then `_call_addr` (a pointer).
const SI_SYSCALL_OFFSET: usize = 16 + std::mem::size_of::<usize>();

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // Async-signal-safe only: a read of the siginfo, write(2), _exit(2).
    let nr: i32 = unsafe {
        std::ptr::read_unaligned((info as *const u8).add(SI_SYSCALL_OFFSET) as *const i32)
    };
    let fd = REPORT_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let bytes = nr.to_ne_bytes();
        unsafe { libc::write(fd, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
    }
    unsafe { libc::_exit(VIOLATION_EXIT) };
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn status_field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

fn unshare_namespaces() -> String {
    // A user namespace first: the capabilities held from then on are over it only, and an
    // unprivileged process may create one where the kernel allows; as root, a network
    // namespace alone is allowed too.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0 {
        return "user+net".into();
    }
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return "net".into();
    }
    String::new()
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn drop_capabilities(last_cap: u32) -> bool {
    unsafe {
        for cap in 0..=last_cap {
            libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData::default(); 2];
        libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .all(|name| status_field(&status, name).is_some_and(|v| v.chars().all(|c| c == '0')))
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> bool {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    unsafe { libc::setrlimit(resource, &limit) == 0 }
}

fn set_limits(options: &Options) -> bool {
    let mut ok = set_limit(libc::RLIMIT_CORE, 0);
    ok &= set_limit(libc::RLIMIT_NOFILE, options.max_files);
    if options.max_data_bytes > 0 {
        ok &= set_limit(libc::RLIMIT_DATA, options.max_data_bytes);
    }
    ok
}

fn existing(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths.iter().filter(|p| p.exists()).cloned().collect()
}

fn landlock(options: &Options) -> Result<(i32, bool), String> {
    // ABI 6: filesystem, TCP bind/connect (no rule: none allowed), and the scopes (signals
    // and abstract UNIX sockets only within the sandbox). Older kernels get what they have.
    let abi = ABI::V6;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                existing(&options.read_only),
                AccessFs::from_read(abi),
            ))
        })
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                existing(&options.read_write),
                AccessFs::from_all(abi),
            ))
        })
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, /* VERSION */
        )
    } as i32;
    match status.ruleset {
        RulesetStatus::NotEnforced => Ok((0, false)),
        RulesetStatus::PartiallyEnforced => Ok((version.max(0), false)),
        RulesetStatus::FullyEnforced => Ok((version.max(0), true)),
    }
}

fn install_sigsys_handler(report_fd: RawFd) -> io::Result<()> {
    REPORT_FD.store(report_fd, Ordering::Relaxed);
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        // A thread started with SIGSYS blocked would be killed silently instead.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGSYS);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    Ok(())
}

/// Raises the walls on the calling process (see the module). With `require`, an error names
/// what could not be raised; without, `Walls::missing` does.
pub fn enter(options: &Options) -> Result<Walls, String> {
    let count = threads();
    if count != 1 {
        return Err(format!(
            "the sandbox must be entered before any thread starts: this process has {count} threads"
        ));
    }
    let mut walls = Walls::default();
    let last_cap = last_capability();
    walls.namespaces = unshare_namespaces();
    if walls.namespaces.is_empty() {
        walls
            .missing
            .push("network namespace (unshare refused)".into());
    }
    walls.rlimits = set_limits(options);
    if !walls.rlimits {
        walls.missing.push("resource limits".into());
    }
    walls.capabilities = drop_capabilities(last_cap);
    if !walls.capabilities {
        walls
            .missing
            .push("capabilities (some could not be dropped)".into());
    }
    walls.no_new_privs = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0;
    if !walls.no_new_privs {
        walls.missing.push("no_new_privs".into());
    }
    match landlock(options) {
        Ok((abi, full)) => {
            walls.landlock_abi = abi;
            walls.landlock_full = full;
            if abi == 0 {
                walls
                    .missing
                    .push("landlock (not supported by this kernel)".into());
            } else if !full {
                walls
                    .missing
                    .push(format!("landlock (ABI {abi}: some rules not enforced)"));
            }
        }
        Err(e) => walls.missing.push(format!("landlock ({e})")),
    }
    match install_sigsys_handler(options.report_fd)
        .map_err(|e| e.to_string())
        .and_then(|_| filter::apply())
    {
        Ok(n) => {
            walls.seccomp = true;
            walls.syscalls_allowed = n;
        }
        Err(e) => walls.missing.push(format!("seccomp ({e})")),
    }
    if options.require {
        let mut absent = Vec::new();
        if !walls.seccomp {
            absent.push("seccomp");
        }
        if !walls.capabilities {
            absent.push("dropped capabilities");
        }
        if walls.landlock_abi == 0 {
            absent.push("landlock filesystem rules");
        }
        if !absent.is_empty() {
            return Err(format!(
                "sandbox required but not available: {} ({})",
                absent.join(", "),
                walls.missing.join("; ")
            ));
        }
    }
    Ok(walls)
}
