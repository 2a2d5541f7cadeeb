//! The one door of the source pipeline to oxc's parser. `source.rs` and `transform.rs` parse
//! through [`parse`] only, so that a test can count what `prepare` parses: each text at most
//! once per goal ([`counted`]).

use oxc_allocator::Allocator;
use oxc_parser::{Parser, ParserReturn};
use oxc_span::SourceType;

/// Parses `text` with `goal` (language, module or script).
pub(crate) fn parse<'a>(
    allocator: &'a Allocator,
    text: &'a str,
    goal: SourceType,
) -> ParserReturn<'a> {
    #[cfg(test)]
    counted::note(text, goal);
    Parser::new(allocator, text, goal).parse()
}

/// Whether a parse found the text valid.
pub(crate) fn is_valid(parsed: &ParserReturn<'_>) -> bool {
    !parsed.panicked && !parsed.diagnostics.has_errors()
}

#[cfg(test)]
pub(crate) mod counted {
    //! The parses made on this thread while [`during`] runs (`prepare` grows its stack with
    //! `stacker`, which stays on the same thread).

    use std::cell::RefCell;

    use oxc_span::SourceType;

    thread_local! {
        static LOG: RefCell<Option<Vec<(String, SourceType)>>> = const { RefCell::new(None) };
    }

    pub(super) fn note(text: &str, goal: SourceType) {
        LOG.with(|log| {
            if let Some(log) = log.borrow_mut().as_mut() {
                log.push((text.to_string(), goal));
            }
        });
    }

    /// Runs `f`; what it returns, with the (text, goal) of every parse it made, in order.
    pub(crate) fn during<T>(f: impl FnOnce() -> T) -> (T, Vec<(String, SourceType)>) {
        LOG.with(|log| *log.borrow_mut() = Some(Vec::new()));
        let out = f();
        let parses = LOG.with(|log| log.borrow_mut().take()).unwrap_or_default();
        (out, parses)
    }
}
