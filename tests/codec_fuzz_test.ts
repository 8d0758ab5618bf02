/**
 * Fuzz tests of the codec: random values must round trip; mutated encodings (bit flips,
 * truncation, extension, forged lengths and counts, splices) must decode to a valid value or
 * throw a DecodeError, never anything else, and never hang. Seeded, so deterministic.
 */
import assert from "node:assert/strict";
import { decode, dtype, encode, NdArray } from "../codec/mod.ts";
import { DecodeError } from "../queue/errors.ts";
import { difference, DTYPES, prng, toHex } from "./codec_helpers.ts";

const TYPED = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float16Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
];

/** A random value of the data model, at most `depth` levels deep. */
function randomValue(r: () => number, depth: number): unknown {
  const pick = Math.floor(r() * (depth > 0 ? 24 : 15));
  const int = (n: number) => Math.floor(r() * n);
  const fill = (b: Uint8Array) => {
    for (let i = 0; i < b.length; i++) b[i] = int(256);
  };
  switch (pick) {
    case 0:
      return int(2 ** 31) - 2 ** 30;
    case 1:
      return [0, -0, NaN, Infinity, -Infinity, 2 ** 53 - 1, -(2 ** 53), 2 ** 31, 0.1][int(9)];
    case 2:
      return (r() - 0.5) * 10 ** int(40);
    case 3:
      return BigInt(int(2 ** 30)) ** BigInt(int(6)) * (r() < 0.5 ? -1n : 1n);
    case 4:
      return r() < 0.5;
    case 5:
      return r() < 0.5 ? null : undefined;
    case 6:
    case 7: {
      let s = "";
      const n = int(r() < 0.9 ? 12 : 200);
      for (let i = 0; i < n; i++) {
        const k = r();
        s += String.fromCharCode(k < 0.7 ? 32 + int(95) : k < 0.9 ? int(0x800) : int(65536));
      }
      return s;
    }
    case 8: {
      const C = TYPED[int(TYPED.length)];
      const n = int(20);
      const a = new C(n);
      fill(new Uint8Array(a.buffer));
      return a;
    }
    case 9: {
      const b = new Uint8Array(int(40));
      fill(b);
      return r() < 0.5 ? b : b.buffer;
    }
    case 10: {
      const shape = Array.from({ length: int(4) }, () => int(4));
      const a = new NdArray(dtype(DTYPES[int(DTYPES.length)]), shape);
      fill(new Uint8Array(a.data.buffer));
      if (a.dtype.name === "bool") a.data.forEach((_, i, d) => (d[i] = int(2)));
      return a;
    }
    case 11:
      return dtype(DTYPES[int(DTYPES.length)]);
    case 12:
      return new Date(r() < 0.1 ? NaN : int(2 ** 42) - 2 ** 41);
    case 13: {
      const b = new ArrayBuffer(16);
      fill(new Uint8Array(b));
      return new DataView(b, int(8), int(8));
    }
    case 14:
      return "key";
    case 15:
    case 16:
    case 17: {
      const n = int(6);
      const a: unknown[] = [];
      for (let i = 0; i < n; i++) {
        if (r() < 0.1) a.length++;
        else a.push(randomValue(r, depth - 1));
      }
      return r() < 0.2 ? Object.freeze(a) : a;
    }
    case 18:
    case 19:
    case 20: {
      const nullProto = r() < 0.15;
      const o: Record<string, unknown> = nullProto ? Object.create(null) : {};
      const n = int(6);
      for (let i = 0; i < n; i++) {
        o[String(randomValue(r, 0)).slice(0, 10)] = randomValue(r, depth - 1);
      }
      // Frozen plain objects are records; frozen null-prototype objects come back unfrozen.
      return !nullProto && r() < 0.15 ? Object.freeze(o) : o;
    }
    case 21:
    case 22: {
      const m = new Map();
      const n = int(5);
      for (let i = 0; i < n; i++) m.set(randomValue(r, depth - 1), randomValue(r, depth - 1));
      return m;
    }
    default: {
      const s = new Set();
      const n = int(5);
      for (let i = 0; i < n; i++) s.add(randomValue(r, depth - 1));
      return s;
    }
  }
}

