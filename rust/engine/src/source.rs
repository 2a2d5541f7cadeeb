//! Preparing user source code for execution as a V8 script (in REPL mode, `cpp/repl_script.h`).
//!
//! [`prepare`] runs two independent steps, both driven by the oxc parser:
//!
//! 1. **TypeScript type erasure** ([`Language::TypeScript`] only), in the style of
//!    `ts-blank-space`: every TypeScript-only span is overwritten with blanks. Line terminators
//!    are kept and every other erased character becomes as many spaces as it has UTF-16 code
//!    units, so every remaining token keeps its exact line and (UTF-16) column and V8's
//!    positions point into the original source without a source map. Where erasing would let
//!    automatic semicolon insertion join two statements, the first erased character becomes a
//!    `;`.
//!
//!    Constructs that need code generation are handled in one of two ways. `enum` and
//!    `const enum` (compiled as a regular enum, as under `isolatedModules`), namespaces with
//!    values (at the top level, or nested in one another) and constructor parameter
//!    properties make the whole program go through oxc's TypeScript transform instead of
//!    erasure: [`crate::transform::generate`] prints the result and moves its tokens back to
//!    their original lines (Babel's `retainLines`), so V8's line numbers still point into the
//!    TypeScript; columns match only where the printed code before a token is not longer than
//!    the original (see that module). `import x = ...`, `export =` and namespaces inside
//!    functions or blocks are rejected with a [`SourceError`].
//!
//!    Decorators (on classes, methods, fields, accessors, parameters) are rejected in both
//!    languages with a [`SourceError`] that names what they decorate: V8 10.2 has none, and
//!    would only say "Invalid or unexpected token".
//! 2. **Checks both languages share**: `import`/`export` declarations (a script cannot hold
//!    them) and decorators are refused with a [`SourceError`] that says why.
//!
//! The text is parsed once per goal it is tried with, and the tree goes on from step to step:
//! JavaScript as a module, then as a script only if that fails (`auto` tries these first);
//! TypeScript likewise, its tree erased or handed to code generation, and its import/export
//! declarations refused on that tree. Code generation parses the code it prints, once, and the
//! code it moves back onto the original lines, to check that it is the same program. Every
//! parse goes through `parse.rs`, which a test counts.
//!
//! Top-level `await` needs no rewrite: the engine runs every script in V8's REPL mode
//! (`cpp/repl_script.h`), which awaits at the top level and keeps the script's completion value
//! and its declarations as a classic script would.
//!
//! Everything else is passed through untouched: JavaScript is returned
//! byte for byte, and JavaScript that oxc cannot parse is returned unchanged so that V8 reports
//! its own `SyntaxError`. TypeScript that needs no code generation is type-erased exactly as
//! described above, whether or not other programs need the transform.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashSet};

use oxc_allocator::{Allocator, Vec as ArenaVec};
use oxc_ast::ast::*;
use oxc_ast_visit::{walk, Visit};
use oxc_parser::ParserReturn;
use oxc_span::{GetSpan, SourceType, Span};

use crate::nesting;
use crate::parse::{is_valid, parse};
pub use crate::positions::SourceError;
use crate::positions::{has_line_terminator, is_line_terminator};
use crate::transform;

/// The language of a source text handed to [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    JavaScript,
    TypeScript,
    /// JavaScript when the text parses as JavaScript (script or module goal), else
    /// TypeScript when it parses as TypeScript, else JavaScript (V8 reports the error).
    Auto,
}

/// JavaScript ready to be run by V8 as a (REPL-mode) script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The JavaScript to run.
    pub code: String,
}

/// Turns user source into the JavaScript V8 runs.
///
/// * TypeScript is type-erased in place, or compiled keeping lines when it contains an enum,
///   a namespace with values or a parameter property (see the module documentation);
///   TypeScript syntax errors and constructs that cannot be run are returned as
///   [`SourceError`]s.
/// * Decorators are returned as [`SourceError`]s, in JavaScript too.
/// * JavaScript is returned unchanged, top-level `await` included. JavaScript that does not
///   parse is returned unchanged too, so that V8 reports the syntax error itself.
/// * `import`/`export` statements are rejected: scripts cannot contain them.
pub fn prepare(src: &str, lang: Language) -> Result<Prepared, SourceError> {
    // oxc's parser recurses once per level of nesting, without a depth guard: bound the
    // nesting first, then parse on a stack large enough for that bound. `auto` is checked as
    // JavaScript here, and as TypeScript before it is parsed as such.
    let dialect = match lang {
        Language::TypeScript => nesting::Dialect::TypeScript,
        Language::JavaScript | Language::Auto => nesting::Dialect::JavaScript,
    };
    if let Err(e) = nesting::check(src, dialect) {
        return Err(SourceError::at(src, e.offset as u32, e.message));
    }
    stacker::maybe_grow(PARSE_STACK_BYTES, PARSE_STACK_BYTES, || {
        prepare_checked(src, lang)
    })
}

/// Stack the parser and the passes over the tree may need for a text that passed
/// [`nesting::check`]: measured at the deepest nesting accepted, for every kind of construct,
/// with a wide margin (see the `deep_sources_fit_the_parse_stack` test). Taken from the
/// caller's stack when it has that much left, else from a stack of this size allocated for
/// the call (address space, committed only as it is used).
pub const PARSE_STACK_BYTES: usize = 256 << 20;

/// Deepest expression tree the passes over it walk (left-associative chains such as
/// `a + b + c` or `a.b.c` are built by loops in the parser, so [`nesting::check`] does not
/// bound them).
pub const MAX_TREE_DEPTH: u32 = 100_000;

const TREE_TOO_DEEP: &str = "the source nests too deeply: more than 100000 levels of nested expressions (the limit is 100000)";

/// Counts the depth of the expressions a visitor is in.
#[derive(Default)]
pub(crate) struct DepthGuard {
    depth: u32,
    /// Where the walk first went deeper than [`MAX_TREE_DEPTH`].
    pub(crate) exceeded_at: Option<u32>,
}

impl DepthGuard {
    /// Enters a node at byte `offset`; `false` when it is too deep to walk into.
    pub(crate) fn enter(&mut self, offset: u32) -> bool {
        self.depth += 1;
        if self.depth > MAX_TREE_DEPTH {
            self.exceeded_at.get_or_insert(offset);
            return false;
        }
        self.exceeded_at.is_none()
    }

    pub(crate) fn leave(&mut self) {
        self.depth -= 1;
    }
}

fn prepare_checked(src: &str, lang: Language) -> Result<Prepared, SourceError> {
    let code = match lang {
        Language::JavaScript => {
            let allocator = Allocator::default();
            return finish_javascript(src, &JavaScript::new(&allocator, src));
        }
        Language::TypeScript => strip_types(src)?,
        Language::Auto => {
            {
                let allocator = Allocator::default();
                let js = JavaScript::new(&allocator, src);
                if js.is_valid() {
                    return finish_javascript(src, &js);
                }
            } // its trees go before TypeScript's are made
              // Beyond TypeScript's bounds it is not TypeScript here: V8 reports the error.
            let bounded = nesting::check(src, nesting::Dialect::TypeScript).is_ok();
            let allocator = Allocator::default();
            match bounded.then(|| parse_typescript(&allocator, src)) {
                Some(Ok(typescript)) => strip_parsed_types(&allocator, src, typescript)?,
                _ => src.to_string(),
            }
        }
    };
    Ok(Prepared { code })
}

/// The parses of a text as JavaScript, each goal at most once and kept for the checks that
/// follow: the module goal (`import`/`export`, top-level `await`), and the script goal
/// (sloppy-mode syntax) where it is needed.
struct JavaScript<'a> {
    allocator: &'a Allocator,
    src: &'a str,
    module: OnceCell<ParserReturn<'a>>,
    script: OnceCell<ParserReturn<'a>>,
}

impl<'a> JavaScript<'a> {
    fn new(allocator: &'a Allocator, src: &'a str) -> Self {
        JavaScript {
            allocator,
            src,
            module: OnceCell::new(),
            script: OnceCell::new(),
        }
    }

    fn module(&self) -> &ParserReturn<'a> {
        self.module
            .get_or_init(|| parse(self.allocator, self.src, SourceType::mjs()))
    }

    fn script(&self) -> &ParserReturn<'a> {
        self.script
            .get_or_init(|| parse(self.allocator, self.src, SourceType::cjs()))
    }

    /// Valid JavaScript as a module (which allows top-level await) or as a script (which
    /// allows sloppy-mode syntax).
    fn is_valid(&self) -> bool {
        is_valid(self.module()) || is_valid(self.script())
    }
}

// ---------------------------------------------------------------------------------------------
// Small lexical helpers
// ---------------------------------------------------------------------------------------------

fn is_js_whitespace(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || c == '_'
        || c == '$'
        || c == '\\'
        || (!c.is_ascii() && !is_js_whitespace(c))
}

