/**
 * The codec against values that lie about themselves and inputs built to exhaust the decoder:
 * encodeInto writes exactly the bytes it planned, and decode answers a DecodeError, quickly.
 */

import assert from "node:assert/strict";
import { decode, encode, encodeInto, NdArray, planEncode, reserve } from "../codec/mod.ts";
import { DecodeError } from "../queue/errors.ts";
import { runDeno } from "./helpers.ts";

/** A buffer with a valid header declaring `total` bytes. */
function header(total: number): Uint8Array {
  const b = new Uint8Array(total);
  b.set([0x53, 0x4d, 0x51, 0x43, 1]);
  new DataView(b.buffer).setUint32(8, total, true);
  return b;
}

Deno.test("a view's own or inherited properties cannot make encodeInto write past its plan", () => {
  const u = new Uint8Array(1000).fill(7);
  Object.defineProperty(u, "byteLength", { get: () => 1 });
  Object.defineProperty(u, "length", { get: () => 1 });
  const plan = planEncode({ u });
  const region = new Uint8Array(plan.byteLength + 2000);
  encodeInto(plan, region);
  assert.equal(region.subarray(plan.byteLength).some((x) => x !== 0), false, "wrote past plan");
  assert.deepEqual(decode(region), { u: new Uint8Array(1000).fill(7) });
});

Deno.test("a TypedArray with a swapped prototype is encoded as what it is, every byte", () => {
  const f = new Float64Array([1.5, 2.5]);
  Object.setPrototypeOf(f, Uint8Array.prototype);
  const plan = planEncode(f);
  const region = new Uint8Array(plan.byteLength).fill(0xee); // an old slot's bytes
  encodeInto(plan, region);
  const back = decode(region);
  assert.ok(back instanceof Float64Array, String(back));
  assert.deepEqual([...back], [1.5, 2.5]);
});

Deno.test("an object made with ArrayBuffer.prototype is refused, whatever its own properties say", () => {
  const fake = Object.defineProperties(Object.create(ArrayBuffer.prototype), {
    byteLength: { value: 2 },
    length: { value: 2 },
    0: { value: 7 },
    1: { value: 9 },
  });
  assert.throws(() => planEncode({ f: fake }), {
    name: "TypeError",
    message: "value.f: an object made with ArrayBuffer.prototype is no ArrayBuffer: not supported",
  });
  // A real one, resizable too, still goes as it is.
  const real = new ArrayBuffer(3, { maxByteLength: 8 });
  new Uint8Array(real).set([1, 2, 3]);
  assert.deepEqual(new Uint8Array(decode(encode(real)) as ArrayBuffer), new Uint8Array([1, 2, 3]));
});

Deno.test("views over detached or shrunk buffers are refused with the value's path", () => {
  const ab = new ArrayBuffer(8);
  const dv = new DataView(ab);
  ab.transfer();
  assert.throws(() => planEncode({ a: [dv] }), { name: "TypeError", message: /value\.a\[0\]/ });

  const resizable = new ArrayBuffer(16, { maxByteLength: 64 });
  const view = new DataView(resizable, 8, 8);
  resizable.resize(4);
  assert.throws(() => planEncode({ v: view }), { name: "TypeError", message: /value\.v/ });

  // Shrunk after the plan: a TypeError, nothing written past the plan. Grown: the planned size.
  const growing = new ArrayBuffer(8, { maxByteLength: 64 });
  const floats = new Float32Array(growing).fill(3);
  const shrinkPlan = planEncode(floats);
  growing.resize(4);
  assert.throws(() => encodeInto(shrinkPlan, new Uint8Array(shrinkPlan.byteLength)), TypeError);
  growing.resize(8);
  const growPlan = planEncode(floats);
  growing.resize(32);
  const out = new Uint8Array(growPlan.byteLength);
  encodeInto(growPlan, out);
  assert.equal((decode(out) as Float32Array).length, 2);
});