Deno.test("codec fuzz: random values round trip in both modes", () => {
  const r = prng(12345);
  for (let i = 0; i < 3000; i++) {
    const v = randomValue(r, 4);
    const bytes = encode(v);
    for (const view of [false, true]) {
      const d = difference(decode(bytes, { view }), v);
      if (d !== null) throw new Error(`value #${i} (view ${view}): ${d}`);
    }
  }
});

/** Every payload view of a view-mode result must lie inside the decoded region. */
function checkViews(v: unknown, region: Uint8Array): void {
  const stack = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x !== "object" || x === null) continue;
    if (ArrayBuffer.isView(x)) {
      if (x.buffer === region.buffer) {
        assert.ok(
          x.byteOffset >= region.byteOffset &&
            x.byteOffset + x.byteLength <= region.byteOffset + region.length,
          "a view reaches outside the region",
        );
      }
    } else if (x instanceof NdArray) stack.push(x.data);
    else if (Array.isArray(x)) stack.push(...x);
    else if (x instanceof Map) { for (const [k, y] of x) stack.push(k, y); }
    else if (x instanceof Set) stack.push(...x);
    else if (Object.getPrototypeOf(x) === Object.prototype || Object.getPrototypeOf(x) === null) {
      stack.push(...Object.values(x));
    }
  }
}

function seeds(): Uint8Array[] {
  const r = prng(99);
  const out = [
    encode({ idx: 12345, source: "actor_3", data: new Float32Array(256) }),
    encode([1, -0, 2 ** 40, 7n ** 30n, -1n, "héllo", "\ud800x", null, undefined, true]),
    encode({
      m: new Map<unknown, unknown>([[1, [2]], ["k", new Set([3])]]),
      // deno-lint-ignore no-sparse-arrays
      h: [1, , 3],
      t: Object.freeze([1, 2]),
      r: Object.freeze({ a: 1 }),
      n: Object.create(null),
    }),
    encode({
      nd: new NdArray("int16", [2, 3, 1]),
      d: dtype("complex64"),
      dv: new DataView(new ArrayBuffer(9)),
      b: new ArrayBuffer(3),
      date: new Date(0),
      big: new BigUint64Array(3),
    }),
  ];
  for (let i = 0; i < 28; i++) out.push(encode(randomValue(r, 3)));
  return out;
}

function setLength(b: Uint8Array): void {
  const n = b.length;
  for (let j = 0; j < 4; j++) b[8 + j] = (n >>> (8 * j)) & 255;
  b.fill(0, 12, 16);
}

const INTERESTING = [
  0,
  1,
  2,
  3,
  4,
  5,
  6,
  7,
  8,
  15,
  16,
  63,
  64,
  65,
  127,
  128,
  255,
  256,
  0x7fff,
  0xffff,
  0x7fffffff,
  0x80000000,
  0xfffffffe,
  0xffffffff,
];