/// The significant tokens of a *gap*: source text between two AST nodes, which only contains
/// punctuation, keywords/modifiers, whitespace and comments. Returns `(start, end)` byte spans
/// of words and of single punctuation characters; whitespace and comments are skipped.
fn gap_tokens(src: &str, start: u32, end: u32) -> Vec<(u32, u32)> {
    let end = (end as usize).min(src.len());
    let mut i = start as usize;
    let mut tokens = Vec::new();
    while i < end {
        let rest = &src[i..end];
        let c = rest.chars().next().unwrap_or(' ');
        if is_js_whitespace(c) {
            i += c.len_utf8();
        } else if rest.starts_with("//") {
            i += rest.find(is_line_terminator).unwrap_or(rest.len());
        } else if let Some(comment) = rest.strip_prefix("/*") {
            i += comment.find("*/").map_or(rest.len(), |p| p + 4);
        } else if is_identifier_char(c) {
            let len = rest
                .find(|ch: char| !is_identifier_char(ch))
                .unwrap_or(rest.len());
            tokens.push((i as u32, (i + len) as u32));
            i += len;
        } else {
            tokens.push((i as u32, (i + c.len_utf8()) as u32));
            i += c.len_utf8();
        }
    }
    tokens
}

/// The first parse error of `parsed`, positioned in `src`.
fn first_parse_error(src: &str, parsed: &oxc_parser::ParserReturn<'_>) -> SourceError {
    match parsed.diagnostics.errors().next() {
        Some(error) => {
            let offset = error.labels.first().map_or(0, |label| label.offset());
            SourceError::at(src, offset, error.message.to_string())
        }
        None => SourceError::at(src, 0, "the source could not be parsed"),
    }
}

// ---------------------------------------------------------------------------------------------
// TypeScript type erasure
// ---------------------------------------------------------------------------------------------

const NESTED_NAMESPACE_ERROR: &str = "TypeScript namespaces with values are only supported at the top level of the script or inside another namespace";
const CLASS_DECORATOR_ERROR: &str = "decorators are not supported: a decorator on a class (V8 10.2 runs no decorators, standard or legacy TypeScript ones); call the decorator function on the class instead";
const METHOD_DECORATOR_ERROR: &str = "decorators are not supported: a decorator on a method (V8 10.2 runs no decorators, standard or legacy TypeScript ones); call the decorator function on the method instead";
const FIELD_DECORATOR_ERROR: &str = "decorators are not supported: a decorator on a class field (V8 10.2 runs no decorators, standard or legacy TypeScript ones)";
const ACCESSOR_DECORATOR_ERROR: &str = "decorators are not supported: a decorator on an auto-accessor (V8 10.2 runs no decorators, standard or legacy TypeScript ones)";
const PARAMETER_DECORATOR_ERROR: &str = "decorators are not supported: a decorator on a parameter (TypeScript parameter decorators need code generation, and V8 10.2 runs no decorators)";
const IMPORT_EQUALS_ERROR: &str = "TypeScript `import x = require(...)` / `import x = N.y` declarations need code generation and are not supported";
const EXPORT_ASSIGNMENT_ERROR: &str =
    "TypeScript `export =` assignments need code generation and are not supported";
const TYPE_ASSERTION_ERROR: &str = "this `<T>expr` type assertion would change meaning once the type is erased; write `expr as T` instead";
const TRANSFORM_PANIC_ERROR: &str =
    "this TypeScript could not be compiled to JavaScript (oxc's transform failed on it)";
const IMPORT_EXPORT_ERROR: &str = "import/export statements are not supported in scripts";

/// Modifier keywords of class members that only exist in TypeScript.
const TS_MEMBER_MODIFIERS: [&str; 7] = [
    "public",
    "private",
    "protected",
    "readonly",
    "override",
    "declare",
    "abstract",
];

