//! A linear pre-scan that bounds how deeply a source text nests, before any parser sees it.
//!
//! oxc's parser is recursive descent with no depth guard: a source of 100,000 `(` makes it
//! recurse until the thread's stack runs out, which kills the process. This module reads
//! the text once, without recursion, and computes an upper bound of the parser's nesting
//! depth; [`check`] refuses a text whose bound exceeds [`MAX_NESTING`].
//!
//! What counts, per position: every open bracket (`(`, `[`, `{`, a template literal and each
//! of its `${`), plus, inside the innermost bracket, every token since the current expression
//! or statement began that makes a recursive-descent parser recurse without a bracket:
//! prefix operators (`!`, `~`, unary `+`/`-`, prefix `++`/`--`, `typeof`, `void`, `delete`,
//! `await`, `yield`, `new`, TypeScript's `keyof`/`infer`/...), right-associative operators
//! (every assignment operator, `**`, `? :`, `=>`), `<` (TypeScript generics) and the
//! statements that nest without braces (`if`, `else`, `while`, `for`, `do`, `with`, labels).
//! Left-associative chains (`a + b + c`, `a.b.c`, `f()()`) are parsed iteratively and do not
//! count here; the passes that walk the tree bound them themselves (see `source.rs`).
//!
//! In the TypeScript [`Dialect`], a `<` after a value may open type arguments: it counts
//! until a `>` closes it or an operator that types do not have (`&&`, `+`, `/`...) shows it
//! was a comparison. oxc tries each such `<` as type arguments and re-reads what follows
//! when that fails, so time grows with the square of how many are open at once: more than
//! [`MAX_OPEN_ANGLES`] are refused as well. In JavaScript `<` only compares.
//!
//! The running count of the innermost bracket goes back to zero only where the parser is
//! certainly back at that bracket's level: after `,`; after `;` unless `else` or `while`
//! follows; and before a token that must start a new statement (an identifier or keyword
//! after a complete expression, across a line break or after `}`), unless that word is one
//! that continues a statement (`else`, `catch`, `in`, `extends`...).
//!
//! Lexing JavaScript needs to know whether a `/` divides or starts a regular expression,
//! which only a parser knows. Strings, comments, templates and regular expressions are
//! skipped, so reading a `/` the wrong way could hide brackets from the count. The previous
//! token decides it where the grammar does (after `)` it divides, unless the parenthesis
//! closes an `if`/`while`/`for`/`with` head). Where it leaves the question open (after `}`,
//! which may end a block or an object, and after `yield`, `await`, `of`, which may be
//! identifiers), the scan follows both readings, the one furthest behind first. Readings that
//! reach a `;`, `,` or line break in the same state merge, a reading ends at a lexical error
//! (the parser stops there too in that reading), and the number of readings and the total
//! work are capped.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// The deepest nesting accepted, in the units counted above.
pub const MAX_NESTING: u32 = 2000;

/// Most `<` open at once in TypeScript: oxc tries each as the start of type arguments and
/// re-reads what follows when that fails, which costs time quadratic in their number.
pub const MAX_OPEN_ANGLES: u32 = 16;

/// Which grammar the text will be parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `<` is only ever a comparison.
    JavaScript,
    /// `<` may open type arguments, which nest.
    TypeScript,
}

/// Most readings of ambiguous `/` waiting to be followed before the text is refused.
const MAX_PENDING: usize = 64;

/// All readings together scan at most this many times the text (plus a constant).
const WORK_FACTOR: usize = 16;

/// Why a text was refused, at byte `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    pub offset: usize,
    pub message: String,
}

/// Checks that `src` nests at most [`MAX_NESTING`] levels deep. Runs in time linear in the
/// length of `src` (all readings together scan at most [`WORK_FACTOR`] times the text) and in
/// constant stack space.
pub fn check(src: &str, dialect: Dialect) -> Result<(), TooDeep> {
    check_with_limit(src, dialect, MAX_NESTING)
}