Deno.test("a sparse array too long for one message is refused at once, with its path", () => {
  const sparse: number[] = [];
  sparse[1e9] = 1; // its holes would take seconds to walk, then fail anyway
  const started = performance.now();
  assert.throws(
    () => planEncode({ list: [0, sparse] }),
    (e: Error) =>
      e instanceof RangeError &&
      /^value\.list\[1\]: an array of 1000000001 items, holes included, is more than one message/
        .test(e.message),
  );
  assert.ok(performance.now() - started < 1000, "refused before walking the holes");
  const holey = [1, , 3]; // a short one keeps its holes
  assert.ok(!(1 in (decode(encode(holey)) as number[])));
});

Deno.test("an NdArray with an invalid shape is refused when planned", () => {
  for (const shape of [[0.5, 2], [-1, -1], new Array(65).fill(1)]) {
    const a = new NdArray("float32", [1]);
    (a as unknown as { shape: number[] }).shape = shape;
    assert.throws(() => planEncode({ a }), { name: "TypeError", message: /value\.a/ });
  }
});

Deno.test("a Proxy array is counted once: the encoding stays valid", () => {
  let reads = 0;
  const p = new Proxy([1, 2, 3], {
    get: (t, k, r) => k === "length" ? (++reads === 1 ? 3 : 1) : Reflect.get(t, k, r),
  });
  assert.deepEqual(decode(encode([p, 9])), [[1, 2, 3], 9]);
});

Deno.test("an ndarray shape whose product overflows next to a zero is a DecodeError", () => {
  const ndim = 21; // 20 dimensions of 2^53 - 1 and one of 0: a payload of 0 bytes
  const at = 16 + 3 + 8 * ndim;
  const b = header(at + ((64 - (at % 64)) % 64));
  b.set([0x21, 11, ndim], 16);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < ndim - 1; i++) dv.setBigUint64(19 + 8 * i, 2n ** 53n - 1n, true);
  assert.throws(() => decode(b), DecodeError);
});

Deno.test("an ndarray shape past 2^53 - 1 before a zero is refused, as CODEC.md says", () => {
  // The product is checked as it is read: [2^40, 2^40, 0] passes 2^53 - 1 before the 0 (a
  // product that stays finite, unlike the overflow above); [0, 2^40, 2^40] never does.
  const big = [2 ** 40, 2 ** 40, 0];
  assert.throws(() => new NdArray("float32", big), { name: "RangeError", message: /too many/ });
  assert.throws(() => reserve("float32", big), RangeError);
  assert.deepEqual(
    (decode(encode(new NdArray("float32", [0, 2 ** 40, 2 ** 40]))) as NdArray).shape,
    [
      0,
      2 ** 40,
      2 ** 40,
    ],
  );

  const ndim = big.length;
  const at = 16 + 3 + 8 * ndim;
  const b = header(at + ((64 - (at % 64)) % 64));
  b.set([0x21, 11, ndim], 16);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < ndim; i++) dv.setBigUint64(19 + 8 * i, BigInt(big[i]), true);
  assert.throws(() => decode(b), { name: "DecodeError", message: /invalid ndarray/ });
});

Deno.test("a bigint beyond the runtime's limit is a DecodeError at once; a large one decodes", () => {
  const n = 2 ** 27 + 1; // one byte more than V8's 2^30-bit limit
  const b = header(16 + 6 + n);
  b[16] = 0x08;
  new DataView(b.buffer).setUint32(18, n, true);
  const started = performance.now();
  assert.throws(() => decode(b), { name: "DecodeError", message: /bigint too large/ });
  assert.ok(performance.now() - started < 1000, "the refusal took long: work before the check");

  const big = (1n << 8_000_000n) - 12345n; // a megabyte of magnitude
  assert.equal(decode(encode(-big)), -big);
});

