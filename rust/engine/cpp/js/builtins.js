// builtins.js - ES2023-ES2025 built-ins that V8 10.2 lacks, written in JavaScript.
//
// Evaluated by the host once, in the context that becomes the engine's base snapshot
// (host.cc InstallGlobals, after console.js, as the classic script "mcp-v8:builtins.js"),
// so every execution starts with them at no cost per execution.
//
// What is installed (each only when V8 does not already have it):
//   Array.prototype: toSorted, toReversed, toSpliced, with (+ @@unscopables entries)
//   %TypedArray%.prototype: toSorted, toReversed, with
//   String.prototype: isWellFormed, toWellFormed
//   Object.groupBy, Map.groupBy
//   Promise.withResolvers, Promise.try
//   Array.fromAsync (not part of ES2025 itself: the TC39 proposal's algorithm)
//   ArrayBuffer.prototype.detached (getter)
//   Set.prototype: union, intersection, difference, symmetricDifference, isSubsetOf,
//                  isSupersetOf, isDisjointFrom
//   Iterator (global), Iterator.from, Iterator.prototype.{map, filter, take, drop, flatMap,
//     reduce, toArray, forEach, some, every, find}, Iterator.prototype.constructor and
//     @@toStringTag (the spec's accessor pairs), %IteratorHelperPrototype%,
//     %WrapForValidIteratorPrototype%
//   RegExp.escape
// Array.prototype.findLast / findLastIndex / at (and their %TypedArray% twins) are native
// in V8 10.2 and are left alone.
//
// Rules this file follows:
//  - The algorithms follow the specification's steps, in its order, with its error types.
//  - Methods are written as concise methods (not constructors, no "prototype"), so their
//    `name` and `length` are the spec's; they are installed writable, configurable and
//    non-enumerable, as built-in methods are.
//  - Everything called at run time is captured here, before user code runs: a user who
//    replaces Array.prototype.sort, Set.prototype.add, RegExp.prototype.exec, the
//    iterators' next, Function.prototype.call... changes nothing here, except where the
//    specification itself performs a property lookup (e.g. a set-like's size/has/keys,
//    an iterator's next/return, Symbol.iterator).
//  - Arrays the spec creates with ArrayCreate and fills with CreateDataPropertyOrThrow are
//    built with a null prototype and given %Array.prototype% only once full, so that index
//    accessors a user defines on Array.prototype or Object.prototype are never invoked.
//
// Known differences from native built-ins (none of them can be removed without native
// code): Function.prototype.toString shows this source instead of "[native code]";
// stack frames of these functions name mcp-v8:builtins.js, and the line/column of an
// uncaught error that one of them throws is in this file (V8 takes the location from the
// top JavaScript frame); microtask tick counts of Array.fromAsync over sync iterables may
// differ by a tick from a native implementation.
//
// Left out: ArrayBuffer.prototype.transfer and transferToFixedLength. Both must detach
// the receiver (afterwards its byteLength is 0, `detached` is true and every view on it
// reads as length 0 and throws on use). V8 10.2 gives JavaScript no way to detach an
// arbitrary ArrayBuffer: there is no structuredClone/postMessage with a transfer list in a
// bare isolate, %ArrayBufferDetach needs --allow-natives-syntax (which would hand natives
// to user code), and WebAssembly.Memory#grow only detaches the memory's own buffers. A
// copy that leaves the source attached would contradict those spec-visible effects, so
// neither method is installed (feature detection then reports them missing, as it should).
// The `detached` getter is exact: a buffer can be detached in V8 10.2 (by a
// WebAssembly.Memory growing), and that state is observable from JavaScript.
(function () {
  'use strict';

  // ===========================================================================
  // Intrinsics, captured before any user code runs
  // ===========================================================================

  const ObjectCtor = Object;
  const StringCtor = String;
  const ObjectCreate = Object.create;
  const ObjectDefineProperty = Object.defineProperty;
  const ObjectGetPrototypeOf = Object.getPrototypeOf;
  const ObjectSetPrototypeOf = Object.setPrototypeOf;
  const ObjectGetOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const ObjectPrototypeHasOwnProperty = Object.prototype.hasOwnProperty;
  const ReflectApply = Reflect.apply;
  const ReflectDefineProperty = Reflect.defineProperty;
  const ReflectGetOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor;
  const ReflectOwnKeys = Reflect.ownKeys;
  const ProxyCtor = Proxy;
  const TypeErrorCtor = TypeError;
  const RangeErrorCtor = RangeError;
  const MathTrunc = Math.trunc;
  const MathMin = Math.min;
  const MathMax = Math.max;
  const SymbolIterator = Symbol.iterator;
  const SymbolAsyncIterator = Symbol.asyncIterator;
  const SymbolToStringTag = Symbol.toStringTag;
  const SymbolUnscopables = Symbol.unscopables;
  const FunctionPrototypeHasInstance = Function.prototype[Symbol.hasInstance];

  const ArrayCtor = Array;
  const ArrayPrototype = Array.prototype;
  const ArrayPrototypeSort = ArrayPrototype.sort;

  const StringPrototypeCharCodeAt = String.prototype.charCodeAt;
  const StringPrototypeCodePointAt = String.prototype.codePointAt;
  const StringPrototypeSlice = String.prototype.slice;

  const MapCtor = Map;
  const MapPrototypeGet = Map.prototype.get;
  const MapPrototypeSet = Map.prototype.set;

  const SetCtor = Set;
  const SetPrototypeHas = Set.prototype.has;
  const SetPrototypeAdd = Set.prototype.add;
  const SetPrototypeDelete = Set.prototype.delete;
  const SetPrototypeValues = Set.prototype.values;
  const SetPrototypeSize = ObjectGetOwnPropertyDescriptor(Set.prototype, 'size').get;
  const SetIteratorNext = ObjectGetPrototypeOf(new Set().values()).next;

  const PromiseCtor = Promise;

  const GeneratorPrototype = ObjectGetPrototypeOf(function* () {}).prototype;
  const GeneratorPrototypeNext = GeneratorPrototype.next;
  const GeneratorPrototypeReturn = GeneratorPrototype.return;

  const IteratorPrototype = ObjectGetPrototypeOf(ObjectGetPrototypeOf([][SymbolIterator]()));

  const ArrayBufferPrototype = ArrayBuffer.prototype;
  const ArrayBufferByteLength = ObjectGetOwnPropertyDescriptor(ArrayBufferPrototype, 'byteLength').get;
  const Uint8ArrayCtor = Uint8Array;
  const TypedArray = ObjectGetPrototypeOf(Int8Array);
  const TypedArrayPrototype = TypedArray.prototype;
  const TypedArrayPrototypeSet = TypedArrayPrototype.set;
  const TypedArrayPrototypeSort = TypedArrayPrototype.sort;
  const TypedArrayPrototypeReverse = TypedArrayPrototype.reverse;
  const TypedArrayLength = ObjectGetOwnPropertyDescriptor(TypedArrayPrototype, 'length').get;
  const TypedArrayBuffer = ObjectGetOwnPropertyDescriptor(TypedArrayPrototype, 'buffer').get;
  const TypedArrayName = ObjectGetOwnPropertyDescriptor(TypedArrayPrototype, SymbolToStringTag).get;
  // TypedArrayCreateSameType: the intrinsic constructor of each [[TypedArrayName]].
  const TypedArrayConstructors = {
    __proto__: null,
    Int8Array,
    Uint8Array,
    Uint8ClampedArray,
    Int16Array,
    Uint16Array,
    Int32Array,
    Uint32Array,
    Float32Array,
    Float64Array,
    BigInt64Array,
    BigUint64Array,
  };

  const MAX_SAFE_INTEGER = 9007199254740991;
  const MAX_ARRAY_LENGTH = 4294967295;

  // ===========================================================================
  // Abstract operations
  // ===========================================================================

  // (Object.hasOwn is not used: V8 10.2 adds it, like its other shipped "harmony"
  // features, only to contexts made from the snapshot, after this script has run.)
  function HasOwn(object, key) {
    return ReflectApply(ObjectPrototypeHasOwnProperty, object, [key]);
  }

  function IsObject(value) {
    return (typeof value === 'object' && value !== null) || typeof value === 'function';
  }

  // A short description of a value for an error message, without running user code.
  function Describe(value) {
    if (typeof value === 'string') return `"${value}"`;
    if (typeof value === 'function') return 'function';
    if (typeof value === 'object' && value !== null) return 'object';
    return StringCtor(value);
  }

  function IsCallable(value) {
    return typeof value === 'function';
  }

  // IsConstructor without calling anything observable: a Proxy has [[Construct]] exactly
  // when its target has, and constructing it runs only our own trap.
  const constructorProbe = {
    __proto__: null,
    construct() {
      return constructorProbe;
    },
  };
  function IsConstructor(value) {
    if (typeof value !== 'function') return false;
    if (value === ArrayCtor || value === PromiseCtor) return true;
    try {
      new (new ProxyCtor(value, constructorProbe))();
      return true;
    } catch {
      return false;
    }
  }

  function ToObject(value, method) {
    if (value === undefined || value === null) {
      throw new TypeErrorCtor(`${method} called on null or undefined`);
    }
    return ObjectCtor(value);
  }

  // ToNumber is unary plus (it throws a TypeError for BigInt and Symbol, as ToNumber does).
  function ToIntegerOrInfinity(value) {
    const number = +value;
    if (number !== number || number === 0) return 0;
    return MathTrunc(number);
  }

  function LengthOfArrayLike(object) {
    const length = ToIntegerOrInfinity(object.length);
    if (length <= 0) return 0;
    return MathMin(length, MAX_SAFE_INTEGER);
  }

  function ToPropertyKey(value) {
    if (typeof value === 'symbol') return value;
    if (!IsObject(value)) return `${value}`;
    // ToPrimitive(value, string) may give a Symbol: a computed key does exactly ToPropertyKey.
    return ReflectOwnKeys({ __proto__: null, [value]: 0 })[0];
  }

  function CreateDataPropertyOrThrow(object, key, value) {
    const descriptor = { __proto__: null, value, writable: true, enumerable: true, configurable: true };
    if (!ReflectDefineProperty(object, key, descriptor)) {
      throw new TypeErrorCtor(`Cannot add property ${Describe(key)}, object is not extensible`);
    }
  }

  // A List: an array with a null prototype, so writes never reach inherited setters.
  function NewList() {
    const list = [];
    ObjectSetPrototypeOf(list, null);
    return list;
  }

  // ArrayCreate(length) checks, then a List to fill with "CreateDataPropertyOrThrow".
  function NewArrayList(length) {
    if (length > MAX_ARRAY_LENGTH) throw new RangeErrorCtor('Invalid array length');
    return NewList();
  }

  // A filled List becomes the Array the spec returns (CreateArrayFromList / ArrayCreate).
  function ListToArray(list) {
    ObjectSetPrototypeOf(list, ArrayPrototype);
    return list;
  }

  // --- iterators -------------------------------------------------------------

  const DONE = { __proto__: null };

  function IteratorRecord(iterator, nextMethod) {
    return { __proto__: null, iterator, next: nextMethod };
  }

  function GetIteratorDirect(object) {
    return IteratorRecord(object, object.next);
  }

  function GetIteratorFromMethod(object, method) {
    const iterator = ReflectApply(method, object, []);
    if (!IsObject(iterator)) throw new TypeErrorCtor('Result of the iterator method is not an object');
    return GetIteratorDirect(iterator);
  }

  // GetIterator(obj, sync)
  function GetIterator(object) {
    const method = object[SymbolIterator];
    if (method === undefined || method === null) throw new TypeErrorCtor(`${Describe(object)} is not iterable`);
    if (!IsCallable(method)) throw new TypeErrorCtor('Symbol.iterator is not a function');
    return GetIteratorFromMethod(object, method);
  }

  // IteratorStep: the result object, or DONE.
  function IteratorStep(record) {
    const result = ReflectApply(record.next, record.iterator, []);
    if (!IsObject(result)) throw new TypeErrorCtor(`Iterator result ${Describe(result)} is not an object`);
    if (result.done) return DONE;
    return result;
  }

  // IteratorStepValue: the value, or DONE.
  function IteratorStepValue(record) {
    const result = IteratorStep(record);
    if (result === DONE) return DONE;
    return result.value;
  }

  // IteratorClose(iterator, throwCompletion): the original error wins over anything that
  // getting or calling `return` throws. Callers call it from a `finally` block, so that the
  // error keeps propagating as it was thrown: a `catch` and `throw` would give V8 a new
  // message location (this file) for the user's own error.
  function IteratorCloseOnThrow(iterator) {
    try {
      const returnMethod = iterator.return;
      if (returnMethod !== undefined && returnMethod !== null) ReflectApply(returnMethod, iterator, []);
    } catch {
      // the completion being propagated is the caller's throw
    }
  }

  // IteratorClose(iterator, normal or return completion).
  function IteratorClose(iterator) {
    const returnMethod = iterator.return;
    if (returnMethod === undefined || returnMethod === null) return;
    const inner = ReflectApply(returnMethod, iterator, []);
    if (!IsObject(inner)) throw new TypeErrorCtor('Iterator result of return() is not an object');
  }

  // GetIteratorFlattenable(obj, primitiveHandling)
  function GetIteratorFlattenable(object, rejectPrimitives) {
    if (!IsObject(object)) {
      if (rejectPrimitives || typeof object !== 'string') {
        throw new TypeErrorCtor(`${Describe(object)} is not an object`);
      }
    }
    const method = object[SymbolIterator];
    let iterator;
    if (method === undefined || method === null) {
      iterator = object;
    } else {
      if (!IsCallable(method)) throw new TypeErrorCtor('Symbol.iterator is not a function');
      iterator = ReflectApply(method, object, []);
    }
    if (!IsObject(iterator)) throw new TypeErrorCtor('Result of the Symbol.iterator method is not an object');
    return GetIteratorDirect(iterator);
  }

  // --- installation ----------------------------------------------------------

  // Copies the own properties of `source` onto `target` as built-in properties are:
  // non-enumerable, configurable, and (for data properties) writable. Properties that
  // V8 already has natively are kept.
  function install(target, source) {
    const keys = ReflectOwnKeys(source);
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      if (HasOwn(target, key)) continue;
      const d = ReflectGetOwnPropertyDescriptor(source, key);
      const descriptor = HasOwn(d, 'value')
        ? { __proto__: null, value: d.value, writable: true, enumerable: false, configurable: true }
        : { __proto__: null, get: d.get, set: d.set, enumerable: false, configurable: true };
      ObjectDefineProperty(target, key, descriptor);
    }
  }

  // ===========================================================================
  // Array.prototype: toSorted, toReversed, toSpliced, with (ES2023)
  // ===========================================================================

  install(ArrayPrototype, {
    toReversed() {
      const O = ToObject(this, 'Array.prototype.toReversed');
      const len = LengthOfArrayLike(O);
      const A = NewArrayList(len);
      for (let k = 0; k < len; k++) A[k] = O[len - k - 1];
      return ListToArray(A);
    },

    toSorted(comparefn) {
      if (comparefn !== undefined && !IsCallable(comparefn)) {
        throw new TypeErrorCtor('The comparison function must be either a function or undefined');
      }
      const O = ToObject(this, 'Array.prototype.toSorted');
      const len = LengthOfArrayLike(O);
      const A = NewArrayList(len);
      // SortIndexedProperties(O, len, SortCompare, read-through-holes): every index is read
      // (holes as undefined) before the comparator runs; undefined sorts last, uncompared.
      for (let k = 0; k < len; k++) A[k] = O[k];
      ListToArray(A);
      ReflectApply(ArrayPrototypeSort, A, [comparefn]);
      return A;
    },

    toSpliced(start, skipCount, ...items) {
      const O = ToObject(this, 'Array.prototype.toSpliced');
      const len = LengthOfArrayLike(O);
      const relativeStart = ToIntegerOrInfinity(start);
      let actualStart;
      if (relativeStart === -Infinity) actualStart = 0;
      else if (relativeStart < 0) actualStart = MathMax(len + relativeStart, 0);
      else actualStart = MathMin(relativeStart, len);
      const insertCount = items.length;
      let actualSkipCount;
      if (arguments.length === 0) {
        actualSkipCount = 0;
      } else if (arguments.length === 1) {
        actualSkipCount = len - actualStart;
      } else {
        const sc = ToIntegerOrInfinity(skipCount);
        actualSkipCount = MathMin(MathMax(sc, 0), len - actualStart);
      }
      const newLen = len + insertCount - actualSkipCount;
      if (newLen > MAX_SAFE_INTEGER) throw new TypeErrorCtor('Invalid array length');
      const A = NewArrayList(newLen);
      let i = 0;
      let r = actualStart + actualSkipCount;
      while (i < actualStart) {
        A[i] = O[i];
        i++;
      }
      for (let j = 0; j < insertCount; j++) A[i++] = items[j];
      while (i < newLen) {
        A[i] = O[r];
        i++;
        r++;
      }
      return ListToArray(A);
    },

    with(index, value) {
      const O = ToObject(this, 'Array.prototype.with');
      const len = LengthOfArrayLike(O);
      const relativeIndex = ToIntegerOrInfinity(index);
      const actualIndex = relativeIndex >= 0 ? relativeIndex : len + relativeIndex;
      if (actualIndex >= len || actualIndex < 0) throw new RangeErrorCtor('Invalid index : ' + relativeIndex);
      const A = NewArrayList(len);
      for (let k = 0; k < len; k++) A[k] = k === actualIndex ? value : O[k];
      return ListToArray(A);
    },
  });

  {
    const unscopables = ArrayPrototype[SymbolUnscopables];
    const names = ['toReversed', 'toSorted', 'toSpliced'];
    for (let i = 0; i < names.length; i++) {
      if (!HasOwn(unscopables, names[i])) CreateDataPropertyOrThrow(unscopables, names[i], true);
    }
  }

  // ===========================================================================
  // %TypedArray%.prototype: toSorted, toReversed, with (ES2023)
  // ===========================================================================

  // IsDetachedBuffer, for a buffer whose byteLength reads 0 (a detached one reads 0):
  // constructing a view on a detached buffer is a TypeError, on any other one it is not.
  function IsDetachedBuffer(buffer) {
    try {
      new Uint8ArrayCtor(buffer, 0, 0);
      return false;
    } catch {
      return true;
    }
  }

  // ValidateTypedArray(O, seq-cst): the [[TypedArrayName]] of O, or a TypeError.
  function ValidateTypedArray(O, method) {
    const name = ReflectApply(TypedArrayName, O, []);
    if (name === undefined) throw new TypeErrorCtor(`${method}: this is not a typed array.`);
    if (ReflectApply(TypedArrayLength, O, []) === 0 && IsDetachedBuffer(ReflectApply(TypedArrayBuffer, O, []))) {
      throw new TypeErrorCtor(`Cannot perform ${method} on a detached ArrayBuffer`);
    }
    return name;
  }

  install(TypedArrayPrototype, {
    toReversed() {
      const O = this;
      const name = ValidateTypedArray(O, '%TypedArray%.prototype.toReversed');
      const len = ReflectApply(TypedArrayLength, O, []);
      const A = new TypedArrayConstructors[name](len);
      ReflectApply(TypedArrayPrototypeSet, A, [O]);
      ReflectApply(TypedArrayPrototypeReverse, A, []);
      return A;
    },

    toSorted(comparefn) {
      if (comparefn !== undefined && !IsCallable(comparefn)) {
        throw new TypeErrorCtor('The comparison function must be either a function or undefined');
      }
      const O = this;
      const name = ValidateTypedArray(O, '%TypedArray%.prototype.toSorted');
      const len = ReflectApply(TypedArrayLength, O, []);
      const A = new TypedArrayConstructors[name](len);
      // The values are read from O before the comparator runs: sorting the copy is that.
      ReflectApply(TypedArrayPrototypeSet, A, [O]);
      ReflectApply(TypedArrayPrototypeSort, A, [comparefn]);
      return A;
    },

    with(index, value) {
      const O = this;
      const name = ValidateTypedArray(O, '%TypedArray%.prototype.with');
      const len = ReflectApply(TypedArrayLength, O, []);
      const relativeIndex = ToIntegerOrInfinity(index);
      const actualIndex = relativeIndex >= 0 ? relativeIndex : len + relativeIndex;
      const C = TypedArrayConstructors[name];
      // ToBigInt(value) or ToNumber(value), by the content type: storing into an element
      // of the same type converts exactly so (and A stores the same converted value).
      const converted = new C(1);
      converted[0] = value;
      // IsValidIntegerIndex(O, actualIndex), after the conversion (which may detach O).
      if (!(actualIndex >= 0 && actualIndex < ReflectApply(TypedArrayLength, O, []))) {
        throw new RangeErrorCtor('Invalid typed array index');
      }
      const A = new C(len);
      ReflectApply(TypedArrayPrototypeSet, A, [O]);
      A[actualIndex] = converted[0];
      return A;
    },
  });

  // ===========================================================================
  // String.prototype: isWellFormed, toWellFormed (ES2024)
  // ===========================================================================

  // The index of the first lone surrogate of S at or after `from`, or -1. (A loop, not a
  // RegExp: a match would update the legacy RegExp.lastMatch/$1... statics.)
  function FindLoneSurrogate(S, from) {
    const length = S.length;
    for (let i = from; i < length; i++) {
      const c = ReflectApply(StringPrototypeCharCodeAt, S, [i]);
      if (c < 0xd800 || c > 0xdfff) continue;
      if (c <= 0xdbff && i + 1 < length) {
        const d = ReflectApply(StringPrototypeCharCodeAt, S, [i + 1]);
        if (d >= 0xdc00 && d <= 0xdfff) {
          i++;
          continue;
        }
      }
      return i;
    }
    return -1;
  }

  install(String.prototype, {
    isWellFormed() {
      if (this === undefined || this === null) {
        throw new TypeErrorCtor('String.prototype.isWellFormed called on null or undefined');
      }
      const S = `${this}`;
      return FindLoneSurrogate(S, 0) === -1;
    },

    toWellFormed() {
      if (this === undefined || this === null) {
        throw new TypeErrorCtor('String.prototype.toWellFormed called on null or undefined');
      }
      const S = `${this}`;
      let at = FindLoneSurrogate(S, 0);
      if (at === -1) return S;
      let result = '';
      let from = 0;
      while (at !== -1) {
        result += ReflectApply(StringPrototypeSlice, S, [from, at]) + '\uFFFD';
        from = at + 1;
        at = FindLoneSurrogate(S, from);
      }
      return result + ReflectApply(StringPrototypeSlice, S, [from]);
    },
  });

  // ===========================================================================
  // Object.groupBy, Map.groupBy (ES2024)
  // ===========================================================================

  // GroupBy(items, callbackfn, keyCoercion): a Map from key to a List, in first-seen order.
  function GroupBy(items, callbackfn, propertyKeys, method) {
    if (items === undefined || items === null) throw new TypeErrorCtor(`${method} called on null or undefined`);
    if (!IsCallable(callbackfn)) throw new TypeErrorCtor(`${method}: callback is not a function`);
    const groups = new MapCtor();
    const order = NewList();
    const record = GetIterator(items);
    let k = 0;
    for (;;) {
      if (k >= MAX_SAFE_INTEGER) {
        const error = new TypeErrorCtor('Too many elements');
        IteratorCloseOnThrow(record.iterator);
        throw error;
      }
      const value = IteratorStepValue(record);
      if (value === DONE) break;
      let key;
      let completed = false;
      try {
        key = callbackfn(value, k);
        if (propertyKeys) key = ToPropertyKey(key);
        completed = true;
      } finally {
        if (!completed) IteratorCloseOnThrow(record.iterator);
      }
      if (key === 0) key = 0; // -0 becomes +0 (zero coercion; a property key is never -0)
      let elements = ReflectApply(MapPrototypeGet, groups, [key]);
      if (elements === undefined) {
        elements = NewList();
        ReflectApply(MapPrototypeSet, groups, [key, elements]);
        order[order.length] = key;
      }
      elements[elements.length] = value;
      k++;
    }
    return { __proto__: null, groups, order };
  }

  install(ObjectCtor, {
    groupBy(items, callbackfn) {
      const { groups, order } = GroupBy(items, callbackfn, true, 'Object.groupBy');
      const obj = ObjectCreate(null);
      for (let i = 0; i < order.length; i++) {
        const key = order[i];
        CreateDataPropertyOrThrow(obj, key, ListToArray(ReflectApply(MapPrototypeGet, groups, [key])));
      }
      return obj;
    },
  });

  install(MapCtor, {
    groupBy(items, callbackfn) {
      const { groups, order } = GroupBy(items, callbackfn, false, 'Map.groupBy');
      // The grouping Map is a new %Map% already; its Lists become Arrays in place.
      for (let i = 0; i < order.length; i++) ListToArray(ReflectApply(MapPrototypeGet, groups, [order[i]]));
      return groups;
    },
  });

  // ===========================================================================
  // Promise.withResolvers (ES2024), Promise.try (ES2025)
  // ===========================================================================

  function NewPromiseCapability(C) {
    if (!IsConstructor(C)) throw new TypeErrorCtor(`${Describe(C)} is not a constructor`);
    let resolve;
    let reject;
    // GetCapabilitiesExecutor: anonymous, length 2, not a constructor.
    const promise = new C((resolveFn, rejectFn) => {
      if (resolve !== undefined) throw new TypeErrorCtor('Promise executor has already been invoked with non-undefined arguments');
      if (reject !== undefined) throw new TypeErrorCtor('Promise executor has already been invoked with non-undefined arguments');
      resolve = resolveFn;
      reject = rejectFn;
    });
    if (!IsCallable(resolve)) throw new TypeErrorCtor('Promise resolve or reject function is not callable');
    if (!IsCallable(reject)) throw new TypeErrorCtor('Promise resolve or reject function is not callable');
    return { __proto__: null, promise, resolve, reject };
  }

  install(PromiseCtor, {
    withResolvers() {
      const { promise, resolve, reject } = NewPromiseCapability(this);
      return { promise, resolve, reject };
    },

    try(callbackfn, ...args) {
      const C = this;
      if (!IsObject(C)) throw new TypeErrorCtor('Promise.try called on non-object');
      const capability = NewPromiseCapability(C);
      let value;
      try {
        value = ReflectApply(callbackfn, undefined, args);
      } catch (error) {
        ReflectApply(capability.reject, undefined, [error]);
        return capability.promise;
      }
      ReflectApply(capability.resolve, undefined, [value]);
      return capability.promise;
    },
  });

  // ===========================================================================
  // Array.fromAsync (the algorithm of the TC39 proposal-array-from-async)
  // ===========================================================================

  // %AsyncFromSyncIteratorPrototype%.next: the sync result's value awaited; a rejection
  // closes the sync iterator (unless it was done).
  async function AsyncFromSyncNext(record) {
    const result = ReflectApply(record.next, record.iterator, []);
    if (!IsObject(result)) throw new TypeErrorCtor(`Iterator result ${Describe(result)} is not an object`);
    const done = !!result.done;
    const value = result.value;
    let settled = false;
    try {
      const awaited = await value;
      settled = true;
      return { __proto__: null, done, value: awaited };
    } finally {
      if (!settled && !done) IteratorCloseOnThrow(record.iterator);
    }
  }

  // AsyncIteratorClose(record, throwCompletion): `return` is called and awaited, its
  // outcome ignored; the caller's error propagates (called from `finally`).
  async function AsyncIteratorCloseOnThrow(iterator, isSync) {
    try {
      const returnMethod = iterator.return;
      if (returnMethod === undefined || returnMethod === null) return;
      const inner = ReflectApply(returnMethod, iterator, []);
      if (isSync) {
        if (IsObject(inner)) await inner.value;
      } else {
        await inner;
      }
    } catch {
      // the completion being propagated is the caller's throw
    }
  }

  async function FromAsync(C, asyncItems, mapfn, thisArg) {
    let mapping;
    if (mapfn === undefined) {
      mapping = false;
    } else {
      if (!IsCallable(mapfn)) throw new TypeErrorCtor('Array.fromAsync: mapper is not a function');
      mapping = true;
    }
    const usingAsyncIterator = asyncItems[SymbolAsyncIterator];
    if (usingAsyncIterator !== undefined && usingAsyncIterator !== null && !IsCallable(usingAsyncIterator)) {
      throw new TypeErrorCtor('Symbol.asyncIterator is not a function');
    }
    let usingSyncIterator;
    if (usingAsyncIterator === undefined || usingAsyncIterator === null) {
      usingSyncIterator = asyncItems[SymbolIterator];
      if (usingSyncIterator !== undefined && usingSyncIterator !== null && !IsCallable(usingSyncIterator)) {
        throw new TypeErrorCtor('Symbol.iterator is not a function');
      }
    }
    let record;
    let isSync = false;
    if (usingAsyncIterator !== undefined && usingAsyncIterator !== null) {
      record = GetIteratorFromMethod(asyncItems, usingAsyncIterator);
    } else if (usingSyncIterator !== undefined && usingSyncIterator !== null) {
      record = GetIteratorFromMethod(asyncItems, usingSyncIterator);
      isSync = true;
    }
    if (record !== undefined) {
      const A = IsConstructor(C) ? new C() : [];
      let k = 0;
      for (;;) {
        if (k >= MAX_SAFE_INTEGER) {
          const error = new TypeErrorCtor('Too many elements');
          await AsyncIteratorCloseOnThrow(record.iterator, isSync);
          throw error;
        }
        let done;
        let nextValue;
        if (isSync) {
          ({ done, value: nextValue } = await AsyncFromSyncNext(record));
        } else {
          const nextResult = await ReflectApply(record.next, record.iterator, []);
          if (!IsObject(nextResult)) throw new TypeErrorCtor(`Iterator result ${Describe(nextResult)} is not an object`);
          done = !!nextResult.done;
          if (!done) nextValue = nextResult.value;
        }
        if (done) {
          A.length = k;
          return A;
        }
        let completed = false;
        try {
          const mappedValue = mapping ? await ReflectApply(mapfn, thisArg, [nextValue, k]) : nextValue;
          CreateDataPropertyOrThrow(A, k, mappedValue);
          completed = true;
        } finally {
          if (!completed) await AsyncIteratorCloseOnThrow(record.iterator, isSync);
        }
        k++;
      }
    }
    // Neither async-iterable nor iterable: an array-like.
    const arrayLike = ObjectCtor(asyncItems);
    const len = LengthOfArrayLike(arrayLike);
    let A;
    if (IsConstructor(C)) {
      A = new C(len);
    } else {
      if (len > MAX_ARRAY_LENGTH) throw new RangeErrorCtor('Invalid array length');
      A = new ArrayCtor(len);
    }
    for (let k = 0; k < len; k++) {
      const kValue = await arrayLike[k];
      const mappedValue = mapping ? await ReflectApply(mapfn, thisArg, [kValue, k]) : kValue;
      CreateDataPropertyOrThrow(A, k, mappedValue);
    }
    A.length = len;
    return A;
  }

  install(ArrayCtor, {
    fromAsync(asyncItems) {
      // Every error, argument checks included, rejects the returned promise.
      return FromAsync(this, asyncItems, arguments[1], arguments[2]);
    },
  });

  // ===========================================================================
  // ArrayBuffer.prototype.detached (ES2024); transfer/transferToFixedLength left out
  // (see the header of this file)
  // ===========================================================================

  install(ArrayBufferPrototype, {
    get detached() {
      let byteLength;
      try {
        // RequireInternalSlot(O, [[ArrayBufferData]]) and not a SharedArrayBuffer.
        byteLength = ReflectApply(ArrayBufferByteLength, this, []);
      } catch {
        throw new TypeErrorCtor('Method get ArrayBuffer.prototype.detached called on incompatible receiver');
      }
      return byteLength === 0 && IsDetachedBuffer(this);
    },
  });

  // ===========================================================================
  // Set methods (ES2025)
  // ===========================================================================

  function SetSize(O, method) {
    try {
      return ReflectApply(SetPrototypeSize, O, []);
    } catch {
      throw new TypeErrorCtor(`Method Set.prototype.${method} called on incompatible receiver`);
    }
  }

  function SetHas(set, value) {
    return ReflectApply(SetPrototypeHas, set, [value]);
  }

  function SetAdd(set, value) {
    ReflectApply(SetPrototypeAdd, set, [value]);
  }

  function SetDelete(set, value) {
    ReflectApply(SetPrototypeDelete, set, [value]);
  }

  // A live iterator over O.[[SetData]]: it visits elements appended while it runs and
  // skips removed ones, as the spec's index loop over O.[[SetData]] with a re-read size.
  function SetValues(set) {
    return ReflectApply(SetPrototypeValues, set, []);
  }

  function SetCopy(set) {
    const copy = new SetCtor();
    const it = SetValues(set);
    for (;;) {
      const step = ReflectApply(SetIteratorNext, it, []);
      if (step.done) return copy;
      SetAdd(copy, step.value);
    }
  }

  function GetSetRecord(obj) {
    if (!IsObject(obj)) throw new TypeErrorCtor('The argument must be an object (a set-like)');
    const rawSize = obj.size;
    const numSize = +rawSize;
    if (numSize !== numSize) throw new TypeErrorCtor("The 'size' property must be a number");
    const intSize = ToIntegerOrInfinity(numSize);
    if (intSize < 0) throw new RangeErrorCtor("The 'size' property must not be negative");
    const has = obj.has;
    if (!IsCallable(has)) throw new TypeErrorCtor("The 'has' property must be a function");
    const keys = obj.keys;
    if (!IsCallable(keys)) throw new TypeErrorCtor("The 'keys' property must be a function");
    return { __proto__: null, set: obj, size: intSize, has, keys };
  }

  function CallHas(record, value) {
    return !!ReflectApply(record.has, record.set, [value]);
  }

  function Canonicalize(value) {
    return value === 0 ? 0 : value;
  }

  install(SetCtor.prototype, {
    union(other) {
      const O = this;
      SetSize(O, 'union');
      const otherRec = GetSetRecord(other);
      const keysIter = GetIteratorFromMethod(otherRec.set, otherRec.keys);
      const result = SetCopy(O);
      for (;;) {
        const next = IteratorStepValue(keysIter);
        if (next === DONE) return result;
        SetAdd(result, Canonicalize(next));
      }
    },

    intersection(other) {
      const O = this;
      SetSize(O, 'intersection');
      const otherRec = GetSetRecord(other);
      const result = new SetCtor();
      if (SetSize(O, 'intersection') <= otherRec.size) {
        const it = SetValues(O);
        for (;;) {
          const step = ReflectApply(SetIteratorNext, it, []);
          if (step.done) break;
          const e = step.value;
          if (CallHas(otherRec, e)) SetAdd(result, e);
        }
      } else {
        const keysIter = GetIteratorFromMethod(otherRec.set, otherRec.keys);
        for (;;) {
          const next = IteratorStepValue(keysIter);
          if (next === DONE) break;
          const value = Canonicalize(next);
          if (SetHas(O, value)) SetAdd(result, value);
        }
      }
      return result;
    },

    difference(other) {
      const O = this;
      SetSize(O, 'difference');
      const otherRec = GetSetRecord(other);
      const result = SetCopy(O);
      if (SetSize(O, 'difference') <= otherRec.size) {
        // The spec walks resultSetData, a copy taken before any `has` call: the elements
        // of that copy, in order.
        const elements = NewList();
        const it = SetValues(result);
        for (;;) {
          const step = ReflectApply(SetIteratorNext, it, []);
          if (step.done) break;
          elements[elements.length] = step.value;
        }
        for (let i = 0; i < elements.length; i++) {
          if (CallHas(otherRec, elements[i])) SetDelete(result, elements[i]);
        }
      } else {
        const keysIter = GetIteratorFromMethod(otherRec.set, otherRec.keys);
        for (;;) {
          const next = IteratorStepValue(keysIter);
          if (next === DONE) break;
          SetDelete(result, Canonicalize(next));
        }
      }
      return result;
    },

    symmetricDifference(other) {
      const O = this;
      SetSize(O, 'symmetricDifference');
      const otherRec = GetSetRecord(other);
      const keysIter = GetIteratorFromMethod(otherRec.set, otherRec.keys);
      const result = SetCopy(O);
      for (;;) {
        const next = IteratorStepValue(keysIter);
        if (next === DONE) return result;
        const value = Canonicalize(next);
        const alreadyInResult = SetHas(result, value);
        if (SetHas(O, value)) {
          if (alreadyInResult) SetDelete(result, value);
        } else if (!alreadyInResult) {
          SetAdd(result, value);
        }
      }
    },

    isSubsetOf(other) {
      const O = this;
      SetSize(O, 'isSubsetOf');
      const otherRec = GetSetRecord(other);
      if (SetSize(O, 'isSubsetOf') > otherRec.size) return false;
      const it = SetValues(O);
      for (;;) {
        const step = ReflectApply(SetIteratorNext, it, []);
        if (step.done) return true;
        if (!CallHas(otherRec, step.value)) return false;
      }
    },

    isSupersetOf(other) {
      const O = this;
      SetSize(O, 'isSupersetOf');
      const otherRec = GetSetRecord(other);
      if (SetSize(O, 'isSupersetOf') < otherRec.size) return false;
      const keysIter = GetIteratorFromMethod(otherRec.set, otherRec.keys);
      for (;;) {
        const next = IteratorStepValue(keysIter);
        if (next === DONE) return true;
        if (!SetHas(O, next)) {
          IteratorClose(keysIter.iterator);
          return false;
        }
      }
    },

    isDisjointFrom(other) {
      const O = this;
      SetSize(O, 'isDisjointFrom');
      const otherRec = GetSetRecord(other);
      if (SetSize(O, 'isDisjointFrom') <= otherRec.size) {
        const it = SetValues(O);
        for (;;) {
          const step = ReflectApply(SetIteratorNext, it, []);
          if (step.done) return true;
          if (CallHas(otherRec, step.value)) return false;
        }
      }
      const keysIter = GetIteratorFromMethod(otherRec.set, otherRec.keys);
      for (;;) {
        const next = IteratorStepValue(keysIter);
        if (next === DONE) return true;
        if (SetHas(O, next)) {
          IteratorClose(keysIter.iterator);
          return false;
        }
      }
    },
  });

  // ===========================================================================
  // Iterator helpers (ES2025)
  // ===========================================================================

  // Internal slots are private fields, stamped onto objects made with the right
  // prototype: a base class whose constructor returns the object it is given.
  class ReturnOverride {
    constructor(object) {
      return object;
    }
  }

  // %IteratorHelperPrototype% objects: [[UnderlyingIterator]], and a generator that runs
  // the helper's closure ([[GeneratorState]]: the generator's own state, plus `started`
  // to tell suspended-start apart).
  let IsIteratorHelper;
  let HelperGenerator;
  let HelperUnderlying;
  let HelperStart; // marks the helper started; returns whether it already was
  class IteratorHelperSlots extends ReturnOverride {
    #underlying;
    #generator;
    #started = false;
    constructor(object, underlying, generator) {
      super(object);
      this.#underlying = underlying;
      this.#generator = generator;
    }
    static {
      IsIteratorHelper = (object) => IsObject(object) && #generator in object;
      HelperGenerator = (object) => object.#generator;
      HelperUnderlying = (object) => object.#underlying;
      HelperStart = (object) => {
        const wasStarted = object.#started;
        object.#started = true;
        return wasStarted;
      };
    }
  }

  // %WrapForValidIteratorPrototype% objects: [[Iterated]].
  let IsWrappedIterator;
  let WrappedRecord;
  class WrapSlots extends ReturnOverride {
    #iterated;
    constructor(object, iterated) {
      super(object);
      this.#iterated = iterated;
    }
    static {
      IsWrappedIterator = (object) => IsObject(object) && #iterated in object;
      WrappedRecord = (object) => object.#iterated;
    }
  }

  function Iterator() {
    if (new.target === undefined || new.target === Iterator) {
      throw new TypeErrorCtor('Abstract class Iterator not directly constructable');
    }
  }
  ObjectDefineProperty(Iterator, 'prototype', {
    __proto__: null,
    value: IteratorPrototype,
    writable: false,
    enumerable: false,
    configurable: false,
  });

  const IteratorHelperPrototype = ObjectCreate(IteratorPrototype);
  const WrapForValidIteratorPrototype = ObjectCreate(IteratorPrototype);

  function CreateIteratorHelper(underlying, generator) {
    const helper = ObjectCreate(IteratorHelperPrototype);
    new IteratorHelperSlots(helper, underlying, generator);
    return helper;
  }

  install(IteratorHelperPrototype, {
    next() {
      // GeneratorResume(this value, undefined, "Iterator Helper")
      if (!IsIteratorHelper(this)) throw new TypeErrorCtor('Iterator Helper.prototype.next called on incompatible receiver');
      HelperStart(this);
      return ReflectApply(GeneratorPrototypeNext, HelperGenerator(this), [undefined]);
    },

    return() {
      if (!IsIteratorHelper(this)) throw new TypeErrorCtor('Iterator Helper.prototype.return called on incompatible receiver');
      const generator = HelperGenerator(this);
      if (!HelperStart(this)) {
        // suspended-start: completed at once, then the underlying iterator is closed.
        ReflectApply(GeneratorPrototypeReturn, generator, [undefined]);
        IteratorClose(HelperUnderlying(this).iterator);
        return { value: undefined, done: true };
      }
      // GeneratorResumeAbrupt with a return completion: the closure closes the underlying
      // iterator at the Yield it is suspended in (a TypeError while it is executing).
      return ReflectApply(GeneratorPrototypeReturn, generator, [undefined]);
    },
  });
  ObjectDefineProperty(IteratorHelperPrototype, SymbolToStringTag, {
    __proto__: null,
    value: 'Iterator Helper',
    writable: false,
    enumerable: false,
    configurable: true,
  });

  install(WrapForValidIteratorPrototype, {
    next() {
      if (!IsWrappedIterator(this)) throw new TypeErrorCtor('next method called on incompatible receiver');
      const record = WrappedRecord(this);
      return ReflectApply(record.next, record.iterator, []);
    },

    return() {
      if (!IsWrappedIterator(this)) throw new TypeErrorCtor('return method called on incompatible receiver');
      const iterator = WrappedRecord(this).iterator;
      const returnMethod = iterator.return;
      if (returnMethod === undefined || returnMethod === null) return { value: undefined, done: true };
      return ReflectApply(returnMethod, iterator, []);
    },
  });

  // The helpers' closures. Each `yield` is followed by IfAbruptCloseIterator: a helper's
  // generator is only ever resumed with next() or return(), so an abrupt resumption is a
  // return completion, which closes the underlying iterator (its errors propagate).

  function* MapClosure(iterated, mapper) {
    let counter = 0;
    for (;;) {
      const value = IteratorStepValue(iterated);
      if (value === DONE) return undefined;
      let mapped;
      let completed = false;
      try {
        mapped = mapper(value, counter);
        completed = true;
      } finally {
        if (!completed) IteratorCloseOnThrow(iterated.iterator);
      }
      let abrupt = true;
      try {
        yield mapped;
        abrupt = false;
      } finally {
        if (abrupt) IteratorClose(iterated.iterator);
      }
      counter++;
    }
  }

  function* FilterClosure(iterated, predicate) {
    let counter = 0;
    for (;;) {
      const value = IteratorStepValue(iterated);
      if (value === DONE) return undefined;
      let selected;
      let completed = false;
      try {
        selected = predicate(value, counter);
        completed = true;
      } finally {
        if (!completed) IteratorCloseOnThrow(iterated.iterator);
      }
      if (selected) {
        let abrupt = true;
        try {
          yield value;
          abrupt = false;
        } finally {
          if (abrupt) IteratorClose(iterated.iterator);
        }
      }
      counter++;
    }
  }

  function* TakeClosure(iterated, limit) {
    let remaining = limit;
    for (;;) {
      if (remaining === 0) {
        IteratorClose(iterated.iterator);
        return undefined;
      }
      if (remaining !== Infinity) remaining--;
      const value = IteratorStepValue(iterated);
      if (value === DONE) return undefined;
      let abrupt = true;
      try {
        yield value;
        abrupt = false;
      } finally {
        if (abrupt) IteratorClose(iterated.iterator);
      }
    }
  }

  function* DropClosure(iterated, limit) {
    let remaining = limit;
    while (remaining > 0) {
      if (remaining !== Infinity) remaining--;
      if (IteratorStep(iterated) === DONE) return undefined;
    }
    for (;;) {
      const value = IteratorStepValue(iterated);
      if (value === DONE) return undefined;
      let abrupt = true;
      try {
        yield value;
        abrupt = false;
      } finally {
        if (abrupt) IteratorClose(iterated.iterator);
      }
    }
  }

  function* FlatMapClosure(iterated, mapper) {
    let counter = 0;
    for (;;) {
      const value = IteratorStepValue(iterated);
      if (value === DONE) return undefined;
      let inner;
      let completed = false;
      try {
        inner = GetIteratorFlattenable(mapper(value, counter), true);
        completed = true;
      } finally {
        if (!completed) IteratorCloseOnThrow(iterated.iterator);
      }
      for (;;) {
        let innerValue;
        let completed = false;
        try {
          innerValue = IteratorStepValue(inner);
          completed = true;
        } finally {
          if (!completed) IteratorCloseOnThrow(iterated.iterator);
        }
        if (innerValue === DONE) break;
        let abrupt = true;
        try {
          yield innerValue;
          abrupt = false;
        } finally {
          if (abrupt) {
            let completed = false;
            try {
              IteratorClose(inner.iterator);
              completed = true;
            } finally {
              if (!completed) IteratorCloseOnThrow(iterated.iterator);
            }
            IteratorClose(iterated.iterator);
          }
        }
      }
      counter++;
    }
  }

  // Steps 1-5 of the helpers taking a function: O must be an Object; a non-callable
  // argument closes O (whose `next` is not read) and throws a TypeError.
  function RequireIteratorAndCallable(O, fn, method) {
    if (!IsObject(O)) throw new TypeErrorCtor(`Iterator.prototype.${method} called on non-object`);
    if (!IsCallable(fn)) {
      const error = new TypeErrorCtor(`Iterator.prototype.${method}: argument is not a function`);
      IteratorCloseOnThrow(O);
      throw error;
    }
  }

  // Steps 1-9 of take/drop: the integer limit, or a RangeError after closing O.
  function RequireIteratorAndLimit(O, limit, method) {
    if (!IsObject(O)) throw new TypeErrorCtor(`Iterator.prototype.${method} called on non-object`);
    let numLimit;
    let completed = false;
    try {
      numLimit = +limit;
      completed = true;
    } finally {
      if (!completed) IteratorCloseOnThrow(O);
    }
    if (numLimit !== numLimit) {
      const error = new RangeErrorCtor(`Iterator.prototype.${method}: limit must not be NaN`);
      IteratorCloseOnThrow(O);
      throw error;
    }
    const integerLimit = ToIntegerOrInfinity(numLimit);
    if (integerLimit < 0) {
      const error = new RangeErrorCtor(`Iterator.prototype.${method}: limit must not be negative`);
      IteratorCloseOnThrow(O);
      throw error;
    }
    return integerLimit;
  }

  install(IteratorPrototype, {
    map(mapper) {
      RequireIteratorAndCallable(this, mapper, 'map');
      const iterated = GetIteratorDirect(this);
      return CreateIteratorHelper(iterated, MapClosure(iterated, mapper));
    },

    filter(predicate) {
      RequireIteratorAndCallable(this, predicate, 'filter');
      const iterated = GetIteratorDirect(this);
      return CreateIteratorHelper(iterated, FilterClosure(iterated, predicate));
    },

    take(limit) {
      const integerLimit = RequireIteratorAndLimit(this, limit, 'take');
      const iterated = GetIteratorDirect(this);
      return CreateIteratorHelper(iterated, TakeClosure(iterated, integerLimit));
    },

    drop(limit) {
      const integerLimit = RequireIteratorAndLimit(this, limit, 'drop');
      const iterated = GetIteratorDirect(this);
      return CreateIteratorHelper(iterated, DropClosure(iterated, integerLimit));
    },

    flatMap(mapper) {
      RequireIteratorAndCallable(this, mapper, 'flatMap');
      const iterated = GetIteratorDirect(this);
      return CreateIteratorHelper(iterated, FlatMapClosure(iterated, mapper));
    },

    reduce(reducer) {
      const O = this;
      RequireIteratorAndCallable(O, reducer, 'reduce');
      const iterated = GetIteratorDirect(O);
      let accumulator;
      let counter;
      if (arguments.length < 2) {
        accumulator = IteratorStepValue(iterated);
        if (accumulator === DONE) throw new TypeErrorCtor('Reduce of empty iterator with no initial value');
        counter = 1;
      } else {
        accumulator = arguments[1];
        counter = 0;
      }
      for (;;) {
        const value = IteratorStepValue(iterated);
        if (value === DONE) return accumulator;
        let completed = false;
        try {
          accumulator = reducer(accumulator, value, counter);
          completed = true;
        } finally {
          if (!completed) IteratorCloseOnThrow(O);
        }
        counter++;
      }
    },

    toArray() {
      const O = this;
      if (!IsObject(O)) throw new TypeErrorCtor('Iterator.prototype.toArray called on non-object');
      const iterated = GetIteratorDirect(O);
      const items = NewList();
      for (;;) {
        const value = IteratorStepValue(iterated);
        if (value === DONE) return ListToArray(items);
        items[items.length] = value;
      }
    },

    forEach(fn) {
      const O = this;
      RequireIteratorAndCallable(O, fn, 'forEach');
      const iterated = GetIteratorDirect(O);
      let counter = 0;
      for (;;) {
        const value = IteratorStepValue(iterated);
        if (value === DONE) return undefined;
        let completed = false;
        try {
          fn(value, counter);
          completed = true;
        } finally {
          if (!completed) IteratorCloseOnThrow(O);
        }
        counter++;
      }
    },

    some(predicate) {
      const O = this;
      RequireIteratorAndCallable(O, predicate, 'some');
      const iterated = GetIteratorDirect(O);
      let counter = 0;
      for (;;) {
        const value = IteratorStepValue(iterated);
        if (value === DONE) return false;
        let result;
        let completed = false;
        try {
          result = predicate(value, counter);
          completed = true;
        } finally {
          if (!completed) IteratorCloseOnThrow(O);
        }
        if (result) {
          IteratorClose(O);
          return true;
        }
        counter++;
      }
    },

    every(predicate) {
      const O = this;
      RequireIteratorAndCallable(O, predicate, 'every');
      const iterated = GetIteratorDirect(O);
      let counter = 0;
      for (;;) {
        const value = IteratorStepValue(iterated);
        if (value === DONE) return true;
        let result;
        let completed = false;
        try {
          result = predicate(value, counter);
          completed = true;
        } finally {
          if (!completed) IteratorCloseOnThrow(O);
        }
        if (!result) {
          IteratorClose(O);
          return false;
        }
        counter++;
      }
    },

    find(predicate) {
      const O = this;
      RequireIteratorAndCallable(O, predicate, 'find');
      const iterated = GetIteratorDirect(O);
      let counter = 0;
      for (;;) {
        const value = IteratorStepValue(iterated);
        if (value === DONE) return undefined;
        let result;
        let completed = false;
        try {
          result = predicate(value, counter);
          completed = true;
        } finally {
          if (!completed) IteratorCloseOnThrow(O);
        }
        if (result) {
          IteratorClose(O);
          return value;
        }
        counter++;
      }
    },
  });

  // Iterator.prototype.constructor and [Symbol.toStringTag]: accessors (so that assigning
  // them on an object inheriting from Iterator.prototype still works), whose setters follow
  // SetterThatIgnoresPrototypeProperties.
  function SetterThatIgnoresPrototypeProperties(thisValue, home, p, v) {
    if (!IsObject(thisValue)) throw new TypeErrorCtor('Cannot assign to a property of a non-object');
    if (thisValue === home) throw new TypeErrorCtor(`Cannot assign to read only property '${typeof p === 'symbol' ? 'Symbol(Symbol.toStringTag)' : p}' of Iterator.prototype`);
    const desc = ReflectGetOwnPropertyDescriptor(thisValue, p);
    if (desc === undefined) CreateDataPropertyOrThrow(thisValue, p, v);
    else thisValue[p] = v;
  }

  install(IteratorPrototype, {
    get constructor() {
      return Iterator;
    },
    set constructor(v) {
      SetterThatIgnoresPrototypeProperties(this, IteratorPrototype, 'constructor', v);
    },
    get [SymbolToStringTag]() {
      return 'Iterator';
    },
    set [SymbolToStringTag](v) {
      SetterThatIgnoresPrototypeProperties(this, IteratorPrototype, SymbolToStringTag, v);
    },
  });

  install(Iterator, {
    from(O) {
      const iteratorRecord = GetIteratorFlattenable(O, false);
      // OrdinaryHasInstance(%Iterator%, iterator)
      if (ReflectApply(FunctionPrototypeHasInstance, Iterator, [iteratorRecord.iterator])) {
        return iteratorRecord.iterator;
      }
      const wrapper = ObjectCreate(WrapForValidIteratorPrototype);
      new WrapSlots(wrapper, iteratorRecord);
      return wrapper;
    },
  });

  if (!HasOwn(globalThis, 'Iterator')) {
    ObjectDefineProperty(globalThis, 'Iterator', {
      __proto__: null,
      value: Iterator,
      writable: true,
      enumerable: false,
      configurable: true,
    });
  }

  // ===========================================================================
  // RegExp.escape (ES2025)
  // ===========================================================================

  const HEX = '0123456789abcdef';
  // The one-character strings of the ASCII code points.
  const ASCII = NewList();
  for (let i = 0; i < 128; i++) ASCII[i] = String.fromCharCode(i);

  function Hex2(n) {
    return HEX[(n >> 4) & 15] + HEX[n & 15];
  }

  function UnicodeEscape(cu) {
    return '\\u' + Hex2(cu >> 8) + Hex2(cu & 255);
  }

  // SyntaxCharacter or "/": escaped with a backslash.
  function IsSyntaxCharacterOrSolidus(c) {
    switch (c) {
      case 0x5e: // ^
      case 0x24: // $
      case 0x5c: // \
      case 0x2e: // .
      case 0x2a: // *
      case 0x2b: // +
      case 0x3f: // ?
      case 0x28: // (
      case 0x29: // )
      case 0x5b: // [
      case 0x5d: // ]
      case 0x7b: // {
      case 0x7d: // }
      case 0x7c: // |
      case 0x2f: // /
        return true;
      default:
        return false;
    }
  }

  // Table 67, ControlEscape
  function ControlEscape(c) {
    switch (c) {
      case 0x09:
        return '\\t';
      case 0x0a:
        return '\\n';
      case 0x0b:
        return '\\v';
      case 0x0c:
        return '\\f';
      case 0x0d:
        return '\\r';
      default:
        return undefined;
    }
  }

  // otherPunctuators ,-=<>#&!%:;@~'`" ; WhiteSpace; LineTerminator; lone surrogates.
  function NeedsHexEscape(c) {
    switch (c) {
      case 0x2c: // ,
      case 0x2d: // -
      case 0x3d: // =
      case 0x3c: // <
      case 0x3e: // >
      case 0x23: // #
      case 0x26: // &
      case 0x21: // !
      case 0x25: // %
      case 0x3a: // :
      case 0x3b: // ;
      case 0x40: // @
      case 0x7e: // ~
      case 0x27: // '
      case 0x60: // `
      case 0x22: // "
      // WhiteSpace: <TAB> <VT> <FF> <ZWNBSP> and the Space_Separator (Zs) code points
      case 0x09:
      case 0x0b:
      case 0x0c:
      case 0xfeff:
      case 0x20:
      case 0xa0:
      case 0x1680:
      case 0x202f:
      case 0x205f:
      case 0x3000:
      // LineTerminator
      case 0x0a:
      case 0x0d:
      case 0x2028:
      case 0x2029:
        return true;
      default:
        return (c >= 0x2000 && c <= 0x200a) || (c >= 0xd800 && c <= 0xdfff);
    }
  }

  function EncodeForRegExpEscape(c) {
    if (IsSyntaxCharacterOrSolidus(c)) return '\\' + ASCII[c];
    const control = ControlEscape(c);
    if (control !== undefined) return control;
    if (NeedsHexEscape(c)) {
      if (c <= 0xff) return '\\x' + Hex2(c);
      // Only BMP code points reach here (lone surrogates included).
      return UnicodeEscape(c);
    }
    return undefined; // the code point itself
  }


  install(RegExp, {
    escape(S) {
      if (typeof S !== 'string') throw new TypeErrorCtor('RegExp.escape requires a string argument');
      let escaped = '';
      const length = S.length;
      let copiedFrom = 0;
      for (let i = 0; i < length; ) {
        const c = ReflectApply(StringPrototypeCodePointAt, S, [i]);
        const size = c > 0xffff ? 2 : 1;
        let replacement;
        if (i === 0 && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a))) {
          // A leading DecimalDigit or AsciiLetter: \xNN.
          replacement = '\\x' + Hex2(c);
        } else {
          replacement = EncodeForRegExpEscape(c);
        }
        if (replacement !== undefined) {
          escaped += ReflectApply(StringPrototypeSlice, S, [copiedFrom, i]) + replacement;
          copiedFrom = i + size;
        }
        i += size;
      }
      if (copiedFrom === 0) return S;
      return escaped + ReflectApply(StringPrototypeSlice, S, [copiedFrom]);
    },
  });
})();