/// [`check`] with another limit (tests).
pub fn check_with_limit(src: &str, dialect: Dialect, limit: u32) -> Result<(), TooDeep> {
    let mut scan = Scan {
        src: src.as_bytes(),
        text: src,
        limit,
        typescript: dialect == Dialect::TypeScript,
        pending: vec![Reading::new()],
        seen: HashSet::new(),
        forked: false,
        work: 0,
        max_work: WORK_FACTOR * src.len() + (1 << 20),
    };
    // The reading furthest behind goes first, so readings reach each meeting point together.
    while let Some(index) = (0..scan.pending.len()).min_by_key(|&i| scan.pending[i].pos) {
        let reading = scan.pending.swap_remove(index);
        scan.run(reading)?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Paren,
    /// `(` right after `if`, `while`, `for`, `with`: its `)` does not end an expression.
    HeadParen,
    Bracket,
    Brace,
    /// The text of a template literal (between backticks, outside `${ }`).
    Template,
    /// `${ ... }` inside a template literal.
    Substitution,
}

#[derive(Clone, Debug)]
struct Frame {
    kind: Kind,
    /// Nesting depth of this frame itself.
    base: u32,
    /// Counted tokens since the current expression or statement of this frame began.
    chain: u32,
    /// `<` after a value (type arguments) not yet closed by a `>` (TypeScript only).
    angles: u32,
    /// The same, in all the frames below.
    angles_below: u32,
    /// Hash of the frames below, so that a reading's state hashes in constant time.
    below: u64,
}

/// What the previous token was, for `/`, line breaks and resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Prev {
    /// Start of text, an operator, `(`, `[`, `{`, `,`, `;`, or a keyword that precedes an
    /// expression: an expression may start next.
    Operator,
    /// An identifier, a literal, `]`: a complete expression may end here.
    Value,
    /// `)` of a parenthesised expression, call or parameter list: an operator follows.
    CloseParen,
    /// The `)` of `if (...)`, `while (...)` (`do ... while (...)` included), `for (...)`,
    /// `with (...)`: a statement follows.
    CloseHead,
    /// `}`: the end of a block (a statement may follow) or of an expression.
    CloseBrace,
    /// A word that is a keyword in some places and an identifier in others, where a `/`
    /// after it may be either operator.
    Ambiguous,
}

/// A pending reset of the innermost frame's count, decided by the next token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Reset {
    None,
    /// After `;`: reset unless the next token is `else` or `while`.
    Semicolon,
}

#[derive(Clone, Debug)]
struct Reading {
    pos: usize,
    frames: Vec<Frame>,
    prev: Prev,
    reset: Reset,
    /// A line terminator since the previous token.
    newline: bool,
    /// The previous word was `if`, `while`, `for`, `with` (or `for await`): a `(` opens a
    /// statement head.
    head: bool,
    /// The previous token was `.` or `?.`: a word is a property name.
    dot: bool,
    /// How to read the `/` at `pos` (set when a reading is forked there).
    forced_regex: Option<bool>,
}

impl Reading {
    fn new() -> Self {
        Reading {
            pos: 0,
            frames: vec![Frame {
                kind: Kind::Brace,
                base: 0,
                chain: 0,
                angles: 0,
                angles_below: 0,
                below: 0,
            }],
            prev: Prev::Operator,
            reset: Reset::None,
            newline: false,
            head: false,
            dot: false,
            forced_regex: None,
        }
    }

    fn top(&mut self) -> &mut Frame {
        self.frames
            .last_mut()
            .expect("the outermost frame is never popped")
    }

    fn depth(&self) -> u32 {
        let top = self.frames.last().expect("outermost frame");
        top.base + top.chain + top.angles
    }

    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        let top = self.frames.last().expect("outermost frame");
        (
            self.pos,
            (top.kind, top.base, top.chain, top.angles, top.below),
            (self.prev, self.reset, self.newline, self.head, self.dot),
        )
            .hash(&mut h);
        h.finish()
    }
}

/// How a run of a reading stopped.
enum Step {
    /// End of text, a lexical error (the parser stops there too in that reading), or a state
    /// another reading already went through.
    Done,
    /// Paused at a meeting point to let readings behind it catch up.
    Pause,
}

struct Scan<'s> {
    src: &'s [u8],
    text: &'s str,
    limit: u32,
    typescript: bool,
    pending: Vec<Reading>,
    seen: HashSet<u64>,
    forked: bool,
    /// Bytes scanned by finished readings.
    work: usize,
    /// Most bytes all readings together may scan.
    max_work: usize,
}

