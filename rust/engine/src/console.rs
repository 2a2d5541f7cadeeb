//! Console capture: the lines a script writes with `console.*`, as the shim hands them over
//! (`cpp/host.cc`'s `print`), kept in the outcome up to a byte limit and passed live to the
//! embedder's callback.

use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Console bytes an outcome keeps unless told otherwise.
pub const DEFAULT_CONSOLE_LIMIT_BYTES: usize = 16 << 20;

/// Console levels, with the marker used when lines are rendered as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Log,
    Info,
    Warn,
    Error,
    Debug,
    Trace,
}

impl Level {
    /// The level of the shim's numbering (`MV8_LOG` ... `MV8_TRACE`).
    fn from_raw(level: c_int) -> Level {
        match level {
            1 => Level::Info,
            2 => Level::Warn,
            3 => Level::Error,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => Level::Log,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Log => "log",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// The prefix a line of this level carries in rendered output: none for `log`,
    /// `[info] `, `[warn] `, `[error] `, `[debug] `, `[trace] ` for the others.
    pub fn marker(self) -> &'static str {
        match self {
            Level::Log => "",
            Level::Info => "[info] ",
            Level::Warn => "[warn] ",
            Level::Error => "[error] ",
            Level::Debug => "[debug] ",
            Level::Trace => "[trace] ",
        }
    }
}

/// One console call. `text` may hold several lines (an inspected object, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    pub level: Level,
    pub text: String,
}

impl ConsoleLine {
    /// The line as it appears in rendered output: level marker, text, newline.
    pub fn render(&self) -> String {
        format!("{}{}\n", self.level.marker(), self.text)
    }
}

/// Where the console calls of one run go: the live callback, then the lines the outcome keeps.
pub(crate) struct ConsoleSink<'a> {
    pub(crate) lines: Vec<ConsoleLine>,
    bytes: usize,
    /// 0: no limit.
    limit: usize,
    keep: bool,
    /// Calls not kept (over the limit, or `keep` is off).
    pub(crate) dropped: u64,
    callback: Option<&'a mut dyn FnMut(&ConsoleLine)>,
}

impl<'a> ConsoleSink<'a> {
    pub(crate) fn new(
        limit: usize,
        keep: bool,
        callback: Option<&'a mut dyn FnMut(&ConsoleLine)>,
    ) -> Self {
        ConsoleSink {
            lines: Vec::new(),
            bytes: 0,
            limit,
            keep,
            dropped: 0,
            callback,
        }
    }

    /// A sink for a call that prints nothing (making or snapshotting a context).
    pub(crate) fn none() -> ConsoleSink<'static> {
        ConsoleSink::new(0, false, None)
    }

    /// One call, `len` bytes long as the shim counted them.
    fn take(&mut self, line: ConsoleLine, len: usize) {
        // A panicking callback must not unwind into C++.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            if let Some(cb) = self.callback.as_mut() {
                cb(&line);
            }
        }));
        if self.keep && (self.limit == 0 || self.bytes + len <= self.limit) {
            self.bytes += len;
            self.lines.push(line);
        } else {
            self.dropped += 1;
        }
    }
}

/// The shim's console callback (`mv8_console_fn`) for a [`ConsoleSink`] passed as user data.
pub(crate) unsafe extern "C" fn on_console(
    user_data: *mut c_void,
    level: c_int,
    text: *const c_char,
    len: usize,
) {
    let sink = &mut *(user_data as *mut ConsoleSink);
    let bytes = std::slice::from_raw_parts(text as *const u8, len);
    sink.take(
        ConsoleLine {
            level: Level::from_raw(level),
            text: String::from_utf8_lossy(bytes).into_owned(),
        },
        len,
    );
}
