//! Every kind of nesting, as deep as the pre-scan lets through, is prepared from a thread
//! with a small stack: `prepare` must move to a stack of its own, and any overflow aborts
//! this test binary. One level deeper is a SyntaxError naming the limit.

use _engine::nesting;
use _engine::source::{prepare, Language, Prepared, SourceError, MAX_TREE_DEPTH};

/// Sources of every kind of nesting, each as deep as [`nesting::check`] lets through.
fn deepest_sources() -> Vec<(&'static str, Language, String)> {
    type Gen = fn(usize) -> String;
    let kinds: Vec<(&'static str, Language, Gen)> = vec![
        ("parens", Language::JavaScript, |n| {
            "(".repeat(n) + "1" + &")".repeat(n)
        }),
        ("brackets", Language::JavaScript, |n| {
            "[".repeat(n) + &"]".repeat(n)
        }),
        ("objects", Language::JavaScript, |n| {
            "x = ".to_string() + &"{a:".repeat(n) + "1" + &"}".repeat(n)
        }),
        ("blocks", Language::JavaScript, |n| {
            "{".repeat(n) + &"}".repeat(n)
        }),
        ("not", Language::JavaScript, |n| "!".repeat(n) + "x"),
        ("minus", Language::JavaScript, |n| "- ".repeat(n) + "x"),
        ("typeof", Language::JavaScript, |n| {
            "typeof ".repeat(n) + "x"
        }),
        ("await", Language::JavaScript, |n| "await ".repeat(n) + "x"),
        ("new", Language::JavaScript, |n| "new ".repeat(n) + "X"),
        ("assign", Language::JavaScript, |n| "a=".repeat(n) + "1"),
        ("ternary", Language::JavaScript, |n| "a?b:".repeat(n) + "c"),
        ("arrows", Language::JavaScript, |n| "x=>".repeat(n) + "1"),
        ("exp", Language::JavaScript, |n| "a**".repeat(n) + "1"),
        ("if", Language::JavaScript, |n| "if(a)".repeat(n) + "x"),
        ("else-if", Language::JavaScript, |n| {
            "if(a)x;".to_string() + &"else if(a)x;".repeat(n)
        }),
        ("labels", Language::JavaScript, |n| {
            (0..n).map(|i| format!("l{i}:")).collect::<String>() + "x"
        }),
        ("functions", Language::JavaScript, |n| {
            "function f(){".repeat(n) + &"}".repeat(n)
        }),
        ("arrow bodies", Language::JavaScript, |n| {
            "()=>{".repeat(n) + &"}".repeat(n)
        }),
        ("classes", Language::JavaScript, |n| {
            "x=class{m(){".repeat(n) + &"}}".repeat(n)
        }),
        ("templates", Language::JavaScript, |n| {
            "`${".repeat(n) + "1" + &"}`".repeat(n)
        }),
        ("calls", Language::JavaScript, |n| {
            "f(".repeat(n) + &")".repeat(n)
        }),
        ("spread", Language::JavaScript, |n| {
            "[...".repeat(n) + "x" + &"]".repeat(n)
        }),
        ("destructuring", Language::JavaScript, |n| {
            "[".repeat(n) + "a" + &"]".repeat(n) + "=x"
        }),
        ("plus chain", Language::JavaScript, |n| {
            "a".to_string() + &"+a".repeat(n)
        }),
        ("member chain", Language::JavaScript, |n| {
            "a".to_string() + &".a".repeat(n)
        }),
        ("call chain", Language::JavaScript, |n| {
            "f".to_string() + &"()".repeat(n)
        }),
        ("generics", Language::TypeScript, |n| {
            "let x: ".to_string() + &"A<".repeat(n) + "B" + &">".repeat(n)
        }),
        ("assertions", Language::TypeScript, |n| {
            "<T>".repeat(n) + "x"
        }),
        ("type unions", Language::TypeScript, |n| {
            "type T = ".to_string() + &"(A|".repeat(n) + "B" + &")".repeat(n)
        }),
        ("conditional types", Language::TypeScript, |n| {
            "type T = ".to_string() + &"A extends B ? C : ".repeat(n) + "D"
        }),
        ("keyof", Language::TypeScript, |n| {
            "type T = ".to_string() + &"keyof ".repeat(n) + "D"
        }),
        ("function types", Language::TypeScript, |n| {
            "type T = ".to_string() + &"() => ".repeat(n) + "D"
        }),
        ("array types", Language::TypeScript, |n| {
            "let x: A".to_string() + &"[]".repeat(n)
        }),
        ("qualified names", Language::TypeScript, |n| {
            "let x: A".to_string() + &".a".repeat(n)
        }),
        ("as chain", Language::TypeScript, |n| {
            "x".to_string() + &" as T".repeat(n)
        }),
        ("ts parens", Language::TypeScript, |n| {
            "let x: number = ".to_string() + &"(".repeat(n) + "1" + &")".repeat(n)
        }),
        ("auto parens", Language::Auto, |n| {
            "(".repeat(n) + "1" + &")".repeat(n)
        }),
        ("auto not", Language::Auto, |n| "!".repeat(n) + "x"),
        ("auto generics", Language::Auto, |n| {
            "let x: ".to_string() + &"A<".repeat(n) + "B" + &">".repeat(n)
        }),
    ];
    kinds
        .into_iter()
        .map(|(name, lang, gen)| {
            // Left-associative chains: as deep as the passes over the tree walk.
            if name.ends_with("chain")
                || name.ends_with("types") && name.starts_with("array")
                || name == "qualified names"
            {
                return (name, lang, gen(MAX_TREE_DEPTH as usize));
            }
            // Others: the largest n whose source the pre-scan accepts.
            let (mut lo, mut hi) = (1usize, 2 * nesting::MAX_NESTING as usize + 8);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if nesting::check(&gen(mid), nesting::Dialect::TypeScript).is_ok() {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            (name, lang, gen(lo))
        })
        .collect()
}

/// Prepares `src` on a thread with a stack of `bytes` (a stack overflow kills the test).
fn prepare_on_stack(bytes: usize, src: &str, lang: Language) -> Result<Prepared, SourceError> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(bytes)
            .spawn_scoped(s, || prepare(src, lang))
            .unwrap()
            .join()
            .unwrap()
    })
}