/// What to do with a statement or declaration.
enum Action {
    /// Plain JavaScript, possibly with nested TypeScript to erase.
    Keep,
    /// Entirely TypeScript: erase all of it.
    Erase,
    /// Cannot be run: reject with this message at this byte offset.
    Reject(u32, &'static str),
    /// Needs code generation (an enum or a namespace with values, starting at this byte
    /// offset): the whole program goes through [`transform::generate`].
    Generate(u32),
}

fn declaration_action(decl: &Declaration<'_>) -> Action {
    match decl {
        Declaration::VariableDeclaration(d) if d.declare => Action::Erase,
        Declaration::FunctionDeclaration(f) if f.declare || f.body.is_none() => Action::Erase,
        Declaration::ClassDeclaration(c) if c.declare => Action::Erase,
        Declaration::VariableDeclaration(_)
        | Declaration::FunctionDeclaration(_)
        | Declaration::ClassDeclaration(_) => Action::Keep,
        Declaration::TSTypeAliasDeclaration(_)
        | Declaration::TSInterfaceDeclaration(_)
        | Declaration::TSExternalModuleDeclaration(_)
        | Declaration::TSGlobalDeclaration(_) => Action::Erase,
        Declaration::TSEnumDeclaration(e) if e.declare => Action::Erase,
        Declaration::TSEnumDeclaration(e) => Action::Generate(e.span.start),
        Declaration::TSNamespaceDeclaration(n) if n.declare || namespace_is_type_only(n) => {
            Action::Erase
        }
        Declaration::TSNamespaceDeclaration(n) => Action::Generate(n.span.start),
        Declaration::TSImportEqualsDeclaration(i) if i.import_kind.is_type() => Action::Erase,
        Declaration::TSImportEqualsDeclaration(i) => {
            Action::Reject(i.span.start, IMPORT_EQUALS_ERROR)
        }
    }
}

/// A namespace that only declares types produces no JavaScript (TypeScript calls it
/// "non-instantiated") and can be erased.
fn namespace_is_type_only(namespace: &TSNamespaceDeclaration<'_>) -> bool {
    match &namespace.body {
        TSNamespaceDeclarationBody::TSNamespaceDeclaration(inner) => namespace_is_type_only(inner),
        TSNamespaceDeclarationBody::TSModuleBlock(block) => {
            block.body.iter().all(|stmt| match stmt {
                Statement::EmptyStatement(_) => true,
                Statement::ExportDeclaration(e) => {
                    matches!(declaration_action(&e.declaration), Action::Erase)
                }
                Statement::ExportNamedDeclaration(e) => {
                    e.export_kind.is_type() || e.specifiers.iter().all(|s| s.export_kind.is_type())
                }
                _ => stmt
                    .as_declaration()
                    .is_some_and(|d| matches!(declaration_action(d), Action::Erase)),
            })
        }
    }
}

fn import_specifier_is_type(specifier: &ImportDeclarationSpecifier<'_>) -> bool {
    matches!(specifier, ImportDeclarationSpecifier::ImportSpecifier(s) if s.import_kind.is_type())
}

fn statement_action(stmt: &Statement<'_>) -> Action {
    if let Some(decl) = stmt.as_declaration() {
        return declaration_action(decl);
    }
    match stmt {
        Statement::ImportDeclaration(i) => {
            let only_types = i.specifiers.as_ref().is_some_and(|specifiers| {
                !specifiers.is_empty() && specifiers.iter().all(import_specifier_is_type)
            });
            if i.import_kind.is_type() || only_types {
                Action::Erase
            } else {
                Action::Keep
            }
        }
        // Also erases `export {}`, which TypeScript files use to become modules (and so be
        // allowed top-level await); it has no effect at runtime.
        Statement::ExportNamedDeclaration(e) => {
            if e.export_kind.is_type() || e.specifiers.iter().all(|s| s.export_kind.is_type()) {
                Action::Erase
            } else {
                Action::Keep
            }
        }
        Statement::ExportFromDeclaration(e) => {
            let only_types =
                !e.specifiers.is_empty() && e.specifiers.iter().all(|s| s.export_kind.is_type());
            if e.export_kind.is_type() || only_types {
                Action::Erase
            } else {
                Action::Keep
            }
        }
        Statement::ExportAllDeclaration(e) if e.export_kind.is_type() => Action::Erase,
        Statement::ExportDeclaration(e) => declaration_action(&e.declaration),
        Statement::ExportDefaultDeclaration(e) => match &e.declaration {
            ExportDefaultDeclarationKind::TSInterfaceDeclaration(_) => Action::Erase,
            ExportDefaultDeclarationKind::FunctionDeclaration(f) if f.body.is_none() => {
                Action::Erase
            }
            _ => Action::Keep,
        },
        Statement::TSExportAssignment(e) => Action::Reject(e.span.start, EXPORT_ASSIGNMENT_ERROR),
        Statement::TSNamespaceExportDeclaration(_) => Action::Erase,
        _ => Action::Keep,
    }
}

/// A statement or class member that ends where automatic semicolon insertion may have ended it
/// in TypeScript. If its last character gets erased, the erased run that contains it starts
/// with a `;` so that the next line cannot continue it.
struct AsiCandidate {
    start: u32,
    end: u32,
    /// Only erased code precedes it in its statement list or class body, so it needs no `;`
    /// when it is erased entirely (which also keeps directive prologues intact).
    nothing_before: bool,
}

/// Collects the byte ranges to erase.
struct Blanker<'s> {
    src: &'s str,
    ranges: Vec<(u32, u32)>,
    asi_candidates: Vec<AsiCandidate>,
    /// Erased characters to print as something else than a space, by byte offset.
    replacements: BTreeMap<u32, char>,
    /// Positions where an expression starts a statement or an arrow function body: erasing a
    /// `<T>` there could turn the expression into a block or a declaration.
    statement_starts: HashSet<u32>,
    /// Whether the statement about to be visited is preceded, in its list, by erased code only.
    nothing_before: bool,
    /// The earliest construct that cannot be run: byte offset and message.
    error: Option<(u32, &'static str)>,
    /// The earliest construct that erasure cannot handle but code generation can (a `<T>x`
    /// assertion that would change meaning): byte offset and message.
    erasure_error: Option<(u32, &'static str)>,
    /// The earliest construct that needs code generation (byte offset).
    needs_generation: Option<u32>,
    /// Start offsets of the namespaces that code generation handles: those at the top level
    /// and, recursively, those declared in their bodies.
    transformable_namespaces: HashSet<u32>,
    guard: DepthGuard,
}

impl<'s> Blanker<'s> {
    fn new(src: &'s str) -> Self {
        Blanker {
            src,
            ranges: Vec::new(),
            asi_candidates: Vec::new(),
            replacements: BTreeMap::new(),
            statement_starts: HashSet::new(),
            nothing_before: false,
            error: None,
            erasure_error: None,
            needs_generation: None,
            transformable_namespaces: HashSet::new(),
            guard: DepthGuard::default(),
        }
    }

    /// Records a construct that needs code generation.
    fn generate(&mut self, offset: u32) {
        if self
            .needs_generation
            .is_none_or(|earliest| offset < earliest)
        {
            self.needs_generation = Some(offset);
        }
    }

    fn blank(&mut self, start: u32, end: u32) {
        if start < end {
            self.ranges.push((start, end));
        }
    }

    fn blank_span(&mut self, span: Span) {
        self.blank(span.start, span.end);
    }

    /// Records a construct that cannot be erased; the earliest one in the source is reported.
    fn reject(&mut self, offset: u32, message: &'static str) {
        if self.error.is_none_or(|(earliest, _)| offset < earliest) {
            self.error = Some((offset, message));
        }
    }

    fn text(&self, start: u32, end: u32) -> &'s str {
        &self.src[start as usize..end as usize]
    }

    /// Erases the punctuation characters `chars` (such as `?` or `!`) found in a gap.
    fn blank_punctuation(&mut self, start: u32, end: u32, chars: &[char]) {
        for (s, e) in gap_tokens(self.src, start, end) {
            if self
                .text(s, e)
                .chars()
                .next()
                .is_some_and(|c| chars.contains(&c))
            {
                self.blank(s, e);
            }
        }
    }

    /// The end of the `,` that directly follows `end` (before `limit`), if any.
    fn comma_after(&self, end: u32, limit: u32) -> Option<u32> {
        gap_tokens(self.src, end, limit)
            .first()
            .filter(|&&(s, e)| self.text(s, e) == ",")
            .map(|&(_, e)| e)
    }

    /// Erases `span` together with the comma that follows it (for list elements).
    fn blank_list_element(&mut self, span: Span, next: u32) {
        let end = self.comma_after(span.end, next).unwrap_or(span.end);
        self.blank(span.start, end);
    }

    /// Erases TypeScript modifiers (`public`, `readonly`, `abstract`, ...) before a class
    /// member's key.
    fn blank_member_modifiers(&mut self, member: Span, decorators: &[Decorator<'_>], key: Span) {
        let from = decorators
            .last()
            .map_or(member.start, |d| d.span.end)
            .max(member.start);
        for (s, e) in gap_tokens(self.src, from, key.start) {
            if TS_MEMBER_MODIFIERS.contains(&self.text(s, e)) {
                self.blank(s, e);
            }
        }
    }

    /// Erases the `type` specifiers of a value import/export, with their commas.
    fn blank_type_only_specifiers(&mut self, stmt: &Statement<'_>) {
        let mut spans: Vec<(Span, bool)> = Vec::new();
        match stmt {
            Statement::ImportDeclaration(i) => {
                for s in i.specifiers.iter().flatten() {
                    spans.push((s.span(), import_specifier_is_type(s)));
                }
            }
            Statement::ExportNamedDeclaration(e) => {
                spans.extend(
                    e.specifiers
                        .iter()
                        .map(|s| (s.span, s.export_kind.is_type())),
                );
            }
            Statement::ExportFromDeclaration(e) => {
                spans.extend(
                    e.specifiers
                        .iter()
                        .map(|s| (s.span, s.export_kind.is_type())),
                );
            }
            _ => return,
        }
        for (i, &(span, is_type)) in spans.iter().enumerate() {
            if is_type {
                let next = spans.get(i + 1).map_or(stmt.span().end, |(s, _)| s.start);
                self.blank_list_element(span, next);
            }
        }
    }

    /// Turns the collected ranges into the erased source text.
    fn render(mut self) -> String {
        self.ranges.sort_unstable();
        let mut runs: Vec<(u32, u32)> = Vec::with_capacity(self.ranges.len());
        for &(start, end) in &self.ranges {
            match runs.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => runs.push((start, end)),
            }
        }

        for candidate in &self.asi_candidates {
            let Some(last) = candidate.end.checked_sub(1) else {
                continue;
            };
            let index = runs.partition_point(|&(start, _)| start <= last);
            let Some(&(run_start, run_end)) = index.checked_sub(1).map(|i| &runs[i]) else {
                continue;
            };
            if last >= run_end {
                continue; // its last character is kept: nothing to protect
            }
            let at = run_start.max(candidate.start);
            if at == candidate.start && candidate.nothing_before {
                continue;
            }
            self.replacements.entry(at).or_insert(';');
        }

        let mut out = String::with_capacity(self.src.len());
        let mut run = runs.iter().peekable();
        for (offset, c) in self.src.char_indices() {
            let offset = offset as u32;
            while run.peek().is_some_and(|&&(_, end)| end <= offset) {
                run.next();
            }
            let erased = run.peek().is_some_and(|&&(start, _)| start <= offset);
            if !erased || is_line_terminator(c) {
                out.push(c);
                continue;
            }
            let mut width = c.len_utf16();
            if let Some(&replacement) = self.replacements.get(&offset) {
                out.push(replacement);
                width -= 1;
            }
            out.extend(std::iter::repeat_n(' ', width));
        }
        out
    }
}

impl<'a> Visit<'a> for Blanker<'_> {
    fn visit_statements(&mut self, stmts: &ArenaVec<'a, Statement<'a>>) {
        let mut code_before = false;
        for stmt in stmts {
            self.nothing_before = !code_before;
            self.visit_statement(stmt);
            code_before |= !matches!(statement_action(stmt), Action::Erase);
        }
    }

    fn visit_statement(&mut self, stmt: &Statement<'a>) {
        // Statements in single-statement positions (`if (a) x as T`) always count as preceded.
        let nothing_before = std::mem::take(&mut self.nothing_before);
        let span = stmt.span();
        self.asi_candidates.push(AsiCandidate {
            start: span.start,
            end: span.end,
            nothing_before,
        });
        match statement_action(stmt) {
            Action::Erase => self.blank_span(span),
            Action::Reject(offset, message) => self.reject(offset, message),
            Action::Generate(offset)
                if is_namespace(stmt) && !self.transformable_namespaces.contains(&offset) =>
            {
                self.reject(offset, NESTED_NAMESPACE_ERROR)
            }
            Action::Generate(offset) => {
                self.generate(offset);
                walk::walk_statement(self, stmt);
            }
            Action::Keep => {
                self.blank_type_only_specifiers(stmt);
                walk::walk_statement(self, stmt);
            }
        }
    }

    fn visit_expression_statement(&mut self, it: &ExpressionStatement<'a>) {
        self.statement_starts.insert(it.expression.span().start);
        walk::walk_expression_statement(self, it);
    }

    fn visit_expression(&mut self, it: &Expression<'a>) {
        if self.guard.enter(it.span().start) {
            walk::walk_expression(self, it);
        } else if self.error.is_none() {
            self.error = Some((it.span().start, TREE_TOO_DEEP));
        }
        self.guard.leave();
    }

    // Types are never looked into: each of these nodes is erased as a whole.

    fn visit_ts_type_annotation(&mut self, it: &TSTypeAnnotation<'a>) {
        self.blank_span(it.span); // includes the leading `:`
    }

    fn visit_ts_type_parameter_declaration(&mut self, it: &TSTypeParameterDeclaration<'a>) {
        self.blank_span(it.span); // `<T, U extends V>`
    }

    fn visit_ts_type_parameter_instantiation(&mut self, it: &TSTypeParameterInstantiation<'a>) {
        self.blank_span(it.span); // `<string>` in `f<string>()`, `new Map<K, V>()`, `extends B<T>`
    }