/// Words after which an expression (so a regular expression) starts.
const OPERATOR_WORDS: &[&str] = &[
    "return",
    "typeof",
    "instanceof",
    "in",
    "new",
    "delete",
    "void",
    "throw",
    "case",
    "do",
    "else",
    "extends",
    "keyof",
    "infer",
    "unique",
    "readonly",
    "asserts",
    "is",
    "satisfies",
    "as",
    "export",
    "default",
    "import",
    "debugger",
    "if",
    "while",
    "for",
    "with",
    "switch",
    "try",
    "catch",
    "finally",
    "var",
    "const",
    "function",
    "class",
    "implements",
];

/// Words that are keywords in some places and plain identifiers in others: a `/` after them
/// may divide or start a regular expression.
const AMBIGUOUS_WORDS: &[&str] = &["yield", "await", "of"];

/// Words that make the parser recurse into what follows (prefix operators and statements
/// that nest without braces).
const NESTING_WORDS: &[&str] = &[
    "typeof", "void", "delete", "await", "yield", "new", "if", "else", "while", "for", "do",
    "with", "keyof", "infer", "unique", "readonly", "asserts",
];

/// Words that continue the current statement after a complete expression, so they must not
/// reset the count.
const CONTINUING_WORDS: &[&str] = &[
    "in",
    "instanceof",
    "of",
    "as",
    "satisfies",
    "extends",
    "implements",
    "is",
    "else",
    "while",
    "catch",
    "finally",
];

/// Statement heads: a `(` right after one of these opens a [`Kind::HeadParen`].
const HEAD_WORDS: &[&str] = &["if", "while", "for", "with"];

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'\\'
}

fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

impl<'s> Scan<'s> {
    fn char_at(&self, pos: usize) -> char {
        self.text[pos..].chars().next().unwrap_or(' ')
    }

    fn too_deep(&self, offset: usize) -> TooDeep {
        TooDeep {
            offset,
            message: format!(
                "the source nests too deeply: more than {} levels of brackets, operators or statements (the limit is {})",
                self.limit, self.limit
            ),
        }
    }

    fn too_ambiguous(&self, offset: usize) -> TooDeep {
        TooDeep {
            offset,
            message: format!(
                "the source cannot be checked for nesting: its `/` can be read as division or as a regular expression in too many ways (more than {MAX_PENDING} readings or {WORK_FACTOR} times its length)"
            ),
        }
    }

    /// Parks a copy of `r` that reads the `/` at `r.pos` as division; `r` goes on reading it
    /// as a regular expression.
    fn fork(&mut self, r: &Reading, progress: usize) -> Result<(), TooDeep> {
        if self.pending.len() >= MAX_PENDING || self.work + progress > self.max_work {
            return Err(self.too_ambiguous(r.pos));
        }
        self.forked = true;
        let mut other = r.clone();
        other.forced_regex = Some(false);
        self.pending.push(other);
        Ok(())
    }

    /// At a point where readings may meet: whether `r` goes on, pauses to let readings behind
    /// it catch up, or ends because another reading was already there in the same state.
    fn meet(&mut self, r: &Reading, progress: usize) -> Result<Option<Step>, TooDeep> {
        if !self.forked {
            return Ok(None);
        }
        if self.work + progress > self.max_work {
            return Err(self.too_ambiguous(r.pos));
        }
        if !self.seen.insert(r.fingerprint()) {
            return Ok(Some(Step::Done));
        }
        if self.pending.iter().any(|other| other.pos < r.pos) {
            return Ok(Some(Step::Pause));
        }
        Ok(None)
    }

    fn check_depth(&self, r: &Reading, at: usize) -> Result<(), TooDeep> {
        if r.depth() > self.limit {
            return Err(self.too_deep(at));
        }
        Ok(())
    }

    /// Adds a counted token to the innermost frame.
    fn count(&self, r: &mut Reading, at: usize) -> Result<(), TooDeep> {
        r.top().chain += 1;
        self.check_depth(r, at)
    }

