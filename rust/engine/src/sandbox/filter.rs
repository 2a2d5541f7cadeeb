//! The worker's seccomp-bpf allow-list. Derived with `strace -f` over real worker runs
//! (every call after the Landlock ruleset is in force, which is where this filter starts):
//! the service, fault, hostile-script, heap and MCP test files and a run of plain, snapshot
//! and restore, console-flood, timeout, cancel, heap-limit, TypeScript, WebAssembly,
//! Intl/Date, timer and large-result executions. A few calls those runs did not make are
//! allowed for paths they do not reach on this machine; each says why. Everything else
//! raises `SIGSYS` (`SECCOMP_RET_TRAP`), except `clone3`, which answers `ENOSYS` (its flags
//! are in memory a filter cannot read; glibc then starts threads with `clone`).
//!
//! Calls allowed only with some arguments:
//! - `clone` only with `CLONE_THREAD` (a thread, never a process);
//! - `prlimit64` only without a new limit (V8 reads its stack limit);
//! - `tgkill` only to this process (glibc's `abort`);
//! - `prctl` only `PR_SET_NAME` (threads name themselves);
//! - `ioctl` only `TCGETS` (CPython asks whether a file it opens is a terminal);
//! - `fcntl` only `F_GETFD`, `F_SETFD`, `F_GETFL` and `F_DUPFD_CLOEXEC` (CPython reads and sets
//!   close-on-exec, and its traceback printer duplicates the source file's descriptor: a
//!   worker printing a traceback would otherwise die as a violation).

use std::collections::BTreeMap;

use seccompiler::{
    apply_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// Allowed with any arguments (a name absent on an architecture is skipped there).
const ALLOWED: &[&str] = &[
    // Descriptors already open (the channel, the report pipe) and paths Landlock lets open.
    "read",
    "write",
    "close",
    "openat",
    "newfstatat",
    "statx",
    "lseek",
    "readlink",
    "readlinkat", // aarch64's readlink
    "getdents64", // not seen: an import from a directory CPython has not listed yet
    // The heap a job produces goes back to the server in a memfd (the one it restores comes
    // as a descriptor, read with pread64 from its start): a file of this process's own, in
    // no directory.
    "memfd_create",
    "pread64",
    // Memory. mremap, not seen: glibc's realloc of a large block; the pkey calls: V8 on a
    // CPU with memory protection keys (here pkey_alloc fails and V8 does without).
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    "pkey_alloc",
    "pkey_mprotect",
    "pkey_free",
    // Threads (started with clone, below) and their synchronisation; sched_yield, not seen:
    // V8's spin-waits.
    "futex",
    "set_robust_list",
    "rseq",
    "sched_getaffinity",
    "sched_yield",
    "getpid",
    "gettid",
    // Signals of this process; rt_sigreturn, not seen: the return from any handler.
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    // Time; the sleeps, not seen: V8's platform and CPython's time.sleep.
    "clock_gettime",
    "nanosleep",
    "clock_nanosleep",
    // The channel to the server (an inherited socket: none can be made); sendmsg/recvmsg,
    // not seen: descriptors passed over it.
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "getsockname",
    "getsockopt",
    "getrandom",
    "uname",
    "exit",
    "exit_group",
];

/// Allowed only with the arguments of [`rules`].
const CONDITIONAL: &[&str] = &["clone", "prlimit64", "tgkill", "prctl", "ioctl", "fcntl"];

const PR_SET_NAME: u64 = 15;
const TCGETS: u64 = 0x5401;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

fn number(name: &str) -> Option<i64> {
    #[cfg(target_arch = "x86_64")]
    let sysno = name.parse::<syscalls::x86_64::Sysno>().ok();
    #[cfg(target_arch = "aarch64")]
    let sysno = name.parse::<syscalls::aarch64::Sysno>().ok();
    sysno.map(|s| s.id() as i64)
}

/// The name of system call `nr` on `arch` ("x86_64" or "aarch64"; "" for this machine's).
pub fn syscall_name(nr: i64, arch: &str) -> Option<&'static str> {
    let id = usize::try_from(nr).ok()?;
    let arch = if arch.is_empty() {
        std::env::consts::ARCH
    } else {
        arch
    };
    match arch {
        "x86_64" => syscalls::x86_64::Sysno::new(id).map(|s| s.name()),
        "aarch64" => syscalls::aarch64::Sysno::new(id).map(|s| s.name()),
        _ => None,
    }
}

