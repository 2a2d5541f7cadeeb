(function (host) {
  'use strict';
  const print = host.print;
  const format = (args) => args.map((a) => (typeof a === 'string' ? a : String(a))).join(' ');
  const make = (level) => (...args) => print(level, format(args));
  Object.defineProperty(globalThis, 'console', {
    value: { log: make(0), info: make(1), warn: make(2), error: make(3), debug: make(4), trace: make(5) },
    writable: true, configurable: true, enumerable: false,
  });
})