    fn visit_ts_type(&mut self, _it: &TSType<'a>) {}

    fn visit_ts_class_implements(&mut self, _it: &TSClassImplements<'a>) {}

    fn visit_ts_this_parameter(&mut self, _it: &TSThisParameter<'a>) {}

    fn visit_variable_declarator(&mut self, it: &VariableDeclarator<'a>) {
        if it.definite {
            // `let x!: number`
            let end = it
                .type_annotation
                .as_ref()
                .map_or(it.span.end, |t| t.span.start);
            self.blank_punctuation(it.id.span().end, end, &['!']);
        }
        walk::walk_variable_declarator(self, it);
    }

    fn enter_node(&mut self, kind: oxc_ast::AstKind<'a>) {
        // `function f(this: T, a)`: erase `this: T,`. (Done on entering the node rather than in
        // `visit_function`, whose signature needs `oxc_syntax`'s `ScopeFlags`.)
        let oxc_ast::AstKind::Function(function) = kind else {
            return;
        };
        if let Some(this_param) = &function.this_param {
            let params = &function.params;
            let next = params
                .items
                .first()
                .map(|p| p.span.start)
                .or(params.rest.as_ref().map(|r| r.span.start))
                .unwrap_or(params.span.end);
            self.blank_list_element(this_param.span, next);
        }
    }

    fn visit_formal_parameter(&mut self, it: &FormalParameter<'a>) {
        if let Some(decorator) = it.decorators.first() {
            return self.reject(decorator.span.start, PARAMETER_DECORATOR_ERROR);
        }
        if it.accessibility.is_some() || it.readonly || it.r#override {
            // A constructor parameter property: `this.x = x` must be generated.
            self.generate(it.span.start);
        }
        if it.optional {
            // `a?: T`
            let end = it
                .type_annotation
                .as_ref()
                .map(|t| t.span.start)
                .or(it.initializer.as_ref().map(|i| i.span().start))
                .unwrap_or(it.span.end);
            self.blank_punctuation(it.pattern.span().end, end, &['?']);
        }
        walk::walk_formal_parameter(self, it);
    }

    fn visit_arrow_function_expression(&mut self, it: &ArrowFunctionExpression<'a>) {
        if let Some(type_parameters) = &it.type_parameters {
            self.blank_span(type_parameters.span);
        }
        self.visit_formal_parameters(&it.params);
        if let Some(return_type) = &it.return_type {
            let params_end = it.params.span.end;
            let spans_lines = has_line_terminator(self.text(params_end, return_type.span.end));
            if spans_lines && self.text(params_end - 1, params_end) == ")" {
                // `(a): {\n x: T\n} => a`: erasing the type would leave a line break between
                // `)` and `=>`, which is a syntax error. Move the `)` to the end of the type,
                // as ts-blank-space does.
                self.blank(params_end - 1, return_type.span.end);
                let mut last = return_type.span.end - 1;
                while !self.src.is_char_boundary(last as usize) {
                    last -= 1;
                }
                self.replacements.insert(last, ')');
            } else {
                self.blank_span(return_type.span);
            }
        }
        if !matches!(it.body, ArrowFunctionBody::FunctionBody(_)) {
            self.statement_starts.insert(it.body.span().start);
        }
        self.visit_arrow_function_body(&it.body);
    }

    fn visit_class(&mut self, it: &Class<'a>) {
        if let Some(decorator) = it.decorators.first() {
            self.reject(decorator.span.start, CLASS_DECORATOR_ERROR);
        }
        let after_decorators = it
            .decorators
            .last()
            .map_or(it.span.start, |d| d.span.end)
            .max(it.span.start);
        if it.r#abstract {
            // `abstract class C {}`
            let end = it
                .id
                .as_ref()
                .map_or(it.body.span.start, |id| id.span.start);
            for (s, e) in gap_tokens(self.src, after_decorators, end) {
                match self.text(s, e) {
                    "abstract" => self.blank(s, e),
                    "class" => break,
                    _ => {}
                }
            }
        }
        if let (Some(first), Some(last)) = (it.implements.first(), it.implements.last()) {
            // `implements A, B<T>`: erase from the keyword to the end of the last interface.
            let mut from = after_decorators;
            if let Some(id) = &it.id {
                from = from.max(id.span.end);
            }
            if let Some(type_parameters) = &it.type_parameters {
                from = from.max(type_parameters.span.end);
            }
            if let Some(heritage) = &it.heritage {
                from = from.max(heritage.expression.span().end);
                if let Some(type_arguments) = &heritage.type_arguments {
                    from = from.max(type_arguments.span.end);
                }
            }
            let keyword = gap_tokens(self.src, from, first.span.start)
                .into_iter()
                .find(|&(s, e)| self.text(s, e) == "implements");
            let end = last
                .type_arguments
                .as_ref()
                .map_or(last.span.end, |t| t.span.end.max(last.span.end));
            if let Some((start, _)) = keyword {
                self.blank(start, end);
            }
        }
        walk::walk_class(self, it);
    }

    fn visit_class_body(&mut self, it: &ClassBody<'a>) {
        let mut code_before = false;
        for element in &it.body {
            let span = element.span();
            let nothing_before = !code_before;
            self.asi_candidates.push(AsiCandidate {
                start: span.start,
                end: span.end,
                nothing_before,
            });
            if let Some((decorator, message)) = member_decorator(element) {
                self.reject(decorator.span.start, message);
            }
            let erased = match element {
                ClassElement::StaticBlock(block) => {
                    self.visit_static_block(block);
                    false
                }
                // `[key: string]: T`
                ClassElement::TSIndexSignature(_) => true,
                // `abstract m(): T;` and overload signatures `m(a: string): void;`
                ClassElement::MethodDefinition(m)
                    if m.r#type == MethodDefinitionType::TSAbstractMethodDefinition
                        || m.value.body.is_none() =>
                {
                    true
                }
                ClassElement::MethodDefinition(m) => {
                    self.blank_member_modifiers(span, &m.decorators, m.key.span());
                    if m.optional {
                        self.blank_punctuation(m.key.span().end, m.value.span.start, &['?']);
                    }
                    self.visit_method_definition(m);
                    false
                }
                // `abstract x: T;` and `declare x: T;` produce no field.
                ClassElement::PropertyDefinition(p)
                    if p.r#type == PropertyDefinitionType::TSAbstractPropertyDefinition
                        || p.declare =>
                {
                    true
                }
                ClassElement::PropertyDefinition(p) => {
                    self.blank_member_modifiers(span, &p.decorators, p.key.span());
                    if p.optional || p.definite {
                        // `x?: T`, `x!: T`
                        let end = p
                            .type_annotation
                            .as_ref()
                            .map(|t| t.span.start)
                            .or(p.value.as_ref().map(|v| v.span().start))
                            .unwrap_or(span.end);
                        self.blank_punctuation(p.key.span().end, end, &['?', '!']);
                    }
                    self.visit_property_definition(p);
                    false
                }
                ClassElement::AccessorProperty(a)
                    if a.r#type == AccessorPropertyType::TSAbstractAccessorProperty =>
                {
                    true
                }
                ClassElement::AccessorProperty(a) => {
                    self.blank_member_modifiers(span, &a.decorators, a.key.span());
                    if a.definite {
                        let end = a
                            .type_annotation
                            .as_ref()
                            .map(|t| t.span.start)
                            .or(a.value.as_ref().map(|v| v.span().start))
                            .unwrap_or(span.end);
                        self.blank_punctuation(a.key.span().end, end, &['!']);
                    }
                    self.visit_accessor_property(a);
                    false
                }
            };
            if erased {
                self.blank_span(span);
            }
            code_before |= !erased;
        }
    }

    fn visit_ts_as_expression(&mut self, it: &TSAsExpression<'a>) {
        self.blank(it.expression.span().end, it.span.end); // ` as T`
        self.visit_expression(&it.expression);
    }

    fn visit_ts_satisfies_expression(&mut self, it: &TSSatisfiesExpression<'a>) {
        self.blank(it.expression.span().end, it.span.end); // ` satisfies T`
        self.visit_expression(&it.expression);
    }

    fn visit_ts_non_null_expression(&mut self, it: &TSNonNullExpression<'a>) {
        self.blank_punctuation(it.expression.span().end, it.span.end, &['!']); // `x!`
        self.visit_expression(&it.expression);
    }

    fn visit_ts_type_assertion(&mut self, it: &TSTypeAssertion<'a>) {
        // `<T>x` becomes `   x`. That is only wrong where a statement or an arrow function body
        // starts with it and `x` starts with `{` (now a block), `function`, `class`, `let` or
        // `async` (now a declaration), or where a line break would separate `x` from a
        // preceding `return`, `throw`, `yield`...
        let operand = it.expression.span().start;
        let operand_text = &self.src[operand as usize..];
        let starts_declaration = operand_text.starts_with('{')
            || ["function", "class", "let", "async"].iter().any(|keyword| {
                operand_text
                    .strip_prefix(keyword)
                    .is_some_and(|rest| !rest.starts_with(|c: char| is_identifier_char(c)))
            });
        if (starts_declaration && self.statement_starts.contains(&it.span.start))
            || has_line_terminator(self.text(it.span.start, operand))
        {
            if self
                .erasure_error
                .is_none_or(|(earliest, _)| it.span.start < earliest)
            {
                self.erasure_error = Some((it.span.start, TYPE_ASSERTION_ERROR));
            }
            return self.visit_expression(&it.expression);
        }
        self.blank(it.span.start, operand);
        self.visit_expression(&it.expression);
    }
}

/// A TypeScript program, and whether it parsed with the module goal.
struct TypeScript<'a> {
    program: Program<'a>,
    module: bool,
}

