//! The sandbox's walls (`crate::sandbox`) and the names of system calls, for the worker.

use super::*;

/// Raises the sandbox's walls on this process (see `sandbox/mod.rs`): call it first thing,
/// before V8 or any thread starts. Returns which walls hold (a dict); RuntimeError when the
/// process has threads, or, with `require`, when seccomp, the dropped capabilities or
/// Landlock's filesystem rules cannot be raised (the message names what is missing).
#[pyfunction]
#[pyo3(signature = (*, read_only, read_write, report_fd, max_files, max_data_bytes, require))]
pub(super) fn sandbox_enter(
    py: Python<'_>,
    read_only: Vec<std::path::PathBuf>,
    read_write: Vec<std::path::PathBuf>,
    report_fd: i32,
    max_files: u64,
    max_data_bytes: u64,
    require: bool,
) -> PyResult<Bound<'_, PyDict>> {
    let options = sandbox::Options {
        read_only,
        read_write,
        report_fd,
        max_files,
        max_data_bytes,
        require,
    };
    let walls = sandbox::enter(&options).map_err(PyRuntimeError::new_err)?;
    let dict = PyDict::new(py);
    dict.set_item("namespaces", walls.namespaces)?;
    dict.set_item("capabilities", walls.capabilities)?;
    dict.set_item("no_new_privs", walls.no_new_privs)?;
    dict.set_item("landlock_abi", walls.landlock_abi)?;
    dict.set_item("landlock_full", walls.landlock_full)?;
    dict.set_item("rlimits", walls.rlimits)?;
    dict.set_item("seccomp", walls.seccomp)?;
    dict.set_item("syscalls_allowed", walls.syscalls_allowed)?;
    dict.set_item("missing", walls.missing)?;
    Ok(dict)
}

/// The name of system call `nr` on `arch` ("x86_64", "aarch64"; "" for this machine's), or None.
#[pyfunction]
#[pyo3(signature = (nr, arch=""))]
pub(super) fn syscall_name(nr: i64, arch: &str) -> Option<&'static str> {
    sandbox::syscall_name(nr, arch)
}

/// The system calls the sandbox's filter allows on this machine (some only with given arguments).
#[pyfunction]
pub(super) fn sandbox_syscalls() -> Vec<&'static str> {
    sandbox::allowed_syscalls()
}
