"""The ES2023-ES2025 built-ins that V8 10.2 lacks, installed from js/builtins.js into the base
snapshot: their shape (descriptors, length, name), the specification's examples and edge cases,
their errors, and that they survive snapshots and obey the heap cap."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from mcp_v8 import Engine

# `err(f)` is the name of the error f throws (null when it throws nothing); `log` collects calls.
PRELUDE = """
const err = (f) => { try { f(); return null; } catch (e) { return e instanceof Error ? e.name : typeof e; } };
const TA = Object.getPrototypeOf(Int8Array).prototype;
const IteratorProto = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]()));
// An iterator over `values` that records next/return calls in `log`.
function tracked(values, log) {
  let i = 0;
  return {
    __proto__: IteratorProto,
    next() { log.push('next'); return i < values.length ? { value: values[i++], done: false } : { value: undefined, done: true }; },
    return() { log.push('return'); return { done: true }; },
  };
}
"""


def js(engine: Engine, code: str, **kwargs: Any) -> Any:
    return engine.evaluate(PRELUDE + code, **kwargs)


# holder expression, property, length
METHODS = [
    ("Array.prototype", "toSorted", 1),
    ("Array.prototype", "toReversed", 0),
    ("Array.prototype", "toSpliced", 2),
    ("Array.prototype", "with", 2),
    ("TA", "toSorted", 1),
    ("TA", "toReversed", 0),
    ("TA", "with", 2),
    ("String.prototype", "isWellFormed", 0),
    ("String.prototype", "toWellFormed", 0),
    ("Object", "groupBy", 2),
    ("Map", "groupBy", 2),
    ("Promise", "withResolvers", 0),
    ("Promise", "try", 1),
    ("Array", "fromAsync", 1),
    ("Set.prototype", "union", 1),
    ("Set.prototype", "intersection", 1),
    ("Set.prototype", "difference", 1),
    ("Set.prototype", "symmetricDifference", 1),
    ("Set.prototype", "isSubsetOf", 1),
    ("Set.prototype", "isSupersetOf", 1),
    ("Set.prototype", "isDisjointFrom", 1),
    ("Iterator", "from", 1),
    ("Iterator.prototype", "map", 1),
    ("Iterator.prototype", "filter", 1),
    ("Iterator.prototype", "take", 1),
    ("Iterator.prototype", "drop", 1),
    ("Iterator.prototype", "flatMap", 1),
    ("Iterator.prototype", "reduce", 1),
    ("Iterator.prototype", "toArray", 0),
    ("Iterator.prototype", "forEach", 1),
    ("Iterator.prototype", "some", 1),
    ("Iterator.prototype", "every", 1),
    ("Iterator.prototype", "find", 1),
    ("Object.getPrototypeOf([].values().map(x => x))", "next", 0),
    ("Object.getPrototypeOf([].values().map(x => x))", "return", 0),
    ("Object.getPrototypeOf(Iterator.from({next() {}}))", "next", 0),
    ("Object.getPrototypeOf(Iterator.from({next() {}}))", "return", 0),
    ("RegExp", "escape", 1),
]


@pytest.mark.parametrize(("holder", "key", "length"), METHODS, ids=[f"{h}.{k}" for h, k, _ in METHODS])
def test_methods_have_the_built_in_shape(engine: Engine, holder: str, key: str, length: int) -> None:
    code = f"""
    const d = Object.getOwnPropertyDescriptor({holder}, {key!r});
    const f = d.value;
    [typeof f, f.name, f.length, d.writable, d.enumerable, d.configurable,
     Object.hasOwn(f, 'prototype'), err(() => new f()),
     Object.getOwnPropertyDescriptor(f, 'name').writable, Object.getOwnPropertyDescriptor(f, 'length').configurable]
    """
    assert js(engine, code) == ["function", key, length, True, False, True, False, "TypeError", False, True]


def test_accessors_have_the_built_in_shape(engine: Engine) -> None:
    code = """
    const d = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'detached');
    const c = Object.getOwnPropertyDescriptor(Iterator.prototype, 'constructor');
    const t = Object.getOwnPropertyDescriptor(Iterator.prototype, Symbol.toStringTag);
    [d.get.name, d.get.length, d.set, d.enumerable, d.configurable,
     c.get.name, c.set.name, c.set.length, c.enumerable, c.configurable,
     t.get.name, t.set.name, t.enumerable, t.configurable]
    """
    assert js(engine, code) == [
        "get detached",
        0,
        None,
        False,
        True,
        "get constructor",
        "set constructor",
        1,
        False,
        True,
        "get [Symbol.toStringTag]",
        "set [Symbol.toStringTag]",
        False,
        True,
    ]


def test_native_methods_are_kept(engine: Engine) -> None:
    # at / findLast / findLastIndex are V8's own in 10.2: not replaced by JavaScript.
    code = """
    [Array.prototype.at, Array.prototype.findLast, Array.prototype.findLastIndex, TA.at, TA.findLast]
      .map((f) => Function.prototype.toString.call(f).includes('[native code]'))
    """
    assert js(engine, code) == [True] * 5
    code = "[[1, 2, 3].findLast((x) => x < 3), [1, 2, 3].findLastIndex((x) => x > 5), [1, 2, 3].at(-1)]"
    assert js(engine, code) == [2, -1, 3]


# --- Array.prototype ------------------------------------------------------------------------


def test_array_to_sorted(engine: Engine) -> None:
    code = """
    const a = [3, 1, 10, 2];
    const sorted = a.toSorted();
    [sorted, a, sorted !== a, a.toSorted((x, y) => x - y), [3, , 1, undefined].toSorted(),
     Object.hasOwn([, 1].toSorted(), 1), Array.prototype.toSorted.call({ length: 3, 0: 'b', 1: 'a' }),
     Array.prototype.toSorted.call('cab'), Array.isArray(sorted), Object.getPrototypeOf(sorted) === Array.prototype,
     [].toSorted()]
    """
    assert js(engine, code) == [
        [1, 10, 2, 3],
        [3, 1, 10, 2],
        True,
        [1, 2, 3, 10],
        [1, 3, None, None],
        True,
        ["a", "b", None],
        ["a", "b", "c"],
        True,
        True,
        [],
    ]


def test_array_to_sorted_errors(engine: Engine) -> None:
    code = """
    let lengthRead = false;
    const spy = { get length() { lengthRead = true; return 0; } };
    [err(() => [1].toSorted(1)), err(() => Array.prototype.toSorted.call(spy, null)), lengthRead,
     err(() => Array.prototype.toSorted.call(null)), err(() => Array.prototype.toSorted.call(undefined)),
     err(() => Array.prototype.toSorted.call({ length: 2 ** 32 })),
     err(() => [2, 1].toSorted(() => { throw new EvalError('cmp'); }))]
    """
    assert js(engine, code) == [
        "TypeError",
        "TypeError",
        False,
        "TypeError",
        "TypeError",
        "RangeError",
        "EvalError",
    ]


def test_array_to_reversed_and_with(engine: Engine) -> None:
    code = """
    const a = [1, 2, 3];
    [a.toReversed(), a, [1, , 3].toReversed(), Object.hasOwn([1, , 3].toReversed(), 1),
     Array.prototype.toReversed.call({ length: 2, 0: 'x', 1: 'y' }),
     a.with(0, 9), a.with(-1, 9), a.with('1', 'z'), a.with(1.7, 0), a, [, 2].with(1, 5),
     err(() => a.with(3, 0)), err(() => a.with(-4, 0)), err(() => a.with(Infinity, 0)),
     err(() => [].with(0, 1)), err(() => a.with(Symbol(), 0)), err(() => Array.prototype.with.call(null, 0, 0)),
     err(() => Array.prototype.toReversed.call({ length: 2 ** 32 }))]
    """
    assert js(engine, code) == [
        [3, 2, 1],
        [1, 2, 3],
        [3, None, 1],
        True,
        ["y", "x"],
        [9, 2, 3],
        [1, 2, 9],
        [1, "z", 3],
        [1, 0, 3],
        [1, 2, 3],
        [None, 5],
        "RangeError",
        "RangeError",
        "RangeError",
        "RangeError",
        "TypeError",
        "TypeError",
        "RangeError",
    ]


def test_array_to_spliced(engine: Engine) -> None:
    code = """
    const a = [1, 2, 3, 4];
    [a.toSpliced(1, 2), a.toSpliced(1, 0, 'x', 'y'), a.toSpliced(-1, 1, 'z'), a.toSpliced(),
     a.toSpliced(2), a.toSpliced(undefined), a.toSpliced(1, undefined, 'q'), a.toSpliced(-Infinity, 1),
     a.toSpliced(10, 5, 'end'), a.toSpliced(1, -3), a, [1, , 3].toSpliced(0, 0),
     Object.hasOwn([1, , 3].toSpliced(0, 0), 1),
     err(() => Array.prototype.toSpliced.call({ length: 2 ** 53 - 1 }, 0, 0, 1)),
     err(() => Array.prototype.toSpliced.call({ length: 2 ** 32 }, 0, 0)),
     err(() => Array.prototype.toSpliced.call(null))]
    """
    assert js(engine, code) == [
        [1, 4],
        [1, "x", "y", 2, 3, 4],
        [1, 2, 3, "z"],
        [1, 2, 3, 4],
        [1, 2],
        [],
        [1, "q", 2, 3, 4],
        [2, 3, 4],
        [1, 2, 3, 4, "end"],
        [1, 2, 3, 4],
        [1, 2, 3, 4],
        [1, None, 3],
        True,
        "TypeError",
        "RangeError",
        "TypeError",
    ]


def test_array_methods_are_unscopable_and_ignore_user_changes(engine: Engine) -> None:
    code = """
    const u = Array.prototype[Symbol.unscopables];
    const flags = ['toReversed', 'toSorted', 'toSpliced', 'with'].map((k) => u[k]);
    // User changes to the intrinsics the spec does not look up change nothing.
    Array.prototype.sort = () => { throw new Error('user sort'); };
    Object.defineProperty(Array.prototype, '0', { set(v) { throw new Error('inherited setter'); }, configurable: true });
    Reflect.apply = () => { throw new Error('user Reflect.apply'); };
    const out = [[2, 1].toSorted(), [1, 2].toReversed(), [1, 2].with(0, 5), [1].toSpliced(0, 1, 7)];
    delete Array.prototype[0];
    [flags, out]
    """
    assert js(engine, code) == [[True, True, True, None], [[1, 2], [2, 1], [5, 2], [7]]]


# --- %TypedArray%.prototype -----------------------------------------------------------------


def test_typed_array_change_by_copy(engine: Engine) -> None:
    code = """
    const t = new Float64Array([3, -0, 0, NaN, -Infinity, 1]);
    const s = t.toSorted();
    const u = new Uint8Array([1, 2, 3]);
    const big = new BigInt64Array([1n, 2n]);
    [Array.from(s, (x) => Object.is(x, -0) ? '-0' : x), s.constructor.name, Array.from(t.slice(0, 2), (x) => Object.is(x, -0) ? '-0' : x),
     Array.from(u.toSorted((a, b) => b - a)), Array.from(u.toReversed()), u.toReversed() instanceof Uint8Array,
     Array.from(u.with(-1, 300)), Array.from(new Uint8ClampedArray([1, 2]).with(0, 300)), Array.from(u.with('1', '7')),
     Array.from(u), String(big.with(0, 5n)), big.with(1, -1n).constructor.name]
    """
    assert js(engine, code) == [
        [None, "-0", 0, 1, 3, None],
        "Float64Array",
        [3, "-0"],
        [3, 2, 1],
        [3, 2, 1],
        True,
        [1, 2, 44],
        [255, 2],
        [1, 7, 3],
        [1, 2, 3],
        "5,2",
        "BigInt64Array",
    ]


def test_typed_array_errors(engine: Engine) -> None:
    code = """
    const u = new Uint8Array(2);
    const memory = new WebAssembly.Memory({ initial: 1 });
    const detached = new Uint8Array(memory.buffer);
    memory.grow(1);  // detaches the old buffer
    let converted = 0;
    [err(() => u.with(2, 0)), err(() => u.with(-3, 0)), err(() => new BigInt64Array(1).with(0, 1)),
     err(() => u.with(0, Symbol())), err(() => u.toSorted('x')), err(() => TA.toSorted.call([1])),
     err(() => TA.toReversed.call({})), err(() => TA.with.call(null, 0, 0)),
     detached.length, err(() => detached.toSorted()), err(() => detached.toReversed()), err(() => detached.with(0, 0)),
     err(() => u.with({ valueOf() { converted++; return 0; } }, { valueOf() { converted++; return 1; } })), converted]
    """
    assert js(engine, code) == [
        "RangeError",
        "RangeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        0,
        "TypeError",
        "TypeError",
        "TypeError",
        None,
        2,
    ]


# --- String.prototype -----------------------------------------------------------------------


def test_string_well_formed(engine: Engine) -> None:
    code = r"""
    const cases = ['abc', 'a\uD83D\uDE00b', 'a\uD800', '\uDC00a', '\uDC00\uD800', '', '\uD800\uD800\uDC00'];
    [cases.map((s) => s.isWellFormed()), cases.map((s) => s.toWellFormed()),
     String.prototype.isWellFormed.call(42), String.prototype.toWellFormed.call({ toString() { return 'x\uD800'; } }),
     err(() => String.prototype.isWellFormed.call(null)), err(() => String.prototype.toWellFormed.call(undefined)),
     err(() => String.prototype.isWellFormed.call(Symbol())), 'a\uD800'.toWellFormed().length]
    """
    assert js(engine, code) == [
        [True, True, False, False, False, True, False],
        ["abc", "a\U0001f600b", "a\ufffd", "\ufffda", "\ufffd\ufffd", "", "\ufffd\U00010000"],
        True,
        "x\ufffd",
        "TypeError",
        "TypeError",
        "TypeError",
        2,
    ]


# --- Object.groupBy, Map.groupBy ------------------------------------------------------------


def test_object_group_by(engine: Engine) -> None:
    code = """
    const inventory = [
      { name: 'asparagus', type: 'vegetables', quantity: 5 },
      { name: 'bananas', type: 'fruit', quantity: 0 },
      { name: 'goat', type: 'meat', quantity: 23 },
      { name: 'cherries', type: 'fruit', quantity: 5 },
    ];
    const g = Object.groupBy(inventory, ({ type }) => type);
    const seen = [];
    const byIndex = Object.groupBy('abc', (c, i) => { seen.push([c, i]); return i % 2 ? 'odd' : 'even'; });
    const sym = Symbol('s');
    const keyed = Object.groupBy([1, 2], (x) => x === 1 ? sym : { toString() { return 'obj'; } });
    [Object.getPrototypeOf(g), Object.keys(g), g.fruit.map((x) => x.name), Array.isArray(g.fruit),
     byIndex, seen, keyed[sym], keyed.obj, Object.groupBy([], (x) => x), Object.keys(Object.groupBy([1], () => '__proto__')),
     err(() => Object.groupBy(null, (x) => x)), err(() => Object.groupBy([1], 'nope')), err(() => Object.groupBy(1, (x) => x))]
    """
    assert js(engine, code) == [
        None,
        ["vegetables", "fruit", "meat"],
        ["bananas", "cherries"],
        True,
        {"even": ["a", "c"], "odd": ["b"]},
        [["a", 0], ["b", 1], ["c", 2]],
        [1],
        [2],
        {},
        ["__proto__"],
        "TypeError",
        "TypeError",
        "TypeError",
    ]


def test_map_group_by_and_iterator_closing(engine: Engine) -> None:
    code = """
    const restock = { restock: true };
    const sufficient = { restock: false };
    const m = Map.groupBy([{ q: 9 }, { q: 2 }, { q: 6 }], ({ q }) => q < 5 ? restock : sufficient);
    const zeros = Map.groupBy([-0, 0, NaN, NaN], (x) => x);
    const log = [];
    const thrown = err(() => Map.groupBy({ [Symbol.iterator]() { return tracked([1, 2, 3], log); } },
                                         (x) => { if (x === 2) throw new SyntaxError('cb'); return x; }));
    [m instanceof Map, m.get(restock), m.get(sufficient), [...m.keys()].length, zeros.size, Object.is([...zeros.keys()][0], -0),
     zeros.get(0), zeros.get(NaN).length, thrown, log]
    """
    assert js(engine, code) == [
        True,
        [{"q": 2}],
        [{"q": 9}, {"q": 6}],
        2,
        2,
        False,
        [0, 0],
        2,
        "SyntaxError",
        ["next", "next", "return"],
    ]


# --- Promise.withResolvers, Promise.try -----------------------------------------------------


def test_promise_with_resolvers(engine: Engine) -> None:
    code = """
    const r = Promise.withResolvers();
    const keys = Object.keys(r);
    setTimeout(() => r.resolve('done'), 1);
    class Sub extends Promise {}
    const s = Sub.withResolvers();
    s.promise.catch(() => {});
    s.reject(new Error('x'));
    let executorShape;
    function Fake(executor) { executorShape = [executor.name, executor.length, err(() => new executor())]; executor(() => {}, () => {}); }
    Promise.withResolvers.call(Fake);
    Promise.all([r.promise, keys, s.promise instanceof Sub, executorShape,
                 err(() => Promise.withResolvers.call(1)), err(() => Promise.withResolvers.call({})),
                 err(() => Promise.withResolvers.call(function (ex) { ex(1, 2); }))])
    """
    assert js(engine, code) == [
        "done",
        ["promise", "resolve", "reject"],
        True,
        ["", 2, "TypeError"],
        "TypeError",
        "TypeError",
        "TypeError",
    ]


def test_promise_try(engine: Engine) -> None:
    code = """
    let syncCall = false;
    const p1 = Promise.try(() => { syncCall = true; return 1; });
    const wasSync = syncCall;
    const p2 = Promise.try((a, b) => a + b, 2, 3);
    const p3 = Promise.try(() => { throw new RangeError('boom'); }).catch((e) => e.name);
    const p4 = Promise.try(() => Promise.resolve('inner'));
    const p5 = Promise.try(42).catch((e) => e.name);
    Promise.all([p1, wasSync, p2, p3, p4, p5, p1 instanceof Promise, err(() => Promise.try.call(1, () => 1)),
                 err(() => Promise.try.call(() => 1, () => 1))])
    """
    assert js(engine, code) == [
        1,
        True,
        5,
        "RangeError",
        "inner",
        "TypeError",
        True,
        "TypeError",
        "TypeError",
    ]


# --- Array.fromAsync --------------------------------------------------------------------------


def test_array_from_async(engine: Engine) -> None:
    code = """
    async function* gen() { yield 1; await null; yield Promise.resolve(2); yield 3; }
    const syncOfPromises = [Promise.resolve('a'), 'b', new Promise((r) => setTimeout(() => r('c'), 5))];
    const arrayLike = { length: 2, 0: Promise.resolve('x'), 1: 'y' };
    class MyArray { constructor(...args) { this.args = args; } }
    const p = Array.fromAsync([1]);
    (async () => [
      await Array.fromAsync(gen()),
      await Array.fromAsync(syncOfPromises),
      await Array.fromAsync(arrayLike),
      await Array.fromAsync(gen(), async (x, i) => x * 10 + i),
      await Array.fromAsync(new Set([1, 2]), function (x) { return x + this.add; }, { add: 100 }),
      (await Array.fromAsync.call(MyArray, [1, 2])).length,
      (await Array.fromAsync.call(MyArray, { length: 1, 0: 'v' })).args,
      p instanceof Promise,
      await Array.fromAsync('ab'),
      await Array.fromAsync([1], 'not callable').catch((e) => e.name),
      await Array.fromAsync(null).catch((e) => e.name),
      await Array.fromAsync([Promise.reject(new URIError('r'))]).catch((e) => e.name),
      await Array.fromAsync({ [Symbol.asyncIterator]: 1 }).catch((e) => e.name),
    ])()
    """
    assert js(engine, code) == [
        [1, 2, 3],
        ["a", "b", "c"],
        ["x", "y"],
        [10, 21, 32],
        [101, 102],
        2,
        [1],
        True,
        ["a", "b"],
        "TypeError",
        "TypeError",
        "URIError",
        "TypeError",
    ]


def test_array_from_async_closes_iterators(engine: Engine) -> None:
    code = """
    const log = [];
    const asyncLog = [];
    const asyncIterable = {
      [Symbol.asyncIterator]() {
        let i = 0;
        return {
          next() { asyncLog.push('next'); return Promise.resolve({ value: i++, done: false }); },
          return() { asyncLog.push('return'); return Promise.resolve({ done: true }); },
        };
      },
    };
    (async () => [
      await Array.fromAsync({ [Symbol.iterator]() { return tracked([1, 2], log); } }, () => { throw new EvalError('m'); })
        .catch((e) => e.name),
      log,
      await Array.fromAsync(asyncIterable, (x) => { if (x === 1) throw new EvalError('m'); return x; }).catch((e) => e.name),
      asyncLog,
    ])()
    """
    assert js(engine, code) == ["EvalError", ["next", "return"], "EvalError", ["next", "next", "return"]]


# --- ArrayBuffer.prototype.detached -----------------------------------------------------------


def test_array_buffer_detached(engine: Engine) -> None:
    code = """
    const memory = new WebAssembly.Memory({ initial: 1 });
    const old = memory.buffer;
    const before = old.detached;
    memory.grow(1);
    [new ArrayBuffer(8).detached, new ArrayBuffer(0).detached, before, old.detached, memory.buffer.detached,
     err(() => ArrayBuffer.prototype.detached), err(() => Reflect.get(ArrayBuffer.prototype, 'detached', new SharedArrayBuffer(8))),
     err(() => Reflect.get(ArrayBuffer.prototype, 'detached', new Uint8Array(1))),
     'transfer' in ArrayBuffer.prototype, 'transferToFixedLength' in ArrayBuffer.prototype]
    """
    assert js(engine, code) == [
        False,
        False,
        False,
        True,
        False,
        "TypeError",
        "TypeError",
        "TypeError",
        False,
        False,
    ]


# --- Set methods --------------------------------------------------------------------------------


def test_set_methods_with_sets(engine: Engine) -> None:
    code = """
    const odds = new Set([1, 3, 5, 7, 9]);
    const squares = new Set([1, 4, 9]);
    const small = new Set([1, 9]);
    const r = (s) => [...s];
    [r(odds.union(squares)), r(odds.intersection(squares)), r(odds.difference(squares)),
     r(odds.symmetricDifference(squares)), small.isSubsetOf(odds), odds.isSubsetOf(small),
     odds.isSupersetOf(small), small.isSupersetOf(odds), odds.isDisjointFrom(new Set([2, 4])), odds.isDisjointFrom(squares),
     r(squares.intersection(odds)), r(odds), odds.union(squares) instanceof Set,
     Object.getPrototypeOf(odds.union(squares)) === Set.prototype, r(new Set([0]).union(new Set([-0]))),
     Object.is(r(new Set().union({ size: 1, has: () => true, keys: () => [-0].values() }))[0], -0)]
    """
    assert js(engine, code) == [
        [1, 3, 5, 7, 9, 4],
        [1, 9],
        [3, 5, 7],
        [3, 5, 7, 4],
        True,
        False,
        True,
        False,
        True,
        False,
        [1, 9],
        [1, 3, 5, 7, 9],
        True,
        True,
        [0],
        False,
    ]


def test_set_methods_with_set_likes(engine: Engine) -> None:
    code = """
    // A set-like that is not a Set: all integers below `limit`, with logged has/keys calls.
    function below(limit, log) {
      return {
        size: limit,
        has(v) { log.push('has:' + v); return Number.isInteger(v) && v >= 0 && v < limit; },
        keys() { log.push('keys'); let i = 0; return { next() { return i < limit ? { value: i++, done: false } : { done: true }; } }; },
      };
    }
    const s = new Set([1, 5, 7]);
    const l1 = [], l2 = [], l3 = [];
    const small = s.intersection(below(10, l1));   // this.size <= other.size: has() is used
    const large = s.intersection(below(2, l2));    // this.size > other.size: keys() is used
    const map = new Map([[1, 'a'], [2, 'b']]);     // a Map is set-like by its keys
    const diff = s.difference(below(6, l3));
    [[...small], l1, [...large], l2, [...s.union(map)], s.isSupersetOf(new Map([[1, 0]])), [...diff], l3,
     s.isSubsetOf(below(8, [])), s.isDisjointFrom(below(1, [])), [...new Set([1]).symmetricDifference(new Map([[1, 0], [2, 0]]))]]
    """
    assert js(engine, code) == [
        [1, 5, 7],
        ["has:1", "has:5", "has:7"],
        [1],
        ["keys"],
        [1, 5, 7, 2],
        True,
        [7],
        ["has:1", "has:5", "has:7"],
        True,
        True,
        [2],
    ]


def test_set_methods_validate_their_argument(engine: Engine) -> None:
    code = """
    const s = new Set([1]);
    const ok = { size: 1, has: () => true, keys: () => [].values() };
    const cases = [
      () => s.union([1]),                                          // size undefined -> NaN
      () => s.union({ ...ok, size: -1 }),
      () => s.union({ ...ok, size: NaN }),
      () => s.union({ ...ok, size: 'abc' }),
      () => s.union({ ...ok, size: 1n }),
      () => s.union({ ...ok, has: 1 }),
      () => s.union({ ...ok, keys: undefined }),
      () => s.union(null),
      () => s.union(1),
      () => Set.prototype.union.call(new Map(), ok),
      () => Set.prototype.isSubsetOf.call({ size: 1 }, ok),
      () => s.union({ ...ok, keys: () => 1 }),
      () => s.union({ ...ok, size: '1' }),
      () => s.union({ ...ok, size: -0.5 }),
      () => s.union({ ...ok, size: Infinity }),
    ];
    cases.map(err)
    """
    assert js(engine, code) == [
        "TypeError",
        "RangeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        None,
        None,
        None,
    ]


def test_set_methods_close_the_keys_iterator_and_ignore_user_changes(engine: Engine) -> None:
    code = """
    const log = [];
    const other = { size: 2, has: () => false, keys: () => tracked([1, 2, 3], log) };
    const superset = new Set([1, 5]).isSupersetOf(other);
    const log2 = [];
    const disjoint = new Set([1, 2, 3, 4]).isDisjointFrom({ size: 1, has: () => false, keys: () => tracked([9, 3, 7], log2) });
    const tooSmall = new Set([1]).isSupersetOf({ size: 2, has: () => true, keys() { throw new Error('not called'); } });
    // The Set's own data is read and written through intrinsics captured before user code ran;
    // only the argument's size/has/keys (and its iterator's next) are looked up, as specified.
    const a = new Set([1, 2]);
    const b = new Map([[2, 0], [3, 0]]);
    Set.prototype.add = () => { throw new Error('user add'); };
    Set.prototype.has = () => { throw new Error('user has'); };
    Set.prototype.delete = () => { throw new Error('user delete'); };
    Set.prototype.values = Set.prototype[Symbol.iterator] = () => { throw new Error('user iterator'); };
    Object.getPrototypeOf(a.keys()).next = () => { throw new Error('user next'); };
    [superset, log, disjoint, log2, tooSmall, a.union(b).size, a.intersection(b).size, a.difference(b).size,
     a.symmetricDifference(b).size, a.isSubsetOf(b), a.isDisjointFrom(b)]
    """
    assert js(engine, code) == [
        False,
        ["next", "next", "return"],
        False,
        ["next", "next", "return"],
        False,
        3,
        1,
        1,
        2,
        False,
        False,
    ]


# --- Iterator helpers ---------------------------------------------------------------------------


def test_iterator_constructor(engine: Engine) -> None:
    code = """
    class Counter extends Iterator {
      #i = 0;
      next() { return this.#i < 3 ? { value: this.#i++, done: false } : { value: undefined, done: true }; }
    }
    const c = new Counter();
    const d = Object.getOwnPropertyDescriptor(Iterator, 'prototype');
    const g = Object.getOwnPropertyDescriptor(globalThis, 'Iterator');
    const plain = Object.create(Iterator.prototype);
    plain.constructor = 'own';
    plain[Symbol.toStringTag] = 'tag';
    [typeof Iterator, Iterator.name, Iterator.length, Iterator.prototype === IteratorProto, d.writable, d.enumerable, d.configurable,
     g.writable, g.enumerable, g.configurable, err(() => new Iterator()), err(() => Iterator()),
     c instanceof Iterator, c.map((x) => x * 2).toArray(), [].values() instanceof Iterator,
     (function* () {})() instanceof Iterator, Iterator.prototype.constructor === Iterator,
     Object.prototype.toString.call(Object.create(Iterator.prototype)), Iterator.prototype[Symbol.toStringTag],
     plain.constructor, Object.hasOwn(plain, 'constructor'), plain[Symbol.toStringTag],
     err(() => { Iterator.prototype.constructor = 1; }), err(() => { Iterator.prototype[Symbol.toStringTag] = 1; }),
     Object.prototype.toString.call([].values()), Object.prototype.toString.call([].values().map((x) => x))]
    """
    assert js(engine, code) == [
        "function",
        "Iterator",
        0,
        True,
        False,
        False,
        False,
        True,
        False,
        True,
        "TypeError",
        "TypeError",
        True,
        [0, 2, 4],
        True,
        True,
        True,
        "[object Iterator]",
        "Iterator",
        "own",
        True,
        "tag",
        "TypeError",
        "TypeError",
        "[object Array Iterator]",
        "[object Iterator Helper]",
    ]


def test_iterator_helpers_results(engine: Engine) -> None:
    code = """
    function* naturals() { let i = 0; while (true) yield i++; }
    [naturals().map((x, i) => [x, i]).take(2).toArray(),
     naturals().filter((x) => x % 2).take(3).toArray(),
     naturals().drop(5).take(2).toArray(),
     naturals().take(0).toArray(),
     [1, 2, 3].values().drop(Infinity).toArray(),
     naturals().take(Infinity).take(2).toArray(),
     ['a b', 'c'].values().flatMap((s) => s.split(' ')).toArray(),
     [1, 2].values().flatMap((x) => new Set([x, x * 10])).toArray(),
     [1, 2, 3].values().reduce((a, b) => a + b),
     [1, 2, 3].values().reduce((a, b, i) => a + b * i, 100),
     (() => { const seen = []; [5, 6].values().forEach((v, i) => seen.push([v, i])); return seen; })(),
     [1, 2, 3].values().some((x) => x > 2), [1, 2, 3].values().every((x) => x > 2),
     [1, 2, 3].values().find((x) => x > 1), [1, 2, 3].values().find((x) => x > 5),
     [1, 2].values().drop(1.9).toArray(), naturals().take('2').toArray(),
     Array.isArray([1].values().toArray())]
    """
    assert js(engine, code) == [
        [[0, 0], [1, 1]],
        [1, 3, 5],
        [5, 6],
        [],
        [],
        [0, 1],
        ["a", "b", "c"],
        [1, 10, 2, 20],
        6,
        108,
        [[5, 0], [6, 1]],
        True,
        False,
        2,
        None,
        [2],
        [0, 1],
        True,
    ]


def test_iterator_helpers_are_lazy_and_close(engine: Engine) -> None:
    code = """
    const out = {};
    let log = [];
    const mapped = tracked([1, 2, 3], log).map((x) => { log.push('map:' + x); return x * 2; });
    out.created = [...log];
    out.first = mapped.next();
    out.afterFirst = [...log];
    out.ret = mapped.return();
    out.afterReturn = [...log];
    out.nextAfterReturn = mapped.next();
    out.returnAgain = mapped.return();
    out.finalLog = [...log];

    log = [];
    const unstarted = tracked([1], log).filter(Boolean);
    unstarted.return();
    unstarted.return();
    out.unstarted = [log, unstarted.next()];

    log = [];
    out.takeAll = [tracked([1, 2, 3], log).take(2).toArray(), log];

    log = [];
    out.flat = [tracked([1, 2], log).flatMap((x) => tracked([x], log)).take(1).toArray(), log];

    log = [];
    out.some = [tracked([1, 2, 3], log).some((x) => x === 2), log];
    log = [];
    out.every = [tracked([1, 2, 3], log).every((x) => x < 2), log];
    log = [];
    out.find = [tracked([1, 2, 3], log).find((x) => x === 1), log];
    log = [];
    out.exhausted = [tracked([1], log).some((x) => false), log];
    out
    """
    assert js(engine, code) == {
        "created": [],
        "first": {"value": 2, "done": False},
        "afterFirst": ["next", "map:1"],
        "ret": {"done": True},
        "afterReturn": ["next", "map:1", "return"],
        "nextAfterReturn": {"done": True},
        "returnAgain": {"done": True},
        "finalLog": ["next", "map:1", "return"],
        "unstarted": [["return"], {"done": True}],
        "takeAll": [[1, 2], ["next", "next", "return"]],
        "flat": [[1], ["next", "next", "return", "return"]],
        "some": [True, ["next", "next", "return"]],
        "every": [False, ["next", "next", "return"]],
        "find": [1, ["next", "return"]],
        "exhausted": [False, ["next", "next"]],
    }


def test_iterator_helpers_errors(engine: Engine) -> None:
    code = """
    const results = {};
    let log = [];
    const probe = (f) => { log = []; const e = err(f); return [e, log]; };
    results.takeNegative = probe(() => tracked([1], log).take(-1));
    results.takeNaN = probe(() => tracked([1], log).take(NaN));
    results.dropNaN = probe(() => tracked([1], log).drop('x'));
    results.dropNegative = probe(() => tracked([1], log).drop(-0.5));
    results.takeSymbol = probe(() => tracked([1], log).take(Symbol()));
    results.mapNotCallable = probe(() => tracked([1], log).map(1));
    results.reduceNotCallable = probe(() => tracked([1], log).reduce({}));
    results.mapperThrows = probe(() => tracked([1], log).map(() => { throw new EvalError('m'); }).next());
    results.flatMapString = probe(() => tracked([1], log).flatMap(() => 'ab').next());
    results.reduceEmpty = probe(() => tracked([], log).reduce((a, b) => a));
    results.nonObject = [err(() => Iterator.prototype.map.call(1, (x) => x)), err(() => Iterator.prototype.toArray.call(null))];
    results.badReceiver = [err(() => [].values().map((x) => x).next.call({})), err(() => [].values().map((x) => x).return.call([].values()))];
    const h = [1, 2].values().map((x) => h.next());
    results.reentrant = err(() => h.next());
    const h2 = [1, 2].values().map((x) => h2.return());
    results.reentrantReturn = err(() => h2.next());
    results.nextNotCallable = err(() => Iterator.prototype.toArray.call({ next: 1 }));
    results.resultNotObject = err(() => Iterator.prototype.toArray.call({ next: () => 1 }));
    results
    """
    assert js(engine, code) == {
        "takeNegative": ["RangeError", ["return"]],
        "takeNaN": ["RangeError", ["return"]],
        "dropNaN": ["RangeError", ["return"]],
        "dropNegative": [None, []],
        "takeSymbol": ["TypeError", ["return"]],
        "mapNotCallable": ["TypeError", ["return"]],
        "reduceNotCallable": ["TypeError", ["return"]],
        "mapperThrows": ["EvalError", ["next", "return"]],
        "flatMapString": ["TypeError", ["next", "return"]],
        "reduceEmpty": ["TypeError", ["next"]],
        "nonObject": ["TypeError", "TypeError"],
        "badReceiver": ["TypeError", "TypeError"],
        "reentrant": "TypeError",
        "reentrantReturn": "TypeError",
        "nextNotCallable": "TypeError",
        "resultNotObject": "TypeError",
    }


def test_iterator_from(engine: Engine) -> None:
    code = """
    const arrayIterator = [1, 2].values();
    const log = [];
    const bare = { i: 0, next() { return this.i < 2 ? { value: this.i++, done: false } : { done: true }; },
                   return() { log.push('return'); return { done: true }; } };
    const wrapped = Iterator.from(bare);
    const wrapProto = Object.getPrototypeOf(wrapped);
    const first = wrapped.next();
    wrapped.return();
    [Iterator.from(arrayIterator) === arrayIterator, Iterator.from('ab').toArray(), Iterator.from(new Set([3])).toArray(),
     wrapped instanceof Iterator, Object.getPrototypeOf(wrapProto) === Iterator.prototype, first, log,
     Iterator.from({ next() { return { done: true }; } }).return(),
     Iterator.from({ next: () => ({ value: 1, done: false }) }).take(2).toArray(),
     err(() => Iterator.from(1)), err(() => Iterator.from(null)), err(() => Iterator.from({ [Symbol.iterator]: 1 })),
     err(() => Iterator.from({ [Symbol.iterator]: () => 1 })), err(() => wrapProto.next.call({})),
     Object.getOwnPropertySymbols(wrapProto).length]
    """
    assert js(engine, code) == [
        True,
        ["a", "b"],
        [3],
        True,
        True,
        {"value": 0, "done": False},
        ["return"],
        {"done": True},
        [1, 1],
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        "TypeError",
        0,
    ]


# --- RegExp.escape --------------------------------------------------------------------------------


def test_regexp_escape(engine: Engine) -> None:
    code = r"""
    const cases = ['foo', 'The Quick Brown Fox', '(*)', '.a/b', '10$', '\u2028', '_x', 'a,b-c=d<e>f#g&h!i%j:k;l@m~n\'o`p"q',
                   '\t\n\v\f\r', 'a\u00a0b\ufeffc\u3000d', 'x\uD800y', '\u{1F600}', '^$\\.*+?()[]{}|', '', 'é', 'Ünïcödé'];
    const escaped = cases.map((s) => RegExp.escape(s));
    const roundTrip = cases.every((s) => new RegExp('^' + RegExp.escape(s) + '$', 'u').test(s) || s.includes('\uD800'));
    [escaped, roundTrip, new RegExp(RegExp.escape('a.b')).test('axb'), err(() => RegExp.escape(1)),
     err(() => RegExp.escape({ toString() { return 'x'; } })), err(() => RegExp.escape())]
    """
    assert js(engine, code) == [
        [
            "\\x66oo",
            "\\x54he\\x20Quick\\x20Brown\\x20Fox",
            "\\(\\*\\)",
            "\\.a\\/b",
            "\\x310\\$",
            "\\u2028",
            "_x",
            "\\x61\\x2cb\\x2dc\\x3dd\\x3ce\\x3ef\\x23g\\x26h\\x21i\\x25j\\x3ak\\x3bl\\x40m\\x7en\\x27o\\x60p\\x22q",
            "\\t\\n\\v\\f\\r",
            "\\x61\\xa0b\\ufeffc\\u3000d",
            "\\x78\\ud800y",
            "\U0001f600",
            "\\^\\$\\\\\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|",
            "",
            "é",
            "Ünïcödé",
        ],
        True,
        False,
        "TypeError",
        "TypeError",
        "TypeError",
    ]


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "Object.groupBy([1], () => {\n  throw new Error('user');\n})",
        "[1].values().map(() => {\n  throw new Error('user');\n}).toArray()",
        "[1].values().some(() => {\n  throw new Error('user');\n})",
        "[1].values().take({ valueOf() {\n  throw new Error('user');\n} })",
        "[1].values().flatMap(() => {\n  throw new Error('user');\n}).next()",
        "Array.fromAsync([1], () => {\n  throw new Error('user');\n})",
        "new Set([1]).isSubsetOf({ size: 1, has() {\n  throw new Error('user');\n}, keys() {} })",
    ],
)
def test_user_errors_passing_through_keep_their_location(engine: Engine, code: str) -> None:
    # Closing an iterator on the way out must not move the error's reported line into builtins.js.
    outcome = engine.execute(code)
    assert outcome.failed
    assert (outcome.error_name, outcome.error_message, outcome.error_line) == ("Error", "user", 2)
    assert "<input>:2:" in (outcome.error or "")


# --- snapshots and limits ------------------------------------------------------------------------


def test_builtins_survive_a_snapshot_round_trip(engine: Engine) -> None:
    first = engine.execute(
        """
        globalThis.s = new Set([1, 2]);
        globalThis.helper = [10, 20, 30].values().map((x) => x + 1);
        globalThis.firstValue = helper.next().value;
        globalThis.wrapped = Iterator.from({ i: 0, next() { return { value: this.i++, done: false }; } });
        [s.union(new Set([3])).size, [3, 1, 2].toSorted(), firstValue]
        """,
        snapshot=True,
    )
    assert first.completed, first.error
    assert first.result == "[3,[1,2,3],11]"
    assert first.snapshot is not None
    assert engine.execute("s.union(new Set([3])).size", heap=first.snapshot).result == "3"
    restored = engine.evaluate(
        """
        [helper.next().value, helper.return(), helper.next(), wrapped.take(2).toArray(), typeof Iterator,
         Object.groupBy([1, 2], (x) => x % 2 ? 'o' : 'e'), RegExp.escape('1'), 'a\\uD800'.isWellFormed(),
         [1, 2].with(0, 0)]
        """,
        heap=first.snapshot,
    )
    assert restored == [
        21,
        {"done": True},
        {"done": True},
        [0, 1],
        "function",
        {"o": [1], "e": [2]},
        "\\x31",
        False,
        [0, 2],
    ]
    # A snapshot of a snapshot keeps them too, and a new execution is unaffected by the old one's changes.
    second = engine.execute(
        "Array.prototype.toSorted = null; Set.prototype.union.length", heap=first.snapshot, snapshot=True
    )
    assert second.result == "1"
    assert engine.execute("Array.prototype.toSorted", heap=second.snapshot).result == "null"
    assert engine.execute("typeof Array.prototype.toSorted").result == '"function"'


def test_async_builtins_in_snapshot_runs(engine: Engine) -> None:
    code = """
    async function* gen() { yield 1; yield 2; }
    Array.fromAsync(gen(), async (x) => x * 2)
      .then((a) => Promise.try(() => a.toReversed()))
    """
    outcome = engine.execute(code, snapshot=True)
    assert outcome.completed, outcome.error
    assert outcome.result == "[4,2]"
    assert outcome.snapshot is not None


# A copy far larger than the cap (one 80 MB allocation under a 16 MB cap), in a child process:
# V8 aborts the process when the allocation that reaches the limit does not fit the limit
# HeapGuard::OnNearLimit (cpp/evaluation.cc) raises, so the guard leaves room for one large
# allocation before the terminated script stops. The native slice() is the same case.
HOSTILE_CHILD = """
import sys
from mcp_v8 import Engine
outcome = Engine().execute(sys.argv[1], heap_limit_mb=16, timeout=60)
print(outcome.status, outcome.heap_limit_exceeded)
"""


@pytest.mark.parametrize(
    "code", ["new Array(1e7).fill(0).toSorted()", "new Array(1e7).fill(0).slice().sort()"]
)
def test_a_copy_far_over_the_cap_fails_cleanly(code: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", HOSTILE_CHILD, code], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr[-500:]
    assert child.stdout.split() == ["failed", "True"]


@pytest.mark.parametrize(
    "code",
    [
        "const a = new Array(1e5).fill(1.5); const keep = []; while (true) keep.push(a.toReversed());",
        "const a = Array.from({ length: 1e5 }, (_, i) => -i); const keep = []; while (true) keep.push(a.toSorted());",
        "const a = new Array(1e5).fill('x'); const keep = []; while (true) keep.push(a.toSpliced(0, 0, 1), a.with(0, 2));",
        "const keep = []; while (true) keep.push([1, 2, 3].values().flatMap(() => new Array(1e4).fill(0)).toArray());",
        "const keep = []; while (true) keep.push(Object.groupBy(new Array(1e4).fill(0), (x, i) => i % 7));",
        "const s = new Set(Array.from({ length: 1e5 }, (_, i) => i)); const keep = []; while (true) keep.push(s.union(new Set([-1])));",
    ],
)
def test_growth_through_the_builtins_obeys_the_heap_cap(engine: Engine, code: str) -> None:
    outcome = engine.execute(code, heap_limit_mb=16, timeout=60)
    assert outcome.failed
    assert outcome.heap_limit_exceeded
    assert engine.execute("[2, 1].toSorted()", heap_limit_mb=16).result == "[1,2]"


def test_large_inputs_are_fast_enough(engine: Engine) -> None:
    outcome = engine.execute(
        """
        const a = Array.from({ length: 200000 }, (_, i) => (i * 7919) % 200000);
        const sorted = a.toSorted((x, y) => x - y);
        const s = 'x'.repeat(1e6) + '\\uD800';
        [sorted[0], sorted[199999], a[1], s.isWellFormed(), s.toWellFormed().length,
         new Set(a).intersection(new Set(a.slice(0, 1000))).size, a.values().filter((x) => x % 2).toArray().length]
        """,
        timeout=20,
    )
    assert outcome.completed, outcome.error
    assert outcome.result == "[0,199999,7919,false,1000001,1000,100000]"
