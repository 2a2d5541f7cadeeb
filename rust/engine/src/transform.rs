//! Code generation for the TypeScript that type erasure cannot handle: `enum` (and
//! `const enum`, compiled as a regular enum, as under `isolatedModules`), namespaces that
//! contain values, and constructor parameter properties.
//!
//! [`generate`] runs oxc's TypeScript transform over the **whole program** (TypeScript
//! options only: no JSX, no decorators, no lowering of newer syntax), prints it with
//! `oxc_codegen` together with a source map, and then *re-aligns* the printed code on the
//! lines of the original, as Babel's `retainLines` does:
//!
//! * every generated token that the source map traces to original line `N` is moved down to
//!   line `N` when the printed code runs ahead of the original (fewer lines so far): the line
//!   break is inserted before the token, and the token is indented to its original column;
//! * where the printed code runs behind (a construct whose generated code takes more lines
//!   than its original, such as an enum's function wrapper), the printed lines are joined
//!   with a space;
//! * on a line where nothing needs to move, a token is moved right to its original column
//!   when the generated code before it on that line is shorter than the original.
//!
//! Line breaks are only removed outside template literals (the printer writes no comments and
//! escapes line terminators in strings), and only inserted between two tokens where no
//! restricted production (`return`, `throw`, `break`, `continue`, `yield`, `async`, postfix
//! `++`/`--`, `=>`) could change meaning. The printer ends every statement with a `;`, so
//! joining lines never depends on automatic semicolon insertion; the result is checked all
//! the same: re-parsed and printed again, it must give exactly what the printed code gives,
//! else the printed code is used as it is (right, but with lines that may not match).
//!
//! So lines match the original for every token the source map traces (statements,
//! expressions, identifiers, literals, closing braces), except where generated code that comes
//! from a later line had to stay on an earlier one (the printed code cannot move up), and
//! columns match wherever the generated code before a token on its line is not longer than
//! the original. Code that the transform generates (an enum's `E[E["A"] = 0] = "A"`, a
//! namespace's `(function(_N) { ... })(N || (N = {}))`, a parameter property's
//! `this.x = x`) sits on the line of the construct it comes from, with columns of its own.

use std::path::Path;

use oxc_allocator::Allocator;
use oxc_ast::ast::*;
use oxc_ast_visit::Visit;
use oxc_codegen::{Codegen, CodegenOptions, CommentOptions};
use oxc_semantic::SemanticBuilder;
use oxc_span::SourceType;
use oxc_transformer::{EnvOptions, JsxOptions, TransformOptions, Transformer, TypeScriptOptions};

use crate::parse::{is_valid, parse};
use crate::positions::{is_line_terminator, SourceError};

const NAMESPACE_NON_CONST_ERROR: &str = "TypeScript namespaces can only export `const` variables here (`export let` / `export var` in a namespace need code generation that is not supported); use `export const`";

const UNCOMPILED_ERROR: &str =
    "this TypeScript could not be compiled to JavaScript: oxc's transform left TypeScript syntax in it";

/// Compiles the TypeScript `program` (parsed from `src`) to JavaScript whose lines match the
/// lines of `src` (see the module documentation). `construct` is the byte offset of the first
/// construct that needs code generation, where failures of the transform are reported.
pub(crate) fn generate<'a>(
    allocator: &'a Allocator,
    src: &'a str,
    program: Program<'a>,
    construct: u32,
) -> Result<String, SourceError> {
    let (code, tokens) = print(allocator, src, program)?;
    let printed_allocator = Allocator::default();
    let Some(printed) = parse_javascript(&printed_allocator, &code) else {
        // TypeScript the transform left in place: better named here than by V8 in the
        // printed code.
        return Err(SourceError::at(src, construct, UNCOMPILED_ERROR));
    };
    Ok(retain_lines(&code, &printed, &tokens).unwrap_or(code))
}