/// Parses TypeScript, as a module first (so top-level `await` is accepted) and, should that
/// fail, as a sloppy-mode script. Returns the module-mode error if both fail.
fn parse_typescript<'a>(
    allocator: &'a Allocator,
    src: &'a str,
) -> Result<TypeScript<'a>, SourceError> {
    let module = parse(allocator, src, SourceType::ts().with_module(true));
    if is_valid(&module) {
        return Ok(TypeScript {
            program: module.program,
            module: true,
        });
    }
    let script = parse(allocator, src, SourceType::ts().with_script(true));
    if is_valid(&script) {
        return Ok(TypeScript {
            program: script.program,
            module: false,
        });
    }
    Err(first_parse_error(src, &module))
}

/// Erases TypeScript syntax, keeping every remaining character at its line and column; or,
/// when the program contains a construct that needs code generation, compiles it with
/// [`transform::generate`], keeping every line.
fn strip_types(src: &str) -> Result<String, SourceError> {
    let allocator = Allocator::default();
    let typescript = parse_typescript(&allocator, src)?;
    strip_parsed_types(&allocator, src, typescript)
}

/// [`strip_types`] of the program parsed from `src`.
fn strip_parsed_types<'a>(
    allocator: &'a Allocator,
    src: &'a str,
    typescript: TypeScript<'a>,
) -> Result<String, SourceError> {
    let TypeScript { program, module } = typescript;
    let mut blanker = Blanker::new(src);
    collect_namespaces(&program.body, &mut blanker.transformable_namespaces);
    blanker.visit_program(&program);
    let erasing = blanker.needs_generation.is_none();
    // Without code generation, the earliest refusal, as ever; with it, only the refusals that
    // code generation does not lift.
    let refusal = [blanker.error, blanker.erasure_error.filter(|_| erasing)]
        .into_iter()
        .flatten()
        .min_by_key(|&(offset, _)| offset);
    if let Some((offset, message)) = refusal {
        return Err(SourceError::at(src, offset, message));
    }
    // The import/export declarations the JavaScript would keep (decorators were refused
    // above, in both ways).
    let kept_module_declaration = program.body.iter().find(|stmt| {
        stmt.is_module_declaration() && !matches!(statement_action(stmt), Action::Erase)
    });
    if let Some(offset) = blanker.needs_generation {
        // Checked here, at their place in the TypeScript: the transform drops unused imports.
        if let Some(stmt) = kept_module_declaration {
            return Err(SourceError::at(src, stmt.span().start, IMPORT_EXPORT_ERROR));
        }
        // oxc's transform asserts its invariants with panics: one is this program's error.
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            transform::generate(allocator, src, program, offset)
        }))
        .unwrap_or_else(|_| Err(SourceError::at(src, offset, TRANSFORM_PANIC_ERROR)));
    }
    let erased = blanker.render();
    if let Some(stmt) = kept_module_declaration {
        // Erasure keeps every position: the declaration is where it was in the TypeScript.
        if module {
            return Err(SourceError::at(src, stmt.span().start, IMPORT_EXPORT_ERROR));
        }
        // TypeScript that only parses as a script: its JavaScript is refused only if it
        // parses as a module (else V8 reports the syntax error), as JavaScript is.
        let allocator = Allocator::default();
        let as_module = parse(&allocator, &erased, SourceType::mjs());
        if is_valid(&as_module) {
            if let Some(stmt) = as_module
                .program
                .body
                .iter()
                .find(|s| s.is_module_declaration())
            {
                return Err(SourceError::at(
                    &erased,
                    stmt.span().start,
                    IMPORT_EXPORT_ERROR,
                ));
            }
        }
    }
    Ok(erased)
}

/// The namespace declared by a statement (`namespace N {}`, `export namespace N {}`).
fn statement_namespace<'s, 'a>(stmt: &'s Statement<'a>) -> Option<&'s TSNamespaceDeclaration<'a>> {
    match stmt {
        Statement::TSNamespaceDeclaration(n) => Some(n),
        Statement::ExportDeclaration(e) => match &e.declaration {
            Declaration::TSNamespaceDeclaration(n) => Some(n),
            _ => None,
        },
        _ => None,
    }
}

fn is_namespace(stmt: &Statement<'_>) -> bool {
    statement_namespace(stmt).is_some()
}

/// Collects the start offsets of the namespaces declared in `stmts` and, recursively, in
/// their bodies: oxc's transform compiles those, not namespaces inside functions or blocks.
fn collect_namespaces(stmts: &[Statement<'_>], found: &mut HashSet<u32>) {
    for namespace in stmts.iter().filter_map(statement_namespace) {
        found.insert(namespace.span.start);
        let mut body = &namespace.body;
        loop {
            match body {
                TSNamespaceDeclarationBody::TSNamespaceDeclaration(inner) => body = &inner.body,
                TSNamespaceDeclarationBody::TSModuleBlock(block) => {
                    collect_namespaces(&block.body, found);
                    break;
                }
            }
        }
    }
}

/// The first decorator of a class member, with the error that names it.
fn member_decorator<'s>(
    element: &'s ClassElement<'_>,
) -> Option<(&'s Decorator<'s>, &'static str)> {
    let (decorators, message) = match element {
        ClassElement::MethodDefinition(m) => (&m.decorators, METHOD_DECORATOR_ERROR),
        ClassElement::PropertyDefinition(p) => (&p.decorators, FIELD_DECORATOR_ERROR),
        ClassElement::AccessorProperty(a) => (&a.decorators, ACCESSOR_DECORATOR_ERROR),
        ClassElement::StaticBlock(_) | ClassElement::TSIndexSignature(_) => return None,
    };
    decorators.first().map(|d| (d, message))
}

// ---------------------------------------------------------------------------------------------
// Checks of the finished JavaScript
// ---------------------------------------------------------------------------------------------

/// Refuses what a script cannot hold (`import`/`export` declarations) and decorators, with
/// messages clearer than V8's; returns the JavaScript unchanged otherwise.
fn finish_javascript(src: &str, js: &JavaScript<'_>) -> Result<Prepared, SourceError> {
    let unchanged = || {
        Ok(Prepared {
            code: src.to_string(),
        })
    };
    // Neither can appear without these words: most scripts need no parse here.
    if !src.contains('@') && !src.contains("import") && !src.contains("export") {
        return unchanged();
    }
    // Module goal: it parses `import`/`export` declarations and top-level `await`.
    let module = js.module();
    if !is_valid(module) {
        // Not valid as a module: a syntax error, which V8 reports itself, or script-only
        // syntax (HTML-like comments, `await` as an identifier...).
        if src.contains('@') {
            let script = js.script();
            if is_valid(script) {
                reject_decorators(src, &script.program)?;
            }
        }
        return unchanged();
    }
    let program = &module.program;
    if src.contains('@') {
        reject_decorators(src, program)?;
    }
    if let Some(stmt) = program.body.iter().find(|s| s.is_module_declaration()) {
        return Err(SourceError::at(src, stmt.span().start, IMPORT_EXPORT_ERROR));
    }
    unchanged()
}

/// Refuses decorators, which V8 10.2 cannot parse ("Invalid or unexpected token"), naming
/// what they decorate.
fn reject_decorators(code: &str, program: &Program<'_>) -> Result<(), SourceError> {
    let mut finder = DecoratorFinder::default();
    finder.visit_program(program);
    match finder.found {
        Some((offset, message)) => Err(SourceError::at(code, offset, message)),
        None => Ok(()),
    }
}

/// Finds the first decorator of a program (oxc parses them in JavaScript too).
#[derive(Default)]
struct DecoratorFinder {
    found: Option<(u32, &'static str)>,
    guard: DepthGuard,
}

impl DecoratorFinder {
    fn found(&mut self, decorator: &Decorator<'_>, message: &'static str) {
        let offset = decorator.span.start;
        if self.found.is_none_or(|(earliest, _)| offset < earliest) {
            self.found = Some((offset, message));
        }
    }
}

impl<'a> Visit<'a> for DecoratorFinder {
    fn visit_expression(&mut self, it: &Expression<'a>) {
        if self.guard.enter(it.span().start) {
            walk::walk_expression(self, it);
        }
        self.guard.leave();
    }

    fn visit_class(&mut self, it: &Class<'a>) {
        if let Some(decorator) = it.decorators.first() {
            self.found(decorator, CLASS_DECORATOR_ERROR);
        }
        for element in &it.body.body {
            if let Some((decorator, message)) = member_decorator(element) {
                self.found(decorator, message);
            }
        }
        walk::walk_class(self, it);
    }