Deno.test("a UTF-16 string beyond the runtime's limit is a DecodeError", async () => {
  // A gigabyte of input: run apart, so this process's heap stays small.
  const codec = JSON.stringify(new URL("../codec/mod.ts", import.meta.url).href);
  const errors = JSON.stringify(new URL("../queue/errors.ts", import.meta.url).href);
  const code = `
    import { decode } from ${codec};
    import { DecodeError } from ${errors};
    const n = 2 ** 29;
    const b = new Uint8Array(16 + 5 + 2 * n);
    b.set([0x53, 0x4d, 0x51, 0x43, 1]);
    new DataView(b.buffer).setUint32(8, b.length, true);
    b[16] = 0x0a;
    new DataView(b.buffer).setUint32(17, n, true);
    try { decode(b); console.log("decoded"); }
    catch (e) { console.log(e instanceof DecodeError ? e.message : "other: " + e); }
  `;
  assert.match(await runDeno(["eval", code]), /string too long for this runtime/);
});

Deno.test("a Map's or Set's own iterator does not decide what is encoded", () => {
  // Before: the own Symbol.iterator was followed: Map {"real" => 1} went as {"fake" => 2}.
  const map = new Map([["real", 1]]);
  Object.defineProperty(map, Symbol.iterator, { value: () => [["fake", 2]][Symbol.iterator]() });
  Object.defineProperty(map, "entries", { value: () => [["fake", 2]][Symbol.iterator]() });
  const set = new Set([1, 2, 3]);
  Object.defineProperty(set, Symbol.iterator, { value: () => [][Symbol.iterator]() });
  Object.defineProperty(set, "values", { value: () => [][Symbol.iterator]() });
  assert.deepEqual(decode(encode({ map, set })), {
    map: new Map([["real", 1]]),
    set: new Set([1, 2, 3]),
  });
  // Nor its own size: 1e10 made encode refuse it as too many items.
  Object.defineProperty(map, "size", { value: 1e10 });
  assert.deepEqual(decode(encode(map)), new Map([["real", 1]]));
});

Deno.test("reserve(dtype, shape) refuses a shape whose byte length is past 2^53", () => {
  // Before: complex128 [2^50, 3] gave a byteLength of 54043195528445950, no exact integer.
  assert.throws(
    () => reserve("complex128", [2 ** 50, 3]),
    (e: Error) =>
      e instanceof RangeError &&
      e.message === "reserve(dtype, shape): shape [1125899906842624, 3] is too large " +
          "(3377699720527872 × 16 bytes is past 2^53)",
  );
  assert.equal(reserve("complex128", [4, 3]).byteLength, 192);
});

Deno.test("encode ignores an index set on Array.prototype when the value has no placeholder", async () => {
  // Run apart: this process's Array.prototype must stay as it is.
  const codec = JSON.stringify(new URL("../codec/mod.ts", import.meta.url).href);
  const code = `
    import { decode, encode } from ${codec};
    Array.prototype[0] = "polluted";
    console.log(JSON.stringify(decode(encode({ a: 1 }))));
  `;
  assert.deepEqual(JSON.parse(await runDeno(["eval", code])), { a: 1 });
});

Deno.test("decoding ignores what was done to Object.prototype: no setter runs, nothing throws", async () => {
  // Run apart: this process's Object.prototype must stay as it is.
  const codec = JSON.stringify(new URL("../codec/mod.ts", import.meta.url).href);
  const code = `
    import { decode, encode } from ${codec};
    const bytes = encode({ toString: 1, constructor: 2, watched: 3, __proto__x: 4 });
    let setterRan = false;
    Object.defineProperty(Object.prototype, "watched", { set() { setterRan = true; } });
    Object.freeze(Object.prototype);
    const v = decode(bytes);
    console.log(JSON.stringify({ setterRan, own: Object.keys(v), values: Object.values(v) }));
  `;
  assert.deepEqual(JSON.parse(await runDeno(["eval", code])), {
    setterRan: false,
    own: ["toString", "constructor", "watched", "__proto__x"],
    values: [1, 2, 3, 4],
  });
});