/// Transforms and prints `program`, with the source-map tokens of the printed code.
fn print<'a>(
    allocator: &'a Allocator,
    src: &'a str,
    mut program: Program<'a>,
) -> Result<(String, Vec<MapToken>), SourceError> {
    let scoping = SemanticBuilder::new()
        .with_enum_eval(true)
        .build(&program)
        .semantic
        .into_scoping();
    let options = TransformOptions {
        typescript: TypeScriptOptions {
            only_remove_type_imports: true,
            ..TypeScriptOptions::default()
        },
        jsx: JsxOptions::disable(),
        env: EnvOptions::default(),
        ..TransformOptions::default()
    };
    let transformed = Transformer::new(allocator, Path::new("input.ts"), &options)
        .build_with_scoping(scoping, &mut program);
    if let Some(diagnostic) = transformed.diagnostics.into_vec().into_iter().next() {
        let offset = diagnostic.labels.first().map_or(0, |label| label.offset());
        let message = if diagnostic.message.contains("exporting non-const") {
            NAMESPACE_NON_CONST_ERROR.to_string()
        } else {
            format!(
                "this TypeScript could not be compiled to JavaScript: {}",
                diagnostic.message
            )
        };
        return Err(SourceError::at(src, offset, message));
    }
    // What is left of import/export statements is type-only (the caller refused the others).
    program.body.retain(|stmt| !stmt.is_module_declaration());

    let printed = Codegen::new()
        .with_options(CodegenOptions {
            comments: CommentOptions::disabled(),
            source_map_path: Some("input.ts".into()),
            ..CodegenOptions::default()
        })
        .with_source_text(src)
        .build(&program);
    let map = printed.map.as_ref();
    let tokens: Vec<MapToken> = map
        .map(|map| {
            map.get_tokens()
                .map(|t| MapToken {
                    dst_line: t.get_dst_line(),
                    dst_col: t.get_dst_col(),
                    src_line: t.get_src_line(),
                    src_col: t.get_src_col(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((printed.code, tokens))
}

/// A source-map token: 0-based lines, 0-based UTF-16 columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MapToken {
    pub dst_line: u32,
    pub dst_col: u32,
    pub src_line: u32,
    pub src_col: u32,
}

/// Where a token of the printed code should go: byte offset in the printed code, 1-based
/// original line, 0-based original UTF-16 column.
#[derive(Debug, Clone, Copy)]
struct Mark {
    offset: usize,
    line: u32,
    col: u32,
}

/// Byte offsets in `code` of the source-map tokens (whose positions count lines the way
/// ECMAScript and the source-map builder do, and columns in UTF-16 units). Tokens at the
/// same offset keep the earliest original position.
fn marks(code: &str, tokens: &[MapToken]) -> Vec<Mark> {
    let mut tokens = tokens.to_vec();
    tokens.sort_by_key(|t| (t.dst_line, t.dst_col));
    let mut marks: Vec<Mark> = Vec::with_capacity(tokens.len());
    let mut next = tokens.iter().peekable();
    let (mut line, mut col) = (0u32, 0u32);
    let mut chars = code.char_indices().peekable();
    loop {
        let offset = chars.peek().map_or(code.len(), |&(i, _)| i);
        while let Some(t) = next.next_if(|t| (t.dst_line, t.dst_col) <= (line, col)) {
            let mark = Mark {
                offset,
                line: t.src_line + 1,
                col: t.src_col,
            };
            match marks.last_mut() {
                Some(last) if last.offset == offset => {
                    if (mark.line, mark.col) < (last.line, last.col) {
                        *last = mark;
                    }
                }
                _ => marks.push(mark),
            }
        }
        let Some((_, c)) = chars.next() else { break };
        if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
            col += 1; // counted as one line break, at the `\n`
        } else if is_line_terminator(c) {
            line += 1;
            col = 0;
        } else {
            col += c.len_utf16() as u32;
        }
    }
    marks
}

/// Byte ranges of `code` that must stay as they are: template literal text, strings,
/// regular expressions and comments.
#[derive(Default)]
struct Literals {
    ranges: Vec<(u32, u32)>,
}

impl<'a> Visit<'a> for Literals {
    fn visit_template_element(&mut self, it: &TemplateElement<'a>) {
        self.ranges.push((it.span.start, it.span.end));
    }

    fn visit_string_literal(&mut self, it: &StringLiteral<'a>) {
        self.ranges.push((it.span.start, it.span.end));
    }

    fn visit_reg_exp_literal(&mut self, it: &RegExpLiteral<'a>) {
        self.ranges.push((it.span.start, it.span.end));
    }
}

/// Parses JavaScript as a module, or else as a sloppy-mode script.
fn parse_javascript<'a>(allocator: &'a Allocator, code: &'a str) -> Option<Program<'a>> {
    [SourceType::mjs(), SourceType::cjs()]
        .into_iter()
        .find_map(|source_type| {
            let parsed = parse(allocator, code, source_type);
            is_valid(&parsed).then_some(parsed.program)
        })
}

/// The program printed again, without positions: two texts that print the same are the same
/// program.
fn canonical(program: &Program<'_>) -> String {
    Codegen::new()
        .with_options(CodegenOptions {
            comments: CommentOptions::disabled(),
            ..CodegenOptions::default()
        })
        .build(program)
        .code
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '\\' || c == '#'
}

/// Whether a space may go between `code[..at]` and `code[at..]` (both outside literals)
/// without joining or splitting a token.
fn can_space(code: &str, at: usize) -> bool {
    let before = &code[..at];
    let after = &code[at..];
    let Some(prev) = before.chars().next_back() else {
        return true;
    };
    let Some(next) = after.chars().next() else {
        return true;
    };
    if prev == ' ' || prev == '\t' {
        return true;
    }
    match prev {
        '(' | ')' | '[' | ']' | '{' | '}' | ',' | ';' | ':' => true,
        // `a.b`, `a?.b`; not `...x` nor `.5`
        '.' => {
            (is_identifier_char(next) && !next.is_ascii_digit() && next != '#')
                && !before[..before.len() - 1].ends_with('.')
        }
        _ => false,
    }
}

/// Whether a line break may go between `code[..at]` and `code[at..]`: a space may, and no
/// restricted production (`return [no LineTerminator here] x`, ...) spans the gap.
fn can_break(code: &str, at: usize) -> bool {
    if !can_space(code, at) {
        return false;
    }
    let after = &code[at..];
    if after.starts_with("=>") || after.starts_with("++") || after.starts_with("--") {
        return false;
    }
    let before = code[..at].trim_end_matches([' ', '\t']);
    let word_start = before
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_identifier_char(c))
        .last()
        .map_or(before.len(), |(i, _)| i);
    let word = &before[word_start..];
    let is_property = before[..word_start].trim_end().ends_with('.');
    is_property
        || !matches!(
            word,
            "return" | "throw" | "break" | "continue" | "yield" | "async"
        )
}

/// Moves the tokens of `code` (printed code, one statement per line, no comments, parsed as
/// `program`) to the lines and columns of the original that `tokens` give (see the module
/// documentation). `None` when the result would not be the same program.
pub(crate) fn retain_lines(
    code: &str,
    program: &Program<'_>,
    tokens: &[MapToken],
) -> Option<String> {
    let mut literals = Literals::default();
    literals.visit_program(program);
    for comment in &program.comments {
        literals.ranges.push((comment.span.start, comment.span.end));
    }
    literals.ranges.sort_unstable();
    let literal_end = |offset: usize| -> Option<usize> {
        let offset = offset as u32;
        let i = literals
            .ranges
            .partition_point(|&(start, _)| start <= offset);
        let (start, end) = *literals.ranges.get(i.checked_sub(1)?)?;
        (start <= offset && offset < end).then_some(end as usize)
    };

    let marks = marks(code, tokens);
    let mut marks = marks.iter().peekable();
    let mut out = String::with_capacity(code.len() + code.len() / 4);
    let (mut line, mut col) = (1u32, 0u32); // of the end of `out`; columns in UTF-16 units
    let mut pending_break = false;
    let mut i = 0usize;

    let newlines = |out: &mut String, line: &mut u32, col: &mut u32, to: u32| {
        while *line < to {
            out.push('\n');
            *line += 1;
        }
        *col = 0;
    };
    let pad = |out: &mut String, col: &mut u32, to: u32| {
        while *col < to {
            out.push(' ');
            *col += 1;
        }
    };

    while i < code.len() {
        if let Some(end) = literal_end(i) {
            // Copied as is; the marks inside are dropped.
            if pending_break {
                pending_break = false;
                if !out.is_empty() {
                    out.push(' ');
                    col += 1;
                }
            }
            let text = &code[i..end];
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                out.push(c);
                if c == '\r' && chars.peek() == Some(&'\n') {
                    col += 1;
                } else if is_line_terminator(c) {
                    line += 1;
                    col = 0;
                } else {
                    col += c.len_utf16() as u32;
                }
            }
            while marks.next_if(|m| m.offset < end).is_some() {}
            i = end;
            continue;
        }
        let c = code[i..].chars().next()?;
        if c == '\n' {
            pending_break = true;
            i += 1;
            continue;
        }
        if is_line_terminator(c) {
            return None; // not printed outside literals
        }
        if pending_break && (c == ' ' || c == '\t') {
            i += 1;
            continue;
        }
        // The earliest original position of the tokens that start here.
        let mut mark: Option<Mark> = None;
        while let Some(m) = marks.next_if(|m| m.offset <= i) {
            if mark.is_none_or(|k| (m.line, m.col) < (k.line, k.col)) {
                mark = Some(*m);
            }
        }
        if pending_break {
            pending_break = false;
            match mark {
                Some(m) if m.line > line => {
                    newlines(&mut out, &mut line, &mut col, m.line);
                    pad(&mut out, &mut col, m.col);
                }
                _ => {
                    if !out.is_empty() {
                        out.push(' ');
                        col += 1;
                    }
                    if let Some(m) = mark.filter(|m| m.line == line) {
                        pad(&mut out, &mut col, m.col);
                    }
                }
            }
        } else if let Some(m) = mark {
            if m.line > line && can_break(code, i) {
                newlines(&mut out, &mut line, &mut col, m.line);
                pad(&mut out, &mut col, m.col);
            } else if m.line == line && m.col > col && can_space(code, i) {
                pad(&mut out, &mut col, m.col);
            }
        }
        out.push(c);
        col += c.len_utf16() as u32;
        i += c.len_utf8();
    }
    // Same program, whatever moved.
    let allocator = Allocator::default();
    let moved = parse_javascript(&allocator, &out)?;
    (canonical(&moved) == canonical(program)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{execute, Options, RunOptions};
    use crate::outcome::Status;
    use crate::source::{prepare, Language};

    /// `retain_lines` of printed code, parsed first as `generate` parses it.
    fn realign(code: &str, tokens: &[MapToken]) -> Option<String> {
        let allocator = Allocator::default();
        let program = parse_javascript(&allocator, code).expect("the printed code parses");
        retain_lines(code, &program, tokens)
    }

    fn canonical_text(code: &str) -> String {
        let allocator = Allocator::default();
        canonical(&parse_javascript(&allocator, code).expect("the code parses"))
    }

    /// Runs TypeScript; the JSON of its completion value.
    fn run(src: &str) -> String {
        let out = execute(
            src,
            Options {
                run: RunOptions {
                    language: Language::TypeScript,
                    ..RunOptions::default()
                },
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(out.status, Status::Completed, "{src:?}: {:?}", out.error);
        out.result.unwrap()
    }

    /// Runs TypeScript that throws; the (line, column) V8 reports.
    fn thrown_at(src: &str) -> (u32, u32) {
        let out = execute(
            src,
            Options {
                run: RunOptions {
                    language: Language::TypeScript,
                    ..RunOptions::default()
                },
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(out.status, Status::Failed, "{src:?}");
        assert!(!out.syntax_error, "{src:?}: {:?}", out.error);
        let error = out.error.unwrap();
        (error.line.unwrap(), error.column.unwrap())
    }

    /// The prepared JavaScript, checked to keep the number of lines.
    fn compiled(src: &str) -> String {
        let code = prepare(src, Language::TypeScript)
            .unwrap_or_else(|e| panic!("{e} in {src:?}"))
            .code;
        assert_eq!(
            code.lines().count(),
            src.lines().count(),
            "{src:?} -> {code:?}"
        );
        code
    }

    #[test]
    fn enums() {
        // numeric, auto-increment after an initialised member, strings, computed members
        let src = "enum E {\n  A,\n  B,\n  C = 10,\n  D,\n  S = 'str',\n  F = C * 2,\n  G = 'ab'.length,\n}\n[E.A, E.B, E.C, E.D, E.S, E.F, E.G]";
        compiled(src);
        assert_eq!(run(src), r#"[0,1,10,11,"str",20,2]"#);
        // reverse mapping for numeric members only
        assert_eq!(
            run("enum E { A, B = 5 }\n[E[E.A] === 'A', E[5], 'str' in E]"),
            r#"[true,"B",false]"#
        );
        assert_eq!(
            run("enum S { X = 'x' }\n[S.X, S['x'] === undefined]"),
            r#"["x",true]"#
        );
    }

    #[test]
    fn const_enums_are_regular_enums() {
        let src = "const enum Dir {\n  Up = 1,\n  Down,\n}\n[Dir.Up, Dir.Down, typeof Dir, Dir[2]]";
        compiled(src);
        assert_eq!(run(src), r#"[1,2,"object","Down"]"#);
    }

    #[test]
    fn enum_declarations_merge() {
        let src = "enum E { A, B }\nlet between = E.B;\nenum E { C = 7, D }\n[E.A, E.B, E.C, E.D, E[8], between]";
        compiled(src);
        assert_eq!(run(src), r#"[0,1,7,8,"D",1]"#);
        // an enum inside a function
        assert_eq!(
            run("function f() {\n  enum L { X = 3 }\n  return L.X;\n}\nf()"),
            "3"
        );
    }

    #[test]
    fn namespaces() {
        // nested and dotted namespaces
        let src = "namespace A.B {\n  export const x = 1;\n}\nnamespace Outer {\n  export namespace Inner {\n    export const y = 2;\n  }\n  export const z = Inner.y + 1;\n}\n[A.B.x, Outer.Inner.y, Outer.z]";
        compiled(src);
        assert_eq!(run(src), "[1,2,3]");
        // exported functions and constants used inside, and a private helper
        let src = "namespace M {\n  export const k = 2;\n  function helper(v: number) { return v + 1; }\n  export function f(v: number): number {\n    return helper(v) * k;\n  }\n}\n[M.f(3), M.k, typeof (M as any).helper]";
        compiled(src);
        assert_eq!(run(src), r#"[8,2,"undefined"]"#);
        // merging with a function, a class, and another block of the same namespace
        let src = "function F() { return 1; }\nnamespace F {\n  export const extra = 2;\n}\nclass C { static s = 's'; }\nnamespace C {\n  export const tag = 't';\n}\nnamespace F {\n  export const more = F.extra + 1;\n}\n[F(), F.extra, F.more, C.s, C.tag, new C() instanceof C]";
        compiled(src);
        assert_eq!(run(src), r#"[1,2,3,"s","t",true]"#);
        // `module` is the old spelling of `namespace`; type-only members are erased
        let src = "module Old {\n  export interface I { a: number }\n  export type T = string;\n  export const v: T = 'v';\n}\nOld.v";
        compiled(src);
        assert_eq!(run(src), r#""v""#);
        // enums and classes exported from a namespace
        assert_eq!(
            run("namespace N {\n  export enum E { A = 4 }\n  export class K { k = 5 }\n}\n[N.E.A, new N.K().k]"),
            "[4,5]"
        );
    }

    #[test]
    fn namespaces_cannot_export_let_or_var() {
        let e = prepare(
            "namespace N {\n  export let x = 1;\n}",
            Language::TypeScript,
        )
        .unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, NAMESPACE_NON_CONST_ERROR));
    }

    #[test]
    fn parameter_properties() {
        let src = "class P {\n  constructor(public a: number, private b = 2, protected c?: string, readonly d: number = 4) {}\n  sum() { return this.a + this.b + this.d; }\n}\nconst p = new P(1);\n[p.a, (p as any).b, (p as any).c, p.d, p.sum(), Object.keys(p)]";
        compiled(src);
        assert_eq!(run(src), r#"[1,2,null,4,7,["a","b","c","d"]]"#);
        // a derived class: the fields are assigned after `super(...)`, which comes first
        let src = "class Base {\n  constructor(public a: number) {}\n  get twice() { return this.a * 2; }\n}\nclass Derived extends Base {\n  constructor(\n    public override a: number,\n    private readonly extra = 10,\n  ) {\n    super(a + 1);\n    this.log = [this.a, this.extra];\n  }\n  log: number[];\n}\nconst d = new Derived(5);\n[d.a, d.twice, d.log]";
        compiled(src);
        assert_eq!(run(src), "[5,10,[5,10]]");
    }

    #[test]
    fn errors_after_and_inside_transformed_constructs_keep_their_line() {
        // after an enum, a namespace, a class with parameter properties
        let src = "enum E {\n  A,\n  B,\n}\nnamespace N {\n  export const x = 1;\n}\nclass P {\n  constructor(\n    private a: number,\n  ) {}\n}\nconst p = new P(E.B + N.x);\n  throw new Error('line 14');";
        // (where the error was made, as its stack says: `new Error` at column 9)
        assert_eq!(thrown_at(src), (14, 9));
        // inside an enum initializer
        let src = "let n: any = null;\nenum E {\n  A = 1,\n  B = n.boom,\n}";
        // (the column is in the generated `E[E["B"] = n.boom] = "B"`, not at `boom`'s 9)
        assert_eq!(thrown_at(src).0, 4);
        // inside a namespace
        let src = "namespace N {\n  export const a = 1;\n  export function f() {\n    return (null as any).x;\n  }\n}\nN.f()";
        assert_eq!(thrown_at(src).0, 4);
        // in a constructor with parameter properties
        let src = "class P {\n  constructor(\n    readonly a: number,\n  ) {\n    if (a > 1) {\n      throw new RangeError('big');\n    }\n  }\n}\nnew P(2)";
        assert_eq!(thrown_at(src), (6, 13)); // at `new RangeError`, as the stack says
                                             // an expression over several lines: each part stays on its line
        let src = "enum E { A }\nconst o = {\n  a: E.A,\n  b: (undefined as any).boom,\n};";
        assert_eq!(thrown_at(src).0, 4);
    }

    #[test]
    fn top_level_await_after_the_transform() {
        let src = "enum E { A = 20 }\nconst v = await Promise.resolve(E.A);\nv + 1";
        assert!(compiled(src).contains("await Promise.resolve(E.A)"));
        assert_eq!(run(src), "21");
        assert_eq!(
            thrown_at("enum E { A }\nawait null;\n\n(null as any).x;\n1"),
            (4, 15)
        );
    }

    #[test]
    fn restricted_productions_and_templates_stay_intact() {
        // `return (\n a +\n b\n)` is printed `return a + b;`: no line break may follow `return`.
        let src = "enum E { A = 1 }\nfunction f(b: number) {\n  return (\n    E.A +\n    b\n  );\n}\nconst s = `x\ny${f(1)}`;\nconst g = async (\n  v: number,\n) => v;\n[f(2), s, typeof g]";
        let code = compiled(src);
        assert!(
            !code.lines().any(|line| line.trim_end().ends_with("return")),
            "{code:?}"
        );
        assert_eq!(run(src), r#"[3,"x\ny2","function"]"#);
    }

    #[test]
    fn a_varied_program_is_realigned_without_falling_back() {
        let src = "enum E { A = 1 }\n\
            interface I { x: number }\n\
            const s1 = 'a\\\nb';\n\
            const s2 = \"x\u{2028}y\";\n\
            const re = /a\\/b[/]/g;\n\
            const t = `line1\nline2 ${E.A} ${`nested\ninner`}`;\n\
            label: for (let i = 0; i < 2; i++) { if (i) continue label; else break label; }\n\
            function* gen() {\n  yield (\n    1\n  );\n}\n\
            async function af() {\n  await (\n    Promise.resolve(1)\n  );\n}\n\
            const arrow = async (\n  x: number,\n) => x;\n\
            let i = 0;\ni\n++\ni;\n\
            const obj = {\n  get a() { return 1 },\n  async *b() {},\n  [E.A]: 2,\n};\n\
            class K<T> {\n  #p = 1;\n  static s = 2;\n  get p() { return this.#p; }\n  m(this: K<T>, a?: T): T | undefined { return a; }\n}\n\
            do { i++ } while (i < 5)\n\
            const x = i as number;\n\
            [x, s1, s2.length, re.source, t, [...gen()], obj.a, obj[E.A], new K<number>().p, typeof arrow]";
        let allocator = Allocator::default();
        let program = parse(&allocator, src, SourceType::ts()).program;
        let (code, tokens) = print(&allocator, src, program).unwrap();
        let out = realign(&code, &tokens).unwrap_or_else(|| panic!("fell back: {code}"));
        let lines = |text: &str| text.split(['\n', '\u{2028}']).count();
        assert_eq!(lines(&out), lines(src), "{out}");
        assert_eq!(
            run(src),
            "[5,\"ab\",3,\"a\\\\/b[/]\",\"line1\\nline2 1 nested\\ninner\",[1],1,2,1,\"function\"]"
        );
    }

    #[test]
    fn retain_lines_refuses_breaks_that_change_meaning() {
        // Fabricated tokens ask for a line break before a postfix `++` and after `return`.
        let code = "let a = 1;\na++;\nfunction f() {\n\treturn 1;\n}\n";
        let tokens = [
            MapToken {
                dst_line: 1,
                dst_col: 1,
                src_line: 5,
                src_col: 0,
            },
            MapToken {
                dst_line: 3,
                dst_col: 8,
                src_line: 9,
                src_col: 0,
            },
        ];
        let out = realign(code, &tokens).unwrap();
        assert!(out.contains("a++;") && out.contains("return 1;"), "{out:?}");
        assert_eq!(canonical_text(&out), canonical_text(code));
    }

    #[test]
    fn retain_lines_pads_to_the_original_column() {
        let code = "let a = 1;\nf(a);\n";
        let tokens = [
            MapToken {
                dst_line: 0,
                dst_col: 0,
                src_line: 0,
                src_col: 0,
            },
            MapToken {
                dst_line: 1,
                dst_col: 0,
                src_line: 2,
                src_col: 4,
            },
            MapToken {
                dst_line: 1,
                dst_col: 2,
                src_line: 2,
                src_col: 8,
            },
        ];
        assert_eq!(realign(code, &tokens).unwrap(), "let a = 1;\n\n    f(  a);");
    }
}