Deno.test("codec fuzz: mutated encodings decode or throw DecodeError, never anything else", () => {
  const r = prng(2024);
  const int = (n: number) => Math.floor(r() * n);
  const pool = seeds();
  const ITERATIONS = 120_000;
  let valid = 0;
  let errors = 0;
  const started = performance.now();
  for (let it = 0; it < ITERATIONS; it++) {
    const seed = pool[int(pool.length)];
    let b = seed.slice();
    const kind = int(9);
    let fixLength = r() < 0.7;
    switch (kind) {
      case 0: // bit flips
        for (let k = 1 + int(4); k > 0; k--) {
          const at = 16 + int(b.length - 16);
          b[at] ^= 1 << int(8);
        }
        break;
      case 1: // random bytes
        for (let k = 1 + int(3); k > 0; k--) b[16 + int(b.length - 16)] = int(256);
        break;
      case 2: // truncation
        b = b.slice(0, int(b.length));
        break;
      case 3: {
        // extension
        const c = new Uint8Array(b.length + 1 + int(100));
        c.set(b);
        for (let j = b.length; j < c.length; j++) c[j] = int(256);
        b = c;
        break;
      }
      case 4:
      case 5: {
        // a forged u32 length or count
        if (b.length < 21) break;
        const at = 16 + int(b.length - 20);
        const remaining = b.length - at;
        const choices = [...INTERESTING, remaining, remaining - 1, remaining + 1, int(2 ** 32)];
        const v = choices[int(choices.length)] >>> 0;
        for (let j = 0; j < 4; j++) b[at + j] = (v >>> (8 * j)) & 255;
        break;
      }
      case 6: {
        // a forged u64 length or dimension
        if (b.length < 25) break;
        const at = 16 + int(b.length - 24);
        const his = [0, 1, 0x1fffff, 0x200000, 0xffffffff];
        const lo = INTERESTING[int(INTERESTING.length)];
        const hi = his[int(his.length)];
        for (let j = 0; j < 4; j++) {
          b[at + j] = (lo >>> (8 * j)) & 255;
          b[at + 4 + j] = (hi >>> (8 * j)) & 255;
        }
        break;
      }
      case 7: {
        // splice a chunk of another encoding in
        const other = pool[int(pool.length)];
        const from = 16 + int(other.length - 16);
        const n = 1 + int(Math.min(64, other.length - from));
        const at = 16 + int(b.length - 16);
        const c = new Uint8Array(at + n + (b.length - at));
        c.set(b.subarray(0, at));
        c.set(other.subarray(from, from + n), at);
        c.set(b.subarray(at), at + n);
        b = c;
        fixLength = true;
        break;
      }
      default: {
        // delete a few bytes
        const at = 16 + int(b.length - 16);
        const n = 1 + int(8);
        const c = new Uint8Array(Math.max(at, b.length - n));
        c.set(b.subarray(0, at));
        c.set(b.subarray(Math.min(b.length, at + n)), at);
        b = c;
        fixLength = true;
      }
    }
    if (fixLength && b.length >= 16) setLength(b);
    // Decode from inside a bigger buffer, so views reaching outside would be visible.
    const host = new Uint8Array(b.length + 128);
    host.set(b, 64);
    const region = host.subarray(64, 64 + b.length);
    for (const view of [false, true]) {
      let v: unknown;
      try {
        v = decode(region, { view });
      } catch (e) {
        if (!(e instanceof DecodeError)) {
          throw new Error(`iteration ${it} (mutation ${kind}): ${e} for ${toHex(b)}`);
        }
        errors++;
        continue;
      }
      valid++;
      if (view) checkViews(v, region);
      // A decoded value is a valid value: it encodes again, and decodes to itself.
      const d = difference(decode(encode(v)), v);
      if (d !== null) throw new Error(`iteration ${it}: re-encoding differs: ${d}`);
    }
  }
  const ms = performance.now() - started;
  console.log(
    `${ITERATIONS} mutations: ${valid} decoded, ${errors} DecodeErrors, ${ms.toFixed(0)} ms`,
  );
  assert.ok(errors > ITERATIONS / 4 && valid > ITERATIONS / 20);
});

Deno.test("codec fuzz: random bytes after a valid header never crash or hang", () => {
  const r = prng(7);
  for (let it = 0; it < 20_000; it++) {
    const n = 17 + Math.floor(r() * 200);
    const b = new Uint8Array(n);
    b.set([0x53, 0x4d, 0x51, 0x43, 1]);
    setLength(b);
    // Mostly small tags, so that structure appears.
    for (let j = 16; j < n; j++) b[j] = r() < 0.6 ? Math.floor(r() * 0x24) : Math.floor(r() * 256);
    try {
      decode(b, { view: r() < 0.5 });
    } catch (e) {
      if (!(e instanceof DecodeError)) throw new Error(`${e} for ${toHex(b)}`);
    }
  }
});