fn arg_is(index: u8, value: u64) -> SeccompCondition {
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)
        .expect("a valid condition")
}

fn rules() -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in ALLOWED {
        if let Some(nr) = number(name) {
            map.insert(nr, vec![]); // no rule: allowed whatever the arguments
        }
    }
    let one =
        |conditions: Vec<SeccompCondition>| SeccompRule::new(conditions).expect("a valid rule");
    let pid = std::process::id() as u64;
    let clone_thread = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        libc::CLONE_THREAD as u64,
    )
    .expect("a valid condition");
    let conditional: Vec<(&str, Vec<SeccompRule>)> = vec![
        ("clone", vec![one(vec![clone_thread])]),
        ("prlimit64", vec![one(vec![arg_is(2, 0)])]),
        ("tgkill", vec![one(vec![arg_is(0, pid)])]),
        ("prctl", vec![one(vec![arg_is(0, PR_SET_NAME)])]),
        ("ioctl", vec![one(vec![arg_is(1, TCGETS)])]),
        (
            "fcntl",
            [
                libc::F_GETFD,
                libc::F_SETFD,
                libc::F_GETFL,
                libc::F_DUPFD_CLOEXEC,
            ]
            .iter()
            .map(|&cmd| one(vec![arg_is(1, cmd as u64)]))
            .collect(),
        ),
    ];
    for (name, chain) in conditional {
        if let Some(nr) = number(name) {
            map.insert(nr, chain);
        }
    }
    map
}

/// The names of the calls the filter allows on this architecture (some only with the
/// arguments above), sorted.
pub fn allowed_syscalls() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ALLOWED
        .iter()
        .copied()
        .filter(|n| number(n).is_some())
        .collect();
    names.extend(CONDITIONAL.iter().copied().filter(|n| number(n).is_some()));
    names.sort_unstable();
    names
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(rules, mismatch, matched, ARCH).map_err(|e| e.to_string())?;
    BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

/// Sets `PR_SET_NO_NEW_PRIVS` (seccomp needs it without `CAP_SYS_ADMIN`) and loads the
/// filters on the calling thread (inherited by the threads it starts); returns how many
/// calls are allowed.
pub fn apply() -> Result<usize, String> {
    let mut allow = rules();
    let count = allow.len();
    // clone3 answers ENOSYS through a second filter: of two filters' answers the kernel
    // takes the stronger, and ERRNO is stronger than ALLOW (the allow-list lets clone3 pass
    // so that its TRAP does not win).
    let clone3 = number("clone3").ok_or("no clone3 on this architecture")?;
    allow.insert(clone3, vec![]);
    let main = compile(allow, SeccompAction::Trap, SeccompAction::Allow)?;
    let enosys = compile(
        BTreeMap::from([(clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )?;
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // The allow-list last: once it is in force, loading a filter is a violation too.
    apply_filter(&enosys).map_err(|e| e.to_string())?;
    apply_filter(&main).map_err(|e| e.to_string())?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_named_on_both_architectures() {
        assert_eq!(syscall_name(41, "x86_64"), Some("socket"));
        assert_eq!(syscall_name(198, "aarch64"), Some("socket"));
        assert_eq!(syscall_name(59, "x86_64"), Some("execve"));
        assert_eq!(syscall_name(-1, "x86_64"), None);
        assert_eq!(syscall_name(41, "sparc"), None);
    }

    #[test]
    fn the_allow_list_compiles_and_holds_no_forbidden_call() {
        let allowed = allowed_syscalls();
        for name in [
            "socket", "connect", "execve", "execveat", "fork", "vfork", "ptrace", "mount", "bpf",
            "clone3",
        ] {
            assert!(!allowed.contains(&name), "{name} is allowed");
        }
        assert!(compile(rules(), SeccompAction::Trap, SeccompAction::Allow).is_ok());
    }

    #[test]
    fn every_name_is_a_call_of_one_of_the_two_architectures() {
        for name in ALLOWED.iter().chain(CONDITIONAL) {
            let known = name.parse::<syscalls::x86_64::Sysno>().is_ok()
                || name.parse::<syscalls::aarch64::Sysno>().is_ok();
            assert!(known, "{name} is no system call");
        }
    }
}