    fn push(&self, r: &mut Reading, kind: Kind, at: usize) -> Result<(), TooDeep> {
        let base = r.depth() + 1;
        if base > self.limit {
            return Err(self.too_deep(at));
        }
        let top = r.frames.last().expect("outermost frame");
        let mut h = DefaultHasher::new();
        (top.below, top.kind, top.base, top.chain, top.angles).hash(&mut h);
        let below = h.finish();
        let angles_below = top.angles_below + top.angles;
        r.frames.push(Frame {
            kind,
            base,
            chain: 0,
            angles: 0,
            angles_below,
            below,
        });
        Ok(())
    }

    /// Applies what the coming token decides: the pending reset after `;`, and the reset
    /// before a word (or literal) that must start a new statement.
    fn before_token(&self, r: &mut Reading, word: Option<&str>) {
        let mut reset = r.reset == Reset::Semicolon && !matches!(word, Some("else" | "while"));
        if let Some(w) = word {
            let ends = match r.prev {
                Prev::Value | Prev::CloseParen => r.newline,
                Prev::CloseBrace => true,
                _ => false,
            };
            // A word with an escape (`\u0069f`) may still be read as a keyword: no reset.
            reset |= ends && !CONTINUING_WORDS.contains(&w) && !w.contains('\\');
            // `case` and `default` only start clauses directly in a `switch` body.
            reset |= matches!(w, "case" | "default") && !r.dot;
        }
        if reset {
            let top = r.top();
            top.chain = 0;
            top.angles = 0;
        }
        r.reset = Reset::None;
        r.newline = false;
        if !matches!(word, Some("await")) {
            r.head = false;
        }
        r.dot = false;
    }

    /// Runs `r` to its end, or to a meeting point where another reading is behind it.
    fn run(&mut self, mut r: Reading) -> Result<(), TooDeep> {
        let start = r.pos;
        let result = self.run_inner(&mut r, start);
        self.work += r.pos - start;
        if let Ok(Step::Pause) = result {
            self.pending.push(r);
        }
        result.map(|_| ())
    }

