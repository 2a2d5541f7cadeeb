// web.js - the web platform globals of mcp-v8 isolates, after the WinterTC Minimum Common
// API where it applies to a sandbox without a network: events, AbortController, encoding,
// base64, URL, structuredClone, crypto, performance, Headers/Request/Response/Blob as data
// classes, navigator, self, reportError.
//
// Evaluated by the host once, into the base snapshot, as a classic script whose completion
// value is the function below; the host calls it with `native` (cpp/web.h). Every piece of
// state lives in JS objects (private fields, WeakMaps), so objects made from these classes
// survive a heap snapshot and its restore.
(function installWeb(native) {
  'use strict';

  const G = globalThis;
  const { defineProperty, freeze, keys: objectKeys } = Object;
  const ArrayIsArray = Array.isArray;
  const StringFromCharCode = String.fromCharCode;
  const SymbolIterator = Symbol.iterator;
  const SymbolToStringTag = Symbol.toStringTag;
  const ReflectApply = Reflect.apply;
  const TypeErrorCtor = TypeError;
  const RangeErrorCtor = RangeError;
  const PromiseCtor = Promise;
  const WeakMapCtor = WeakMap;
  const MathFloor = Math.floor;
  const NumberIsFinite = Number.isFinite;
  const JSONParse = JSON.parse;
  const Uint8ArrayCtor = Uint8Array;
  const ArrayBufferCtor = ArrayBuffer;
  const ArrayBufferIsView = ArrayBuffer.isView;
  const nativeClone = native.structuredClone;

  function defineGlobal(name, value) {
    defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });
  }

  // Methods and accessors of a class are not enumerable already; its toStringTag is set here.
  function tag(cls, name) {
    defineProperty(cls.prototype, SymbolToStringTag, { value: name, configurable: true });
  }

  function requireArgs(args, n, where) {
    if (args.length < n) {
      throw new TypeErrorCtor(`${where}: ${n} argument${n === 1 ? '' : 's'} required, but only ${args.length} present`);
    }
  }

  function toUSVString(value) {
    const s = `${value}`;
    return typeof s.toWellFormed === 'function' ? s.toWellFormed() : s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
  }

  // ---- DOMException ----------------------------------------------------------------------

  const LEGACY_CODES = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11,
    SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14, InvalidAccessError: 15,
    TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20, URLMismatchError: 21,
    QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24, DataCloneError: 25,
  };
  const domState = new WeakMapCtor();

  class DOMException extends Error {
    constructor(message = '', options = 'Error') {
      super();
      let name = 'Error';
      if (options !== null && typeof options === 'object') {
        if ('cause' in options) {
          defineProperty(this, 'cause', { value: options.cause, writable: true, configurable: true, enumerable: false });
        }
        if (options.name !== undefined) name = `${options.name}`;
      } else {
        name = `${options}`;
      }
      domState.set(this, { message: `${message}`, name });
    }
    get name() { return domState.get(this)?.name ?? 'Error'; }
    get message() { return domState.get(this)?.message ?? ''; }
    get code() { return LEGACY_CODES[domState.get(this)?.name] ?? 0; }
  }
  tag(DOMException, 'DOMException');
  for (const [name, code] of Object.entries(LEGACY_CODES)) {
    const key = name === 'URLMismatchError' ? 'URL_MISMATCH_ERR'
      : name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase().replace(/_ERROR$/, '_ERR');
    defineProperty(DOMException, key, { value: code, enumerable: true });
    defineProperty(DOMException.prototype, key, { value: code, enumerable: true });
  }
  defineGlobal('DOMException', DOMException);

  // ---- Event, EventTarget, CustomEvent ----------------------------------------------------

  const eventState = new WeakMapCtor();
  function ev(event) {
    const s = eventState.get(event);
    if (s === undefined) throw new TypeErrorCtor('Illegal invocation');
    return s;
  }

  class Event {
    constructor(type, init = undefined) {
      requireArgs(arguments, 1, "Failed to construct 'Event'");
      const options = init ?? {};
      eventState.set(this, {
        type: `${type}`,
        bubbles: !!options.bubbles,
        cancelable: !!options.cancelable,
        composed: !!options.composed,
        defaultPrevented: false,
        stop: false,
        stopImmediate: false,
        passive: false,
        dispatching: false,
        target: null,
        currentTarget: null,
        phase: 0,
        timeStamp: native.now() - native.timeOrigin()[1],
      });
    }
    get type() { return ev(this).type; }
    get target() { return ev(this).target; }
    get srcElement() { return ev(this).target; }
    get currentTarget() { return ev(this).currentTarget; }
    get eventPhase() { return ev(this).phase; }
    get bubbles() { return ev(this).bubbles; }
    get cancelable() { return ev(this).cancelable; }
    get composed() { return ev(this).composed; }
    get defaultPrevented() { return ev(this).defaultPrevented; }
    get returnValue() { return !ev(this).defaultPrevented; }
    get isTrusted() { ev(this); return false; }
    get timeStamp() { return ev(this).timeStamp; }
    get cancelBubble() { return ev(this).stop; }
    set cancelBubble(value) { if (value) ev(this).stop = true; }
    composedPath() { const s = ev(this); return s.dispatching && s.currentTarget ? [s.currentTarget] : []; }
    preventDefault() { const s = ev(this); if (s.cancelable && !s.passive) s.defaultPrevented = true; }
    stopPropagation() { ev(this).stop = true; }
    stopImmediatePropagation() { const s = ev(this); s.stop = true; s.stopImmediate = true; }
  }
  for (const [name, value] of [['NONE', 0], ['CAPTURING_PHASE', 1], ['AT_TARGET', 2], ['BUBBLING_PHASE', 3]]) {
    defineProperty(Event, name, { value, enumerable: true });
    defineProperty(Event.prototype, name, { value, enumerable: true });
  }
  tag(Event, 'Event');
  defineGlobal('Event', Event);

  class CustomEvent extends Event {
    #detail;
    constructor(type, init = undefined) {
      requireArgs(arguments, 1, "Failed to construct 'CustomEvent'");
      super(type, init);
      this.#detail = init?.detail ?? null;
    }
    get detail() { return this.#detail; }
  }
  tag(CustomEvent, 'CustomEvent');
  defineGlobal('CustomEvent', CustomEvent);

  const listenerState = new WeakMapCtor();
  function listenersOf(target) {
    let map = listenerState.get(target);
    if (map === undefined) {
      if (!(target instanceof EventTarget)) throw new TypeErrorCtor('Illegal invocation');
      map = new Map();
      listenerState.set(target, map);
    }
    return map;
  }
  function flatten(options) {
    return typeof options === 'boolean' ? { capture: options } : (options ?? {});
  }

  class EventTarget {
    constructor() { listenerState.set(this, new Map()); }
    addEventListener(type, callback, options = undefined) {
      requireArgs(arguments, 2, "Failed to execute 'addEventListener' on 'EventTarget'");
      if (callback === null || callback === undefined) return;
      if (typeof callback !== 'function' && typeof callback !== 'object') {
        throw new TypeErrorCtor("Failed to execute 'addEventListener' on 'EventTarget': parameter 2 is not of type 'Object'.");
      }
      const o = flatten(options);
      const signal = o.signal;
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new TypeErrorCtor("Failed to execute 'addEventListener' on 'EventTarget': member signal is not of type AbortSignal.");
      }
      if (signal?.aborted) return;
      const map = listenersOf(this);
      const key = `${type}`;
      let list = map.get(key);
      if (list === undefined) { list = []; map.set(key, list); }
      const capture = !!o.capture;
      if (list.some((l) => l.callback === callback && l.capture === capture)) return;
      const listener = { callback, capture, once: !!o.once, passive: !!o.passive, removed: false };
      list.push(listener);
      if (signal !== undefined) {
        signal.addEventListener('abort', () => this.removeEventListener(key, callback, { capture }));
      }
    }
    removeEventListener(type, callback, options = undefined) {
      requireArgs(arguments, 2, "Failed to execute 'removeEventListener' on 'EventTarget'");
      const list = listenersOf(this).get(`${type}`);
      if (list === undefined) return;
      const capture = !!flatten(options).capture;
      const i = list.findIndex((l) => l.callback === callback && l.capture === capture);
      if (i >= 0) { list[i].removed = true; list.splice(i, 1); }
    }
    dispatchEvent(event) {
      requireArgs(arguments, 1, "Failed to execute 'dispatchEvent' on 'EventTarget'");
      if (!(event instanceof Event)) {
        throw new TypeErrorCtor("Failed to execute 'dispatchEvent' on 'EventTarget': parameter 1 is not of type 'Event'.");
      }
      const s = ev(event);
      if (s.dispatching) throw new DOMException('The event is already being dispatched.', 'InvalidStateError');
      s.dispatching = true;
      s.target = this;
      s.currentTarget = this;
      s.phase = 2;
      const list = listenersOf(this).get(s.type);
      if (list !== undefined) {
        for (const listener of [...list]) {
          if (listener.removed) continue;
          if (listener.once) this.removeEventListener(s.type, listener.callback, { capture: listener.capture });
          s.passive = listener.passive;
          try {
            const cb = listener.callback;
            if (typeof cb === 'function') ReflectApply(cb, this, [event]);
            else if (typeof cb?.handleEvent === 'function') ReflectApply(cb.handleEvent, cb, [event]);
          } catch (error) {
            reportError(error);
          }
          s.passive = false;
          if (s.stopImmediate) break;
        }
      }
      s.dispatching = false;
      s.currentTarget = null;
      s.phase = 0;
      s.stop = false;
      s.stopImmediate = false;
      return !s.defaultPrevented;
    }
  }
  tag(EventTarget, 'EventTarget');
  defineGlobal('EventTarget', EventTarget);

  // ---- AbortController, AbortSignal ---------------------------------------------------------

  const signalState = new WeakMapCtor();
  let constructingSignal = false;
  function sig(signal) {
    const s = signalState.get(signal);
    if (s === undefined) throw new TypeErrorCtor('Illegal invocation');
    return s;
  }
  function newSignal() {
    constructingSignal = true;
    try { return new AbortSignal(); } finally { constructingSignal = false; }
  }
  function signalAbort(signal, reason) {
    const s = sig(signal);
    if (s.aborted) return;
    s.aborted = true;
    s.reason = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
    const dependents = s.dependents;
    s.dependents = [];
    const event = new Event('abort');
    if (typeof s.onabort === 'function') {
      try { ReflectApply(s.onabort, signal, [event]); } catch (error) { reportError(error); }
    }
    signal.dispatchEvent(event);
    for (const ref of dependents) {
      const dependent = ref.deref();
      if (dependent !== undefined) signalAbort(dependent, s.reason);
    }
  }

  class AbortSignal extends EventTarget {
    constructor() {
      if (!constructingSignal) throw new TypeErrorCtor('Illegal constructor');
      super();
      signalState.set(this, { aborted: false, reason: undefined, onabort: null, dependents: [] });
    }
    get aborted() { return sig(this).aborted; }
    get reason() { return sig(this).reason; }
    get onabort() { return sig(this).onabort; }
    set onabort(value) { sig(this).onabort = typeof value === 'function' ? value : null; }
    throwIfAborted() { const s = sig(this); if (s.aborted) throw s.reason; }
    static abort(reason = undefined) {
      const signal = newSignal();
      signalAbort(signal, reason);
      return signal;
    }
    static timeout(milliseconds) {
      requireArgs(arguments, 1, "Failed to execute 'timeout' on 'AbortSignal'");
      const ms = Number(milliseconds);
      if (!NumberIsFinite(ms) || ms < 0 || ms > Number.MAX_SAFE_INTEGER) {
        throw new TypeErrorCtor("Failed to execute 'timeout' on 'AbortSignal': Value is outside the 'unsigned long long' value range.");
      }
      const signal = newSignal();
      // A timer that does not keep the execution alive, as in browsers and Node.
      native.setUnrefTimeout(() => signalAbort(signal, new DOMException('The operation timed out.', 'TimeoutError')), ms);
      return signal;
    }
    static any(signals) {
      requireArgs(arguments, 1, "Failed to execute 'any' on 'AbortSignal'");
      const list = [...signals];
      for (const s of list) {
        if (!(s instanceof AbortSignal)) throw new TypeErrorCtor("Failed to execute 'any' on 'AbortSignal': Failed to convert value to 'AbortSignal'.");
      }
      const result = newSignal();
      const already = list.find((s) => s.aborted);
      if (already !== undefined) {
        signalAbort(result, already.reason);
        return result;
      }
      for (const s of list) sig(s).dependents.push(new WeakRef(result));
      return result;
    }
  }
  tag(AbortSignal, 'AbortSignal');
  defineGlobal('AbortSignal', AbortSignal);

  class AbortController {
    #signal = newSignal();
    get signal() { return this.#signal; }
    abort(reason = undefined) { signalAbort(this.#signal, reason); }
  }
  tag(AbortController, 'AbortController');
  defineGlobal('AbortController', AbortController);

  // ---- reportError, self, navigator ---------------------------------------------------------

  function reportError(error) {
    requireArgs(arguments, 1, "Failed to execute 'reportError'");
    const text = error instanceof Error ? (error.stack || `${error}`) : `${error}`;
    G.console?.error?.(`Uncaught ${text}`);
  }
  defineGlobal('reportError', reportError);
  defineProperty(G, 'self', { get() { return G; }, set(v) { defineProperty(G, 'self', { value: v, writable: true, configurable: true, enumerable: true }); }, configurable: true, enumerable: true });

  class Navigator {
    constructor() { throw new TypeErrorCtor('Illegal constructor'); }
    get userAgent() { return 'mcp-v8'; }
    get hardwareConcurrency() { return 1; }
    get language() { return 'en-US'; }
    get languages() { return freeze(['en-US']); }
  }
  tag(Navigator, 'Navigator');
  defineGlobal('navigator', Object.create(Navigator.prototype));

  // ---- base64 ---------------------------------------------------------------------------------

  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const B64_INDEX = new Uint8ArrayCtor(128).fill(255);
  for (let i = 0; i < 64; i++) B64_INDEX[B64.charCodeAt(i)] = i;

  function btoa(data) {
    requireArgs(arguments, 1, "Failed to execute 'btoa'");
    const s = `${data}`;
    let out = '';
    for (let i = 0; i < s.length; i += 3) {
      const a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
      if (a > 255 || b > 255 || c > 255) {
        throw new DOMException("Failed to execute 'btoa': The string to be encoded contains characters outside of the Latin1 range.", 'InvalidCharacterError');
      }
      const n = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < s.length ? B64[(n >> 6) & 63] : '=') + (i + 2 < s.length ? B64[n & 63] : '=');
    }
    return out;
  }

  function atob(data) {
    requireArgs(arguments, 1, "Failed to execute 'atob'");
    let s = `${data}`.replace(/[\t\n\f\r ]/g, '');
    if (s.length % 4 === 0) s = s.replace(/={1,2}$/, '');
    const bad = () => new DOMException("Failed to execute 'atob': The string to be decoded is not correctly encoded.", 'InvalidCharacterError');
    if (s.length % 4 === 1) throw bad();
    let out = '';
    let buffer = 0, bits = 0;
    for (let i = 0; i < s.length; i++) {
      const code = s.charCodeAt(i);
      const v = code < 128 ? B64_INDEX[code] : 255;
      if (v === 255) throw bad();
      buffer = (buffer << 6) | v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += StringFromCharCode((buffer >> bits) & 255);
      }
    }
    return out;
  }
  defineGlobal('btoa', btoa);
  defineGlobal('atob', atob);

  // ---- TextEncoder, TextDecoder -----------------------------------------------------------------

  class TextEncoder {
    get encoding() { return 'utf-8'; }
    encode(input = '') { return native.utf8Encode(`${input}`); }
    encodeInto(source, destination) {
      requireArgs(arguments, 2, "Failed to execute 'encodeInto' on 'TextEncoder'");
      if (!(destination instanceof Uint8ArrayCtor)) {
        throw new TypeErrorCtor("Failed to execute 'encodeInto' on 'TextEncoder': parameter 2 is not of type 'Uint8Array'.");
      }
      const [read, written] = native.utf8EncodeInto(`${source}`, destination);
      return { read, written };
    }
  }
  tag(TextEncoder, 'TextEncoder');
  defineGlobal('TextEncoder', TextEncoder);

  const UTF8_LABELS = new Set(['unicode-1-1-utf-8', 'unicode11utf8', 'unicode20utf8', 'utf-8', 'utf8', 'x-unicode20utf8']);

  class TextDecoder {
    #fatal;
    #ignoreBOM;
    #pending = null;   // bytes of an incomplete sequence, kept while streaming
    #bomSeen = false;
    constructor(label = 'utf-8', options = undefined) {
      const name = `${label}`.trim().toLowerCase();
      if (!UTF8_LABELS.has(name)) {
        throw new RangeErrorCtor(`Failed to construct 'TextDecoder': The encoding label provided ('${label}') is invalid or not supported (only UTF-8 is).`);
      }
      this.#fatal = !!options?.fatal;
      this.#ignoreBOM = !!options?.ignoreBOM;
    }
    get encoding() { return 'utf-8'; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input = undefined, options = undefined) {
      const stream = !!options?.stream;
      let bytes;
      if (input === undefined) bytes = new Uint8ArrayCtor(0);
      else if (ArrayBufferIsView(input)) bytes = new Uint8ArrayCtor(input.buffer, input.byteOffset, input.byteLength);
      else if (input instanceof ArrayBufferCtor || (typeof SharedArrayBuffer === 'function' && input instanceof SharedArrayBuffer)) bytes = new Uint8ArrayCtor(input);
      else throw new TypeErrorCtor("Failed to execute 'decode' on 'TextDecoder': The provided value is not of type '(ArrayBuffer or ArrayBufferView)'.");
      if (this.#pending !== null) {
        const joined = new Uint8ArrayCtor(this.#pending.length + bytes.length);
        joined.set(this.#pending);
        joined.set(bytes, this.#pending.length);
        bytes = joined;
        this.#pending = null;
      }
      const decoded = native.utf8Decode(bytes, this.#fatal, stream);
      if (decoded === null) {
        this.#bomSeen = false;
        throw new TypeErrorCtor("Failed to execute 'decode' on 'TextDecoder': The encoded data was not valid.");
      }
      let [text, consumed] = decoded;
      if (consumed < bytes.length) this.#pending = bytes.slice(consumed);
      if (!this.#ignoreBOM && !this.#bomSeen && text.length > 0) {
        if (text.charCodeAt(0) === 0xFEFF) text = text.slice(1);
        this.#bomSeen = true;
      }
      if (!stream) {
        this.#bomSeen = false;
        this.#pending = null;
      }
      return text;
    }
  }
  tag(TextDecoder, 'TextDecoder');
  defineGlobal('TextDecoder', TextDecoder);

  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  // ---- URLSearchParams, URL ------------------------------------------------------------------------

  // application/x-www-form-urlencoded byte serializer's safe set.
  function formEncode(s) {
    const bytes = native.utf8Encode(toUSVString(s));
    let out = '';
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === 0x20) out += '+';
      else if ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2a || b === 0x2d || b === 0x2e || b === 0x5f) out += StringFromCharCode(b);
      else out += `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
    }
    return out;
  }
  function percentDecode(s) {
    const bytes = native.utf8Encode(s);
    const out = new Uint8ArrayCtor(bytes.length);
    let n = 0;
    const hex = (c) => (c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1);
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === 0x25 && i + 2 < bytes.length) {
        const h = hex(bytes[i + 1]), l = hex(bytes[i + 2]);
        if (h >= 0 && l >= 0) { out[n++] = h * 16 + l; i += 2; continue; }
      }
      out[n++] = b;
    }
    return decoder.decode(out.subarray(0, n));
  }
  function formParse(input) {
    const list = [];
    for (const sequence of input.split('&')) {
      if (sequence === '') continue;
      const eq = sequence.indexOf('=');
      const name = eq >= 0 ? sequence.slice(0, eq) : sequence;
      const value = eq >= 0 ? sequence.slice(eq + 1) : '';
      list.push([percentDecode(name.replace(/\+/g, ' ')), percentDecode(value.replace(/\+/g, ' '))]);
    }
    return list;
  }

  const paramsState = new WeakMapCtor();
  function params(p) {
    const s = paramsState.get(p);
    if (s === undefined) throw new TypeErrorCtor('Illegal invocation');
    return s;
  }
  function paramsUpdate(s) {
    if (s.url === null) return;
    const query = s.list.map(([k, v]) => `${formEncode(k)}=${formEncode(v)}`).join('&');
    urlApply(s.url, 9, query === '' ? '' : query, true);
  }

  class URLSearchParams {
    constructor(init = '') {
      const list = [];
      if (init !== null && typeof init === 'object' || typeof init === 'function') {
        if (typeof init[SymbolIterator] === 'function') {
          for (const pair of init) {
            const items = [...pair];
            if (items.length !== 2) throw new TypeErrorCtor("Failed to construct 'URLSearchParams': Sequence initializer must only contain pair elements");
            list.push([toUSVString(items[0]), toUSVString(items[1])]);
          }
        } else {
          for (const key of Reflect.ownKeys(init)) {
            if (typeof key !== 'string') continue;
            const desc = Reflect.getOwnPropertyDescriptor(init, key);
            if (desc?.enumerable) list.push([toUSVString(key), toUSVString(init[key])]);
          }
        }
      } else {
        let s = toUSVString(init);
        if (s.startsWith('?')) s = s.slice(1);
        list.push(...formParse(s));
      }
      paramsState.set(this, { list, url: null });
    }
    get size() { return params(this).list.length; }
    append(name, value) {
      requireArgs(arguments, 2, "Failed to execute 'append' on 'URLSearchParams'");
      const s = params(this);
      s.list.push([toUSVString(name), toUSVString(value)]);
      paramsUpdate(s);
    }
    delete(name, value = undefined) {
      requireArgs(arguments, 1, "Failed to execute 'delete' on 'URLSearchParams'");
      const s = params(this);
      const n = toUSVString(name);
      const v = value === undefined ? undefined : toUSVString(value);
      s.list = s.list.filter(([k, val]) => !(k === n && (v === undefined || val === v)));
      paramsUpdate(s);
    }
    get(name) {
      requireArgs(arguments, 1, "Failed to execute 'get' on 'URLSearchParams'");
      const n = toUSVString(name);
      const found = params(this).list.find(([k]) => k === n);
      return found === undefined ? null : found[1];
    }
    getAll(name) {
      requireArgs(arguments, 1, "Failed to execute 'getAll' on 'URLSearchParams'");
      const n = toUSVString(name);
      return params(this).list.filter(([k]) => k === n).map(([, v]) => v);
    }
    has(name, value = undefined) {
      requireArgs(arguments, 1, "Failed to execute 'has' on 'URLSearchParams'");
      const n = toUSVString(name);
      const v = value === undefined ? undefined : toUSVString(value);
      return params(this).list.some(([k, val]) => k === n && (v === undefined || val === v));
    }
    set(name, value) {
      requireArgs(arguments, 2, "Failed to execute 'set' on 'URLSearchParams'");
      const s = params(this);
      const n = toUSVString(name), v = toUSVString(value);
      const i = s.list.findIndex(([k]) => k === n);
      if (i < 0) s.list.push([n, v]);
      else s.list = [...s.list.slice(0, i), [n, v], ...s.list.slice(i + 1).filter(([k]) => k !== n)];
      paramsUpdate(s);
    }
    sort() {
      const s = params(this);
      // Stable, by UTF-16 code units.
      s.list = s.list.map((e, i) => [e, i]).sort((a, b) => (a[0][0] < b[0][0] ? -1 : a[0][0] > b[0][0] ? 1 : a[1] - b[1])).map(([e]) => e);
      paramsUpdate(s);
    }
    forEach(callback, thisArg = undefined) {
      requireArgs(arguments, 1, "Failed to execute 'forEach' on 'URLSearchParams'");
      if (typeof callback !== 'function') throw new TypeErrorCtor("Failed to execute 'forEach' on 'URLSearchParams': The callback provided as parameter 1 is not a function.");
      const s = params(this);
      for (let i = 0; i < s.list.length; i++) ReflectApply(callback, thisArg, [s.list[i][1], s.list[i][0], this]);
    }
    *keys() { const s = params(this); for (let i = 0; i < s.list.length; i++) yield s.list[i][0]; }
    *values() { const s = params(this); for (let i = 0; i < s.list.length; i++) yield s.list[i][1]; }
    *entries() { const s = params(this); for (let i = 0; i < s.list.length; i++) yield [s.list[i][0], s.list[i][1]]; }
    [SymbolIterator]() { return this.entries(); }
    toString() { return params(this).list.map(([k, v]) => `${formEncode(k)}=${formEncode(v)}`).join('&'); }
  }
  tag(URLSearchParams, 'URLSearchParams');
  defineGlobal('URLSearchParams', URLSearchParams);

  // URL parts as cpp/web.h orders them.
  const HREF = 0, ORIGIN = 1, PROTOCOL = 2, USERNAME = 3, PASSWORD = 4, HOST = 5, HOSTNAME = 6, PORT = 7,
    PATHNAME = 8, SEARCH = 9, HASH = 10;
  const urlState = new WeakMapCtor();
  function url(u) {
    const s = urlState.get(u);
    if (s === undefined) throw new TypeErrorCtor('Illegal invocation');
    return s;
  }
  function urlApply(u, part, value, fromParams = false) {
    const s = url(u);
    const next = native.urlSet(s.parts[HREF], part, toUSVString(value));
    if (next === null) return;
    s.parts = next;
    if (!fromParams) {
      const query = next[SEARCH];
      params(s.params).list = formParse(query.startsWith('?') ? query.slice(1) : query);
    }
  }

  class URL {
    constructor(input, base = undefined) {
      requireArgs(arguments, 1, "Failed to construct 'URL'");
      const parts = base === undefined ? native.urlParse(toUSVString(input)) : native.urlParse(toUSVString(input), toUSVString(base));
      if (parts === null) throw new TypeErrorCtor(`Failed to construct 'URL': Invalid URL${base === undefined ? '' : ' or base'}: ${input}`);
      const searchParams = new URLSearchParams(parts[SEARCH]);
      urlState.set(this, { parts, params: searchParams });
      params(searchParams).url = this;
    }
    static canParse(input, base = undefined) {
      requireArgs(arguments, 1, "Failed to execute 'canParse' on 'URL'");
      return (base === undefined ? native.urlParse(toUSVString(input)) : native.urlParse(toUSVString(input), toUSVString(base))) !== null;
    }
    static parse(input, base = undefined) {
      requireArgs(arguments, 1, "Failed to execute 'parse' on 'URL'");
      try { return new URL(input, base); } catch { return null; }
    }
    get href() { return url(this).parts[HREF]; }
    set href(value) {
      const parts = native.urlParse(toUSVString(value));
      if (parts === null) throw new TypeErrorCtor(`Failed to set the 'href' property on 'URL': Invalid URL: ${value}`);
      const s = url(this);
      s.parts = parts;
      params(s.params).list = formParse(parts[SEARCH].startsWith('?') ? parts[SEARCH].slice(1) : parts[SEARCH]);
    }
    get origin() { return url(this).parts[ORIGIN]; }
    get protocol() { return url(this).parts[PROTOCOL]; }
    set protocol(v) { urlApply(this, PROTOCOL, v); }
    get username() { return url(this).parts[USERNAME]; }
    set username(v) { urlApply(this, USERNAME, v); }
    get password() { return url(this).parts[PASSWORD]; }
    set password(v) { urlApply(this, PASSWORD, v); }
    get host() { return url(this).parts[HOST]; }
    set host(v) { urlApply(this, HOST, v); }
    get hostname() { return url(this).parts[HOSTNAME]; }
    set hostname(v) { urlApply(this, HOSTNAME, v); }
    get port() { return url(this).parts[PORT]; }
    set port(v) { urlApply(this, PORT, v); }
    get pathname() { return url(this).parts[PATHNAME]; }
    set pathname(v) { urlApply(this, PATHNAME, v); }
    get search() { return url(this).parts[SEARCH]; }
    set search(v) { urlApply(this, SEARCH, v); }
    get searchParams() { return url(this).params; }
    get hash() { return url(this).parts[HASH]; }
    set hash(v) { urlApply(this, HASH, v); }
    toString() { return url(this).parts[HREF]; }
    toJSON() { return url(this).parts[HREF]; }
  }
  tag(URL, 'URL');
  defineGlobal('URL', URL);

  // ---- structuredClone -------------------------------------------------------------------------

  function structuredClone(value, options = undefined) {
    requireArgs(arguments, 1, "Failed to execute 'structuredClone'");
    const transfer = options?.transfer;
    if (transfer !== undefined && [...transfer].length > 0) {
      throw new DOMException("Failed to execute 'structuredClone': transferring objects is not supported here.", 'DataCloneError');
    }
    try {
      return nativeClone(value);
    } catch (error) {
      if (error instanceof Error && error.name === 'DataCloneError') throw new DOMException(error.message, 'DataCloneError');
      throw error;
    }
  }
  defineGlobal('structuredClone', structuredClone);

  // ---- crypto ------------------------------------------------------------------------------------

  const INTEGER_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, BigInt64Array, BigUint64Array];
  const DIGESTS = { 'sha-1': 1, 'sha-256': 256, 'sha-384': 384, 'sha-512': 512 };

  class SubtleCrypto {
    constructor() { throw new TypeErrorCtor('Illegal constructor'); }
    digest(algorithm, data) {
      return new PromiseCtor((resolve) => {
        requireArgs(arguments, 2, "Failed to execute 'digest' on 'SubtleCrypto'");
        const name = typeof algorithm === 'string' ? algorithm : algorithm?.name;
        const bits = DIGESTS[`${name}`.toLowerCase()];
        if (bits === undefined) throw new DOMException(`Unrecognized algorithm name: ${name}`, 'NotSupportedError');
        if (!(data instanceof ArrayBufferCtor) && !ArrayBufferIsView(data)) {
          throw new TypeErrorCtor("Failed to execute 'digest' on 'SubtleCrypto': parameter 2 is not of type '(ArrayBuffer or ArrayBufferView)'.");
        }
        resolve(native.digest(bits, data));
      });
    }
  }
  tag(SubtleCrypto, 'SubtleCrypto');
  const subtle = Object.create(SubtleCrypto.prototype);

  class Crypto {
    constructor() { throw new TypeErrorCtor('Illegal constructor'); }
    get subtle() { return subtle; }
    getRandomValues(array) {
      requireArgs(arguments, 1, "Failed to execute 'getRandomValues' on 'Crypto'");
      if (!INTEGER_ARRAYS.some((C) => array instanceof C)) {
        throw new DOMException("Failed to execute 'getRandomValues' on 'Crypto': The provided ArrayBufferView is of type '" + (array?.constructor?.name ?? typeof array) + "', which is not an integer array type.", 'TypeMismatchError');
      }
      if (array.byteLength > 65536) {
        throw new DOMException(`Failed to execute 'getRandomValues' on 'Crypto': The ArrayBufferView's byte length (${array.byteLength}) exceeds the number of bytes of entropy available via this API (65536).`, 'QuotaExceededError');
      }
      native.randomFill(array);
      return array;
    }
    randomUUID() {
      const b = new Uint8ArrayCtor(16);
      native.randomFill(b);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      let hex = '';
      for (let i = 0; i < 16; i++) hex += (b[i] < 16 ? '0' : '') + b[i].toString(16);
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    }
  }
  tag(Crypto, 'Crypto');
  defineGlobal('Crypto', Crypto);
  defineGlobal('SubtleCrypto', SubtleCrypto);
  defineGlobal('crypto', Object.create(Crypto.prototype));

  // ---- performance ---------------------------------------------------------------------------------

  class Performance extends EventTarget {
    constructor() { throw new TypeErrorCtor('Illegal constructor'); }
    get timeOrigin() { return native.timeOrigin()[0]; }
    now() { return native.now() - native.timeOrigin()[1]; }
    toJSON() { return { timeOrigin: this.timeOrigin }; }
  }
  tag(Performance, 'Performance');
  defineGlobal('Performance', Performance);
  const performance = Object.create(Performance.prototype);
  listenerState.set(performance, new Map());
  defineGlobal('performance', performance);

  // ---- Blob, Headers, Request, Response (data classes: no network) ----------------------------------

  function bytesOf(part) {
    if (typeof part === 'string') return encoder.encode(part);
    if (part instanceof Blob) return blobBytes(part);
    if (part instanceof ArrayBufferCtor) return new Uint8ArrayCtor(part.slice(0));
    if (ArrayBufferIsView(part)) return new Uint8ArrayCtor(part.buffer.slice(part.byteOffset, part.byteOffset + part.byteLength));
    return encoder.encode(`${part}`);
  }
  function concat(chunks) {
    let size = 0;
    for (const c of chunks) size += c.length;
    const out = new Uint8ArrayCtor(size);
    let at = 0;
    for (const c of chunks) { out.set(c, at); at += c.length; }
    return out;
  }

  const blobState = new WeakMapCtor();
  function blobBytes(blob) {
    const s = blobState.get(blob);
    if (s === undefined) throw new TypeErrorCtor('Illegal invocation');
    return s.bytes;
  }

  class Blob {
    constructor(parts = [], options = undefined) {
      if (parts === null || typeof parts !== 'object' || typeof parts[SymbolIterator] !== 'function') {
        throw new TypeErrorCtor("Failed to construct 'Blob': The provided value cannot be converted to a sequence.");
      }
      const type = options?.type === undefined ? '' : `${options.type}`;
      blobState.set(this, { bytes: concat([...parts].map(bytesOf)), type: /^[\x20-\x7e]*$/.test(type) ? type.toLowerCase() : '' });
    }
    get size() { return blobBytes(this).length; }
    get type() { return blobState.get(this).type; }
    slice(start = undefined, end = undefined, contentType = undefined) {
      const bytes = blobBytes(this);
      const b = new Blob([bytes.slice(start ?? 0, end ?? bytes.length)], { type: contentType ?? '' });
      return b;
    }
    arrayBuffer() { return PromiseCtor.resolve(blobBytes(this).slice().buffer); }
    bytes() { return PromiseCtor.resolve(blobBytes(this).slice()); }
    text() { return PromiseCtor.resolve(decoder.decode(blobBytes(this))); }
  }
  tag(Blob, 'Blob');
  defineGlobal('Blob', Blob);

  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const headersState = new WeakMapCtor();
  function hdr(h) {
    const s = headersState.get(h);
    if (s === undefined) throw new TypeErrorCtor('Illegal invocation');
    return s;
  }
  function headerName(name, where) {
    const n = `${name}`;
    if (!TOKEN.test(n)) throw new TypeErrorCtor(`Failed to execute '${where}' on 'Headers': Invalid name`);
    return n.toLowerCase();
  }
  function headerValue(value, where) {
    const v = `${value}`.replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, '');
    if (/[\0\r\n]/.test(v) || /[^\x00-\xff]/.test(v)) throw new TypeErrorCtor(`Failed to execute '${where}' on 'Headers': Invalid value`);
    return v;
  }
  function checkGuard(s, where) {
    if (s.guard === 'immutable') throw new TypeErrorCtor(`Failed to execute '${where}' on 'Headers': Headers are immutable`);
  }

  class Headers {
    constructor(init = undefined) {
      headersState.set(this, { list: [], guard: 'none' });
      if (init === undefined || init === null) return;
      if (typeof init !== 'object') throw new TypeErrorCtor("Failed to construct 'Headers': The provided value is not of type '(record<ByteString, ByteString> or sequence<sequence<ByteString>>)'.");
      if (typeof init[SymbolIterator] === 'function') {
        for (const pair of init) {
          const items = [...pair];
          if (items.length !== 2) throw new TypeErrorCtor("Failed to construct 'Headers': Invalid value");
          this.append(items[0], items[1]);
        }
      } else {
        for (const key of objectKeys(init)) this.append(key, init[key]);
      }
    }
    append(name, value) {
      requireArgs(arguments, 2, "Failed to execute 'append' on 'Headers'");
      const s = hdr(this);
      checkGuard(s, 'append');
      s.list.push([headerName(name, 'append'), headerValue(value, 'append')]);
    }
    delete(name) {
      requireArgs(arguments, 1, "Failed to execute 'delete' on 'Headers'");
      const s = hdr(this);
      checkGuard(s, 'delete');
      const n = headerName(name, 'delete');
      s.list = s.list.filter(([k]) => k !== n);
    }
    get(name) {
      requireArgs(arguments, 1, "Failed to execute 'get' on 'Headers'");
      const n = headerName(name, 'get');
      const values = hdr(this).list.filter(([k]) => k === n).map(([, v]) => v);
      return values.length === 0 ? null : values.join(', ');
    }
    getSetCookie() { return hdr(this).list.filter(([k]) => k === 'set-cookie').map(([, v]) => v); }
    has(name) {
      requireArgs(arguments, 1, "Failed to execute 'has' on 'Headers'");
      const n = headerName(name, 'has');
      return hdr(this).list.some(([k]) => k === n);
    }
    set(name, value) {
      requireArgs(arguments, 2, "Failed to execute 'set' on 'Headers'");
      const s = hdr(this);
      checkGuard(s, 'set');
      const n = headerName(name, 'set'), v = headerValue(value, 'set');
      const i = s.list.findIndex(([k]) => k === n);
      if (i < 0) s.list.push([n, v]);
      else s.list = [...s.list.slice(0, i), [n, v], ...s.list.slice(i + 1).filter(([k]) => k !== n)];
    }
    forEach(callback, thisArg = undefined) {
      for (const [k, v] of this) ReflectApply(callback, thisArg, [v, k, this]);
    }
    *entries() {
      // Sorted and combined, as the Fetch standard's "sort and combine"; set-cookie stays apart.
      const names = [...new Set(hdr(this).list.map(([k]) => k))].sort();
      for (const n of names) {
        if (n === 'set-cookie') for (const v of this.getSetCookie()) yield [n, v];
        else yield [n, this.get(n)];
      }
    }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    [SymbolIterator]() { return this.entries(); }
  }
  tag(Headers, 'Headers');
  defineGlobal('Headers', Headers);

  // Body mixin over a stored byte array.
  const bodyState = new WeakMapCtor();
  function extractBody(body, headers) {
    if (body === null || body === undefined) return null;
    let type = null;
    let bytes;
    if (typeof body === 'string') { bytes = encoder.encode(body); type = 'text/plain;charset=UTF-8'; }
    else if (body instanceof URLSearchParams) { bytes = encoder.encode(body.toString()); type = 'application/x-www-form-urlencoded;charset=UTF-8'; }
    else if (body instanceof Blob) { bytes = blobBytes(body).slice(); type = body.type || null; }
    else if (body instanceof ArrayBufferCtor || ArrayBufferIsView(body)) bytes = bytesOf(body);
    else { bytes = encoder.encode(`${body}`); type = 'text/plain;charset=UTF-8'; }
    if (type !== null && !headers.has('content-type')) hdr(headers).list.push(['content-type', type]);
    return bytes;
  }
  function consume(obj, where) {
    const s = bodyState.get(obj);
    if (s === undefined) return PromiseCtor.reject(new TypeErrorCtor('Illegal invocation'));
    if (s.used) return PromiseCtor.reject(new TypeErrorCtor(`Failed to execute '${where}': body stream already read`));
    s.used = s.bytes !== null;
    return PromiseCtor.resolve(s.bytes ?? new Uint8ArrayCtor(0));
  }
  const BODY_METHODS = {
    get bodyUsed() { return bodyState.get(this).used; },
    get body() { return null; },
    arrayBuffer() { return consume(this, 'arrayBuffer').then((b) => b.slice().buffer); },
    bytes() { return consume(this, 'bytes').then((b) => b.slice()); },
    text() { return consume(this, 'text').then((b) => decoder.decode(b)); },
    json() { return consume(this, 'json').then((b) => JSONParse(decoder.decode(b))); },
    blob() {
      const type = this.headers.get('content-type') ?? '';
      return consume(this, 'blob').then((b) => new Blob([b], { type }));
    },
  };
  function mixBody(cls) {
    for (const key of Reflect.ownKeys(BODY_METHODS)) {
      const desc = Reflect.getOwnPropertyDescriptor(BODY_METHODS, key);
      desc.enumerable = false;
      defineProperty(cls.prototype, key, desc);
    }
  }

  const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);
  const NORMALIZED = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);
  const requestState = new WeakMapCtor();

  class Request {
    constructor(input, init = undefined) {
      requireArgs(arguments, 1, "Failed to construct 'Request'");
      const o = init ?? {};
      let from = input instanceof Request ? requestState.get(input) : null;
      let urlText;
      if (from !== null) urlText = from.url;
      else {
        const parsed = URL.parse(`${input}`);
        if (parsed === null) throw new TypeErrorCtor(`Failed to construct 'Request': Failed to parse URL from ${input}`);
        if (parsed.username !== '' || parsed.password !== '') throw new TypeErrorCtor(`Failed to construct 'Request': Request cannot be constructed from a URL that includes credentials: ${input}`);
        urlText = parsed.href;
      }
      let method = o.method !== undefined ? `${o.method}` : (from?.method ?? 'GET');
      if (!TOKEN.test(method)) throw new TypeErrorCtor(`Failed to construct 'Request': '${method}' is not a valid HTTP method.`);
      if (FORBIDDEN_METHODS.has(method.toUpperCase())) throw new TypeErrorCtor(`Failed to construct 'Request': '${method}' HTTP method is unsupported.`);
      if (NORMALIZED.has(method.toUpperCase())) method = method.toUpperCase();
      const headers = new Headers(o.headers ?? (from !== null ? from.headers : undefined));
      const bodyInit = o.body !== undefined ? o.body : (input instanceof Request ? bodyState.get(input).bytes : null);
      if (bodyInit !== null && bodyInit !== undefined && (method === 'GET' || method === 'HEAD')) {
        throw new TypeErrorCtor("Failed to construct 'Request': Request with GET/HEAD method cannot have body.");
      }
      const signal = o.signal ?? from?.signal ?? new AbortController().signal;
      requestState.set(this, { url: urlText, method, headers, signal, redirect: o.redirect ?? from?.redirect ?? 'follow' });
      bodyState.set(this, { bytes: extractBody(bodyInit, headers), used: false });
    }
    get url() { return requestState.get(this).url; }
    get method() { return requestState.get(this).method; }
    get headers() { return requestState.get(this).headers; }
    get signal() { return requestState.get(this).signal; }
    get redirect() { return requestState.get(this).redirect; }
    clone() {
      if (this.bodyUsed) throw new TypeErrorCtor("Failed to execute 'clone' on 'Request': Request body is already used");
      return new Request(this);
    }
  }
  mixBody(Request);
  tag(Request, 'Request');
  defineGlobal('Request', Request);

  const responseState = new WeakMapCtor();
  const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

  class Response {
    constructor(body = null, init = undefined) {
      const o = init ?? {};
      const status = o.status === undefined ? 200 : Number(o.status);
      if (!(status >= 200 && status <= 599) || MathFloor(status) !== status) {
        throw new RangeErrorCtor(`Failed to construct 'Response': The status provided (${o.status}) is outside the range [200, 599].`);
      }
      const statusText = o.statusText === undefined ? '' : `${o.statusText}`;
      if (/[^\t\x20-\x7e\x80-\xff]/.test(statusText)) throw new TypeErrorCtor("Failed to construct 'Response': Invalid statusText");
      const headers = new Headers(o.headers);
      if (body !== null && body !== undefined && NULL_BODY_STATUS.has(status)) {
        throw new TypeErrorCtor("Failed to construct 'Response': Response with null body status cannot have body");
      }
      responseState.set(this, { status, statusText, headers, type: 'default', url: '', redirected: false });
      bodyState.set(this, { bytes: extractBody(body, headers), used: false });
    }
    static json(data, init = undefined) {
      const text = JSON.stringify(data);
      if (text === undefined) throw new TypeErrorCtor("Failed to execute 'json' on 'Response': The data is not JSON serializable");
      const r = new Response(text, init);
      const h = hdr(r.headers);
      h.list = h.list.filter(([k]) => k !== 'content-type');
      h.list.push(['content-type', 'application/json']);
      return r;
    }
    static error() {
      const r = new Response(null, { status: 200 });
      const s = responseState.get(r);
      s.status = 0;
      s.type = 'error';
      hdr(s.headers).guard = 'immutable';
      return r;
    }
    static redirect(target, status = 302) {
      const parsed = URL.parse(`${target}`);
      if (parsed === null) throw new TypeErrorCtor(`Failed to execute 'redirect' on 'Response': Invalid URL: ${target}`);
      if (![301, 302, 303, 307, 308].includes(status)) throw new RangeErrorCtor(`Failed to execute 'redirect' on 'Response': Invalid status code`);
      const r = new Response(null, { status, headers: { location: parsed.href } });
      hdr(r.headers).guard = 'immutable';
      return r;
    }
    get type() { return responseState.get(this).type; }
    get url() { return responseState.get(this).url; }
    get redirected() { return responseState.get(this).redirected; }
    get status() { return responseState.get(this).status; }
    get ok() { const s = responseState.get(this).status; return s >= 200 && s <= 299; }
    get statusText() { return responseState.get(this).statusText; }
    get headers() { return responseState.get(this).headers; }
    clone() {
      if (this.bodyUsed) throw new TypeErrorCtor("Failed to execute 'clone' on 'Response': Response body is already used");
      const s = responseState.get(this);
      const r = new Response(null, { status: s.status === 0 ? 200 : s.status, statusText: s.statusText, headers: s.headers });
      Object.assign(responseState.get(r), { status: s.status, type: s.type, url: s.url, redirected: s.redirected });
      bodyState.get(r).bytes = bodyState.get(this).bytes?.slice() ?? null;
      return r;
    }
  }
  mixBody(Response);
  tag(Response, 'Response');
  defineGlobal('Response', Response);

  // ---- fetch: the embedder performs it under its allowlist (rust/engine/src/fetch.rs) -------

  const hostFetch = native.fetch;

  function fetch(input, init = undefined) {
    return new PromiseCtor((resolve, reject) => {
      requireArgs(arguments, 1, "Failed to execute 'fetch'");
      const request = new Request(input, init);
      const signal = request.signal;
      if (signal.aborted) throw signal.reason;
      const body = bodyState.get(request).bytes;
      const call = hostFetch({
        url: request.url, method: request.method, headers: [...request.headers], body, redirect: request.redirect,
      });
      const onAbort = () => {
        native.abandon(call);  // the execution no longer waits for it
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      call.then((answer) => {
        signal.removeEventListener('abort', onAbort);
        const headers = new Headers();
        hdr(headers).list = answer.headers.map(([k, v]) => [`${k}`.toLowerCase(), `${v}`]);
        hdr(headers).guard = 'immutable';
        const response = new Response(null);
        Object.assign(responseState.get(response), {
          status: answer.status, statusText: answer.statusText, headers, type: 'basic', url: answer.url,
          redirected: answer.redirected,
        });
        bodyState.get(response).bytes = NULL_BODY_STATUS.has(answer.status) || request.method === 'HEAD' ? null : answer.body;
        resolve(response);
      }, (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(new TypeErrorCtor(error?.message ?? 'fetch failed'));
      });
    });
  }
  defineGlobal('fetch', fetch);

  // ---- tools: calls to the tool servers the embedder relays (rust/engine/src/tools.rs) ------
  //
  // `tools.<server>.<tool>(args)` and `mcp.callTool(server, tool, args)` make one host call
  // each ({call_id, server, tool, arguments: JSON text}). The promise a script awaits is
  // settled through `toolCalls` (call id -> its resolvers), which lives in this heap: a call
  // the embedder holds (its answer `{held: true}`: it waits for an approval) stays pending
  // across a heap snapshot and is settled in the restored isolate by its call id
  // (`settleToolCall`), with nothing native left behind.
  //
  // The embedder answers a call with one of
  //   {value}                                   the tool's result, already mapped
  //   {error: {name, message, content?, reason?}} ToolError, ToolDenied, TypeError, ...
  //   {held: true}                              settled later by settleToolCall
  //
  // The native side is told how many calls are held (`native.holding`): when the script's
  // result waits on nothing else, the run suspends (its result promise kept in the heap,
  // cpp/evaluation.h) and `resume` carries it on, in this isolate or a restored one.
  const hostTool = native.tool;
  const hostHolding = native.holding;
  const toolCalls = new Map();
  let heldCalls = 0;
  let nextToolCall = 1;
  const JSONStringify = JSON.stringify;
  const ProxyCtor = Proxy;
  const MapGet = Map.prototype.get;
  const MapSet = Map.prototype.set;
  const MapDelete = Map.prototype.delete;

  class ToolError extends Error {
    constructor(message, details = undefined) {
      super(message);
      defineProperty(this, 'name', { value: 'ToolError', writable: true, configurable: true, enumerable: false });
      this.server = details?.server;
      this.tool = details?.tool;
      this.content = details?.content ?? [];
    }
  }
  defineGlobal('ToolError', ToolError);

  class ToolDenied extends Error {
    constructor(message, details = undefined) {
      super(message);
      defineProperty(this, 'name', { value: 'ToolDenied', writable: true, configurable: true, enumerable: false });
      this.server = details?.server;
      this.tool = details?.tool;
      this.reason = details?.reason;
    }
  }
  defineGlobal('ToolDenied', ToolDenied);

  const ERRORS = { TypeError: TypeErrorCtor, RangeError: RangeErrorCtor };

  function toolFailure(entry, error) {
    const message = `${error?.message ?? 'the tool call failed'}`;
    const details = { server: entry.server, tool: entry.tool };
    if (error?.name === 'ToolError') return new ToolError(message, { ...details, content: error.content });
    if (error?.name === 'ToolDenied') return new ToolDenied(message, { ...details, reason: error.reason });
    const Ctor = ERRORS[error?.name] ?? Error;
    return new Ctor(message);
  }

  // Settles pending call `id` with the embedder's answer (see above); whether it was pending.
  function settleToolCall(id, answer) {
    const entry = ReflectApply(MapGet, toolCalls, [id]);
    if (entry === undefined) return false;
    if (answer !== null && typeof answer === 'object' && answer.held === true) {
      if (!entry.held) {
        entry.held = true;
        hostHolding(++heldCalls);
      }
      return true;
    }
    ReflectApply(MapDelete, toolCalls, [id]);
    if (entry.held) hostHolding(--heldCalls);
    if (answer !== null && typeof answer === 'object' && 'error' in answer) {
      entry.reject(toolFailure(entry, answer.error));
    } else {
      entry.resolve(answer?.value);
    }
    return true;
  }

  function callTool(server, tool, args) {
    return new PromiseCtor((resolve, reject) => {
      if (typeof server !== 'string' || server === '') throw new TypeErrorCtor('callTool: the server must be a non-empty string');
      if (typeof tool !== 'string' || tool === '') throw new TypeErrorCtor('callTool: the tool must be a non-empty string');
      const given = args === undefined ? {} : args;
      if (given === null || typeof given !== 'object' || ArrayIsArray(given)) {
        throw new TypeErrorCtor(`${server}.${tool}: the arguments must be an object`);
      }
      let json;
      try {
        json = JSONStringify(given);
      } catch (error) {
        throw new TypeErrorCtor(`${server}.${tool}: the arguments are not JSON (${error?.message ?? error})`);
      }
      const id = nextToolCall++;
      const entry = { resolve, reject, server, tool, held: false };
      ReflectApply(MapSet, toolCalls, [id, entry]);
      hostTool({ call_id: id, server, tool, arguments: json }).then(
        (answer) => settleToolCall(id, answer),
        (error) => settleToolCall(id, { error: { name: error?.name, message: error?.message } }),
      );
    });
  }

  // A namespace object: any property but `then` (so that awaiting it does not call a tool)
  // and symbols is a function calling that tool.
  function namespace(get) {
    return new ProxyCtor({ __proto__: null }, {
      get(target, key) {
        if (typeof key === 'symbol' || key === 'then') return undefined;
        return get(key);
      },
      has(target, key) { return typeof key === 'string' && key !== 'then'; },
      set() { return false; },
      defineProperty() { return false; },
      deleteProperty() { return false; },
    });
  }

  const tools = namespace((server) => namespace((tool) => {
    const call = (args = undefined) => callTool(server, tool, args);
    defineProperty(call, 'name', { value: tool });
    return call;
  }));
  defineGlobal('tools', tools);
  defineGlobal('mcp', freeze({ __proto__: null, callTool }));
  // For the embedder, which settles held calls in a restored heap (a script can reach it
  // too, which gives it nothing: it could only settle its own calls).
  defineProperty(G, Symbol.for('mcp-v8.settleToolCall'), { value: settleToolCall, configurable: false, enumerable: false, writable: false });

  // resume(answers): in a run that follows a suspended one (a restored heap), settles held
  // calls (`answers`: [[call id, answer], ...]) and returns the suspended script's result.
  const SUSPENDED = Symbol.for('mcp-v8.suspended');
  function resume(answers) {
    const kept = G[SUSPENDED];
    if (kept === undefined) throw new TypeErrorCtor('resume: no suspended execution in this heap');
    delete G[SUSPENDED];
    hostHolding(heldCalls);  // a restored isolate's native side starts from none
    for (const [id, answer] of answers) settleToolCall(id, answer);
    if (!kept.repl) return kept.promise;
    // A REPL-mode script's promise resolves to V8's wrapper of its completion value.
    return kept.promise.then((wrapper) => (wrapper !== null && typeof wrapper === 'object'
      ? Object.getOwnPropertyDescriptor(wrapper, '.repl_result')?.value : undefined));
  }
  defineProperty(G, Symbol.for('mcp-v8.resume'), { value: resume, configurable: false, enumerable: false, writable: false });

})
