//! Top-level `await` in a classic script, rewritten the way Node's REPL does it
//! (`lib/internal/repl/await.js`): top-level declarations are hoisted so they still become
//! globals, and the statements run inside an async arrow function whose promise is the
//! script's completion value. The wrapper opens on the first line and closes on a new last
//! line, so every user line keeps its line number. Used by [`crate::source::prepare`].

use std::collections::HashSet;

use oxc_allocator::Vec as ArenaVec;
use oxc_ast::ast::*;
use oxc_ast_visit::{walk, Visit};
use oxc_span::GetSpan;

use crate::source::DepthGuard;

/// Whether `program` awaits outside of any function (`await`, `for await`, `await using`);
/// `Err(offset)` where it nests deeper than [`crate::source::MAX_TREE_DEPTH`].
pub(crate) fn find(program: &Program<'_>) -> Result<bool, u32> {
    let mut finder = AwaitFinder::default();
    finder.visit_program(program);
    match finder.guard.exceeded_at {
        Some(offset) => Err(offset),
        None => Ok(finder.found),
    }
}

/// Finds `await` (and `for await`, `await using`) outside of any function.
#[derive(Default)]
struct AwaitFinder {
    found: bool,
    guard: DepthGuard,
}

impl<'a> Visit<'a> for AwaitFinder {
    fn visit_expression(&mut self, it: &Expression<'a>) {
        if self.guard.enter(it.span().start) {
            walk::walk_expression(self, it);
        }
        self.guard.leave();
    }

    fn visit_await_expression(&mut self, _it: &AwaitExpression<'a>) {
        self.found = true;
    }

    fn visit_for_of_statement(&mut self, it: &ForOfStatement<'a>) {
        self.found |= it.r#await;
        walk::walk_for_of_statement(self, it);
    }

    fn visit_variable_declaration(&mut self, it: &VariableDeclaration<'a>) {
        self.found |= it.kind == VariableDeclarationKind::AwaitUsing;
        walk::walk_variable_declaration(self, it);
    }

    // Function bodies are a scope of their own (parameters cannot contain `await` outside of
    // nested functions, which are skipped too).
    fn visit_function_body(&mut self, _it: &FunctionBody<'a>) {}

    fn visit_arrow_function_expression(&mut self, _it: &ArrowFunctionExpression<'a>) {}
}

/// Where a variable declaration that becomes an assignment stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DeclarationPosition {
    /// In a statement list: may start with `;` to stop the previous line from continuing.
    List,
    /// The body of `if`, `while`, a label, ...: must stay one statement.
    Single,
    /// `for (var i = 0; ...)`, `for (var x of xs)`: must stay an expression / assignment target.
    ForHead,
}

/// A text edit of the wrapped script: replace `delete` bytes at `at` by `insert`.
struct Edit {
    at: u32,
    delete: u32,
    insert: String,
}

/// Collects the edits and hoisted names of the top-level-await rewrite.
struct AwaitRewriter {
    edits: Vec<Edit>,
    lets: Vec<String>,
    vars: Vec<String>,
    functions: Vec<String>,
}

fn collect_bound_names(pattern: &BindingPattern<'_>, names: &mut Vec<String>) {
    match pattern {
        BindingPattern::BindingIdentifier(id) => names.push(id.name.as_str().to_string()),
        BindingPattern::ObjectPattern(object) => {
            for property in &object.properties {
                collect_bound_names(&property.value, names);
            }
            if let Some(rest) = &object.rest {
                collect_bound_names(&rest.argument, names);
            }
        }
        BindingPattern::ArrayPattern(array) => {
            for element in array.elements.iter().flatten() {
                collect_bound_names(element, names);
            }
            if let Some(rest) = &array.rest {
                collect_bound_names(&rest.argument, names);
            }
        }
        BindingPattern::AssignmentPattern(assignment) => {
            collect_bound_names(&assignment.left, names)
        }
    }
}

impl AwaitRewriter {
    /// Hoists the names of `decl` and turns it into an assignment: `const {a} = e` becomes
    /// `;(    {a} = e)` in a statement list. Declarators without initializer stay as plain
    /// references (`let x;` becomes `x;`), so a re-declared `var` keeps its value.
    fn declaration(
        &mut self,
        decl: &VariableDeclaration<'_>,
        position: DeclarationPosition,
        top_level: bool,
    ) {
        let keyword_len: u32 = match decl.kind {
            VariableDeclarationKind::Var => 3,
            VariableDeclarationKind::Let if top_level => 3,
            VariableDeclarationKind::Const if top_level => 5,
            _ => return, // block-scoped declarations inside blocks stay where they are
        };
        let names = if decl.kind == VariableDeclarationKind::Var {
            &mut self.vars
        } else {
            &mut self.lets
        };
        for declarator in &decl.declarations {
            collect_bound_names(&declarator.id, names);
        }
        let mut replacement = String::new();
        if position == DeclarationPosition::List {
            replacement.push(';');
        }
        let first = &decl.declarations[0];
        let parenthesize = position != DeclarationPosition::ForHead
            && matches!(first.id, BindingPattern::ObjectPattern(_));
        if parenthesize {
            replacement.push('('); // a statement cannot start with `{`
            self.edits.push(Edit {
                at: first.span.end,
                delete: 0,
                insert: ")".to_string(),
            });
        }
        while replacement.len() < keyword_len as usize {
            replacement.push(' ');
        }
        self.edits.push(Edit {
            at: decl.span.start,
            delete: keyword_len,
            insert: replacement,
        });
    }
}

/// Finds `var` declarations outside functions (they are function-scoped, so they must be
/// hoisted out of the wrapper too).
impl<'a> Visit<'a> for AwaitRewriter {
    fn visit_statements(&mut self, stmts: &ArenaVec<'a, Statement<'a>>) {
        for stmt in stmts {
            match stmt {
                Statement::VariableDeclaration(d) => {
                    self.declaration(d, DeclarationPosition::List, false)
                }
                _ => self.visit_statement(stmt),
            }
        }
    }