    fn run_inner(&mut self, r: &mut Reading, start: usize) -> Result<Step, TooDeep> {
        let src = self.src;
        let n = src.len();
        while r.pos < n {
            if r.frames.last().is_some_and(|f| f.kind == Kind::Template) {
                if !self.template_text(r)? {
                    return Ok(Step::Done);
                }
                continue;
            }
            let at = r.pos;
            let b = src[at];
            match b {
                b' ' | b'\t' | 0x0b | 0x0c => r.pos += 1,
                b'\n' | b'\r' => {
                    r.pos += 1;
                    r.newline = true;
                    if let Some(step) = self.meet(r, r.pos - start)? {
                        return Ok(step);
                    }
                }
                b'/' if r.forced_regex.is_none() && src.get(at + 1) == Some(&b'/') => {
                    r.pos = self.line_end(at + 2);
                }
                b'/' if r.forced_regex.is_none() && src.get(at + 1) == Some(&b'*') => {
                    let Some(end) = find(src, at + 2, b"*/") else {
                        return Ok(Step::Done);
                    };
                    if self.text[at..end].contains(is_line_terminator) {
                        r.newline = true;
                    }
                    r.pos = end + 2;
                }
                b'/' => {
                    let regex = match (r.forced_regex.take(), r.prev) {
                        (Some(forced), _) => forced,
                        (None, Prev::Operator | Prev::CloseHead) => true,
                        (None, Prev::Value | Prev::CloseParen) => false,
                        (None, _) => {
                            self.fork(r, r.pos - start)?;
                            true
                        }
                    };
                    self.before_token(r, None);
                    if regex {
                        let Some(end) = self.skip_regex(at) else {
                            return Ok(Step::Done);
                        };
                        r.pos = end;
                        r.prev = Prev::Value;
                    } else {
                        if src.get(at + 1) == Some(&b'=') {
                            self.count(r, at)?;
                            r.pos += 2;
                        } else {
                            r.top().angles = 0; // no division in types
                            r.pos += 1;
                        }
                        r.prev = Prev::Operator;
                    }
                }
                b'\'' | b'"' => {
                    self.before_token(r, Some(""));
                    let Some(end) = self.skip_string(at, b) else {
                        return Ok(Step::Done);
                    };
                    r.pos = end;
                    r.prev = Prev::Value;
                }
                b'`' => {
                    self.before_token(r, None);
                    self.push(r, Kind::Template, at)?;
                    r.pos += 1;
                }
                b'(' | b'[' | b'{' => {
                    let head = r.head;
                    self.before_token(r, None);
                    let kind = match b {
                        b'(' if head => Kind::HeadParen,
                        b'(' => Kind::Paren,
                        b'[' => Kind::Bracket,
                        _ => Kind::Brace,
                    };
                    self.push(r, kind, at)?;
                    r.pos += 1;
                    r.prev = Prev::Operator;
                }
                b')' | b']' | b'}' => {
                    self.before_token(r, None);
                    if r.frames.len() <= 1 {
                        return Ok(Step::Done); // nothing to close: a syntax error
                    }
                    let kind = r.frames.pop().map(|f| f.kind);
                    r.pos += 1;
                    r.prev = match kind {
                        Some(Kind::HeadParen) => Prev::CloseHead,
                        Some(Kind::Paren) => Prev::CloseParen,
                        Some(Kind::Brace) => Prev::CloseBrace,
                        Some(Kind::Substitution) => continue, // back in the template's text
                        _ => Prev::Value,
                    };
                }
                b';' | b',' => {
                    self.before_token(r, None);
                    r.pos += 1;
                    if b == b',' {
                        r.top().chain = 0;
                    } else {
                        r.reset = Reset::Semicolon;
                    }
                    r.prev = Prev::Operator;
                    if let Some(step) = self.meet(r, r.pos - start)? {
                        return Ok(step);
                    }
                }
                _ if is_word_byte(b) || b >= 0x80 => {
                    let c = self.char_at(at);
                    if b >= 0x80 && !c.is_alphanumeric() {
                        r.pos += c.len_utf8();
                        if is_line_terminator(c) {
                            r.newline = true;
                            if let Some(step) = self.meet(r, r.pos - start)? {
                                return Ok(step);
                            }
                        } else if !(c.is_whitespace() || c == '\u{feff}') {
                            // Not part of any token of ours: treat it as an operator.
                            self.before_token(r, None);
                            r.prev = Prev::Operator;
                        }
                        continue;
                    }
                    if b.is_ascii_digit() {
                        self.before_token(r, Some(""));
                        r.pos = self.number_end(at);
                        r.prev = Prev::Value;
                        continue;
                    }
                    let end = self.word_end(at);
                    let word = &self.text[at..end];
                    let property = r.dot;
                    self.before_token(r, Some(word));
                    r.pos = end;
                    if property {
                        r.prev = Prev::Value;
                        continue;
                    }
                    let escaped = word.contains('\\');
                    if escaped || NESTING_WORDS.contains(&word) {
                        self.count(r, at)?;
                    }
                    r.head = HEAD_WORDS.contains(&word) || (word == "await" && r.head);
                    r.prev = if escaped || AMBIGUOUS_WORDS.contains(&word) {
                        Prev::Ambiguous
                    } else if OPERATOR_WORDS.contains(&word) {
                        Prev::Operator
                    } else {
                        Prev::Value
                    };
                }
                b'#' => {
                    // A private name: `#x` is one word.
                    self.before_token(r, Some(""));
                    r.pos = self.word_end(at + 1).max(at + 1);
                    r.prev = Prev::Value;
                }
                _ => {
                    self.before_token(r, None);
                    self.operator(r, at)?;
                }
            }
        }
        Ok(Step::Done)
    }