    fn visit_formal_parameter(&mut self, it: &FormalParameter<'a>) {
        if let Some(decorator) = it.decorators.first() {
            self.found(decorator, PARAMETER_DECORATOR_ERROR);
        }
        walk::walk_formal_parameter(self, it);
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(src: &str) -> String {
        prepare(src, Language::TypeScript)
            .unwrap_or_else(|e| panic!("{e} in {src:?}"))
            .code
    }

    fn ts_err(src: &str) -> SourceError {
        match prepare(src, Language::TypeScript) {
            Ok(p) => panic!("expected an error for {src:?}, got {:?}", p.code),
            Err(e) => e,
        }
    }

    fn js(src: &str) -> Prepared {
        prepare(src, Language::JavaScript).unwrap_or_else(|e| panic!("{e} in {src:?}"))
    }

    /// Asserts `code` is valid JavaScript as a classic script.
    fn assert_valid_script(code: &str) {
        let allocator = Allocator::default();
        let ret = oxc_parser::Parser::new(&allocator, code, SourceType::script()).parse();
        let errors: Vec<String> = ret
            .diagnostics
            .errors()
            .map(|e| e.message.to_string())
            .collect();
        assert!(errors.is_empty(), "invalid JavaScript {code:?}: {errors:?}");
    }

    /// Every non-blank character of `output` sits at a (line, UTF-16 column) where `input` has
    /// the same character, except for the characters listed in `inserted`, which must be
    /// exactly the ones that differ.
    fn assert_positions_preserved(input: &str, output: &str, inserted: &str) {
        fn grid(text: &str) -> Vec<Vec<u16>> {
            text.split('\n')
                .map(|line| line.encode_utf16().collect())
                .collect()
        }
        let (a, b) = (grid(input), grid(output));
        assert_eq!(
            a.len(),
            b.len(),
            "line count changed: {input:?} -> {output:?}"
        );
        let mut differing = String::new();
        for (line_in, line_out) in a.iter().zip(&b) {
            assert_eq!(
                line_in.len(),
                line_out.len(),
                "line length changed: {input:?} -> {output:?}"
            );
            for (&x, &y) in line_in.iter().zip(line_out) {
                if y != u16::from(b' ') && x != y {
                    differing.push(char::from_u32(u32::from(y)).unwrap_or('?'));
                }
            }
        }
        assert_eq!(
            differing, inserted,
            "unexpected changes: {input:?} -> {output:?}"
        );
    }

    /// Strips `src`, checks the result keeps positions (with only `inserted` added) and is
    /// valid JavaScript, and returns it.
    fn strip(src: &str, inserted: &str) -> String {
        let out = ts(src);
        assert_positions_preserved(src, &out, inserted);
        assert_valid_script(&out);
        out
    }

    // --- parses ----------------------------------------------------------------------------

    #[test]
    fn each_text_is_parsed_at_most_once_per_goal() {
        use crate::parse::counted;
        // (source, language, parses): JavaScript parses as a module first, as a script only when
        // that fails; TypeScript likewise; code generation parses its printed code and the
        // code moved back onto the original lines.
        let cases: &[(&str, Language, usize)] = &[
            ("1 + 2", Language::JavaScript, 0),
            ("1 + 2", Language::Auto, 1),
            ("const s = 'import'; s", Language::JavaScript, 1),
            ("const s = 'import'; s", Language::Auto, 1),
            ("var await = 1; 'export'", Language::Auto, 2),
            ("@dec class A {}", Language::JavaScript, 1),
            ("@dec class A {}", Language::Auto, 1),
            ("let = ;", Language::Auto, 4),
            ("let x: number = 1; x", Language::TypeScript, 1),
            ("let x: number = 1; x", Language::Auto, 3),
            ("let s: string = 'export'; s", Language::TypeScript, 1),
            ("let s: string = 'export'; s", Language::Auto, 3),
            (
                "import { x } from 'y';\nlet a: number = x",
                Language::TypeScript,
                1,
            ),
            (
                "enum E { A }\nconst s = 'import';\nE.A",
                Language::TypeScript,
                3,
            ),
            ("enum E { A }\nconst s = 'import';\nE.A", Language::Auto, 5),
            // Script-only TypeScript keeping an import: its JavaScript decides, as a module.
            (
                "var await = 1; import { x } from 'y'; let a: number = x",
                Language::TypeScript,
                3,
            ),
        ];
        for &(src, lang, expected) in cases {
            let (_, parses) = counted::during(|| prepare(src, lang));
            for (i, parse) in parses.iter().enumerate() {
                assert!(
                    !parses[..i].contains(parse),
                    "{src:?} ({lang:?}) was parsed twice as {:?}: {parses:?}",
                    parse.1
                );
            }
            assert_eq!(parses.len(), expected, "{src:?} ({lang:?}): {parses:?}");
        }
    }

    #[test]
    fn script_only_typescript_keeps_its_imports_for_v8_to_refuse() {
        // Parsed as a script (`await` is a name) and erased, it is no module: V8 reports the
        // import, as it does for such JavaScript.
        let src = "var await = 1; import { x } from 'y'; let a: number = x";
        assert_eq!(
            ts(src),
            "var await = 1; import { x } from 'y'; let a         = x"
        );
        assert_eq!(
            js(src.replace(": number", "").as_str()).code,
            src.replace(": number", "")
        );
    }

    // --- TypeScript erasure --------------------------------------------------------------

    #[test]
    fn variable_annotations() {
        let out = strip("let x: number = 1;\nconst y: Array<string> = [];", "");
        assert_eq!(out, "let x         = 1;\nconst y                = [];");
    }

    #[test]
    fn parameter_and_return_annotations() {
        let out = strip("function f(a: number, b?: string): void {}", "");
        assert_eq!(out, "function f(a        , b         )       {}");
    }

    #[test]
    fn optional_parameters_without_type_and_rest_parameters() {
        let out = strip("function f(a?, ...rest: number[]) {}", "");
        assert_eq!(out, "function f(a , ...rest          ) {}");
    }

    #[test]
    fn interfaces_and_type_aliases() {
        let src = "interface Point {\n  x: number;\n  y: number;\n}\ntype Id = string | number;\nconst p = 1;";
        let out = strip(src, "");
        assert_eq!(
            out,
            "                 \n            \n            \n \n                          \nconst p = 1;"
        );
    }

    #[test]
    fn erased_statement_after_code_starts_with_semicolon() {
        // Without the `;`, `a` would be called with `(b)`.
        let src = "let x = a\ninterface I {}\n(b)";
        let out = strip(src, ";");
        assert_eq!(out, "let x = a\n;             \n(b)");
        let src = "let x = a\ntype T = 1\n[1].map(f)";
        assert_eq!(strip(src, ";"), "let x = a\n;         \n[1].map(f)");
    }

    #[test]
    fn generics_on_functions_classes_calls_and_new() {
        let src = "function id<T>(x: T): T { return x; }\nclass Box<T> { v: T; }\nconst m = new Map<string, number>();\nid<number>(1);\nconst g = id<string>;";
        let out = strip(src, "");
        assert_eq!(
            out,
            "function id   (x   )    { return x; }\nclass Box    { v   ; }\nconst m = new Map                ();\nid        (1);\nconst g = id        ;"
        );
    }

    #[test]
    fn generic_arrow_functions_and_tagged_templates() {
        let out = strip(
            "const f = async <T,>(x: T): Promise<T> => x;\ntag<string>`a${1}`;",
            "",
        );
        assert_eq!(
            out,
            "const f = async     (x   )             => x;\ntag        `a${1}`;"
        );
    }

    #[test]
    fn as_satisfies_and_non_null() {
        let src = "const a = (b as any).c!.d;\nconst e = { f: 1 } satisfies Record<string, number>;\nconst g = h! + i as const;";
        let out = strip(src, "");
        assert_eq!(
            out,
            "const a = (b       ).c .d;\nconst e = { f: 1 }                                 ;\nconst g = h  + i         ;"
        );
    }

    #[test]
    fn as_at_end_of_line_without_semicolon_is_terminated() {
        // `a as T` followed by a line starting with `(`: TypeScript ends the statement after
        // the type, JavaScript would call `a(...)`.
        let src = "const x = a as Foo\n(function () {})()";
        assert_eq!(strip(src, ";"), "const x = a;      \n(function () {})()");
        let src = "x as any\n[1, 2].forEach(f)";
        assert_eq!(strip(src, ";"), "x;      \n[1, 2].forEach(f)");
        let src = "class A {\n  x = 1 as number\n  [k] = 2\n}";
        assert_eq!(
            strip(src, ";"),
            "class A {\n  x = 1;         \n  [k] = 2\n}"
        );
    }

    #[test]
    fn angle_bracket_type_assertions() {
        assert_eq!(strip("const x = <any>y;", ""), "const x =      y;");
        assert_eq!(
            strip("f(<string>s, <T>(a, b));", ""),
            "f(        s,    (a, b));"
        );
        assert_eq!(
            strip("<any>x;\nconst f = () => <T>y;", ""),
            "     x;\nconst f = () =>    y;"
        );
        let e = ts_err("let a = 1;\n<any>{ b: 1 };");
        assert_eq!((e.line, e.column), (2, 1));
        assert!(e.message.contains("as T"), "{}", e.message);
        let e = ts_err("let a = 1;\n<any>function () {};");
        assert_eq!((e.line, e.column), (2, 1));
        let e = ts_err("const f = () => <any>{};");
        assert_eq!((e.line, e.column), (1, 17));
        let e = ts_err("function f() { return <any>\n  x; }");
        assert_eq!((e.line, e.column), (1, 23));
    }

    #[test]
    fn class_member_modifiers() {
        let src = "class A {\n  public a = 1;\n  private readonly b: string = '';\n  protected static c?: number;\n  override d!: number;\n  public async m(): Promise<void> {}\n  private static get g(): number { return 1; }\n}";
        let out = strip(src, "");
        assert_eq!(
            out,
            "class A {\n         a = 1;\n                   b         = '';\n            static c         ;\n           d         ;\n         async m()                {}\n          static get g()         { return 1; }\n}"
        );
    }

    #[test]
    fn abstract_classes_declare_fields_index_signatures_and_overloads() {
        let src = "abstract class S implements I, J<T> {\n  abstract area(): number;\n  protected abstract name: string;\n  declare tag: string;\n  [key: string]: unknown;\n  m(a: string): void;\n  m(a: number): void;\n  m(a: any) { return a; }\n}";
        let out = strip(src, "");
        let expected = "         class S                    {\n                          \n                                  \n                      \n                         \n                     \n                     \n  m(a     ) { return a; }\n}";
        assert_eq!(out, expected);
        // After a field without `;`, an erased member starts with `;` so that the field's
        // initializer cannot continue into the next member.
        let src = "class A {\n  x = a\n  declare y: number\n  ['z'] = 1\n  abstract m(): void\n  n() {}\n}";
        let out = strip(src, ";;");
        assert_eq!(
            out,
            "class A {\n  x = a\n  ;                \n  ['z'] = 1\n  ;                 \n  n() {}\n}"
        );
    }

    #[test]
    fn optional_methods_and_computed_keys() {
        let out = strip("class A { m?(): void {} [k]?: number; }", "");
        assert_eq!(out, "class A { m ()       {} [k]         ; }");
    }

    #[test]
    fn class_heritage_type_arguments() {
        let out = strip("class A<T> extends B<T> implements C {}", "");
        assert_eq!(out, "class A    extends B                 {}");
        let out = strip("const K = class implements I { x = 1 };", "");
        assert_eq!(out, "const K = class              { x = 1 };");
    }

    #[test]
    fn this_parameters() {
        let out = strip(
            "function f(this: Window, a: number) {}\nfunction g(this: Window) {}",
            "",
        );
        assert_eq!(
            out,
            "function f(              a        ) {}\nfunction g(            ) {}"
        );
    }

    #[test]
    fn definite_assignment() {
        assert_eq!(strip("let x!: number;", ""), "let x         ;");
    }

    #[test]
    fn declare_statements_and_function_overloads() {
        let src = "declare const x: number;\ndeclare function f(): void;\ndeclare class C {}\ndeclare enum E { A }\ndeclare namespace N { const y: 1 }\ndeclare module 'm' {}\ndeclare global { interface Window {} }\nfunction g(a: string): void;\nfunction g(a: any) {}";
        let out = strip(src, "");
        let mut expected: String = src
            .lines()
            .take(8)
            .map(|l| " ".repeat(l.len()) + "\n")
            .collect();
        expected.push_str("function g(a     ) {}");
        assert_eq!(out, expected);
        // After code, each erased statement starts with `;`.
        let src = "f()\ndeclare const x: number\nfunction g(a: string): void\n(1)";
        assert_eq!(
            strip(src, ";;"),
            "f()\n;                      \n;                          \n(1)"
        );
    }

    #[test]
    fn type_only_imports_and_exports() {
        let src = "import type { A } from './a';\nexport type { B };\nexport type C = 1;\nexport interface D {}\nexport declare const e: number;\nexport type * from './f';\nexport default interface G {}\nexport {};";
        let out = strip(src, "");
        assert!(out.chars().all(|c| c == ' ' || c == '\n'), "{out:?}");
        let src = "let a = 1\nexport type { B }\nexport {}\n[a]";
        assert_eq!(
            strip(src, ";;"),
            "let a = 1\n;                \n;        \n[a]"
        );
    }

    #[test]
    fn type_only_import_specifiers_are_erased_before_the_import_is_rejected() {
        let src = "import { type A, b } from './a';";
        let mut blanker = Blanker::new(src);
        let allocator = Allocator::default();
        blanker.visit_program(&parse_typescript(&allocator, src).unwrap().program);
        assert_eq!(blanker.render(), "import {         b } from './a';");
        let e = ts_err("const x = 1;\nimport { type A, b } from './a';");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 1, IMPORT_EXPORT_ERROR)
        );
        // Imports of types only disappear entirely.
        strip("import { type A, type B } from './a';\nlet a: A;", "");
    }

