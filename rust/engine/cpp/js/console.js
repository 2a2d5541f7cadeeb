// Portions of this file are derived from Node.js (lib/internal/util/inspect.js,
// lib/internal/util.js, lib/internal/console/constructor.js, lib/internal/cli_table.js),
// used under the MIT license:
//
// Copyright Node.js contributors. All rights reserved.
//
// Permission is hereby granted, free of charge, to any person obtaining a copy
// of this software and associated documentation files (the "Software"), to
// deal in the Software without restriction, including without limitation the
// rights to use, copy, modify, merge, publish, distribute, sublicense, and/or
// sell copies of the Software, and to permit persons to whom the Software is
// furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in
// all copies or substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
// IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
// FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
// AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
// LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
// FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS
// IN THE SOFTWARE.
//
// console.js - `console` for mcp-v8 isolates.
//
// Evaluated by the host once per fresh context as a classic script. The
// completion value is the function below; the host calls it with
//   host.print(level, text)   level: 0 log, 1 info, 2 warn, 3 error, 4 debug, 5 trace
//   host.promiseState(p)      -> [state, value]  (0 pending, 1 fulfilled, 2 rejected)
//   host.proxyDetails(v)      -> undefined, or [target, handler] for a Proxy
//                                ([null, null] or null for a revoked proxy)
// and it installs globalThis.console (writable, configurable, non-enumerable).
//
// Host notes:
//  - promiseState is only called for objects whose prototype chain contains
//    Promise.prototype, which can include non-promises such as
//    Object.create(Promise.prototype); it should return undefined or throw
//    for those, not crash.
//  - Compile this script under a distinct resource name (e.g. "console.js"):
//    console.trace drops stack frames that carry that name.
//
// Output follows Node 20's `util.format` / `util.inspect` defaults (the
// algorithm is a port of lib/internal/util/inspect.js and
// lib/internal/console/constructor.js). Everything the formatter needs is
// captured below before user code runs, and the formatter never runs user
// code: no getters, no toString/valueOf/Symbol.toPrimitive, no custom inspect
// hooks, no Proxy traps. Exceptions: `%j` uses JSON.stringify (toJSON and
// getters run, as in Node); count/time* labels that are objects are converted
// with `${label}` as in Node; a user Error.prepareStackTrace runs when V8
// formats a stack that has not been read before (as in Node).
//
// Known differences from Node (all follow from not running user code or from
// V8 internals that JS cannot reach): Map/Set iterators and WeakMap/WeakSet
// contents are shown as <items unknown>; Symbol.toStringTag getters,
// util.inspect.custom hooks, user toString (for %s) and valueOf (for %d/%i/%f)
// are ignored; names are read from data properties only; the stack of an error
// whose name/message are getters is not read; string width of emoji differs
// from Node's ICU-based width; the `getters` inspect option is not supported.
(function (host) {
  'use strict';

  // =========================================================================
  // 1. Primordials (captured now, immune to later changes by user code)
  // =========================================================================

  const uncurryThis = Function.prototype.bind.bind(Function.prototype.call);
  const ReflectApply = Reflect.apply;
  const ReflectOwnKeys = Reflect.ownKeys;

  const ObjectPrototype = Object.prototype;
  const ObjectKeys = Object.keys;
  const ObjectGetOwnPropertyNames = Object.getOwnPropertyNames;
  const ObjectGetOwnPropertySymbols = Object.getOwnPropertySymbols;
  const ObjectGetOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const ObjectGetPrototypeOf = Object.getPrototypeOf;
  const ObjectSetPrototypeOf = Object.setPrototypeOf;
  const ObjectDefineProperty = Object.defineProperty;
  const ObjectIs = Object.is;
  const ObjectPrototypeHasOwnProperty = uncurryThis(ObjectPrototype.hasOwnProperty);
  const ObjectPrototypePropertyIsEnumerable =
    uncurryThis(ObjectPrototype.propertyIsEnumerable);
  const ObjectPrototypeToString = uncurryThis(ObjectPrototype.toString);

  const FunctionPrototype = Function.prototype;
  const FunctionPrototypeToString = uncurryThis(FunctionPrototype.toString);

  const ArrayIsArray = Array.isArray;
  const ArrayPrototypeSort = uncurryThis(Array.prototype.sort);

  const StringCtor = String;
  const StringPrototype = String.prototype;
  const StringPrototypeSlice = uncurryThis(StringPrototype.slice);
  const StringPrototypeCharCodeAt = uncurryThis(StringPrototype.charCodeAt);
  const StringPrototypeCodePointAt = uncurryThis(StringPrototype.codePointAt);
  const StringPrototypeIndexOf = uncurryThis(StringPrototype.indexOf);
  const StringPrototypeLastIndexOf = uncurryThis(StringPrototype.lastIndexOf);
  const StringPrototypeIncludes = uncurryThis(StringPrototype.includes);
  const StringPrototypeStartsWith = uncurryThis(StringPrototype.startsWith);
  const StringPrototypeEndsWith = uncurryThis(StringPrototype.endsWith);
  const StringPrototypeRepeat = uncurryThis(StringPrototype.repeat);
  const StringPrototypePadStart = uncurryThis(StringPrototype.padStart);
  const StringPrototypePadEnd = uncurryThis(StringPrototype.padEnd);
  const StringPrototypeValueOf = uncurryThis(StringPrototype.valueOf);
  const StringPrototypeNormalize = typeof StringPrototype.normalize === 'function' ?
    uncurryThis(StringPrototype.normalize) : undefined;

  const NumberCtor = Number;
  const NumberIsNaN = Number.isNaN;
  const NumberIsFinite = Number.isFinite;
  const NumberParseInt = Number.parseInt;
  const NumberParseFloat = Number.parseFloat;
  const NumberPrototypeToString = uncurryThis(Number.prototype.toString);
  const NumberPrototypeValueOf = uncurryThis(Number.prototype.valueOf);
  const NumberPrototypeToFixed = uncurryThis(Number.prototype.toFixed);
  const BooleanPrototypeValueOf = uncurryThis(Boolean.prototype.valueOf);
  const BigIntPrototypeValueOf = typeof BigInt === 'function' ?
    uncurryThis(BigInt.prototype.valueOf) : undefined;
  const SymbolPrototypeValueOf = uncurryThis(Symbol.prototype.valueOf);
  const SymbolIterator = Symbol.iterator;
  const SymbolToStringTag = Symbol.toStringTag;

  const MathMin = Math.min;
  const MathMax = Math.max;
  const MathRound = Math.round;
  const MathSqrt = Math.sqrt;
  const MathFloor = Math.floor;
  const MathCeil = Math.ceil;
  const MathTrunc = Math.trunc;

  const DateNow = Date.now;
  const DatePrototypeGetTime = uncurryThis(Date.prototype.getTime);
  const DatePrototypeToISOString = uncurryThis(Date.prototype.toISOString);
  const DatePrototypeToString = uncurryThis(Date.prototype.toString);

  const RegExpPrototype = RegExp.prototype;
  const RegExpPrototypeExec = uncurryThis(RegExpPrototype.exec);

  const JSONStringify = JSON.stringify;

  const ErrorPrototype = Error.prototype;
  const RangeErrorPrototype = RangeError.prototype;
  const TypeErrorPrototype = TypeError.prototype;
  const ErrorCaptureStackTrace = typeof Error.captureStackTrace === 'function' ?
    Error.captureStackTrace : undefined;
  const ErrorCtor = Error;

  const PromisePrototype = Promise.prototype;
  const Uint8ArrayCtor = Uint8Array;
  const TypedArrayPrototype = ObjectGetPrototypeOf(Uint8Array.prototype);

  const MapCtor = Map;
  const SetCtor = Set;
  const MapPrototypeGet = uncurryThis(Map.prototype.get);
  const MapPrototypeSet = uncurryThis(Map.prototype.set);
  const MapPrototypeHas = uncurryThis(Map.prototype.has);
  const MapPrototypeDelete = uncurryThis(Map.prototype.delete);
  const MapPrototypeEntries = uncurryThis(Map.prototype.entries);
  const SetPrototypeHas = uncurryThis(Set.prototype.has);
  const SetPrototypeAdd = uncurryThis(Set.prototype.add);
  const SetPrototypeValues = uncurryThis(Set.prototype.values);
  const MapIteratorPrototype = ObjectGetPrototypeOf(new Map().entries());
  const SetIteratorPrototype = ObjectGetPrototypeOf(new Set().values());
  const MapIteratorNext = uncurryThis(MapIteratorPrototype.next);
  const SetIteratorNext = uncurryThis(SetIteratorPrototype.next);
  const WeakMapPrototypeHas = uncurryThis(WeakMap.prototype.has);
  const WeakSetPrototypeHas = uncurryThis(WeakSet.prototype.has);

  // eslint-disable-next-line no-empty-function
  const AsyncFunctionPrototype = ObjectGetPrototypeOf(async function () {});
  // eslint-disable-next-line no-empty-function
  const GeneratorFunctionPrototype = ObjectGetPrototypeOf(function* () {});
  // eslint-disable-next-line no-empty-function
  const AsyncGeneratorFunctionPrototype = ObjectGetPrototypeOf(async function* () {});

  // Native getters. They are called directly (never looked up again), and the
  // set of "trusted" getters is the only kind of accessor the formatter will
  // ever invoke (they are V8 builtins without side effects).
  const trustedGetters = new SetCtor();
  function captureGetter(proto, name) {
    if (proto === undefined || proto === null) return undefined;
    const d = ObjectGetOwnPropertyDescriptor(proto, name);
    if (d === undefined || typeof d.get !== 'function') return undefined;
    SetPrototypeAdd(trustedGetters, d.get);
    return uncurryThis(d.get);
  }
  const SharedArrayBufferPrototype = typeof SharedArrayBuffer === 'function' ?
    SharedArrayBuffer.prototype : undefined;
  const MapPrototypeGetSize = captureGetter(Map.prototype, 'size');
  const SetPrototypeGetSize = captureGetter(Set.prototype, 'size');
  const TypedArrayPrototypeGetSymbolToStringTag =
    captureGetter(TypedArrayPrototype, SymbolToStringTag);
  const TypedArrayPrototypeGetLength = captureGetter(TypedArrayPrototype, 'length');
  const TypedArrayPrototypeGetByteLength = captureGetter(TypedArrayPrototype, 'byteLength');
  const TypedArrayPrototypeGetByteOffset = captureGetter(TypedArrayPrototype, 'byteOffset');
  const TypedArrayPrototypeGetBuffer = captureGetter(TypedArrayPrototype, 'buffer');
  const ArrayBufferPrototypeGetByteLength = captureGetter(ArrayBuffer.prototype, 'byteLength');
  const SharedArrayBufferPrototypeGetByteLength =
    captureGetter(SharedArrayBufferPrototype, 'byteLength');
  const DataViewPrototypeGetBuffer = captureGetter(DataView.prototype, 'buffer');
  captureGetter(DataView.prototype, 'byteLength');
  captureGetter(DataView.prototype, 'byteOffset');
  const RegExpPrototypeGetSource = captureGetter(RegExpPrototype, 'source');
  const regExpFlagGetters = [];
  {
    // Same order as RegExp.prototype.flags.
    const flags = [['hasIndices', 'd'], ['global', 'g'], ['ignoreCase', 'i'],
      ['multiline', 'm'], ['dotAll', 's'], ['unicode', 'u'],
      ['unicodeSets', 'v'], ['sticky', 'y']];
    for (let i = 0; i < flags.length; i++) {
      const g = captureGetter(RegExpPrototype, flags[i][0]);
      if (g !== undefined) {
        regExpFlagGetters[regExpFlagGetters.length] = { __proto__: null, get: g, ch: flags[i][1] };
      }
    }
  }
  // Newer V8 versions expose `stack` as an accessor; trust V8's own getter.
  {
    const probe = new ErrorCtor('x');
    const d = ObjectGetOwnPropertyDescriptor(probe, 'stack');
    if (d !== undefined && typeof d.get === 'function') SetPrototypeAdd(trustedGetters, d.get);
    const p = ObjectGetOwnPropertyDescriptor(ErrorPrototype, 'stack');
    if (p !== undefined && typeof p.get === 'function') SetPrototypeAdd(trustedGetters, p.get);
  }

  // Resource name of this script, learned from a stack trace now, so that
  // console.trace can drop frames that belong to console.js. Generic names
  // (shared with user scripts) disable the filter.
  const ownScriptName = (() => {
    let stack;
    try {
      stack = new ErrorCtor().stack;
    } catch {
      return '';
    }
    if (typeof stack !== 'string') return '';
    const at = StringPrototypeIndexOf(stack, '\n    at ');
    if (at === -1) return '';
    let end = StringPrototypeIndexOf(stack, '\n', at + 1);
    if (end === -1) end = stack.length;
    let loc = StringPrototypeSlice(stack, at + 8, end);
    if (StringPrototypeEndsWith(loc, ')')) {
      const open = StringPrototypeLastIndexOf(loc, '(');
      if (open === -1) return '';
      loc = StringPrototypeSlice(loc, open + 1, -1);
    }
    for (let k = 0; k < 2; k++) {
      const colon = StringPrototypeLastIndexOf(loc, ':');
      if (colon === -1) return '';
      loc = StringPrototypeSlice(loc, 0, colon);
    }
    if (loc === '' || StringPrototypeIncludes(loc, '<anonymous>')) return '';
    return loc;
  })();

  // Names of the global constructors (Node's `builtInObjects`).
  const builtInObjects = new SetCtor();
  {
    const re = /^[A-Z][a-zA-Z0-9]+$/;
    const names = ObjectGetOwnPropertyNames(globalThis);
    for (let i = 0; i < names.length; i++) {
      if (RegExpPrototypeExec(re, names[i]) !== null) SetPrototypeAdd(builtInObjects, names[i]);
    }
  }

  // Clock for console.time*.
  const perf = globalThis.performance;
  const perfNow = perf !== undefined && perf !== null && typeof perf.now === 'function' ?
    perf.now : undefined;
  function now() {
    if (perfNow !== undefined) {
      try { return ReflectApply(perfNow, perf, []); } catch { /* fall through */ }
    }
    return DateNow();
  }

  // Message V8 uses for circular JSON (for `%j`).
  let CIRCULAR_ERROR_MESSAGE;
  try {
    const a = {};
    a.a = a;
    JSONStringify(a);
  } catch (err) {
    CIRCULAR_ERROR_MESSAGE = firstLine(err.message);
  }

  // Host functions. `host` itself stays in this closure only.
  const hostPrint = host.print;
  const hostPromiseState = host.promiseState;
  const hostProxyDetails = host.proxyDetails;

  // =========================================================================
  // 2. Small safe utilities
  // =========================================================================

  // Arrays with a null prototype: writing/reading elements can never reach a
  // user-installed setter/getter on Array.prototype or Object.prototype.
  function newList() {
    return ObjectSetPrototypeOf([], null);
  }
  function push(list, value) {
    list[list.length] = value;
  }
  function listFrom(arrayLike) {
    const list = newList();
    for (let i = 0; i < arrayLike.length; i++) list[i] = arrayLike[i];
    return list;
  }
  function listIncludes(list, value) {
    for (let i = 0; i < list.length; i++) if (list[i] === value) return true;
    return false;
  }
  function listIndexOf(list, value) {
    for (let i = 0; i < list.length; i++) if (list[i] === value) return i;
    return -1;
  }
  function listRemoveAt(list, index) {
    for (let i = index; i < list.length - 1; i++) list[i] = list[i + 1];
    list.length--;
  }
  function join(list, separator) {
    let str = '';
    for (let i = 0; i < list.length; i++) {
      if (i !== 0) str += separator;
      str += list[i];
    }
    return str;
  }
  function firstLine(str) {
    str = typeof str === 'string' ? str : '';
    const i = StringPrototypeIndexOf(str, '\n');
    return i === -1 ? str : StringPrototypeSlice(str, 0, i);
  }
  function splitString(str, separator) {
    const out = newList();
    let last = 0;
    let i;
    while ((i = StringPrototypeIndexOf(str, separator, last)) !== -1) {
      push(out, StringPrototypeSlice(str, last, i));
      last = i + separator.length;
    }
    push(out, StringPrototypeSlice(str, last));
    return out;
  }
  function replaceAllString(str, search, replacement) {
    let i = StringPrototypeIndexOf(str, search);
    if (i === -1) return str;
    let out = '';
    let last = 0;
    while (i !== -1) {
      out += StringPrototypeSlice(str, last, i) + replacement;
      last = i + search.length;
      i = StringPrototypeIndexOf(str, search, last);
    }
    return out + StringPrototypeSlice(str, last);
  }
  // Replace every match of a global regexp by a fixed string (avoids
  // RegExp.prototype[Symbol.replace], which looks up user-patchable `exec`).
  function regExpReplaceAll(re, str, replacement) {
    re.lastIndex = 0;
    let out = '';
    let last = 0;
    let m;
    while ((m = RegExpPrototypeExec(re, str)) !== null) {
      out += StringPrototypeSlice(str, last, m.index) + replacement;
      last = m.index + m[0].length;
      if (m[0].length === 0) re.lastIndex++;
    }
    re.lastIndex = 0;
    return out + StringPrototypeSlice(str, last);
  }
  function isObjectLike(v) {
    return (typeof v === 'object' && v !== null) || typeof v === 'function';
  }
  function tryCall(fn, value) {
    try {
      fn(value);
      return true;
    } catch {
      return false;
    }
  }

  // --- Proxies (never run traps) ---

  // Returns undefined for non-proxies, else { revoked, target, handler }.
  function proxyInfo(value) {
    if (typeof hostProxyDetails !== 'function') return undefined;
    const r = ReflectApply(hostProxyDetails, host, [value]);
    if (r === undefined) return undefined;
    if (r === null || r[0] === null || r[0] === undefined) {
      return { __proto__: null, revoked: true, target: null, handler: null };
    }
    return { __proto__: null, revoked: false, target: r[0], handler: r[1] };
  }
  // The innermost proxy target (or null for a revoked proxy).
  function unwrapProxy(value) {
    for (let guard = 0; guard < 100000; guard++) {
      const info = proxyInfo(value);
      if (info === undefined) return value;
      if (info.revoked) return null;
      value = info.target;
    }
    return null;
  }

  // --- Property access without running user code ---

  // A normalized, null-prototype descriptor of an own property.
  function ownDesc(obj, key) {
    const d = ObjectGetOwnPropertyDescriptor(obj, key);
    if (d === undefined) return undefined;
    const accessor = ObjectPrototypeHasOwnProperty(d, 'get');
    return {
      __proto__: null,
      accessor,
      value: accessor ? undefined : d.value,
      get: accessor ? d.get : undefined,
      set: accessor ? d.set : undefined,
      enumerable: d.enumerable,
    };
  }
  // Descriptor of `key` found along the prototype chain (proxies unwrapped).
  function lookupDesc(obj, key) {
    let o = obj;
    for (let guard = 0; guard < 100000 && isObjectLike(o); guard++) {
      o = unwrapProxy(o);
      if (o === null) return undefined;
      const d = ownDesc(o, key);
      if (d !== undefined) return d;
      o = ObjectGetPrototypeOf(o);
    }
    return undefined;
  }
  function isTrustedGetter(fn) {
    return typeof fn === 'function' && SetPrototypeHas(trustedGetters, fn);
  }
  // [[Get]] that only returns data values or results of trusted native getters.
  function safeGet(obj, key) {
    const d = lookupDesc(obj, key);
    if (d === undefined) return undefined;
    if (!d.accessor) return d.value;
    if (isTrustedGetter(d.get)) {
      try {
        return ReflectApply(d.get, obj, []);
      } catch {
        return undefined;
      }
    }
    return undefined;
  }
  function safeHas(obj, key) {
    return lookupDesc(obj, key) !== undefined;
  }
  // Like safeHas, but ignores properties found on Object.prototype.
  function hasOwnOrInherited(obj, key) {
    let o = obj;
    for (let guard = 0; guard < 100000 && isObjectLike(o); guard++) {
      o = unwrapProxy(o);
      if (o === null || o === ObjectPrototype) return false;
      if (ObjectGetOwnPropertyDescriptor(o, key) !== undefined) return true;
      o = ObjectGetPrototypeOf(o);
    }
    return false;
  }
  function getProto(obj) {
    const o = unwrapProxy(obj);
    return o === null ? null : ObjectGetPrototypeOf(o);
  }
  function chainIncludes(obj, proto) {
    let o = getProto(obj);
    for (let guard = 0; guard < 100000 && o !== null; guard++) {
      if (o === proto) return true;
      o = getProto(o);
    }
    return false;
  }
  // `Object.prototype.toString` builtin tag, or '' if computing it could run
  // user code (accessor @@toStringTag or a proxy in the prototype chain).
  function builtinTag(value) {
    let o = value;
    for (let guard = 0; guard < 100000 && o !== null; guard++) {
      if (proxyInfo(o) !== undefined) return '';
      const d = ownDesc(o, SymbolToStringTag);
      if (d !== undefined) {
        if (d.accessor && !isTrustedGetter(d.get)) return '';
        break;
      }
      o = ObjectGetPrototypeOf(o);
    }
    const s = ObjectPrototypeToString(value);
    return StringPrototypeSlice(s, 8, -1);
  }
  // String conversion that never calls user code.
  function safeString(value) {
    if (typeof value === 'string') return value;
    if (!isObjectLike(value)) return StringCtor(value);
    return `[object ${builtinTag(value) || 'Object'}]`;
  }
  function errorMessageOf(err) {
    if (isObjectLike(err)) {
      const m = safeGet(err, 'message');
      if (m !== undefined) return safeString(m);
      return safeString(err);
    }
    return safeString(err);
  }
  // Name of a function from its data `name` property.
  function functionName(fn) {
    const d = lookupDesc(fn, 'name');
    if (d === undefined || d.accessor) return '';
    const v = d.value;
    if (typeof v === 'string') return v;
    if (v === undefined || isObjectLike(v)) return '';
    return StringCtor(v);
  }
  // `object instanceof ctor` using OrdinaryHasInstance only.
  function safeInstanceof(object, ctor) {
    ctor = unwrapProxy(ctor);
    if (ctor === null || typeof ctor !== 'function') return false;
    const d = ownDesc(ctor, 'prototype');
    if (d === undefined || d.accessor || !isObjectLike(d.value)) return false;
    return chainIncludes(object, d.value);
  }

  // --- Brand checks (side-effect free) ---

  function isMap(v) { return tryCall(MapPrototypeGetSize, v); }
  function isSet(v) { return tryCall(SetPrototypeGetSize, v); }
  function isWeakMap(v) {
    try {
      WeakMapPrototypeHas(v, ObjectPrototype);
      return true;
    } catch {
      return false;
    }
  }
  function isWeakSet(v) {
    try {
      WeakSetPrototypeHas(v, ObjectPrototype);
      return true;
    } catch {
      return false;
    }
  }
  function isTypedArray(v) { return TypedArrayPrototypeGetSymbolToStringTag(v) !== undefined; }
  function isArrayBuffer(v) { return tryCall(ArrayBufferPrototypeGetByteLength, v); }
  function isSharedArrayBuffer(v) {
    return SharedArrayBufferPrototypeGetByteLength !== undefined &&
      tryCall(SharedArrayBufferPrototypeGetByteLength, v);
  }
  function isDataView(v) { return tryCall(DataViewPrototypeGetBuffer, v); }
  function isDate(v) { return tryCall(DatePrototypeGetTime, v); }
  function isRegExp(v) {
    return v !== RegExpPrototype && RegExpPrototypeGetSource !== undefined &&
      tryCall(RegExpPrototypeGetSource, v);
  }
  function isNumberObject(v) { return tryCall(NumberPrototypeValueOf, v); }
  function isStringObject(v) { return tryCall(StringPrototypeValueOf, v); }
  function isBooleanObject(v) { return tryCall(BooleanPrototypeValueOf, v); }
  function isBigIntObject(v) {
    return BigIntPrototypeValueOf !== undefined && tryCall(BigIntPrototypeValueOf, v);
  }
  function isSymbolObject(v) { return tryCall(SymbolPrototypeValueOf, v); }
  function isBoxedPrimitive(v) {
    return isNumberObject(v) || isStringObject(v) || isBooleanObject(v) ||
      isBigIntObject(v) || isSymbolObject(v);
  }
  function isMapIterator(v) { return chainIncludes(v, MapIteratorPrototype); }
  function isSetIterator(v) { return chainIncludes(v, SetIteratorPrototype); }
  function isError(v) {
    return chainIncludes(v, ErrorPrototype) || builtinTag(v) === 'Error';
  }
  function isArgumentsObject(v) { return builtinTag(v) === 'Arguments'; }
  function isAsyncFunction(v) {
    return chainIncludes(v, AsyncFunctionPrototype) ||
      chainIncludes(v, AsyncGeneratorFunctionPrototype);
  }
  function isGeneratorFunction(v) {
    return chainIncludes(v, GeneratorFunctionPrototype) ||
      chainIncludes(v, AsyncGeneratorFunctionPrototype);
  }
  // Returns { state, result } or undefined if `v` is not a promise.
  function promiseDetails(v) {
    if (typeof hostPromiseState !== 'function' || !chainIncludes(v, PromisePrototype)) {
      return undefined;
    }
    let r;
    try {
      r = ReflectApply(hostPromiseState, host, [v]);
    } catch {
      return undefined;
    }
    if (r === undefined || r === null || typeof r[0] !== 'number') return undefined;
    return { __proto__: null, state: r[0], result: r[1] };
  }
  function isStackOverflowError(err) {
    return isObjectLike(err) && chainIncludes(err, RangeErrorPrototype);
  }

  // =========================================================================
  // 3. Formatting of primitives
  // =========================================================================

  const kObjectType = 0;
  const kArrayType = 1;
  const kArrayExtrasType = 2;
  const kMinLineLength = 16;

  const keyStrRegExp = /^[a-zA-Z_][a-zA-Z_0-9]*$/;
  const numberRegExp = /^(0|[1-9][0-9]*)$/;
  const classRegExp = /^(\s+[^(]*?)\s*{/;
  // eslint-disable-next-line node-core/no-unescaped-regexp-dot
  const stripCommentsRegExp = /(\/\/.*?\n)|(\/\*(.|\n)*?\*\/)/g;

  // Escaped control characters (plus the single quote and the backslash).
  const meta = newList();
  for (let i = 0; i < 160; i++) {
    let e = '';
    if (i < 32 || i >= 127) {
      e = `\\x${StringPrototypePadStart(
        hexUpper(i), 2, '0')}`;
    }
    meta[i] = e;
  }
  meta[8] = '\\b';
  meta[9] = '\\t';
  meta[10] = '\\n';
  meta[12] = '\\f';
  meta[13] = '\\r';
  meta[39] = "\\'";
  meta[92] = '\\\\';
  function hexUpper(n) {
    const digits = '0123456789ABCDEF';
    let s = '';
    do {
      s = digits[n % 16] + s;
      n = MathFloor(n / 16);
    } while (n > 0);
    return s;
  }

  function addQuotes(str, quotes) {
    if (quotes === -1) return `"${str}"`;
    if (quotes === -2) return `\`${str}\``;
    return `'${str}'`;
  }

  // Escape control characters, single quotes (if quoteCode is 39) and the
  // backslash, plus lone surrogates.
  function escapeChars(str, quoteCode) {
    let result = '';
    let last = 0;
    for (let i = 0; i < str.length; i++) {
      const point = StringPrototypeCharCodeAt(str, i);
      if (point === quoteCode || point === 92 || point < 32 ||
          (point > 126 && point < 160)) {
        result += StringPrototypeSlice(str, last, i) + meta[point];
        last = i + 1;
      } else if (point >= 0xd800 && point <= 0xdfff) {
        if (point <= 0xdbff && i + 1 < str.length) {
          const next = StringPrototypeCharCodeAt(str, i + 1);
          if (next >= 0xdc00 && next <= 0xdfff) {
            i++;
            continue;
          }
        }
        result += `${StringPrototypeSlice(str, last, i)}\\u${NumberPrototypeToString(point, 16)}`;
        last = i + 1;
      }
    }
    if (last === 0) return str;
    if (last !== str.length) result += StringPrototypeSlice(str, last);
    return result;
  }

  function strEscape(str) {
    let singleQuote = 39;
    // Prefer double quotes, then backticks, if the string contains a single
    // quote (and does not contain the alternative quote).
    if (StringPrototypeIncludes(str, "'")) {
      if (!StringPrototypeIncludes(str, '"')) {
        singleQuote = -1;
      } else if (!StringPrototypeIncludes(str, '`') &&
                 !StringPrototypeIncludes(str, '${')) {
        singleQuote = -2;
      }
    }
    return addQuotes(escapeChars(str, singleQuote), singleQuote);
  }

  function addNumericSeparator(integerString) {
    let result = '';
    let i = integerString.length;
    const start = StringPrototypeCharCodeAt(integerString, 0) === 45 ? 1 : 0; // '-'
    for (; i >= start + 4; i -= 3) {
      result = `_${StringPrototypeSlice(integerString, i - 3, i)}${result}`;
    }
    return i === integerString.length ?
      integerString :
      `${StringPrototypeSlice(integerString, 0, i)}${result}`;
  }

  function addNumericSeparatorEnd(integerString) {
    let result = '';
    let i = 0;
    for (; i < integerString.length - 3; i += 3) {
      result += `${StringPrototypeSlice(integerString, i, i + 3)}_`;
    }
    return i === 0 ? integerString : `${result}${StringPrototypeSlice(integerString, i)}`;
  }

  function formatNumber(number, numericSeparator) {
    if (!numericSeparator) {
      if (ObjectIs(number, -0)) return '-0';
      return `${number}`;
    }
    const numberString = `${number}`;
    const integer = MathTrunc(number);
    if (integer === number) {
      if (!NumberIsFinite(number) || StringPrototypeIncludes(numberString, 'e')) {
        return numberString;
      }
      return addNumericSeparator(numberString);
    }
    if (NumberIsNaN(number)) return numberString;
    const decimalIndex = StringPrototypeIndexOf(numberString, '.');
    const integerPart = StringPrototypeSlice(numberString, 0, decimalIndex);
    const fractionalPart = StringPrototypeSlice(numberString, decimalIndex + 1);
    return `${addNumericSeparator(integerPart)}.${addNumericSeparatorEnd(fractionalPart)}`;
  }

  function formatBigInt(bigint, numericSeparator) {
    const string = `${bigint}`;
    if (!numericSeparator) return `${string}n`;
    return `${addNumericSeparator(string)}n`;
  }

  function formatPrimitive(value, ctx) {
    if (typeof value === 'string') {
      let trailer = '';
      if (value.length > ctx.maxStringLength) {
        const remaining = value.length - ctx.maxStringLength;
        value = StringPrototypeSlice(value, 0, ctx.maxStringLength);
        trailer = `... ${remaining} more character${remaining > 1 ? 's' : ''}`;
      }
      if (ctx.compact !== true &&
          value.length > kMinLineLength &&
          value.length > ctx.breakLength - ctx.indentationLvl - 4) {
        // Split after each newline (like /(?<=\n)/).
        const lines = newList();
        let last = 0;
        let i;
        while ((i = StringPrototypeIndexOf(value, '\n', last)) !== -1 && i + 1 < value.length) {
          push(lines, StringPrototypeSlice(value, last, i + 1));
          last = i + 1;
        }
        push(lines, StringPrototypeSlice(value, last));
        for (let j = 0; j < lines.length; j++) lines[j] = strEscape(lines[j]);
        return join(lines, ` +\n${StringPrototypeRepeat(' ', ctx.indentationLvl + 2)}`) +
          trailer;
      }
      return strEscape(value) + trailer;
    }
    if (typeof value === 'number') return formatNumber(value, ctx.numericSeparator);
    if (typeof value === 'bigint') return formatBigInt(value, ctx.numericSeparator);
    if (typeof value === 'boolean') return `${value}`;
    if (typeof value === 'undefined') return 'undefined';
    // Symbol. String() on a symbol does not consult Symbol.prototype.
    return StringCtor(value);
  }

  // Display width of a string (Node's getStringWidth without ICU).
  function isFullWidthCodePoint(code) {
    return code >= 0x1100 && (
      code <= 0x115f ||
      code === 0x2329 ||
      code === 0x232a ||
      (code >= 0x2e80 && code <= 0x3247 && code !== 0x303f) ||
      (code >= 0x3250 && code <= 0x4dbf) ||
      (code >= 0x4e00 && code <= 0xa4c6) ||
      (code >= 0xa960 && code <= 0xa97c) ||
      (code >= 0xac00 && code <= 0xd7a3) ||
      (code >= 0xf900 && code <= 0xfaff) ||
      (code >= 0xfe10 && code <= 0xfe19) ||
      (code >= 0xfe30 && code <= 0xfe6b) ||
      (code >= 0xff01 && code <= 0xff60) ||
      (code >= 0xffe0 && code <= 0xffe6) ||
      (code >= 0x1b000 && code <= 0x1b001) ||
      (code >= 0x1f200 && code <= 0x1f251) ||
      (code >= 0x1f300 && code <= 0x1f64f) ||
      (code >= 0x20000 && code <= 0x3fffd)
    );
  }
  function isZeroWidthCodePoint(code) {
    return code <= 0x1F ||
      (code >= 0x7F && code <= 0x9F) ||
      (code >= 0x300 && code <= 0x36F) ||
      (code >= 0x200B && code <= 0x200F) ||
      (code >= 0x20D0 && code <= 0x20FF) ||
      (code >= 0xFE00 && code <= 0xFE0F) ||
      (code >= 0xFE20 && code <= 0xFE2F) ||
      (code >= 0xE0100 && code <= 0xE01EF);
  }
  function getStringWidth(str) {
    let width = 0;
    for (let i = 0; i < str.length; i++) {
      const code = StringPrototypeCharCodeAt(str, i);
      if (code >= 127) {
        let rest = StringPrototypeSlice(str, i);
        if (StringPrototypeNormalize !== undefined) {
          try { rest = StringPrototypeNormalize(rest, 'NFC'); } catch { /* keep */ }
        }
        for (let j = 0; j < rest.length; j++) {
          const cp = StringPrototypeCodePointAt(rest, j);
          if (cp > 0xffff) j++;
          if (isFullWidthCodePoint(cp)) width += 2;
          else if (!isZeroWidthCodePoint(cp)) width++;
        }
        break;
      }
      width += code >= 32 ? 1 : 0;
    }
    return width;
  }

  // =========================================================================
  // 4. Formatting of objects, by kind
  // =========================================================================

  function remainingText(remaining) {
    return `... ${remaining} more item${remaining > 1 ? 's' : ''}`;
  }

  function createContext(options) {
    const ctx = {
      __proto__: null,
      budget: { __proto__: null },
      indentationLvl: 0,
      seen: newList(),
      circular: undefined,
      currentDepth: 0,
      showHidden: false,
      depth: 2,
      showProxy: false,
      maxArrayLength: 100,
      maxStringLength: 10000,
      breakLength: 80,
      compact: 3,
      sorted: false,
      numericSeparator: false,
    };
    if (options !== undefined) {
      const keys = ObjectKeys(options);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (ObjectPrototypeHasOwnProperty(ctx, key) && key !== 'budget' && key !== 'seen' &&
            key !== 'circular' && key !== 'currentDepth' && key !== 'indentationLvl') {
          ctx[key] = options[key];
        }
      }
    }
    if (ctx.maxArrayLength === null) ctx.maxArrayLength = Infinity;
    if (ctx.maxStringLength === null) ctx.maxStringLength = Infinity;
    return ctx;
  }

  function inspectOptionsOf(ctx) {
    return {
      __proto__: null,
      showHidden: ctx.showHidden,
      depth: ctx.depth,
      showProxy: ctx.showProxy,
      maxArrayLength: ctx.maxArrayLength,
      maxStringLength: ctx.maxStringLength,
      breakLength: ctx.breakLength,
      compact: ctx.compact,
      sorted: ctx.sorted,
      numericSeparator: ctx.numericSeparator,
    };
  }

  function getConstructorName(obj, ctx, recurseTimes, protoProps) {
    let firstProto;
    const tmp = obj;
    for (let guard = 0; guard < 100000 && obj !== null; guard++) {
      obj = unwrapProxy(obj);
      if (obj === null) break;
      if (obj === ObjectPrototype || obj === FunctionPrototype) {
        if (protoProps !== undefined && firstProto !== obj) {
          addPrototypeProperties(ctx, tmp, firstProto || tmp, recurseTimes, protoProps);
        }
        return obj === ObjectPrototype ? 'Object' : 'Function';
      }
      const descriptor = ownDesc(obj, 'constructor');
      if (descriptor !== undefined && !descriptor.accessor &&
          typeof descriptor.value === 'function') {
        const name = functionName(descriptor.value);
        if (name !== '' && safeInstanceof(tmp, descriptor.value)) {
          if (protoProps !== undefined &&
              (firstProto !== obj || !SetPrototypeHas(builtInObjects, name))) {
            addPrototypeProperties(ctx, tmp, firstProto || tmp, recurseTimes, protoProps);
          }
          return name;
        }
      }
      obj = ObjectGetPrototypeOf(obj);
      if (firstProto === undefined) firstProto = obj;
    }

    if (firstProto === null || firstProto === undefined) return null;

    const res = internalGetConstructorName(tmp);
    if (recurseTimes > ctx.depth && ctx.depth !== null) {
      return `${res} <Complex prototype>`;
    }
    const protoConstr = getConstructorName(firstProto, ctx, recurseTimes + 1, protoProps);
    if (protoConstr === null) {
      const opts = inspectOptionsOf(ctx);
      opts.depth = -1;
      return `${res} <${formatValue(createContext(opts), firstProto, 0)}>`;
    }
    return `${res} <${protoConstr}>`;
  }

  // Approximation of V8's GetConstructorName (not reachable from JS).
  function internalGetConstructorName(value) {
    if (typeof value === 'function') return 'Function';
    if (ArrayIsArray(value)) return 'Array';
    if (isError(value)) return 'Error';
    return 'Object';
  }

  // Used with showHidden (%o): list user-defined prototype properties.
  function addPrototypeProperties(ctx, main, obj, recurseTimes, output) {
    let depth = 0;
    let keys;
    let keySet;
    do {
      if (depth !== 0 || main === obj) {
        obj = getProto(obj);
        if (obj === null) return;
        const descriptor = ownDesc(obj, 'constructor');
        if (descriptor !== undefined && !descriptor.accessor &&
            typeof descriptor.value === 'function' &&
            SetPrototypeHas(builtInObjects, functionName(descriptor.value))) {
          return;
        }
      } else {
        obj = unwrapProxy(obj);
        if (obj === null) return;
      }
      if (depth === 0) {
        keySet = new SetCtor();
      } else {
        for (let i = 0; i < keys.length; i++) SetPrototypeAdd(keySet, keys[i]);
      }
      keys = listFrom(ReflectOwnKeys(obj));
      push(ctx.seen, main);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (key === 'constructor' ||
            ObjectPrototypeHasOwnProperty(main, key) ||
            (depth !== 0 && SetPrototypeHas(keySet, key))) {
          continue;
        }
        const desc = ownDesc(obj, key);
        if (desc === undefined || typeof desc.value === 'function') continue;
        push(output, formatProperty(ctx, obj, recurseTimes, key, kObjectType, desc, main));
      }
      ctx.seen.length--;
    } while (++depth !== 3);
  }

  function getPrefix(constructor, tag, fallback, size = '') {
    if (constructor === null) {
      if (tag !== '' && fallback !== tag) {
        return `[${fallback}${size}: null prototype] [${tag}] `;
      }
      return `[${fallback}${size}: null prototype] `;
    }
    if (tag !== '' && constructor !== tag) {
      return `${constructor}${size} [${tag}] `;
    }
    return `${constructor}${size} `;
  }

  function getCtxStyle(value, constructor, tag) {
    let fallback = '';
    if (constructor === null) {
      fallback = internalGetConstructorName(value);
      if (fallback === tag) fallback = 'Object';
    }
    return getPrefix(constructor, tag, fallback);
  }

  // Own enumerable string keys followed by own enumerable symbols.
  function getKeys(value, showHidden) {
    let keys;
    const symbols = ObjectGetOwnPropertySymbols(value);
    if (showHidden) {
      keys = listFrom(ObjectGetOwnPropertyNames(value));
      for (let i = 0; i < symbols.length; i++) push(keys, symbols[i]);
    } else {
      try {
        keys = listFrom(ObjectKeys(value));
      } catch {
        keys = listFrom(ObjectGetOwnPropertyNames(value));
      }
      for (let i = 0; i < symbols.length; i++) {
        if (ObjectPrototypePropertyIsEnumerable(value, symbols[i])) push(keys, symbols[i]);
      }
    }
    return keys;
  }

  function isArrayIndexKey(key) {
    if (typeof key !== 'string' || key.length === 0 || key.length > 10) return false;
    if (key.length > 1 && StringPrototypeCharCodeAt(key, 0) === 48) return false;
    for (let i = 0; i < key.length; i++) {
      const c = StringPrototypeCharCodeAt(key, i);
      if (c < 48 || c > 57) return false;
    }
    return NumberCtor(key) < 4294967295;
  }

  // (Node uses a V8 internal for this; Object.keys is the cheapest JS
  // equivalent, but it is still O(length) for big arrays.)
  function getOwnNonIndexProperties(value, showHidden) {
    const names = showHidden ? ObjectGetOwnPropertyNames(value) : ObjectKeys(value);
    const keys = newList();
    for (let i = 0; i < names.length; i++) {
      if (!isArrayIndexKey(names[i])) push(keys, names[i]);
    }
    const symbols = ObjectGetOwnPropertySymbols(value);
    for (let i = 0; i < symbols.length; i++) {
      if (showHidden || ObjectPrototypePropertyIsEnumerable(value, symbols[i])) {
        push(keys, symbols[i]);
      }
    }
    return keys;
  }

  function getTag(value, ctx) {
    const tag = safeGet(value, SymbolToStringTag);
    if (typeof tag !== 'string') return '';
    if (tag !== '' &&
        (ctx.showHidden ?
          ObjectPrototypeHasOwnProperty(value, SymbolToStringTag) :
          ObjectPrototypePropertyIsEnumerable(value, SymbolToStringTag))) {
      return '';
    }
    return tag;
  }

  function formatProxy(ctx, info, recurseTimes) {
    if (recurseTimes > ctx.depth && ctx.depth !== null) return 'Proxy [Array]';
    recurseTimes += 1;
    ctx.indentationLvl += 2;
    const res = newList();
    push(res, formatValue(ctx, info.target, recurseTimes));
    push(res, formatValue(ctx, info.handler, recurseTimes));
    ctx.indentationLvl -= 2;
    return reduceToSingleString(ctx, res, '', ['Proxy [', ']'], kArrayExtrasType, recurseTimes);
  }

  function formatValue(ctx, value, recurseTimes, typedArray) {
    if (typeof value !== 'object' && typeof value !== 'function') {
      return formatPrimitive(value, ctx);
    }
    if (value === null) return 'null';

    // Never run proxy traps: inspect the target instead (or show the proxy
    // structure with showProxy).
    const proxy = proxyInfo(value);
    if (proxy !== undefined) {
      if (proxy.revoked) return '<Revoked Proxy>';
      if (ctx.showProxy) return formatProxy(ctx, proxy, recurseTimes);
      value = unwrapProxy(value);
      if (value === null) return '<Revoked Proxy>';
    }

    if (listIncludes(ctx.seen, value)) {
      let index = 1;
      if (ctx.circular === undefined) {
        ctx.circular = new MapCtor();
        MapPrototypeSet(ctx.circular, value, index);
      } else {
        index = MapPrototypeGet(ctx.circular, value);
        if (index === undefined) {
          index = MapPrototypeGetSize(ctx.circular) + 1;
          MapPrototypeSet(ctx.circular, value, index);
        }
      }
      return `[Circular *${index}]`;
    }
    return formatRaw(ctx, value, recurseTimes, typedArray);
  }

  function formatRaw(ctx, value, recurseTimes, typedArray) {
    let keys;
    let protoProps;
    if (ctx.showHidden && (recurseTimes <= ctx.depth || ctx.depth === null)) {
      protoProps = newList();
    }
    const constructor = getConstructorName(value, ctx, recurseTimes, protoProps);
    if (protoProps !== undefined && protoProps.length === 0) protoProps = undefined;

    const tag = getTag(value, ctx);
    let base = '';
    let formatter = getEmptyFormatArray;
    let braces;
    let noIterator = true;
    let extrasType = kObjectType;

    if (safeHas(value, SymbolIterator) || constructor === null) {
      noIterator = false;
      if (ArrayIsArray(value)) {
        const length = value.length;
        const prefix = (constructor !== 'Array' || tag !== '') ?
          getPrefix(constructor, tag, 'Array', `(${length})`) : '';
        keys = getOwnNonIndexProperties(value, ctx.showHidden);
        braces = [`${prefix}[`, ']'];
        if (length === 0 && keys.length === 0 && protoProps === undefined) {
          return `${braces[0]}]`;
        }
        extrasType = kArrayExtrasType;
        formatter = formatArray;
      } else if (isSet(value)) {
        const size = SetPrototypeGetSize(value);
        const prefix = getPrefix(constructor, tag, 'Set', `(${size})`);
        keys = getKeys(value, ctx.showHidden);
        formatter = formatSet;
        if (size === 0 && keys.length === 0 && protoProps === undefined) return `${prefix}{}`;
        braces = [`${prefix}{`, '}'];
      } else if (isMap(value)) {
        const size = MapPrototypeGetSize(value);
        const prefix = getPrefix(constructor, tag, 'Map', `(${size})`);
        keys = getKeys(value, ctx.showHidden);
        formatter = formatMap;
        if (size === 0 && keys.length === 0 && protoProps === undefined) return `${prefix}{}`;
        braces = [`${prefix}{`, '}'];
      } else if (isTypedArray(value)) {
        keys = getOwnNonIndexProperties(value, ctx.showHidden);
        let fallback = '';
        if (constructor === null) fallback = TypedArrayPrototypeGetSymbolToStringTag(value);
        const size = TypedArrayPrototypeGetLength(value);
        const prefix = getPrefix(constructor, tag, fallback, `(${size})`);
        braces = [`${prefix}[`, ']'];
        if (size === 0 && keys.length === 0 && !ctx.showHidden) return `${braces[0]}]`;
        formatter = formatTypedArray;
        extrasType = kArrayExtrasType;
      } else if (isMapIterator(value)) {
        keys = getKeys(value, ctx.showHidden);
        braces = getIteratorBraces('Map', tag);
        formatter = formatIterator;
      } else if (isSetIterator(value)) {
        keys = getKeys(value, ctx.showHidden);
        braces = getIteratorBraces('Set', tag);
        formatter = formatIterator;
      } else {
        noIterator = true;
      }
    }
    if (noIterator) {
      keys = getKeys(value, ctx.showHidden);
      braces = ['{', '}'];
      if (typeof value === 'function') {
        base = getFunctionBase(value, constructor, tag);
        if (keys.length === 0 && protoProps === undefined) return base;
      } else if (constructor === 'Object') {
        if (isArgumentsObject(value)) {
          braces[0] = '[Arguments] {';
        } else if (tag !== '') {
          braces[0] = `${getPrefix(constructor, tag, 'Object')}{`;
        }
        if (keys.length === 0 && protoProps === undefined) return `${braces[0]}}`;
      } else if (isRegExp(value)) {
        base = regExpToString(value);
        const prefix = getPrefix(constructor, tag, 'RegExp');
        if (prefix !== 'RegExp ') base = `${prefix}${base}`;
        if ((keys.length === 0 && protoProps === undefined) ||
            (recurseTimes > ctx.depth && ctx.depth !== null)) {
          return base;
        }
      } else if (isDate(value)) {
        base = NumberIsNaN(DatePrototypeGetTime(value)) ?
          DatePrototypeToString(value) :
          DatePrototypeToISOString(value);
        const prefix = getPrefix(constructor, tag, 'Date');
        if (prefix !== 'Date ') base = `${prefix}${base}`;
        if (keys.length === 0 && protoProps === undefined) return base;
      } else if (isError(value)) {
        base = formatError(value, constructor, tag, ctx, keys);
        if (keys.length === 0 && protoProps === undefined) return base;
      } else if (isArrayBuffer(value) || isSharedArrayBuffer(value)) {
        const arrayType = isArrayBuffer(value) ? 'ArrayBuffer' : 'SharedArrayBuffer';
        const prefix = getPrefix(constructor, tag, arrayType);
        if (typedArray === undefined) {
          formatter = formatArrayBuffer;
        } else if (keys.length === 0 && protoProps === undefined) {
          const byteLength = arrayType === 'ArrayBuffer' ?
            ArrayBufferPrototypeGetByteLength(value) :
            SharedArrayBufferPrototypeGetByteLength(value);
          return `${prefix}{ byteLength: ${formatNumber(byteLength, false)} }`;
        }
        braces[0] = `${prefix}{`;
        keys = prependKeys(keys, ['byteLength']);
      } else if (isDataView(value)) {
        braces[0] = `${getPrefix(constructor, tag, 'DataView')}{`;
        keys = prependKeys(keys, ['byteLength', 'byteOffset', 'buffer']);
      } else if (promiseDetails(value) !== undefined) {
        braces[0] = `${getPrefix(constructor, tag, 'Promise')}{`;
        formatter = formatPromise;
      } else if (isWeakSet(value)) {
        braces[0] = `${getPrefix(constructor, tag, 'WeakSet')}{`;
        formatter = formatWeakCollection;
      } else if (isWeakMap(value)) {
        braces[0] = `${getPrefix(constructor, tag, 'WeakMap')}{`;
        formatter = formatWeakCollection;
      } else if (isBoxedPrimitive(value)) {
        base = getBoxedBase(value, ctx, keys, constructor, tag);
        if (keys.length === 0 && protoProps === undefined) return base;
      } else {
        if (keys.length === 0 && protoProps === undefined) {
          return `${getCtxStyle(value, constructor, tag)}{}`;
        }
        braces[0] = `${getCtxStyle(value, constructor, tag)}{`;
      }
    }

    if (recurseTimes > ctx.depth && ctx.depth !== null) {
      let constructorName = StringPrototypeSlice(getCtxStyle(value, constructor, tag), 0, -1);
      if (constructor !== null) constructorName = `[${constructorName}]`;
      return constructorName;
    }
    recurseTimes += 1;

    push(ctx.seen, value);
    ctx.currentDepth = recurseTimes;
    let output;
    const indentationLvl = ctx.indentationLvl;
    try {
      output = formatter(ctx, value, recurseTimes);
      for (let i = 0; i < keys.length; i++) {
        push(output, formatProperty(ctx, value, recurseTimes, keys[i], extrasType));
      }
      if (protoProps !== undefined) {
        for (let i = 0; i < protoProps.length; i++) push(output, protoProps[i]);
      }
    } catch (err) {
      if (!isStackOverflowError(err)) throw err;
      const constructorName =
        StringPrototypeSlice(getCtxStyle(value, constructor, tag), 0, -1);
      ctx.seen.length--;
      ctx.indentationLvl = indentationLvl;
      return `[${constructorName}: Inspection interrupted prematurely. ` +
        'Maximum call stack size exceeded.]';
    }
    if (ctx.circular !== undefined) {
      const index = MapPrototypeGet(ctx.circular, value);
      if (index !== undefined) {
        const reference = `<ref *${index}>`;
        if (ctx.compact !== true) {
          base = base === '' ? reference : `${reference} ${base}`;
        } else {
          braces[0] = `${reference} ${braces[0]}`;
        }
      }
    }
    ctx.seen.length--;

    if (ctx.sorted) {
      const comparator = ctx.sorted === true ? undefined : ctx.sorted;
      if (extrasType === kObjectType) {
        ArrayPrototypeSort(output, comparator);
      } else if (keys.length > 1) {
        const start = output.length - keys.length;
        const tail = newList();
        for (let i = start; i < output.length; i++) push(tail, output[i]);
        ArrayPrototypeSort(tail, comparator);
        for (let i = 0; i < tail.length; i++) output[start + i] = tail[i];
      }
    }

    const res = reduceToSingleString(ctx, output, base, braces, extrasType, recurseTimes, value);
    const budget = ctx.budget[ctx.indentationLvl] || 0;
    const newLength = budget + res.length;
    ctx.budget[ctx.indentationLvl] = newLength;
    if (newLength > 2 ** 27) ctx.depth = -1;
    return res;
  }

  function prependKeys(keys, first) {
    const out = newList();
    for (let i = 0; i < first.length; i++) push(out, first[i]);
    for (let i = 0; i < keys.length; i++) push(out, keys[i]);
    return out;
  }

  function getEmptyFormatArray() {
    return newList();
  }

  function getIteratorBraces(type, tag) {
    if (tag !== `${type} Iterator`) {
      if (tag !== '') tag += '] [';
      tag += `${type} Iterator`;
    }
    return [`[${tag}] {`, '}'];
  }

  // Map/Set iterators cannot be previewed from JS without consuming them.
  function formatIterator() {
    const output = newList();
    push(output, '<items unknown>');
    return output;
  }

  function formatWeakCollection() {
    const output = newList();
    push(output, '<items unknown>');
    return output;
  }

  function regExpToString(value) {
    let flags = '';
    for (let i = 0; i < regExpFlagGetters.length; i++) {
      if (regExpFlagGetters[i].get(value)) flags += regExpFlagGetters[i].ch;
    }
    return `/${RegExpPrototypeGetSource(value)}/${flags}`;
  }

  function getBoxedBase(value, ctx, keys, constructor, tag) {
    let primitive;
    let type;
    if (isNumberObject(value)) {
      primitive = NumberPrototypeValueOf(value);
      type = 'Number';
    } else if (isStringObject(value)) {
      primitive = StringPrototypeValueOf(value);
      type = 'String';
      // Drop the index keys of boxed strings.
      const n = MathMin(primitive.length, keys.length);
      for (let i = 0; i < n; i++) listRemoveAt(keys, 0);
    } else if (isBooleanObject(value)) {
      primitive = BooleanPrototypeValueOf(value);
      type = 'Boolean';
    } else if (isBigIntObject(value)) {
      primitive = BigIntPrototypeValueOf(value);
      type = 'BigInt';
    } else {
      primitive = SymbolPrototypeValueOf(value);
      type = 'Symbol';
    }
    let base = `[${type}`;
    if (type !== constructor) {
      if (constructor === null) {
        base += ' (null prototype)';
      } else {
        base += ` (${constructor})`;
      }
    }
    base += `: ${formatPrimitive(primitive, ctx)}]`;
    if (tag !== '' && tag !== constructor) base += ` [${tag}]`;
    return base;
  }

  function getClassBase(value, constructor, tag) {
    const hasName = ObjectPrototypeHasOwnProperty(value, 'name');
    const name = (hasName && functionName(value)) || '(anonymous)';
    let base = `class ${name}`;
    if (constructor !== 'Function' && constructor !== null) base += ` [${constructor}]`;
    if (tag !== '' && constructor !== tag) base += ` [${tag}]`;
    if (constructor !== null) {
      const proto = getProto(value);
      const superName = proto === null ? '' : functionName(proto);
      if (superName) base += ` extends ${superName}`;
    } else {
      base += ' extends [null prototype]';
    }
    return `[${base}]`;
  }

  function getFunctionBase(value, constructor, tag) {
    const stringified = FunctionPrototypeToString(value);
    if (StringPrototypeStartsWith(stringified, 'class') &&
        StringPrototypeEndsWith(stringified, '}')) {
      const slice = StringPrototypeSlice(stringified, 5, -1);
      const bracketIndex = StringPrototypeIndexOf(slice, '{');
      if (bracketIndex !== -1 &&
          (!StringPrototypeIncludes(StringPrototypeSlice(slice, 0, bracketIndex), '(') ||
           RegExpPrototypeExec(classRegExp,
             regExpReplaceAll(stripCommentsRegExp, slice, 'undefined')) !== null)) {
        return getClassBase(value, constructor, tag);
      }
    }
    let type = 'Function';
    if (isGeneratorFunction(value)) type = `Generator${type}`;
    if (isAsyncFunction(value)) type = `Async${type}`;
    let base = `[${type}`;
    if (constructor === null) base += ' (null prototype)';
    const name = functionName(value);
    if (name === '') {
      base += ' (anonymous)';
    } else {
      base += `: ${name}`;
    }
    base += ']';
    if (constructor !== type && constructor !== null) base += ` ${constructor}`;
    if (tag !== '' && constructor !== tag) base += ` [${tag}]`;
    return base;
  }

  // --- Errors ---

  function errorToStringSafe(err) {
    const nameValue = safeGet(err, 'name');
    const name = nameValue === undefined ? 'Error' : safeString(nameValue);
    const msgValue = safeGet(err, 'message');
    const msg = msgValue === undefined ? '' : safeString(msgValue);
    if (name === '') return msg;
    if (msg === '') return name;
    return `${name}: ${msg}`;
  }

  // V8 formats `stack` lazily on first access, reading `name` and `message`
  // through [[Get]]; if either is a user accessor, reading `stack` (even via
  // getOwnPropertyDescriptor) could run user code, so it is not read then.
  function stackIsSafeToRead(error) {
    const n = lookupDesc(error, 'name');
    const m = lookupDesc(error, 'message');
    return !(n !== undefined && n.accessor) && !(m !== undefined && m.accessor);
  }

  function getStackString(error) {
    const stack = stackIsSafeToRead(error) ? safeGet(error, 'stack') : undefined;
    if (stack && !isObjectLike(stack)) return StringCtor(stack);
    return errorToStringSafe(error);
  }

  function identicalSequenceRange(a, b) {
    for (let i = 0; i < a.length - 3; i++) {
      const pos = listIndexOf(b, a[i]);
      if (pos !== -1) {
        const rest = b.length - pos;
        if (rest > 3) {
          let len = 1;
          const maxLen = MathMin(a.length - i, rest);
          while (maxLen > len && a[i + len] === b[pos + len]) len++;
          if (len > 3) return { __proto__: null, len, offset: i };
        }
      }
    }
    return { __proto__: null, len: 0, offset: 0 };
  }

  function getStackFrames(ctx, err, stack) {
    let frames = splitString(stack, '\n');
    const cause = safeGet(err, 'cause');
    if (cause !== null && cause !== undefined && isObjectLike(cause) && isError(unwrapProxy(cause))) {
      const causeStack = getStackString(unwrapProxy(cause));
      const causeStackStart = StringPrototypeIndexOf(causeStack, '\n    at');
      if (causeStackStart !== -1) {
        const causeFrames = splitString(StringPrototypeSlice(causeStack, causeStackStart + 1), '\n');
        const range = identicalSequenceRange(frames, causeFrames);
        if (range.len > 0) {
          const skipped = range.len - 2;
          const msg = `    ... ${skipped} lines matching cause stack trace ...`;
          const out = newList();
          for (let i = 0; i <= range.offset; i++) push(out, frames[i]);
          push(out, msg);
          for (let i = range.offset + 1 + skipped; i < frames.length; i++) push(out, frames[i]);
          frames = out;
        }
      }
    }
    return frames;
  }

  function isUpper(c) { return c >= 65 && c <= 90; }
  function isLower(c) { return c >= 97 && c <= 122; }
  function isDigit(c) { return c >= 48 && c <= 57; }

  // /^([A-Z][a-z_ A-Z0-9[\]()-]+)(?::|\n {4}at)/ and /^([a-z_A-Z0-9-]*Error)$/
  function guessErrorName(stack) {
    if (stack.length > 0 && isUpper(StringPrototypeCharCodeAt(stack, 0))) {
      let i = 1;
      for (; i < stack.length; i++) {
        const c = StringPrototypeCharCodeAt(stack, i);
        if (!(isLower(c) || isUpper(c) || isDigit(c) || c === 95 || c === 32 || c === 91 ||
              c === 93 || c === 40 || c === 41 || c === 45)) break;
      }
      if (i >= 2 && ((i < stack.length && StringPrototypeCharCodeAt(stack, i) === 58) ||
          StringPrototypeStartsWith(stack, '\n    at', i))) {
        return StringPrototypeSlice(stack, 0, i);
      }
    }
    if (StringPrototypeEndsWith(stack, 'Error')) {
      for (let i = 0; i < stack.length; i++) {
        const c = StringPrototypeCharCodeAt(stack, i);
        if (!(isLower(c) || isUpper(c) || isDigit(c) || c === 95 || c === 45)) return '';
      }
      return stack;
    }
    return '';
  }

  function improveStack(stack, constructor, name, tag) {
    let len = name.length;
    if (constructor === null ||
        (StringPrototypeEndsWith(name, 'Error') &&
         StringPrototypeStartsWith(stack, name) &&
         (stack.length === len || StringPrototypeCharCodeAt(stack, len) === 58 ||
          StringPrototypeCharCodeAt(stack, len) === 10))) {
      let fallback = 'Error';
      if (constructor === null) {
        fallback = guessErrorName(stack);
        len = fallback.length;
        fallback = fallback || 'Error';
      }
      const prefix = StringPrototypeSlice(getPrefix(constructor, tag, fallback), 0, -1);
      if (name !== prefix) {
        if (StringPrototypeIncludes(prefix, name)) {
          if (len === 0) {
            stack = `${prefix}: ${stack}`;
          } else {
            stack = `${prefix}${StringPrototypeSlice(stack, len)}`;
          }
        } else {
          stack = `${prefix} [${name}]${StringPrototypeSlice(stack, len)}`;
        }
      }
    }
    return stack;
  }

  function removeDuplicateErrorKeys(ctx, keys, err, stack) {
    if (!ctx.showHidden && keys.length !== 0) {
      const names = ['name', 'message', 'stack'];
      for (let n = 0; n < names.length; n++) {
        const index = listIndexOf(keys, names[n]);
        if (index === -1) continue;
        const d = ownDesc(err, names[n]);
        if (d === undefined || d.accessor) continue;
        const v = d.value;
        if (isObjectLike(v)) continue;
        if (StringPrototypeIncludes(stack, StringCtor(v))) listRemoveAt(keys, index);
      }
    }
  }

  function formatError(err, constructor, tag, ctx, keys) {
    const nameValue = safeGet(err, 'name');
    const name = nameValue !== null && nameValue !== undefined ? safeString(nameValue) : 'Error';
    let stack = getStackString(err);

    removeDuplicateErrorKeys(ctx, keys, err, stack);

    // Node uses `'cause' in err`; a `cause` planted on Object.prototype is
    // ignored here so that prototype pollution does not alter every error.
    if (hasOwnOrInherited(err, 'cause') && (keys.length === 0 || !listIncludes(keys, 'cause'))) {
      push(keys, 'cause');
    }
    const errors = hasOwnOrInherited(err, 'errors') ? safeGet(err, 'errors') : undefined;
    if (isObjectLike(errors) && ArrayIsArray(unwrapProxy(errors)) &&
        (keys.length === 0 || !listIncludes(keys, 'errors'))) {
      push(keys, 'errors');
    }

    stack = improveStack(stack, constructor, name, tag);

    const messageValue = safeGet(err, 'message');
    const message = messageValue ? safeString(messageValue) : '';
    let pos = (message && StringPrototypeIndexOf(stack, message)) || -1;
    if (pos !== -1) pos += message.length;
    const stackStart = StringPrototypeIndexOf(stack, '\n    at', pos);
    if (stackStart === -1) {
      stack = `[${stack}]`;
    } else {
      const newStack = StringPrototypeSlice(stack, 0, stackStart);
      const lines = getStackFrames(ctx, err, StringPrototypeSlice(stack, stackStart + 1));
      stack = `${newStack}\n${join(lines, '\n')}`;
    }
    if (ctx.indentationLvl !== 0) {
      const indentation = StringPrototypeRepeat(' ', ctx.indentationLvl);
      stack = replaceAllString(stack, '\n', `\n${indentation}`);
    }
    return stack;
  }

  // --- Arrays, typed arrays, buffers, collections, promises ---

  function formatArrayBuffer(ctx, value) {
    let buffer;
    try {
      buffer = new Uint8ArrayCtor(value);
    } catch {
      const output = newList();
      push(output, '(detached)');
      return output;
    }
    const length = TypedArrayPrototypeGetLength(buffer);
    const hex = '0123456789abcdef';
    let str = '';
    const n = MathMin(ctx.maxArrayLength, length);
    for (let i = 0; i < n; i++) {
      const b = buffer[i];
      if (i !== 0) str += ' ';
      str += hex[b >> 4] + hex[b & 15];
    }
    const remaining = length - ctx.maxArrayLength;
    if (remaining > 0) str += ` ... ${remaining} more byte${remaining > 1 ? 's' : ''}`;
    const output = newList();
    push(output, `[Uint8Contents]: <${str}>`);
    return output;
  }

  function formatArray(ctx, value, recurseTimes) {
    const valLen = value.length;
    const len = MathMin(MathMax(0, ctx.maxArrayLength), valLen);
    const remaining = valLen - len;
    const output = newList();
    for (let i = 0; i < len; i++) {
      if (!ObjectPrototypeHasOwnProperty(value, i)) {
        return formatSpecialArray(ctx, value, recurseTimes, len, output, i);
      }
      push(output, formatProperty(ctx, value, recurseTimes, i, kArrayType));
    }
    if (remaining > 0) push(output, remainingText(remaining));
    return output;
  }

  // The array is sparse and/or has extra keys.
  function formatSpecialArray(ctx, value, recurseTimes, maxLength, output, i) {
    const keys = ObjectKeys(value);
    let index = i;
    for (; i < keys.length && output.length < maxLength; i++) {
      const key = keys[i];
      const tmp = +key;
      if (tmp > 2 ** 32 - 2) break;
      if (`${index}` !== key) {
        if (RegExpPrototypeExec(numberRegExp, key) === null) break;
        const emptyItems = tmp - index;
        const ending = emptyItems > 1 ? 's' : '';
        push(output, `<${emptyItems} empty item${ending}>`);
        index = tmp;
        if (output.length === maxLength) break;
      }
      push(output, formatProperty(ctx, value, recurseTimes, key, kArrayType));
      index++;
    }
    const remaining = value.length - index;
    if (output.length !== maxLength) {
      if (remaining > 0) {
        const ending = remaining > 1 ? 's' : '';
        push(output, `<${remaining} empty item${ending}>`);
      }
    } else if (remaining > 0) {
      push(output, remainingText(remaining));
    }
    return output;
  }

  function formatTypedArray(ctx, value, recurseTimes) {
    const length = TypedArrayPrototypeGetLength(value);
    const maxLength = MathMin(MathMax(0, ctx.maxArrayLength), length);
    const remaining = length - maxLength;
    const output = newList();
    const isNumber = length > 0 && typeof value[0] === 'number';
    for (let i = 0; i < maxLength; ++i) {
      push(output, isNumber ?
        formatNumber(value[i], ctx.numericSeparator) :
        formatBigInt(value[i], ctx.numericSeparator));
    }
    if (remaining > 0) push(output, remainingText(remaining));
    if (ctx.showHidden) {
      ctx.indentationLvl += 2;
      const extras = [
        ['BYTES_PER_ELEMENT', safeGet(value, 'BYTES_PER_ELEMENT')],
        ['length', length],
        ['byteLength', TypedArrayPrototypeGetByteLength(value)],
        ['byteOffset', TypedArrayPrototypeGetByteOffset(value)],
        ['buffer', TypedArrayPrototypeGetBuffer(value)],
      ];
      for (let i = 0; i < extras.length; i++) {
        const str = formatValue(ctx, extras[i][1], recurseTimes, true);
        push(output, `[${extras[i][0]}]: ${str}`);
      }
      ctx.indentationLvl -= 2;
    }
    return output;
  }

  function formatSet(ctx, value, recurseTimes) {
    const length = SetPrototypeGetSize(value);
    const maxLength = MathMin(MathMax(0, ctx.maxArrayLength), length);
    const remaining = length - maxLength;
    const output = newList();
    ctx.indentationLvl += 2;
    const it = SetPrototypeValues(value);
    for (let i = 0; i < maxLength; i++) {
      const r = SetIteratorNext(it);
      if (r.done) break;
      push(output, formatValue(ctx, r.value, recurseTimes));
    }
    if (remaining > 0) push(output, remainingText(remaining));
    ctx.indentationLvl -= 2;
    return output;
  }

  function formatMap(ctx, value, recurseTimes) {
    const length = MapPrototypeGetSize(value);
    const maxLength = MathMin(MathMax(0, ctx.maxArrayLength), length);
    const remaining = length - maxLength;
    const output = newList();
    ctx.indentationLvl += 2;
    const it = MapPrototypeEntries(value);
    for (let i = 0; i < maxLength; i++) {
      const r = MapIteratorNext(it);
      if (r.done) break;
      const entry = r.value;
      push(output,
        `${formatValue(ctx, entry[0], recurseTimes)} => ${formatValue(ctx, entry[1], recurseTimes)}`);
    }
    if (remaining > 0) push(output, remainingText(remaining));
    ctx.indentationLvl -= 2;
    return output;
  }

  function formatPromise(ctx, value, recurseTimes) {
    const output = newList();
    const details = promiseDetails(value);
    if (details === undefined || details.state === 0) {
      push(output, '<pending>');
    } else {
      ctx.indentationLvl += 2;
      const str = formatValue(ctx, details.result, recurseTimes);
      ctx.indentationLvl -= 2;
      push(output, details.state === 2 ? `<rejected> ${str}` : str);
    }
    return output;
  }

  // --- Properties ---

  // Descriptor used for a key that is not an own property (virtual keys such
  // as DataView#byteLength, or an inherited `cause`). Node reads value[key];
  // here only data properties and trusted native getters are read.
  function inheritedDesc(value, key) {
    const d = lookupDesc(value, key);
    if (d === undefined) {
      return { __proto__: null, accessor: false, value: undefined, enumerable: true };
    }
    if (!d.accessor) {
      return { __proto__: null, accessor: false, value: d.value, enumerable: true };
    }
    if (isTrustedGetter(d.get)) {
      let v;
      try {
        v = ReflectApply(d.get, value, []);
      } catch {
        v = undefined;
      }
      return { __proto__: null, accessor: false, value: v, enumerable: true };
    }
    return { __proto__: null, accessor: true, get: d.get, set: d.set, enumerable: true };
  }

  function formatProperty(ctx, value, recurseTimes, key, type, desc, original) {
    let name, str;
    let extra = ' ';
    if (desc === undefined) desc = ownDesc(value, key) || inheritedDesc(value, key);
    if (!desc.accessor && desc.value !== undefined) {
      const diff = (ctx.compact !== true || type !== kObjectType) ? 2 : 3;
      ctx.indentationLvl += diff;
      str = formatValue(ctx, desc.value, recurseTimes);
      if (diff === 3 && ctx.breakLength < getStringWidth(str)) {
        extra = `\n${StringPrototypeRepeat(' ', ctx.indentationLvl)}`;
      }
      ctx.indentationLvl -= diff;
    } else if (desc.accessor && desc.get !== undefined) {
      // Getters are never invoked.
      str = desc.set !== undefined ? '[Getter/Setter]' : '[Getter]';
    } else if (desc.accessor && desc.set !== undefined) {
      str = '[Setter]';
    } else {
      str = 'undefined';
    }
    if (type === kArrayType) return str;
    if (typeof key === 'symbol') {
      name = `[${escapeChars(StringCtor(key), 39)}]`;
    } else if (key === '__proto__') {
      name = "['__proto__']";
    } else if (desc.enumerable === false) {
      name = `[${escapeChars(`${key}`, 39)}]`;
    } else if (RegExpPrototypeExec(keyStrRegExp, `${key}`) !== null) {
      name = `${key}`;
    } else {
      name = strEscape(`${key}`);
    }
    return `${name}:${extra}${str}`;
  }

  // =========================================================================
  // 5. Line breaking
  // =========================================================================

  function isBelowBreakLength(ctx, output, start, base) {
    let totalLength = output.length + start;
    if (totalLength + output.length > ctx.breakLength) return false;
    for (let i = 0; i < output.length; i++) {
      totalLength += output[i].length;
      if (totalLength > ctx.breakLength) return false;
    }
    return base === '' || !StringPrototypeIncludes(base, '\n');
  }

  // Arrays with more than 6 entries are grouped into aligned columns.
  function groupArrayElements(ctx, output, value) {
    let totalLength = 0;
    let maxLength = 0;
    let i = 0;
    let outputLength = output.length;
    if (ctx.maxArrayLength < output.length) {
      // Do not take the "... n more items" entry into account.
      outputLength--;
    }
    const separatorSpace = 2; // ", "
    const dataLen = newList();
    for (; i < outputLength; i++) {
      const len = getStringWidth(output[i]);
      dataLen[i] = len;
      totalLength += len + separatorSpace;
      if (maxLength < len) maxLength = len;
    }
    const actualMax = maxLength + separatorSpace;
    if (actualMax * 3 + ctx.indentationLvl < ctx.breakLength &&
        (totalLength / actualMax > 5 || maxLength <= 6)) {
      const approxCharHeights = 2.5;
      const averageBias = MathSqrt(actualMax - totalLength / output.length);
      const biasedMax = MathMax(actualMax - 3 - averageBias, 1);
      const columns = MathMin(
        MathRound(MathSqrt(approxCharHeights * biasedMax * outputLength) / biasedMax),
        MathFloor((ctx.breakLength - ctx.indentationLvl) / actualMax),
        ctx.compact * 4,
        15,
      );
      if (columns <= 1) return output;
      const tmp = newList();
      const maxLineLength = newList();
      for (let c = 0; c < columns; c++) {
        let lineMaxLength = 0;
        for (let j = c; j < output.length; j += columns) {
          if (dataLen[j] > lineMaxLength) lineMaxLength = dataLen[j];
        }
        maxLineLength[c] = lineMaxLength + separatorSpace;
      }
      let padStart = true;
      if (value !== undefined) {
        for (let k = 0; k < output.length; k++) {
          const t = typeof elementForGrouping(value, k);
          if (t !== 'number' && t !== 'bigint') {
            padStart = false;
            break;
          }
        }
      }
      for (let k = 0; k < outputLength; k += columns) {
        const max = MathMin(k + columns, outputLength);
        let str = '';
        let j = k;
        for (; j < max - 1; j++) {
          const padding = maxLineLength[j - k] + output[j].length - dataLen[j];
          str += padStart ?
            StringPrototypePadStart(`${output[j]}, `, padding, ' ') :
            StringPrototypePadEnd(`${output[j]}, `, padding, ' ');
        }
        if (padStart) {
          const padding = maxLineLength[j - k] + output[j].length - dataLen[j] - separatorSpace;
          str += StringPrototypePadStart(output[j], padding, ' ');
        } else {
          str += output[j];
        }
        push(tmp, str);
      }
      if (ctx.maxArrayLength < output.length) push(tmp, output[outputLength]);
      output = tmp;
    }
    return output;
  }

  // `value[index]` for the number/bigint check of groupArrayElements, without
  // running getters.
  function elementForGrouping(value, index) {
    if (isTypedArray(value)) return index < TypedArrayPrototypeGetLength(value) ? value[index] : undefined;
    const d = ownDesc(value, `${index}`);
    if (d === undefined) {
      const inherited = lookupDesc(value, `${index}`);
      return inherited === undefined || inherited.accessor ? undefined : inherited.value;
    }
    return d.accessor ? undefined : d.value;
  }

  function reduceToSingleString(ctx, output, base, braces, extrasType, recurseTimes, value) {
    if (ctx.compact !== true) {
      if (typeof ctx.compact === 'number' && ctx.compact >= 1) {
        const entries = output.length;
        if (extrasType === kArrayExtrasType && entries > 6) {
          output = groupArrayElements(ctx, output, value);
        }
        if (ctx.currentDepth - recurseTimes < ctx.compact && entries === output.length) {
          const start = output.length + ctx.indentationLvl + braces[0].length + base.length + 10;
          if (isBelowBreakLength(ctx, output, start, base)) {
            const joinedOutput = join(output, ', ');
            if (!StringPrototypeIncludes(joinedOutput, '\n')) {
              return `${base ? `${base} ` : ''}${braces[0]} ${joinedOutput} ${braces[1]}`;
            }
          }
        }
      }
      const indentation = `\n${StringPrototypeRepeat(' ', ctx.indentationLvl)}`;
      return `${base ? `${base} ` : ''}${braces[0]}${indentation}  ` +
        `${join(output, `,${indentation}  `)}${indentation}${braces[1]}`;
    }
    if (isBelowBreakLength(ctx, output, 0, base)) {
      return `${braces[0]}${base ? ` ${base}` : ''} ${join(output, ', ')} ${braces[1]}`;
    }
    const indentation = StringPrototypeRepeat(' ', ctx.indentationLvl);
    const ln = base === '' && braces[0].length === 1 ?
      ' ' : `${base ? ` ${base}` : ''}\n${indentation}  `;
    return `${braces[0]}${ln}${join(output, `,\n${indentation}  `)} ${braces[1]}`;
  }

  // Entry point of the inspector: never throws.
  function inspect(value, options) {
    try {
      return formatValue(createContext(options), value, 0);
    } catch (err) {
      return `[object could not be inspected: ${safeErrorText(err)}]`;
    }
  }

  function safeErrorText(err) {
    try {
      return errorMessageOf(err);
    } catch {
      return 'unknown error';
    }
  }

  // =========================================================================
  // 6. Format specifiers (util.format)
  // =========================================================================

  // ToPrimitive of an object without calling user methods: boxed primitives,
  // dates and flat arrays are converted like the builtins would.
  function safePrimitive(value, hint) {
    const v = unwrapProxy(value);
    if (v === null) return undefined;
    if (isNumberObject(v)) return NumberPrototypeValueOf(v);
    if (isStringObject(v)) return StringPrototypeValueOf(v);
    if (isBooleanObject(v)) return BooleanPrototypeValueOf(v);
    if (isBigIntObject(v)) return BigIntPrototypeValueOf(v);
    if (isSymbolObject(v)) return SymbolPrototypeValueOf(v);
    if (isDate(v)) return hint === 'number' ? DatePrototypeGetTime(v) : DatePrototypeToString(v);
    if (ArrayIsArray(v)) {
      let s = '';
      for (let i = 0; i < v.length; i++) {
        if (i !== 0) s += ',';
        const d = ownDesc(v, `${i}`);
        const el = d === undefined || d.accessor ? undefined : d.value;
        if (el === null || el === undefined) continue;
        if (isObjectLike(el) || typeof el === 'symbol') return undefined;
        s += StringCtor(el);
      }
      return s;
    }
    return undefined;
  }
  function safeToNumber(value) {
    if (!isObjectLike(value)) return NumberCtor(value);
    const p = safePrimitive(value, 'number');
    if (p === undefined || typeof p === 'symbol') return NaN;
    if (typeof p === 'bigint') return NumberCtor(p);
    return NumberCtor(p);
  }
  function safeToStringForParse(value) {
    if (!isObjectLike(value)) return StringCtor(value);
    const p = safePrimitive(value, 'string');
    if (p === undefined || typeof p === 'symbol') return '';
    return StringCtor(p);
  }

  function tryStringify(arg) {
    try {
      return JSONStringify(arg);
    } catch (err) {
      const msg = safeErrorText(err);
      if (isObjectLike(err) && chainIncludes(err, TypeErrorPrototype) &&
          firstLine(msg) === CIRCULAR_ERROR_MESSAGE) {
        return '[Circular]';
      }
      return `[object could not be stringified: ${msg}]`;
    }
  }

  function withOptions(base, extra) {
    const out = { __proto__: null };
    if (base !== undefined) {
      const keys = ObjectKeys(base);
      for (let i = 0; i < keys.length; i++) out[keys[i]] = base[keys[i]];
    }
    const keys = ObjectKeys(extra);
    for (let i = 0; i < keys.length; i++) out[keys[i]] = extra[keys[i]];
    return out;
  }

  function formatWithOptions(inspectOptions, args) {
    const first = args.length !== 0 ? args[0] : undefined;
    let a = 0;
    let str = '';
    let joinStr = '';
    const numericSeparator = inspectOptions !== undefined && inspectOptions.numericSeparator;

    if (typeof first === 'string') {
      if (args.length === 1) return first;
      let tempStr;
      let lastPos = 0;
      for (let i = 0; i < first.length - 1; i++) {
        if (StringPrototypeCharCodeAt(first, i) === 37) { // '%'
          const nextChar = StringPrototypeCharCodeAt(first, ++i);
          if (a + 1 !== args.length) {
            switch (nextChar) {
              case 115: { // 's'
                const tempArg = args[++a];
                if (typeof tempArg === 'number') {
                  tempStr = formatNumber(tempArg, numericSeparator);
                } else if (typeof tempArg === 'bigint') {
                  tempStr = formatBigInt(tempArg, numericSeparator);
                } else if (typeof tempArg === 'function') {
                  const target = unwrapProxy(tempArg);
                  tempStr = target === null ? '<Revoked Proxy>' : FunctionPrototypeToString(target);
                } else if (typeof tempArg !== 'object' || tempArg === null) {
                  tempStr = StringCtor(tempArg);
                } else {
                  tempStr = inspect(tempArg, withOptions(inspectOptions, {
                    __proto__: null, compact: 3, depth: 0,
                  }));
                }
                break;
              }
              case 106: // 'j'
                tempStr = tryStringify(args[++a]);
                break;
              case 100: { // 'd'
                const tempNum = args[++a];
                if (typeof tempNum === 'bigint') {
                  tempStr = formatBigInt(tempNum, numericSeparator);
                } else if (typeof tempNum === 'symbol') {
                  tempStr = 'NaN';
                } else {
                  tempStr = formatNumber(safeToNumber(tempNum), numericSeparator);
                }
                break;
              }
              case 79: // 'O'
                tempStr = inspect(args[++a], inspectOptions);
                break;
              case 111: // 'o'
                tempStr = inspect(args[++a], withOptions(inspectOptions, {
                  __proto__: null, showHidden: true, showProxy: true, depth: 4,
                }));
                break;
              case 105: { // 'i'
                const tempInteger = args[++a];
                if (typeof tempInteger === 'bigint') {
                  tempStr = formatBigInt(tempInteger, numericSeparator);
                } else if (typeof tempInteger === 'symbol') {
                  tempStr = 'NaN';
                } else {
                  tempStr = formatNumber(
                    NumberParseInt(safeToStringForParse(tempInteger)), numericSeparator);
                }
                break;
              }
              case 102: { // 'f'
                const tempFloat = args[++a];
                if (typeof tempFloat === 'symbol') {
                  tempStr = 'NaN';
                } else {
                  tempStr = formatNumber(
                    NumberParseFloat(safeToStringForParse(tempFloat)), numericSeparator);
                }
                break;
              }
              case 99: // 'c'
                a += 1;
                tempStr = '';
                break;
              case 37: // '%'
                str += StringPrototypeSlice(first, lastPos, i);
                lastPos = i + 1;
                continue;
              default: // Not a placeholder.
                continue;
            }
            if (lastPos !== i - 1) str += StringPrototypeSlice(first, lastPos, i - 1);
            str += tempStr;
            lastPos = i + 1;
          } else if (nextChar === 37) {
            str += StringPrototypeSlice(first, lastPos, i);
            lastPos = i + 1;
          }
        }
      }
      if (lastPos !== 0) {
        a++;
        joinStr = ' ';
        if (lastPos < first.length) str += StringPrototypeSlice(first, lastPos);
      }
    }

    while (a < args.length) {
      const value = args[a];
      str += joinStr;
      str += typeof value !== 'string' ? inspect(value, inspectOptions) : value;
      joinStr = ' ';
      a++;
    }
    return str;
  }

  function format(args) {
    try {
      return formatWithOptions(undefined, args);
    } catch (err) {
      return `[object could not be inspected: ${safeErrorText(err)}]`;
    }
  }

  // =========================================================================
  // 7. Console methods
  // =========================================================================

  const LOG = 0;
  const INFO = 1;
  const WARN = 2;
  const ERROR = 3;
  const DEBUG = 4;
  const TRACE = 5;

  const kGroupIndentationWidth = 2;
  let groupIndent = '';
  const counts = new MapCtor();
  const timers = new MapCtor();

  function emit(level, text) {
    if (groupIndent.length !== 0) {
      text = groupIndent + replaceAllString(text, '\n', `\n${groupIndent}`);
    }
    ReflectApply(hostPrint, host, [level, text]);
  }

  function labelString(label) {
    if (label === undefined) return 'default';
    if (!isObjectLike(label)) return StringCtor(label);
    try {
      // Labels are converted like Node (`${label}`); this may run user code,
      // but only the user's own toString on the user's own label.
      const s = `${label}`;
      return typeof s === 'string' ? s : safeString(label);
    } catch {
      return inspect(label, undefined);
    }
  }

  function pad2(value) {
    return StringPrototypePadStart(`${value}`, 2, '0');
  }

  const kSecond = 1000;
  const kMinute = 60 * kSecond;
  const kHour = 60 * kMinute;

  function formatTime(ms) {
    let hours = 0;
    let minutes = 0;
    let seconds = 0;
    if (ms >= kSecond) {
      if (ms >= kMinute) {
        if (ms >= kHour) {
          hours = MathFloor(ms / kHour);
          ms = ms % kHour;
        }
        minutes = MathFloor(ms / kMinute);
        ms = ms % kMinute;
      }
      seconds = ms / kSecond;
    }
    if (hours !== 0 || minutes !== 0) {
      const parts = splitString(NumberPrototypeToFixed(seconds, 3), '.');
      const res = hours !== 0 ? `${hours}:${pad2(minutes)}` : minutes;
      return `${res}:${pad2(parts[0])}.${parts[1]} (${hours !== 0 ? 'h:m' : ''}m:ss.mmm)`;
    }
    if (seconds !== 0) return `${NumberPrototypeToFixed(seconds, 3)}s`;
    return `${NumberCtor(NumberPrototypeToFixed(ms, 3))}ms`;
  }

  function timeLogImpl(name, label, data) {
    const start = MapPrototypeGet(timers, label);
    if (start === undefined) {
      emit(WARN, `Warning: No such label '${label}' for console.${name}()`);
      return false;
    }
    const formatted = formatTime(now() - start);
    const args = newList();
    push(args, '%s: %s');
    push(args, label);
    push(args, formatted);
    if (data !== undefined) for (let i = 0; i < data.length; i++) push(args, data[i]);
    emit(LOG, format(args));
    return true;
  }

  // Reads the inspect options of console.dir without running user getters.
  function readDirOptions(options) {
    const out = {
      __proto__: null,
      customInspect: false,
    };
    if (!isObjectLike(options)) return out;
    const o = unwrapProxy(options);
    if (o === null) return out;
    const names = ['showHidden', 'depth', 'showProxy', 'maxArrayLength', 'maxStringLength',
      'breakLength', 'compact', 'sorted', 'numericSeparator'];
    for (let i = 0; i < names.length; i++) {
      // Own enumerable data properties only (Node spreads the options).
      const d = ownDesc(o, names[i]);
      if (d !== undefined && !d.accessor && d.enumerable && d.value !== undefined) {
        out[names[i]] = d.value;
      }
    }
    return out;
  }

  // --- console.table ---

  const tableChars = {
    __proto__: null,
    middleMiddle: '\u2500',
    rowMiddle: '\u253c',
    topRight: '\u2510',
    topLeft: '\u250c',
    leftMiddle: '\u251c',
    topMiddle: '\u252c',
    bottomRight: '\u2518',
    bottomLeft: '\u2514',
    bottomMiddle: '\u2534',
    rightMiddle: '\u2524',
    left: '\u2502 ',
    right: ' \u2502',
    middle: ' \u2502 ',
  };

  function renderRow(row, columnWidths) {
    let out = tableChars.left;
    for (let i = 0; i < row.length; i++) {
      const cell = row[i];
      const len = getStringWidth(cell);
      const needed = columnWidths[i] - len;
      out += cell + StringPrototypeRepeat(' ', MathCeil(needed));
      if (i !== row.length - 1) out += tableChars.middle;
    }
    out += tableChars.right;
    return out;
  }

  function renderTable(head, columns) {
    const rows = newList();
    const columnWidths = newList();
    for (let i = 0; i < head.length; i++) columnWidths[i] = getStringWidth(head[i]);
    let longestColumn = 0;
    for (let i = 0; i < columns.length; i++) {
      if (columns[i].length > longestColumn) longestColumn = columns[i].length;
    }
    for (let i = 0; i < head.length; i++) {
      const column = columns[i];
      for (let j = 0; j < longestColumn; j++) {
        if (rows[j] === undefined) rows[j] = newList();
        const value = rows[j][i] = ObjectPrototypeHasOwnProperty(column, j) ? column[j] : '';
        const width = columnWidths[i] || 0;
        const counted = getStringWidth(value);
        columnWidths[i] = MathMax(width, counted);
      }
    }
    const divider = newList();
    for (let i = 0; i < columnWidths.length; i++) {
      push(divider, StringPrototypeRepeat(tableChars.middleMiddle, columnWidths[i] + 2));
    }
    let result = `${tableChars.topLeft}${join(divider, tableChars.topMiddle)}${tableChars.topRight}\n` +
      `${renderRow(head, columnWidths)}\n` +
      `${tableChars.leftMiddle}${join(divider, tableChars.rowMiddle)}${tableChars.rightMiddle}\n`;
    for (let i = 0; i < rows.length; i++) result += `${renderRow(rows[i], columnWidths)}\n`;
    result += `${tableChars.bottomLeft}${join(divider, tableChars.bottomMiddle)}${tableChars.bottomRight}`;
    return result;
  }

  function tableInspect(v) {
    let depth = 0;
    if (v !== null && typeof v === 'object') {
      const u = unwrapProxy(v);
      if (u !== null && !ArrayIsArray(u) && !isTypedArray(u) && ObjectKeys(u).length > 2) {
        depth = -1;
      }
    }
    return inspect(v, { __proto__: null, depth, maxArrayLength: 3, breakLength: Infinity });
  }

  // Cell text for an own property (getters are shown, not run).
  function tableCell(obj, key) {
    const d = ownDesc(obj, key);
    if (d === undefined) return tableInspect(undefined);
    if (!d.accessor) return tableInspect(d.value);
    if (d.get !== undefined) return d.set !== undefined ? '[Getter/Setter]' : '[Getter]';
    return '[Setter]';
  }

  function isPropertyKey(k) {
    return typeof k === 'string' || typeof k === 'number' || typeof k === 'symbol';
  }

  function buildTable(tabularData, properties) {
    if (properties !== undefined) {
      const p = isObjectLike(properties) ? unwrapProxy(properties) : null;
      if (p === null || !ArrayIsArray(p)) {
        properties = undefined;
      } else {
        properties = newList();
        for (let i = 0; i < p.length; i++) {
          const d = ownDesc(p, `${i}`);
          if (d !== undefined && !d.accessor && isPropertyKey(d.value)) push(properties, d.value);
        }
      }
    }
    if (tabularData === null || typeof tabularData !== 'object') return undefined;
    const data = unwrapProxy(tabularData);
    if (data === null || isMapIterator(data) || isSetIterator(data)) return undefined;

    const getIndexArray = (length) => {
      const out = newList();
      for (let i = 0; i < length; i++) push(out, tableInspect(i));
      return out;
    };

    if (isMap(data)) {
      const keys = newList();
      const values = newList();
      const it = MapPrototypeEntries(data);
      for (;;) {
        const r = MapIteratorNext(it);
        if (r.done) break;
        push(keys, tableInspect(r.value[0]));
        push(values, tableInspect(r.value[1]));
      }
      return renderTable(['(iteration index)', 'Key', 'Values'],
        [getIndexArray(keys.length), keys, values]);
    }
    if (isSet(data)) {
      const values = newList();
      const it = SetPrototypeValues(data);
      for (;;) {
        const r = SetIteratorNext(it);
        if (r.done) break;
        push(values, tableInspect(r.value));
      }
      return renderTable(['(iteration index)', 'Values'], [getIndexArray(values.length), values]);
    }

    const map = { __proto__: null };
    let hasPrimitives = false;
    const valuesKeyArray = newList();
    const indexKeyArray = listFrom(ObjectKeys(data));
    for (let i = 0; i < indexKeyArray.length; i++) {
      const d = ownDesc(data, indexKeyArray[i]);
      if (d !== undefined && d.accessor) {
        // A getter on the table itself: show it, do not run it.
        if (properties === undefined) {
          hasPrimitives = true;
          valuesKeyArray[i] = d.set !== undefined ? '[Getter/Setter]' : '[Getter]';
        }
        continue;
      }
      const item = d === undefined ? undefined : d.value;
      const primitive = item === null || (typeof item !== 'function' && typeof item !== 'object');
      if (properties === undefined && primitive) {
        hasPrimitives = true;
        valuesKeyArray[i] = tableInspect(item);
      } else {
        const target = primitive ? item : unwrapProxy(item);
        const keys = properties || (target === null ? newList() : ObjectKeys(target));
        for (let k = 0; k < keys.length; k++) {
          const key = keys[k];
          if (map[key] === undefined) map[key] = newList();
          if ((primitive && properties) || target === null ||
              !ObjectPrototypeHasOwnProperty(target, key)) {
            map[key][i] = '';
          } else {
            map[key][i] = tableCell(target, key);
          }
        }
      }
    }
    const keys = listFrom(ObjectKeys(map));
    const values = newList();
    for (let i = 0; i < keys.length; i++) push(values, map[keys[i]]);
    if (hasPrimitives) {
      push(keys, 'Values');
      push(values, valuesKeyArray);
    }
    return renderTable(prependKeys(keys, ['(index)']), prependKeys(values, [indexKeyArray]));
  }

  // --- The console object ---

  function isOwnFrame(line) {
    if (ownScriptName === '') return false;
    return StringPrototypeIncludes(line, `(${ownScriptName}:`) ||
      StringPrototypeStartsWith(line, `    at ${ownScriptName}:`);
  }

  function traceText(args) {
    const formatted = format(args);
    let text = formatted === '' ? 'Trace' : `Trace: ${formatted}`;
    let stack;
    try {
      if (ErrorCaptureStackTrace !== undefined) {
        const holder = { __proto__: null };
        // Frames above (and including) console.trace are omitted.
        ErrorCaptureStackTrace(holder, consoleTrace);
        stack = holder.stack;
      } else {
        stack = safeGet(new ErrorCtor(), 'stack');
      }
    } catch {
      stack = undefined;
    }
    if (typeof stack === 'string') {
      const lines = splitString(stack, '\n');
      for (let i = 1; i < lines.length; i++) {
        if (!isOwnFrame(lines[i])) text += `\n${lines[i]}`;
      }
    }
    return text;
  }

  const consoleObject = {
    log(...args) {
      emit(LOG, format(args));
    },
    info(...args) {
      emit(INFO, format(args));
    },
    warn(...args) {
      emit(WARN, format(args));
    },
    error(...args) {
      emit(ERROR, format(args));
    },
    debug(...args) {
      emit(DEBUG, format(args));
    },
    dirxml(...args) {
      emit(LOG, format(args));
    },
    trace(...args) {
      emit(TRACE, traceText(args));
    },
    dir(object, options) {
      emit(LOG, inspect(object, readDirOptions(options)));
    },
    assert(expression, ...args) {
      if (!expression) {
        let text;
        if (args.length === 0) {
          text = 'Assertion failed';
        } else if (typeof args[0] === 'string') {
          const copy = listFrom(args);
          copy[0] = `Assertion failed: ${args[0]}`;
          text = format(copy);
        } else {
          text = `Assertion failed: ${format(args)}`;
        }
        emit(ERROR, text);
      }
    },
    count(label = 'default') {
      label = labelString(label);
      let count = MapPrototypeGet(counts, label);
      count = count === undefined ? 1 : count + 1;
      MapPrototypeSet(counts, label, count);
      emit(LOG, `${label}: ${count}`);
    },
    countReset(label = 'default') {
      label = labelString(label);
      if (!MapPrototypeHas(counts, label)) {
        emit(WARN, `Warning: Count for '${label}' does not exist`);
        return;
      }
      MapPrototypeDelete(counts, label);
    },
    time(label = 'default') {
      label = labelString(label);
      if (MapPrototypeHas(timers, label)) {
        emit(WARN, `Warning: Label '${label}' already exists for console.time()`);
        return;
      }
      MapPrototypeSet(timers, label, now());
    },
    timeEnd(label = 'default') {
      label = labelString(label);
      if (timeLogImpl('timeEnd', label, undefined)) MapPrototypeDelete(timers, label);
    },
    timeLog(label = 'default', ...data) {
      label = labelString(label);
      timeLogImpl('timeLog', label, data);
    },
    group(...data) {
      if (data.length > 0) emit(LOG, format(data));
      groupIndent += StringPrototypeRepeat(' ', kGroupIndentationWidth);
    },
    groupCollapsed(...data) {
      if (data.length > 0) emit(LOG, format(data));
      groupIndent += StringPrototypeRepeat(' ', kGroupIndentationWidth);
    },
    groupEnd() {
      groupIndent = StringPrototypeSlice(groupIndent, 0,
        MathMax(0, groupIndent.length - kGroupIndentationWidth));
    },
    table(tabularData, properties) {
      let text;
      try {
        text = buildTable(tabularData, properties);
      } catch (err) {
        text = `[object could not be inspected: ${safeErrorText(err)}]`;
      }
      if (text === undefined) text = format([tabularData]);
      emit(LOG, text);
    },
    clear() {},
  };
  const consoleTrace = consoleObject.trace;

  ObjectDefineProperty(consoleObject, SymbolToStringTag, {
    __proto__: null,
    value: 'console',
    writable: false,
    enumerable: false,
    configurable: true,
  });
  ObjectDefineProperty(globalThis, 'console', {
    __proto__: null,
    value: consoleObject,
    writable: true,
    enumerable: false,
    configurable: true,
  });
})