    fn visit_variable_declaration(&mut self, it: &VariableDeclaration<'a>) {
        self.declaration(it, DeclarationPosition::Single, false);
    }

    fn visit_for_statement_init(&mut self, it: &ForStatementInit<'a>) {
        if let ForStatementInit::VariableDeclaration(d) = it {
            self.declaration(d, DeclarationPosition::ForHead, false);
        }
    }

    fn visit_for_statement_left(&mut self, it: &ForStatementLeft<'a>) {
        if let ForStatementLeft::VariableDeclaration(d) = it {
            self.declaration(d, DeclarationPosition::ForHead, false);
        }
    }

    // Expressions only contain declarations inside functions and classes, which are scopes of
    // their own.
    fn visit_expression(&mut self, _it: &Expression<'a>) {}

    fn visit_function_body(&mut self, _it: &FunctionBody<'a>) {}

    fn visit_class(&mut self, _it: &Class<'a>) {}
}

fn unique(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

/// Rewrites a script with top-level await into
///
/// ```text
/// let a, C; var v, f; (async () => { this.f = f; <user code, edited>
/// })()
/// ```
///
/// * `var` declarations outside functions and top-level `let`/`const` become assignments to
///   hoisted globals; `const` becomes `let` (the binding is assigned inside the wrapper, so it
///   cannot stay constant).
/// * Top-level `function f` declarations stay in the wrapper (so they are still hoisted there)
///   and are published as globals by `this.f = f;` at the start of the wrapper.
/// * Top-level `class C {}` becomes `C=class C {};` assigned to a hoisted `let C`.
/// * The last statement, if it is an expression statement, becomes `return (expr);`, so the
///   wrapper's promise resolves to the script's completion value.
pub(crate) fn wrap(code: &str, program: &Program<'_>) -> String {
    let mut rewriter = AwaitRewriter {
        edits: Vec::new(),
        lets: Vec::new(),
        vars: Vec::new(),
        functions: Vec::new(),
    };

    if program.hashbang.is_some() {
        // A hashbang is only allowed at the very start; keep it as a line comment.
        rewriter.edits.push(Edit {
            at: 0,
            delete: 2,
            insert: "//".to_string(),
        });
    }
    for stmt in &program.body {
        match stmt {
            Statement::VariableDeclaration(d) => {
                rewriter.declaration(d, DeclarationPosition::List, true)
            }
            Statement::FunctionDeclaration(f) => {
                if let Some(id) = &f.id {
                    rewriter.functions.push(id.name.as_str().to_string());
                }
            }
            Statement::ClassDeclaration(c) => {
                if let Some(id) = &c.id {
                    let name = id.name.as_str().to_string();
                    rewriter.edits.push(Edit {
                        at: c.span.start,
                        delete: 0,
                        insert: format!("{name}="),
                    });
                    rewriter.edits.push(Edit {
                        at: c.span.end,
                        delete: 0,
                        insert: ";".to_string(),
                    });
                    rewriter.lets.push(name);
                }
            }
            _ => rewriter.visit_statement(stmt),
        }
    }
    let last = program
        .body
        .iter()
        .rev()
        .find(|s| !matches!(s, Statement::EmptyStatement(_)));
    if let Some(Statement::ExpressionStatement(last)) = last {
        rewriter.edits.push(Edit {
            at: last.span.start,
            delete: 0,
            insert: "return (".to_string(),
        });
        rewriter.edits.push(Edit {
            at: last.expression.span().end,
            delete: 0,
            insert: ")".to_string(),
        });
    }

    let mut out = String::with_capacity(code.len() + 64);
    if program.has_use_strict_directive() {
        // The directive inside the wrapper no longer applies to the hoisted declarations.
        out.push_str("\"use strict\"; ");
    }
    let lets = unique(rewriter.lets);
    if !lets.is_empty() {
        out.push_str(&format!("let {}; ", lets.join(", ")));
    }
    let functions = unique(rewriter.functions);
    let vars = unique(rewriter.vars.into_iter().chain(functions.iter().cloned()));
    if !vars.is_empty() {
        out.push_str(&format!("var {}; ", vars.join(", ")));
    }
    out.push_str("(async () => { ");
    for f in &functions {
        out.push_str(&format!("this.{f} = {f}; "));
    }

    rewriter.edits.sort_by_key(|e| e.at); // stable: same-position edits keep their order
    let mut copied = 0usize;
    for edit in &rewriter.edits {
        let at = edit.at as usize;
        debug_assert!(at >= copied, "overlapping edits");
        out.push_str(&code[copied..at]);
        out.push_str(&edit.insert);
        copied = at + edit.delete as usize;
    }
    out.push_str(&code[copied..]);
    out.push_str("\n})()");
    out
}