    #[test]
    fn type_only_namespaces_are_erased() {
        let out = strip(
            "namespace Types {\n  export type T = 1;\n  export interface I {}\n}\nlet x = 1;",
            "",
        );
        assert!(out.ends_with("\nlet x = 1;"));
        assert_eq!(out.lines().count(), 5);
    }

    #[test]
    fn catch_clause_annotations_and_arrow_params() {
        let out = strip(
            "try {} catch (e: unknown) {}\nconst f = (a: number, b?: string): void => {};",
            "",
        );
        assert_eq!(
            out,
            "try {} catch (e         ) {}\nconst f = (a        , b         )       => {};"
        );
    }

    #[test]
    fn multi_line_arrow_return_type_moves_the_paren() {
        let src = "const f = (a: number): {\n  x: number\n} => ({ x: a });";
        let out = strip(src, ")");
        assert_eq!(
            out,
            "const f = (a            \n           \n) => ({ x: a });"
        );
    }

    #[test]
    fn surrogate_pairs_and_multibyte_chars_keep_utf16_columns() {
        let src = "let s: '😀é' = '😀é' as '😀é'; let t = 1;";
        let out = strip(src, "");
        assert_eq!(out.encode_utf16().count(), src.encode_utf16().count());
        assert!(out.ends_with("= '😀é'         ; let t = 1;"), "{out:?}");
    }

    #[test]
    fn crlf_line_endings_are_kept() {
        let src = "interface I {\r\n  a: 1\r\n}\r\nlet x: I = {a: 1};\r\n";
        let out = ts(src);
        assert_eq!(out.matches("\r\n").count(), 4);
        assert!(out.contains("\r\nlet x    = {a: 1};\r\n"), "{out:?}");
    }

    #[test]
    fn comments_inside_erased_types_keep_their_newlines() {
        let src = "let x: // the type\n  number = 1;";
        let out = strip(src, "");
        assert_eq!(out, "let x             \n         = 1;");
    }

    #[test]
    fn positions_preserved_in_a_larger_program() {
        let src = r#"interface User { id: number; name?: string }
type Handler<T> = (value: T) => void;

export type { Handler as H };

abstract class Base<T extends object> implements Iterable<T> {
  protected readonly items: T[] = [];
  private count!: number;
  static create<U extends object>(this: void, ...xs: U[]): U[] { return xs; }
  abstract describe(): string;
  *[Symbol.iterator](): Iterator<T> { yield* this.items; }
}

function first<T>(xs: readonly T[]): T | undefined {
  return xs[0]!;
}

const users = new Map<number, User>();
const user = users.get(1) as User | undefined;
const n = first<number>([1, 2, 3]) satisfies number | undefined;
let later: string;
label: for (const u of users.values() as Iterable<User>) { break label; }
const arrow = <T,>(x: T): T => x;
arrow(user?.name!)
"#;
        let out = strip(src, ";");
        assert!(out.contains("const users = new Map              ();"));
    }

    #[test]
    fn constructs_needing_code_generation_are_compiled_keeping_lines() {
        for (src, gone) in [
            (
                "let a = 1;\n  enum Color { Red, Green }\nlet b = Color.Green;",
                "enum",
            ),
            ("const x = 1;\nconst enum E { A = 1 }\nE.A", "enum"),
            (
                "function f() {\n  enum E { A }\n  return E.A;\n}\nf()",
                "enum",
            ),
            (
                "// c\nnamespace NS {\n  export const x = 1;\n}\nNS.x",
                "namespace",
            ),
            ("module M { export function f() {} }\nM.f", "module"),
            (
                "class P {\n  constructor(x: number, private y: number) {}\n}\nnew P(1, 2)",
                "private",
            ),
            (
                "class P { constructor(readonly y: number) {} }\nnew P(3).y",
                "readonly",
            ),
        ] {
            let code = ts(src);
            assert_valid_script(&code);
            assert!(!code.contains(gone), "{src:?} -> {code:?}");
            assert_eq!(
                code.lines().count(),
                src.lines().count(),
                "{src:?} -> {code:?}"
            );
            assert_eq!(
                code.lines().last().unwrap().trim(),
                src.lines()
                    .last()
                    .unwrap()
                    .trim()
                    .trim_end_matches(';')
                    .to_string()
                    + ";",
                "{src:?} -> {code:?}"
            );
        }
    }