    /// A punctuator other than brackets, `;`, `,`, `/`, `#` and quotes.
    fn operator(&self, r: &mut Reading, at: usize) -> Result<(), TooDeep> {
        let rest = &self.src[at..];
        let prev = r.prev;
        let after_value = matches!(prev, Prev::Value | Prev::CloseParen);
        const OPS: &[&[u8]] = &[
            b">>>=", b"...", b"===", b"!==", b"**=", b"<<=", b">>=", b">>>", b"&&=", b"||=",
            b"??=", b"=>", b"==", b"!=", b"<=", b">=", b"&&", b"||", b"??", b"?.", b"++", b"--",
            b"**", b"<<", b">>", b"+=", b"-=", b"*=", b"%=", b"&=", b"|=", b"^=",
        ];
        let mut op: &[u8] = OPS
            .iter()
            .copied()
            .find(|op| rest.starts_with(op))
            .unwrap_or(&rest[..1]);
        // `a?.5:1` is `?` then a number.
        if op == b"?." && rest.get(2).is_some_and(u8::is_ascii_digit) {
            op = b"?";
        }
        r.pos = at + op.len();
        r.prev = Prev::Operator;
        match op {
            // Generics and type assertions: `<` after a value opens type arguments that a `>`
            // closes; in prefix position it is a type assertion `<T>x`, which nests.
            // In JavaScript, `<` after a value only compares.
            b"<" if (after_value || prev == Prev::Ambiguous) && !self.typescript => {}
            b"<" if after_value || prev == Prev::Ambiguous => {
                let top = r.top();
                top.angles += 1;
                if top.angles_below + top.angles > MAX_OPEN_ANGLES {
                    return Err(TooDeep {
                        offset: at,
                        message: format!(
                            "the source nests too deeply: more than {MAX_OPEN_ANGLES} `<` open at once (TypeScript reads each as possible type arguments; the limit is {MAX_OPEN_ANGLES})"
                        ),
                    });
                }
                self.check_depth(r, at)?;
            }
            b">" | b">>" | b">>>" | b">=" | b">>=" | b">>>=" => {
                let closes = op.iter().filter(|&&c| c == b'>').count() as u32;
                let top = r.top();
                top.angles = top.angles.saturating_sub(closes);
                if op.ends_with(b"=") {
                    self.count(r, at)?;
                }
            }
            // Postfix `++`/`--` and TypeScript's non-null `x!` end an expression.
            b"++" | b"--" | b"!" if after_value => r.prev = Prev::Value,
            b"." | b"?." => r.dot = true,
            b"..." => {}
            // Operators that cannot appear in types: the `<` before them were comparisons.
            b"+" | b"-" if after_value => r.top().angles = 0,
            b"&&" | b"||" | b"??" | b"*" | b"%" | b"<<" | b"==" | b"===" | b"!=" | b"!=="
            | b"^" | b"<=" => r.top().angles = 0,
            b"=" | b"=>" | b"**" | b"?" | b":" | b"<" | b"!" | b"~" | b"++" | b"--" | b"+"
            | b"-" | b"@" => self.count(r, at)?,
            _ if op.ends_with(b"=") && !matches!(op, b"==" | b"===" | b"!=" | b"!==" | b"<=") => {
                self.count(r, at)?
            }
            _ => {}
        }
        Ok(())
    }

    fn word_end(&self, at: usize) -> usize {
        let mut i = at;
        while i < self.src.len() {
            let b = self.src[i];
            if is_word_byte(b) {
                i += 1;
            } else if b >= 0x80 && self.char_at(i).is_alphanumeric() {
                i += self.char_at(i).len_utf8();
            } else {
                break;
            }
        }
        i
    }

    fn number_end(&self, at: usize) -> usize {
        let src = self.src;
        let hex = src[at..].starts_with(b"0x") || src[at..].starts_with(b"0X");
        let mut i = at;
        while i < src.len() {
            let b = src[i];
            let exponent_sign =
                (b == b'+' || b == b'-') && !hex && matches!(src[i - 1], b'e' | b'E');
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || exponent_sign {
                i += 1;
            } else {
                break;
            }
        }
        i
    }

    fn line_end(&self, from: usize) -> usize {
        self.text[from..]
            .find(is_line_terminator)
            .map_or(self.src.len(), |p| from + p)
    }