#[test]
fn deep_sources_fit_the_parse_stack() {
    // A thread with a small stack: `prepare` must move to a stack of its own. Any overflow
    // aborts the test binary.
    for (name, lang, src) in deepest_sources() {
        let result = prepare_on_stack(256 << 10, &src, lang);
        if let Err(e) = &result {
            assert!(
                e.message.contains("(the limit is "),
                "{name}: {}",
                e.message
            );
        }
    }
}

#[test]
fn deep_sources_fit_the_parse_stack_through_code_generation() {
    // The same sources after an enum: the whole program goes through oxc's semantic analysis,
    // transform and printer, which recurse too.
    let n = MAX_TREE_DEPTH as usize - 5; // chains the passes still walk
    let chains = [
        ("walked plus chain", "a".to_string() + &"+a".repeat(n)),
        ("walked member chain", "a".to_string() + &".a".repeat(n)),
        ("walked call chain", "f".to_string() + &"()".repeat(n)),
        ("walked as chain", "x".to_string() + &" as T".repeat(n)),
    ];
    let sources = deepest_sources()
        .into_iter()
        .map(|(name, _, src)| (name, src))
        .chain(chains);
    for (name, src) in sources {
        let src = format!("enum E {{ A }}\n{src}");
        let result = prepare_on_stack(256 << 10, &src, Language::TypeScript);
        match &result {
            Ok(prepared) => assert!(!prepared.code.contains("enum"), "{name}"),
            // JavaScript that is no TypeScript (`<T>` readings) is a TypeScript syntax error.
            Err(e) => assert!(!name.starts_with("walked"), "{name}: {}", e.message),
        }
    }
}

#[test]
fn one_level_deeper_is_a_syntax_error_naming_the_limit() {
    for (name, lang) in [
        ("parens", Language::JavaScript),
        ("not", Language::TypeScript),
    ] {
        let n = nesting::MAX_NESTING as usize + 1;
        let src = if name == "parens" {
            "(".repeat(n) + "1" + &")".repeat(n)
        } else {
            "!".repeat(n) + "x"
        };
        let err = prepare_on_stack(256 << 10, &src, lang).unwrap_err();
        assert!(
            err.message
                .contains(&format!("the limit is {}", nesting::MAX_NESTING)),
            "{}",
            err.message
        );
        assert_eq!((err.line, err.column), (1, n as u32));
    }
    // TypeScript is walked to erase its types: a longer chain than the walks take is refused.
    let chain = "a".to_string() + &"+a".repeat(MAX_TREE_DEPTH as usize + 10);
    let err = prepare_on_stack(256 << 10, &chain, Language::TypeScript).unwrap_err();
    assert!(
        err.message
            .contains(&format!("the limit is {MAX_TREE_DEPTH}")),
        "{}",
        err.message
    );
    // JavaScript is not walked: the chain goes to V8 as it is (tests/test_untrusted_sources.py
    // runs such sources in V8).
    let prepared = prepare_on_stack(256 << 10, &chain, Language::JavaScript).unwrap();
    assert_eq!(prepared.code.len(), chain.len());
}
