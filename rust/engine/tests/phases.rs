//! The phases of a run (`Outcome::phases`): which ones, in order, within the run, and each
//! covering the work it names.

use _engine::{
    execute, monotonic_ns, IsolateOptions, Language, LiveContext, Options, Outcome, RunOptions,
    Status,
};

const MS: u64 = 1_000_000;

/// Runs `code` in an isolate set up by `isolate`, with `language`; the outcome and the clock's
/// readings just before and just after.
fn timed(code: &str, isolate: IsolateOptions<'_>, language: Language) -> (Outcome, u64, u64) {
    let before = monotonic_ns();
    let out = execute(
        code,
        Options {
            isolate,
            run: RunOptions {
                language,
                ..RunOptions::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    (out, before, monotonic_ns())
}

fn names(out: &Outcome) -> Vec<&'static str> {
    out.phases.iter().map(|p| p.name).collect()
}

/// Each phase ends after it starts, starts after the previous one ended, and all lie within
/// `[before, after]`: their durations sum to no more than the run.
fn assert_ordered_within(out: &Outcome, before: u64, after: u64) {
    let mut last = before;
    let mut sum = 0;
    for p in &out.phases {
        assert!(p.start_ns >= last, "{p:?} starts before {last}");
        assert!(p.end_ns >= p.start_ns, "{p:?} ends before it starts");
        last = p.end_ns;
        sum += p.end_ns - p.start_ns;
    }
    assert!(
        last <= after,
        "the last phase ends at {last}, after the run ({after})"
    );
    assert!(sum <= after - before);
}

fn duration(out: &Outcome, name: &str) -> u64 {
    let p = out.phases.iter().find(|p| p.name == name).unwrap();
    p.end_ns - p.start_ns
}

#[test]
fn a_run_that_makes_a_snapshot_goes_through_every_phase_in_order() {
    let (out, before, after) = timed(
        "var n = 1; n + 1",
        IsolateOptions {
            snapshot: true,
            ..IsolateOptions::default()
        },
        Language::Auto,
    );
    assert_eq!(out.status, Status::Completed);
    assert_eq!(
        names(&out),
        ["transpile", "restore", "evaluate", "run", "snapshot"]
    );
    assert_ordered_within(&out, before, after);
    assert!(duration(&out, "snapshot") > 0);
}

#[test]
fn a_restored_heap_has_its_restore_phase_and_no_snapshot_phase() {
    let (first, _, _) = timed(
        "var n = 41",
        IsolateOptions {
            snapshot: true,
            ..IsolateOptions::default()
        },
        Language::Auto,
    );
    let sealed = first.snapshot.expect("snapshot");
    let (out, before, after) = timed(
        "n + 1",
        IsolateOptions {
            heap: Some(&sealed.envelope),
            ..IsolateOptions::default()
        },
        Language::Auto,
    );
    assert_eq!(out.result.as_deref(), Some("42"));
    assert_eq!(names(&out), ["transpile", "restore", "evaluate", "run"]);
    assert_ordered_within(&out, before, after);
}

#[test]
fn the_top_level_is_in_evaluate_and_what_it_awaits_in_run() {
    // 60 ms busy in the top level, then 60 ms awaiting a timer: each lower bound holds on a
    // machine however busy (a timer never fires early, a busy loop never ends early).
    let (out, before, after) = timed(
        "const t = Date.now(); while (Date.now() - t < 60) {}\n\
         await new Promise(r => setTimeout(r, 60)); 1",
        IsolateOptions::default(),
        Language::Auto,
    );
    assert_eq!(out.status, Status::Completed);
    assert_eq!(names(&out), ["transpile", "restore", "evaluate", "run"]);
    assert_ordered_within(&out, before, after);
    assert!(duration(&out, "evaluate") >= 55 * MS, "{:?}", out.phases);
    assert!(duration(&out, "run") >= 55 * MS, "{:?}", out.phases);
}

#[test]
fn typescript_is_transpiled_before_v8_and_a_refused_source_has_only_that_phase() {
    let (out, before, after) = timed(
        "enum E { A = 1 }\nconst x: number = E.A; x",
        IsolateOptions::default(),
        Language::TypeScript,
    );
    assert_eq!(out.result.as_deref(), Some("1"));
    assert_eq!(names(&out)[0], "transpile");
    assert_ordered_within(&out, before, after);

    let (refused, before, after) = timed(
        "let x: = 1",
        IsolateOptions::default(),
        Language::TypeScript,
    );
    assert!(refused.syntax_error);
    assert_eq!(names(&refused), ["transpile"]);
    assert_ordered_within(&refused, before, after);
}

#[test]
fn a_script_v8_cannot_compile_ends_in_evaluate() {
    // Parsed by the transpile step as JavaScript is left to V8: an early error V8 reports.
    let (out, before, after) = timed(
        "let a = 1; let a = 2;",
        IsolateOptions::default(),
        Language::JavaScript,
    );
    assert_eq!(out.status, Status::Failed);
    assert!(out.syntax_error);
    assert_eq!(names(&out), ["transpile", "restore", "evaluate"]);
    assert_ordered_within(&out, before, after);
}

#[test]
fn a_live_context_run_has_no_restore_phase() {
    let live = LiveContext::new(Default::default()).unwrap();
    let before = monotonic_ns();
    let out = live
        .run("globalThis.k = 2; k * 2", RunOptions::default())
        .unwrap();
    let after = monotonic_ns();
    assert_eq!(out.result.as_deref(), Some("4"));
    assert_eq!(names(&out), ["transpile", "evaluate", "run"]);
    assert_ordered_within(&out, before, after);
}