    /// The end of the string literal opened by `quote` at `at`, or `None` when it is not
    /// terminated on its line (a lexical error).
    fn skip_string(&self, at: usize, quote: u8) -> Option<usize> {
        let src = self.src;
        let mut i = at + 1;
        while i < src.len() {
            match src[i] {
                b'\\' => i += 2,
                b'\n' | b'\r' => return None,
                b if b == quote => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    }

    /// The end of the regular expression literal at `at` (flags included), or `None` when it
    /// is not terminated on its line.
    fn skip_regex(&self, at: usize) -> Option<usize> {
        let src = self.src;
        let mut i = at + 1;
        let mut class = false;
        while i < src.len() {
            match src[i] {
                b'\\' => i += 2,
                b'\n' | b'\r' => return None,
                0xe2 if is_line_terminator(self.char_at(i)) => return None,
                b'[' => {
                    class = true;
                    i += 1;
                }
                b']' => {
                    class = false;
                    i += 1;
                }
                b'/' if !class => return Some(self.word_end(i + 1)),
                _ => i += 1,
            }
        }
        None
    }

    /// Reads template text from `r.pos` up to `${` (opens a substitution) or the closing
    /// backtick (closes the template). `false`: not terminated (a lexical error).
    fn template_text(&self, r: &mut Reading) -> Result<bool, TooDeep> {
        let src = self.src;
        let mut i = r.pos;
        while i < src.len() {
            match src[i] {
                b'\\' => i += 2,
                b'`' => {
                    r.frames.pop();
                    r.pos = i + 1;
                    r.prev = Prev::Value;
                    return Ok(true);
                }
                b'$' if src.get(i + 1) == Some(&b'{') => {
                    r.pos = i + 2;
                    self.push(r, Kind::Substitution, i)?;
                    r.prev = Prev::Operator;
                    return Ok(true);
                }
                _ => i += 1,
            }
        }
        Ok(false)
    }
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(src: &str, limit: u32) -> bool {
        check_with_limit(src, Dialect::TypeScript, limit).is_ok()
    }

    /// The smallest limit that accepts `src`.
    fn depth(src: &str) -> u32 {
        (0..10_000).find(|&l| depth_ok(src, l)).unwrap()
    }

    #[test]
    fn brackets_nest() {
        assert_eq!(depth("1"), 0);
        assert_eq!(depth("(1)"), 1);
        assert_eq!(depth("((1))"), 2);
        assert_eq!(depth("[[[]]]"), 3);
        assert_eq!(depth("{{{{}}}}"), 4);
        assert_eq!(depth("(1)(2)(3)"), 1);
    }

    #[test]
    fn prefix_and_right_associative_chains_nest() {
        assert_eq!(depth("!!!!x"), 4);
        assert_eq!(depth("- - -x"), 3);
        assert_eq!(depth("a = b = c = d"), 3);
        assert_eq!(depth("a ** b ** c"), 2);
        assert_eq!(depth("x => y => z"), 2);
        assert_eq!(depth("typeof typeof void x"), 3);
        assert!(depth("a ? b : c ? d : e") >= 2);
        assert_eq!(depth("if (a) if (b) if (c) x"), 3 + 1);
    }

    #[test]
    fn left_chains_and_sequences_do_not() {
        assert_eq!(depth("a + b + c + d - e * f"), 0);
        assert_eq!(depth("a.b.c.d"), 0);
        assert_eq!(depth("a = 1, b = 2, c = 3"), 1);
        assert_eq!(depth("a = 1; b = 2; c = 3"), 1);
        assert_eq!(depth("a = 1\nb = 2\nc = 3\n"), 1);
        assert_eq!(depth("if (a) {}\nif (b) {}\nif (c) {}"), 2);
        assert_eq!(depth("if(a){}if(b){}if(c){}"), 2);
        assert_eq!(depth("x = a\n+ b\n+ c"), 1);
    }

    #[test]
    fn statements_that_continue_keep_counting() {
        let chain: String = (0..50).map(|_| "if(a)b;else ").collect();
        assert!(depth(&chain) >= 50);
        let chain: String = (0..50).map(|_| "if(a){}else ").collect();
        assert!(depth(&chain) >= 50);
        let nested: String = (0..50).map(|_| "if(a)\n").collect();
        assert!(depth(&nested) >= 50);
    }

    #[test]
    fn strings_comments_and_regexes_hide_nothing_they_do_not_hold() {
        assert_eq!(depth("'((((' + \"[[[[\""), 0);
        assert_eq!(depth("// ((((\nx"), 0);
        assert_eq!(depth("/* (((( */ x"), 0);
        assert_eq!(depth("x = /(((/"), 1);
        assert_eq!(depth("`((((`"), 1);
        assert_eq!(depth("`${`${a}`}`"), 4);
    }

    #[test]
    fn an_ambiguous_slash_is_read_both_ways() {
        // Read as a regular expression, `/'/` hides nothing; read as division, `'` opens a
        // string that would hide the parentheses. Either way they are counted.
        let hidden = format!("if (x) /'/; {}1{} '", "(".repeat(40), ")".repeat(40));
        assert!(depth(&hidden) >= 40);
        let hidden = format!("if (x) {{}} /`/; {}1{} `", "(".repeat(40), ")".repeat(40));
        assert!(depth(&hidden) >= 40);
        // `(a + b) / 2` is division: the regular-expression reading ends at the line break.
        assert_eq!(depth("x = (a + b) / 2\ny = (c) / 3"), 2);
    }

    #[test]
    fn line_separators_end_line_comments() {
        let src = format!("// x\u{2028}{}1{}", "(".repeat(30), ")".repeat(30));
        assert!(depth(&src) >= 30);
    }

    #[test]
    fn non_ascii_whitespace_separates_words() {
        let src = "if\u{a0}(a) ".repeat(30) + "x";
        assert!(depth(&src) >= 30);
    }

    #[test]
    fn refusals_name_the_limit_and_position() {
        let err = check_with_limit("((((((", Dialect::JavaScript, 3).unwrap_err();
        assert_eq!(err.offset, 3);
        assert!(err.message.contains("limit is 3"), "{}", err.message);
        assert!(check(&"(".repeat(1_000_000), Dialect::JavaScript).is_err());
        assert!(check(&"!".repeat(1_000_000), Dialect::TypeScript).is_err());
    }

    #[test]
    fn readings_are_capped() {
        // On every line, reading the `/` as division closes a bracket that the other reading
        // keeps open: the readings never meet again and multiply.
        let src = "(".repeat(300) + &"{} / b ) / 2\n".repeat(300);
        let err = check(&src, Dialect::JavaScript).unwrap_err();
        assert!(err.message.contains("cannot be checked"), "{}", err.message);
    }

    #[test]
    fn ordinary_code_is_cheap_to_check() {
        let line =
            "x = Math.floor((a + b) / 2) + (c) / 3; y = {a: 1}; if (x) { y = /re/g.test(s) }\n";
        assert!(check(&line.repeat(20_000), Dialect::TypeScript).is_ok());
        assert!(check(&line.replace('\n', "").repeat(5_000), Dialect::TypeScript).is_ok());
    }

    #[test]
    fn typescript_generics_and_assertions_nest() {
        assert!(depth(&("let x: ".to_string() + &"A<".repeat(15) + "B" + &">".repeat(15))) >= 15);
        assert!(
            depth(&("let x: ".to_string() + &"A<x, ".repeat(15) + "B" + &">".repeat(15))) >= 15
        );
        assert!(depth(&("<T>".repeat(30) + "x")) >= 30);
        assert_eq!(depth("let m: Map<string, Array<number>> = new Map()"), 3);
    }

    #[test]
    fn open_angles_are_capped_in_typescript_only() {
        let chain = "a".to_string() + &"<a".repeat(MAX_OPEN_ANGLES as usize + 1);
        let err = check(&chain, Dialect::TypeScript).unwrap_err();
        assert!(err.message.contains("the limit is 16"), "{}", err.message);
        assert!(check(&chain, Dialect::JavaScript).is_ok());
        // Across brackets too: each `(` starts a new try.
        let nested = "a<(".repeat(MAX_OPEN_ANGLES as usize + 1);
        assert!(check(&nested, Dialect::TypeScript).is_err());
        // Comparisons joined by operators that types do not have are not type arguments.
        let cond = (0..100)
            .map(|i| format!("x < {i}"))
            .collect::<Vec<_>>()
            .join(" || ");
        assert!(check(&cond, Dialect::TypeScript).is_ok());
        let closed = "let m: ".to_string() + &"A<".repeat(10) + "B" + &">".repeat(10) + ";";
        assert!(check(&closed.repeat(100), Dialect::TypeScript).is_ok());
    }

    #[test]
    fn property_names_are_not_keywords() {
        assert_eq!(depth("a.delete(x).delete(y).new.if.for"), 1);
    }

    #[test]
    fn for_await_heads_do_not_end_statements() {
        let src = "for await (x of y)\n".repeat(40) + "z";
        assert!(depth(&src) >= 40);
    }
}