    #[test]
    fn code_generation_keeps_the_other_refusals() {
        // A value export (here an exported enum) is an import/export error at its place.
        let e = ts_err("const x = 1;\nexport const enum E { A = 1 }");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 1, IMPORT_EXPORT_ERROR)
        );
        let e = ts_err("enum E { A }\nimport { y } from 'y';");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 1, IMPORT_EXPORT_ERROR)
        );
        // Type-only imports and `export {}` are erased as without code generation.
        let code = ts("import type { T } from 't';\nexport {};\nenum E { A }\nE.A");
        assert_eq!(code.lines().count(), 4, "{code:?}");
        // A namespace inside a function is not compiled by oxc's transform.
        let e = ts_err("function f() {\n  namespace N { export const x = 1; }\n}");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 3, NESTED_NAMESPACE_ERROR)
        );
        // `import x = require()` and `export =` stay refused, also next to an enum.
        let e = ts_err("enum E { A }\nimport fs = require('fs');");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 1, IMPORT_EQUALS_ERROR)
        );
        // A `<T>x` that erasure cannot keep is fine once the program is compiled.
        assert!(matches!(
            ts_err("<T>{ a: 1 };").message.as_str(),
            TYPE_ASSERTION_ERROR
        ));
        let code = ts("enum E { A }\nlet o = <any>{ a: 1 };\no.a");
        assert_valid_script(&code);
        // The earliest refusal wins, as without code generation...
        let e = ts_err("<T>{ a: 1 };\nexport = x;");
        assert_eq!((e.line, e.message.as_str()), (1, TYPE_ASSERTION_ERROR));
        // ... among those that code generation does not lift.
        let e = ts_err("enum E { A }\n<T>{ a: 1 };\nexport = x;");
        assert_eq!((e.line, e.message.as_str()), (3, EXPORT_ASSIGNMENT_ERROR));
    }

    #[test]
    fn legacy_module_syntax_is_rejected() {
        let e = ts_err("import fs = require('fs');");
        assert_eq!((e.line, e.column), (1, 1));
        assert!(e.message.contains("import x = require"));
        let e = ts_err("const x = 1;\nexport = x;");
        assert_eq!((e.line, e.column), (2, 1));
        assert!(e.message.contains("export ="));
    }

    #[test]
    fn decorators_are_rejected_naming_what_they_decorate() {
        for (src, lang, (line, column), decorated) in [
            (
                "class A { m(@inject() x) {} }",
                Language::TypeScript,
                (1, 13),
                "a parameter",
            ),
            (
                "let a = 1;\n@dec class C {}",
                Language::TypeScript,
                (2, 1),
                "a class",
            ),
            (
                "@dec\nclass C { x: number = 1 }",
                Language::Auto,
                (1, 1),
                "a class",
            ),
            (
                "class C {\n  @log m(a: string) {}\n}",
                Language::TypeScript,
                (2, 3),
                "a method",
            ),
            (
                "class C {\n  @log m() {}\n}",
                Language::JavaScript,
                (2, 3),
                "a method",
            ),
            (
                "class C {\n  @log m() {}\n}",
                Language::Auto,
                (2, 3),
                "a method",
            ),
            (
                "function f() {\n  return class { @f x = 1 }\n}",
                Language::JavaScript,
                (2, 18),
                "a class field",
            ),
            (
                "@dec class C {}\nwith (o) {}",
                Language::JavaScript,
                (1, 1),
                "a class",
            ),
            (
                "enum E { A }\n@dec class C {}",
                Language::TypeScript,
                (2, 1),
                "a class",
            ),
        ] {
            let e = prepare(src, lang).unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{src:?}: {e}");
            assert!(
                e.message
                    .starts_with("decorators are not supported: a decorator on ")
                    && e.message.contains(decorated),
                "{src:?}: {e}"
            );
        }
        // An `@` elsewhere is no decorator.
        assert_eq!(js("'@dec class'").code, "'@dec class'");
    }

    #[test]
    fn typescript_syntax_errors_are_reported_with_position() {
        let e = ts_err("let x: number = 1;\nlet y = (;");
        assert_eq!(e.line, 2);
        assert!(e.column >= 9, "{e:?}");
        assert!(!e.message.is_empty());
    }

    #[test]
    fn sloppy_mode_typescript_is_accepted() {
        // `await` as an identifier is not valid in a module, fine in a script: the TypeScript
        // parse falls back to the script goal, and the result is no top-level-await script.
        let out = strip("var await: number = 1;\nawait", "");
        assert_eq!(out, "var await         = 1;\nawait");
        let out = strip("var o: any = {}; with (o) { var z: number = 1; }", "");
        assert_eq!(out, "var o      = {}; with (o) { var z         = 1; }");
    }

    #[test]
    fn value_exports_are_rejected_in_typescript() {
        let e = ts_err("type T = 1;\nexport const x: T = 1;");
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 1, IMPORT_EXPORT_ERROR)
        );
    }

    #[test]
    fn type_arguments_spanning_lines_and_other_expression_forms() {
        let src = "const h = foo<\n  string,\n  number\n>(1);\nconst i = a?.b<T>();\nconst j = new Foo<string>;";
        let out = strip(src, "");
        assert_eq!(
            out,
            "const h = foo \n         \n        \n (1);\nconst i = a?.b   ();\nconst j = new Foo        ;"
        );
    }

    #[test]
    fn object_methods_accessors_and_destructured_parameters() {
        let src = "const o = { m<T>(x: T): T { return x }, get v(): number { return 1 }, set v(x: number) {} };\nfunction f({ a }: { a: number }, [c]: number[] = [1]): void {}\nconst g = ({ a }: { a: number }): number => a;";
        let out = strip(src, "");
        assert_eq!(
            out,
            "const o = { m   (x   )    { return x }, get v()         { return 1 }, set v(x        ) {} };\nfunction f({ a }               , [c]           = [1])       {}\nconst g = ({ a }               )         => a;"
        );
    }

    #[test]
    fn comments_between_erased_tokens() {
        let out = strip("class A /* c */ implements /* d */ I, /* e */ J {}", "");
        assert_eq!(out, "class A /* c */                                 {}");
    }

    #[test]
    fn type_only_import_equals_is_erased() {
        let out = strip("import type X = require('x');\nlet y: X;", "");
        assert_eq!(out, "                             \nlet y   ;");
    }

    // --- JavaScript ----------------------------------------------------------------------

    #[test]
    fn javascript_passes_through_byte_identical() {
        for src in [
            "const a = 1;\nfunction f(x) { return x * 2 }\nf(a)",
            "var x = 1 // comment\r\n/* block */ x++\u{2028}x",
            "async function g() { await 1; for await (const x of []) {} }\nconst h = async () => await g();",
            "class A { static { var x = 1 } #p = 1; get p() { return this.#p } }",
            "#!/usr/bin/env node\nconsole.log('hi')",
        ] {
            assert_eq!(js(src).code, src);
        }
    }

    #[test]
    fn javascript_parse_errors_are_left_to_v8() {
        for src in [
            "let x = (;",
            "return 1",
            "await = 1; await",
            "let x: number = await 1",
            "var x = 1; <!-- html comment\nawait x",
        ] {
            assert_eq!(js(src).code, src);
        }
    }

    #[test]
    fn import_and_export_statements_are_rejected() {
        let e = prepare("const a = 1;\n  import x from 'y';", Language::JavaScript).unwrap_err();
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (2, 3, IMPORT_EXPORT_ERROR)
        );
        let e = prepare("export default 1", Language::JavaScript).unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        // Dynamic import is an expression and is fine.
        assert_eq!(
            js("import('x').then(m => m)").code,
            "import('x').then(m => m)"
        );
    }

    // --- Top-level await -----------------------------------------------------------------

    #[test]
    fn top_level_await_passes_through_unchanged() {
        for src in [
            "await 1",
            "if (x) { await y }",
            "for await (const x of xs) {}",
            "const a = await Promise.resolve(2);\na * 21",
            "#!/usr/bin/env node\n'use strict';\nawait 1",
            "class C { [await k]() {} }\nexport_ = 1",
        ] {
            assert_eq!(js(src).code, src);
        }
    }

    #[test]
    fn typescript_with_top_level_await_is_only_erased() {
        let src = "interface R { v: number }\nconst r: R = await load() as R;\nexport {};\nr.v";
        let p = prepare(src, Language::TypeScript).unwrap();
        assert_positions_preserved(src, &p.code, ";");
        assert_eq!(
            p.code,
            "                         \nconst r    = await load()     ;\n;         \nr.v"
        );
    }
}
