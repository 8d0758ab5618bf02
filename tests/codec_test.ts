import assert from "node:assert/strict";
import {
  decode,
  DType,
  dtype,
  type DTypeName,
  encode,
  encodeInto,
  NdArray,
  planEncode,
  Reservation,
  reserve,
  reservedView,
} from "../codec/mod.ts";
import { DecodeError, QueueError } from "../queue/errors.ts";
import { createSharedMemoryPair } from "../queue/pair.ts";
import { Buffer } from "node:buffer";
import { assertSame, difference, DTYPES, prng, startFreshSlab } from "./codec_helpers.ts";

/** Round trip in both modes, checking the result against the input. */
function roundTrip<T>(value: T): T {
  const bytes = encode(value);
  const copy = decode(bytes);
  assertSame(copy, value, "copy mode");
  assertSame(decode(bytes, { view: true }), value, "view mode");
  // Deterministic: the same value encodes to the same bytes.
  assert.deepEqual(encode(value), bytes);
  return copy as T;
}

function bytesOf(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

function random(n: number, seed: number): Float32Array {
  const r = prng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r();
  return a;
}

Deno.test("codec: small integers, floats and their edge values", () => {
  const ints = [0, 1, -1, 127, 128, 255, 256, 65535, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 32];
  const big = [2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 40, -(2 ** 40) - 7, 1234567890123];
  const floats = [
    -0,
    NaN,
    Infinity,
    -Infinity,
    0.5,
    -1.5,
    Math.PI,
    5e-324,
    -5e-324,
    Number.MAX_VALUE,
    -Number.MAX_VALUE,
    Number.EPSILON,
    2 ** 53,
    2 ** 60,
    -(2 ** 53),
    1e300,
  ];
  for (const v of [...ints, ...big, ...floats]) roundTrip(v);
  assert.ok(Object.is(decode(encode(-0)), -0));
  // Kinds: int32, int64 and float64 tags.
  assert.equal(encode(7)[16], 0x05);
  assert.equal(encode(2 ** 31)[16], 0x06);
  assert.equal(encode(-0)[16], 0x07);
  assert.equal(encode(0.5)[16], 0x07);
  assert.equal(encode(2 ** 53)[16], 0x07);
});

Deno.test("codec: bigint of any size, booleans, null, undefined", () => {
  const values = [
    0n,
    1n,
    -1n,
    255n,
    256n,
    -256n,
    2n ** 63n - 1n,
    -(2n ** 63n),
    2n ** 64n - 1n,
    2n ** 64n,
    -(2n ** 64n) - 1n,
    2n ** 1000n + 12345n,
    -(3n ** 700n),
    true,
    false,
    null,
    undefined,
  ];
  for (const v of values) roundTrip(v);
  const huge = 7n ** 20000n; // ~7 KiB of magnitude
  assert.equal(decode(encode(huge)), huge);
  assert.equal(decode(encode(-huge)), -huge);
});

Deno.test("codec: strings, any Unicode including lone surrogates", () => {
  const strings = [
    "",
    "a",
    "actor_3",
    "x".repeat(24),
    "y".repeat(25),
    "z".repeat(64),
    "w".repeat(65),
    "ascii ".repeat(1000),
    "héllo wörld",
    "日本語のテキスト",
    "emoji 😀🎉 pairs",
    "é".repeat(100),
    "😀".repeat(100),
    "\u0000nul\u0000",
    "\ufeffleading BOM",
    "\ud800",
    "\udc00",
    "a\ud800b",
    "end\ud83d",
    "\ude00start",
    "\udc00\ud800", // reversed pair: two lone surrogates
    "lone \ud800 in a long string ".repeat(300),
    "\u07ff\u0800\uffff\u{10000}\u{10ffff}",
  ];
  for (const s of strings) {
    const back = roundTrip(s);
    assert.equal(back, s);
  }
  // Well-formed strings use UTF-8, others UTF-16.
  assert.equal(encode("é")[16], 0x09);
  assert.equal(encode("\ud800")[16], 0x0a);
  // Every single code unit, as one string and as keys.
  const all = Array.from({ length: 65536 }, (_, i) => String.fromCharCode(i)).join("");
  roundTrip(all);
  const r = prng(1);
  const keys: Record<string, number> = {};
  for (let i = 0; i < 500; i++) {
    let k = "";
    const n = Math.floor(r() * 12);
    for (let j = 0; j < n; j++) {
      k += String.fromCharCode(Math.floor(r() * (r() < 0.7 ? 128 : 65536)));
    }
    keys[k] = i;
  }
  roundTrip(keys);
});

Deno.test("codec: bytes, every TypedArray class, DataView, views over part of a buffer", () => {
  const buf = new ArrayBuffer(1024);
  new Uint8Array(buf).forEach((_, i, a) => (a[i] = (i * 7) & 255));
  const views = [
    new Uint8Array([1, 2, 3]),
    new Uint8Array(0),
    buf.slice(0, 13),
    new ArrayBuffer(0),
    new Int8Array(buf, 8, 5),
    new Uint8ClampedArray(buf, 3, 9),
    new Int16Array(buf, 16, 7),
    new Uint16Array(buf, 2, 3),
    new Int32Array(buf, 4, 11),
    new Uint32Array(buf, 64, 16),
    new Float16Array([1.5, -0, NaN, Infinity, 65504]),
    new Float32Array(buf, 100, 20),
    new Float64Array(buf, 8, 30),
    new Float64Array([NaN, -0, Infinity, -Infinity]),
    new BigInt64Array(buf, 16, 4),
    new BigUint64Array(buf, 24, 2),
    new DataView(buf, 5, 17),
    new DataView(new ArrayBuffer(0)),
  ];
  for (const v of views) {
    const back = roundTrip(v) as ArrayBufferView | ArrayBuffer;
    if (!(back instanceof ArrayBuffer)) {
      // Only the view's own bytes travel; the copy owns exactly those.
      assert.equal(back.byteOffset, 0);
      assert.equal(back.buffer.byteLength, back.byteLength);
    }
  }
  // The encoding of a view does not grow with the buffer under it.
  assert.equal(encode(new Uint8Array(buf, 512, 4)).length, encode(new Uint8Array(4)).length);
  // NaN payloads inside arrays are bytes and travel exactly.
  const nan = new Uint8Array([1, 0, 0, 0, 0, 0, 0xf8, 0x7f]);
  const back = decode(encode(new Float64Array(nan.buffer))) as Float64Array;
  assert.deepEqual(new Uint8Array(back.buffer), nan);
});

Deno.test("codec: NdArray of every dtype, dtypes themselves", () => {
  for (const name of DTYPES) {
    const dt = dtype(name);
    for (const shape of [[], [0], [3], [2, 3], [2, 0, 4], [1, 1, 1, 1, 1, 2]]) {
      const a = new NdArray(dt, shape);
      const bytes = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 13 + 5) & 255;
      if (name === "bool") a.data.forEach((_, i, d) => (d[i] = i & 1));
      const back = roundTrip(a);
      assert.equal(back.dtype, dt);
      assert.deepEqual(back.shape, shape);
      assert.ok(Object.isFrozen(back.shape));
    }
    assert.equal(roundTrip(dt), dt);
  }
  assert.equal(new NdArray("float16", [2]).data.constructor, Float16Array);
  assert.equal(new NdArray("complex64", [3]).data.length, 6);
  assert.equal(new NdArray("bool", [3]).data.constructor, Uint8Array);
  assert.equal(NdArray.zeros("int64", [2, 2]).data.constructor, BigInt64Array);
  const many = new NdArray("uint8", Array(64).fill(1));
  roundTrip(many);
});

Deno.test("codec: NdArray and dtype validation", () => {
  assert.throws(
    () => new NdArray("float32", [2], new Float64Array(2) as unknown as Float32Array),
    TypeError,
  );
  assert.throws(() => new NdArray("float32", [2, 2], new Float32Array(3)), RangeError);
  assert.throws(() => new NdArray("int8", [-1]), RangeError);
  assert.throws(() => new NdArray("int8", [1.5]), RangeError);
  assert.throws(() => new NdArray("int8", Array(65).fill(1)), RangeError);
  assert.throws(() => new NdArray("complex128", [2], new Float64Array(2)), RangeError);
  assert.throws(() => dtype("float128" as DTypeName), TypeError);
  assert.equal(dtype("uint64"), dtype("uint64"));
  assert.equal(dtype("complex64").itemSize, 8);
  assert.equal(String(dtype("bool")), "bool");
  assert.equal(JSON.stringify({ d: dtype("int8") }), '{"d":"int8"}');
  assert.throws(() => new (DType as unknown as new () => DType)(), TypeError);
  // `data` and `dtype` are readonly to TypeScript only: changed after the constructor checked
  // them, they are refused by encode as the constructor would. Before: "NdArray data does not
  // match its dtype and shape", whatever was wrong.
  const changed = (field: "data" | "dtype", to: unknown) => {
    const a = new NdArray("float32", [2, 2]);
    (a as unknown as Record<string, unknown>)[field] = to;
    return { a };
  };
  for (
    const [value, message] of [
      [changed("data", new Float32Array(3)), "data has 3 elements; shape [2,2] of float32 needs 4"],
      [
        changed("data", new Int32Array(4)),
        "data of a float32 array must be a Float32Array, not an Int32Array",
      ],
      [
        changed("data", [1, 2, 3, 4]),
        "data of a float32 array must be a Float32Array, not an Array",
      ],
      [changed("dtype", "float32"), "dtype must be a DType, not string"],
    ] as const
  ) {
    assert.throws(() => encode(value), {
      name: "TypeError",
      message: `value.a: NdArray ${message}`,
    });
  }
});

Deno.test("codec: arrays (with holes), tuples, objects, records, Maps, Sets, Dates", () => {
  // deno-lint-ignore no-sparse-arrays
  const holes = [1, , 3, , , undefined];
  const back = roundTrip(holes);
  assert.equal(back.length, 6);
  assert.ok(!(1 in back) && 5 in back);
  const trailing = [1, 2];
  trailing.length = 5;
  assert.equal(roundTrip(trailing).length, 5);

  const tuple = roundTrip(Object.freeze([1, "a", true]));
  assert.ok(Object.isFrozen(tuple) && Array.isArray(tuple));
  assert.ok(Object.isFrozen(roundTrip(Object.freeze([]))));
  assert.ok(!Object.isFrozen(roundTrip([1])));

  const record = roundTrip(Object.freeze({ name: "example", value: 99 }));
  assert.ok(Object.isFrozen(record));

  const nullProto = Object.assign(Object.create(null), { a: 1, b: { c: null } });
  const np = roundTrip(nullProto);
  assert.equal(Object.getPrototypeOf(np), null);

  const obj = { b: 1, a: 2, 10: "ten", 2: "two", "key with spaces": [], "": "empty key" };
  assert.deepEqual(Object.keys(roundTrip(obj)), Object.keys(obj));

  const key = { k: 1 };
  const map = new Map<unknown, unknown>([
    [1, "one"],
    ["1", "string one"],
    [1n, "bigint"],
    [null, undefined],
    [undefined, null],
    [NaN, "nan"],
    [key, [1, 2]],
    [new Uint8Array([9]), new Set([1])],
    [new Map([[1, 2]]), new Date(0)],
  ]);
  const mb = roundTrip(map);
  assert.equal(mb.get("1"), "string one");
  assert.equal(mb.get(NaN), "nan");
  roundTrip(new Set<unknown>([1, "1", 1n, null, undefined, NaN, [1], { a: 1 }, new Set()]));
  roundTrip([new Date(0), new Date(-8.64e15), new Date(8.64e15), new Date(NaN), new Date()]);
  roundTrip({ empty: [], emptyObject: {}, emptyMap: new Map(), emptySet: new Set() });
});

Deno.test("codec: the __proto__ key is an own property, not a prototype", () => {
  const v = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}');
  const back = roundTrip(v) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(back), Object.prototype);
  assert.ok(Object.hasOwn(back, "__proto__"));
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("codec: shared (non-cyclic) references are encoded twice", () => {
  const shared = [1, 2, 3];
  const back = roundTrip({ x: shared, y: shared });
  assert.notEqual(back.x, back.y);
  assert.deepEqual(back.x, back.y);
});

Deno.test("codec: the reference's small dict", () => {
  const v = { idx: 12345, source: "actor_3", data: random(256, 3) };
  const back = roundTrip(v);
  assert.equal(back.idx, 12345);
  assert.equal(back.data.length, 256);
});

Deno.test("codec: the Python reference's large example, translated", () => {
  const tuple = <T extends unknown[]>(...xs: T) => Object.freeze(xs);
  const float32 = (shape: number[], seed: number) =>
    new NdArray("float32", shape, random(shape.reduce((a, b) => a * b, 1), seed));
  const extensive = {
    test_id: 98765,
    description: "This is a comprehensive test data object.",
    is_active: true,
    parameters: {
      learning_rate: 0.001,
      batch_size: 128,
      optimizer: "adam",
      epsilon: 1e-8,
      byte_config: new Uint8Array([1, 2, 3, 4]),
    },
    data_samples: [
      {
        sample_idx: 0,
        image_data: float32([32, 32, 3], 1),
        label: 10,
        confidence: 0.95,
        flags: [true, false, true],
        metadata: tuple("image", "png", 32, 32),
      },
      {
        sample_idx: 1,
        image_data: new NdArray("uint8", [16, 16, 1]),
        label: 5,
        confidence: 0.88,
        flags: [false, false, true],
        metadata: tuple("image", "jpeg", 16, 16),
      },
    ],
    settings_list: [
      100,
      "high",
      false,
      0.5,
      bytesOf("setting_bytes"),
      tuple(1, "a", true),
      { nested_list_dict: [1, 2, { deep_key: "deep_value" }] },
      new NdArray("float64", [3], new Float64Array([1.1, 2.2, 3.3])),
    ],
    unique_identifiers: new Set([101, 202, 303, 101]),
    status_codes: new Set([bytesOf("success"), bytesOf("pending"), bytesOf("failed")]),
    data_types_used: [dtype("float32"), dtype("int64"), dtype("uint8"), dtype("bool")],
    complex_nested_structure: {
      level1_dict: {
        level2_list: [
          "string_in_list",
          12345,
          true,
          tuple(10, 20, 30),
          {
            level3_dict: {
              array_in_dict: new NdArray("int64", [5], new BigInt64Array([0n, 1n, 2n, 3n, 4n])),
            },
          },
          // TestNamedTuple(name='example', value=99): a record (frozen plain object).
          Object.freeze({ name: "example", value: 99 }),
        ],
        level2_set: new Set([9, 8, 7, "set_string"]),
        level2_tuple: tuple(
          "tuple_item_1",
          56.78,
          bytesOf("tuple_bytes"),
          [1, 2, 3],
          { nested_in_tuple: "hello" },
        ),
      },
    },
    empty_structures: {
      empty_list: [],
      empty_dict: {},
      empty_set: new Set(),
      empty_tuple: tuple(),
    },
    large_array_example: float32([4, 8, 8, 3], 2),
  };
  const back = roundTrip(extensive);
  assert.equal(back.unique_identifiers.size, 3);
  assert.equal(back.large_array_example.data[767], extensive.large_array_example.data[767]);
  assert.ok(Object.isFrozen(back.complex_nested_structure.level1_dict.level2_tuple));
  // Every payload is 64-byte aligned from the start of the encoding.
  const bytes = encode(extensive);
  const view = decode(bytes, { view: true }) as typeof extensive;
  for (const a of [view.large_array_example.data, view.data_samples[0].image_data.data]) {
    assert.equal(a.buffer, bytes.buffer);
    assert.equal((a.byteOffset - bytes.byteOffset) % 64, 0);
  }
});

Deno.test("codec: 10,000 (and 100,000) levels of nesting, no stack overflow", () => {
  for (const depth of [10_000, 100_000]) {
    const kinds = [
      (x: unknown) => [x],
      (x: unknown) => ({ k: x }),
      (x: unknown) => new Map([["k", x]]),
      (x: unknown) => new Set([x]),
      (x: unknown) => Object.freeze([x, 1]),
    ];
    for (let kind = 0; kind <= kinds.length; kind++) {
      let v: unknown = "leaf";
      for (let i = 0; i < depth; i++) v = kinds[kind === kinds.length ? i % kinds.length : kind](v);
      const back = decode(encode(v));
      assert.equal(difference(back, v), null);
    }
  }
});

Deno.test("codec: wide values", () => {
  const r = prng(7);
  const ints = Array.from({ length: 100_000 }, () => Math.floor(r() * 2 ** 40) - 2 ** 39);
  roundTrip(ints);
  const obj: Record<string, unknown> = {};
  for (let i = 0; i < 20_000; i++) obj[`key_${i}`] = i % 3 === 0 ? `v${i}` : i * 0.5;
  roundTrip(obj);
  roundTrip(new Map(Array.from({ length: 10_000 }, (_, i) => [i, [i]])));
  roundTrip(Array.from({ length: 1000 }, (_, i) => new Float32Array(i % 17)));
});

Deno.test("codec: the path of a value deep down, or under a long key, is shortened in the middle", () => {
  let deep: unknown = () => 0;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  // Before: the whole path, a message of 300,068 characters.
  const levels = "[0]".repeat(16);
  assert.throws(() => encode(deep), {
    name: "TypeError",
    message: `value${levels}…(99968 levels)…${levels}: functions are not supported`,
  });
  const key = "k".repeat(1000);
  assert.throws(() => encode({ [key]: Symbol() }), {
    name: "TypeError",
    message: `value["${"k".repeat(32)}…(1000 chars)…${"k".repeat(32)}"]: symbols are not supported`,
  });
  assert.throws(() => encode(new Map([[key, () => 0]])), {
    name: "TypeError",
    message: `value.get("${"k".repeat(32)}…(1000 chars)…${
      "k".repeat(32)
    }"): functions are not supported`,
  });
  // 48 levels and fewer are shown whole.
  let shallow: unknown = () => 0;
  for (let i = 0; i < 48; i++) shallow = [shallow];
  assert.throws(() => encode(shallow), {
    message: `value${"[0]".repeat(48)}: functions are not supported`,
  });
});

Deno.test("codec: unsupported values are rejected with their path, before anything is written", () => {
  class Foo {
    x = 1;
  }
  class MyMap extends Map {}
  class MyArray extends Array {}
  const cases: [unknown, string][] = [
    [{ samples: [{}, { fn: () => 1 }] }, "value.samples[1].fn: functions are not supported"],
    [Symbol("s"), "value: symbols are not supported"],
    [{ a: [1, new Foo()] }, "value.a[1]: class instances (Foo) are not supported"],
    [{ w: new WeakMap() }, "value.w: WeakMap is not supported"],
    [[new WeakSet()], "value[0]: WeakSet is not supported"],
    [{ p: Promise.resolve(1) }, "value.p: Promise is not supported (a missing await?)"],
    [{ "odd key": /x/ }, 'value["odd key"]: RegExp is not supported'],
    [new MyMap(), "value: class instances (MyMap) are not supported"],
    [new MyArray(), "value: Array subclass instances (MyArray) are not supported"],
    [
      { n: new Number(1) },
      "value.n: boxed primitives (a Number object) are not supported: pass the primitive value",
    ],
    [
      [Object(1n)],
      "value[0]: boxed primitives (a BigInt object) are not supported: pass the primitive value",
    ],
    [new SharedArrayBuffer(8), "value: SharedArrayBuffer is not supported"],
    [new Map([["k", { f: Math.max }]]), 'value.get("k").f: functions are not supported'],
    [new Map([[Symbol.iterator, 1]]), "value[key #0]: symbols are not supported"],
    [new Map([[{}, () => 0]]), "value.get(<key #0>): functions are not supported"],
    [new Set([1, 2, () => 0]), "value[item #2]: functions are not supported"],
    [{ e: new Error("x") }, "value.e: Error is not supported"],
    [
      [Object.create({ inherited: 1 })],
      "value[0]: objects with a prototype other than Object.prototype or null are not supported",
    ],
    [{ d: detached() }, "value.d: the ArrayBuffer is detached"],
    [{ v: detachedView() }, "value.v: its ArrayBuffer is detached"],
    // Made to look like the library's own: before, written as dtype code 0 (which decode
    // refuses) or read for fields a real one has.
    [Object.create(DType.prototype), "value: class instances (DType) are not supported"],
    [
      { r: Object.create(Reservation.prototype) },
      "value.r: class instances (Reservation) are not supported",
    ],
    // Only the prototype of a class the codec takes. Before: "class instances (Uint8Array) are
    // not supported" of a Proxy of a Uint8Array, and "reading it threw TypeError: Method get
    // Map.prototype.size called on incompatible receiver" of one of a Map.
    [
      { p: new Proxy(new Uint8Array(2), {}) },
      "value.p: not a real Uint8Array (a Proxy, or an object made from Uint8Array.prototype): " +
      "not supported",
    ],
    [
      [Object.create(DataView.prototype)],
      "value[0]: not a real DataView (a Proxy, or an object made from DataView.prototype): " +
      "not supported",
    ],
    [
      new Proxy(new Map([[1, 2]]), {}),
      "value: not a real Map (a Proxy, or an object made from Map.prototype): not supported",
    ],
    [
      { s: Object.create(Set.prototype) },
      "value.s: not a real Set (a Proxy, or an object made from Set.prototype): not supported",
    ],
    [
      { d: new Proxy(new Date(0), {}) },
      "value.d: not a real Date (a Proxy, or an object made from Date.prototype): not supported",
    ],
    // Before: "NdArray a.shape is not iterable", V8's words about the codec's own variable.
    [
      { nd: Object.create(NdArray.prototype) },
      "value.nd: NdArray shape must be an array of integers",
    ],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => planEncode(value), { name: "TypeError", message });
    assert.throws(() => encode(value), { name: "TypeError", message });
  }
});

function detachedView(): Float64Array {
  const a = new Float64Array(2);
  a.buffer.transfer();
  return a;
}

function detached(): ArrayBuffer {
  const b = new ArrayBuffer(8);
  b.transfer();
  return b;
}

Deno.test("codec: TypedArray subclasses (node's Buffer) and views over SharedArrayBuffer", () => {
  const buf = Buffer.from("héllo");
  const back = decode(encode({ buf })) as { buf: Uint8Array };
  assert.equal(back.buf.constructor, Uint8Array);
  assert.deepEqual(back.buf, new Uint8Array(buf));
  const shared = new Int32Array(new SharedArrayBuffer(16));
  shared[3] = 7;
  const s = decode(encode(shared.subarray(2))) as Int32Array;
  assert.ok(s instanceof Int32Array && s.buffer instanceof ArrayBuffer);
  assert.deepEqual([...s], [0, 7]);
  // Decoding from a Buffer copies like decoding from a Uint8Array (Buffer's slice is a view).
  const bytes = encode({
    ab: new Uint8Array([1, 2, 3]).buffer,
    dv: new DataView(new ArrayBuffer(2)),
  });
  const fromBuffer = decode(Buffer.from(bytes)) as { ab: ArrayBuffer; dv: DataView };
  assert.equal(fromBuffer.ab.byteLength, 3);
  assert.equal(fromBuffer.dv.buffer.byteLength, 2);
  // An empty view of a shrunk resizable buffer, within its bounds, encodes as empty.
  const rab = new ArrayBuffer(16, { maxByteLength: 32 });
  const tail = new Uint8Array(rab, 8, 8);
  rab.resize(4);
  assert.equal((decode(encode(new Uint8Array(rab, 4, 0))) as Uint8Array).length, 0);
  assert.equal((decode(encode(new Uint8Array(rab))) as Uint8Array).length, 4); // length-tracking
  // One the buffer shrank below reads as empty: its elements are gone, so it is refused, as a
  // DataView is, rather than sent empty.
  assert.throws(() => encode({ tail }), {
    name: "TypeError",
    message: "value.tail: its ArrayBuffer shrank below it",
  });
});

Deno.test("codec: cycles are rejected with their path", () => {
  const a: Record<string, unknown> = {};
  a.b = { c: a };
  assert.throws(() => encode({ a }), {
    name: "TypeError",
    message: "value.a.b.c: cyclic reference",
  });
  const self: unknown[] = [];
  self.push(self);
  assert.throws(() => encode(self), { message: "value[0]: cyclic reference" });
  const m = new Map<unknown, unknown>();
  m.set("me", m);
  assert.throws(() => encode(m), { message: 'value.get("me"): cyclic reference' });
  const s = new Set<unknown>();
  s.add(s);
  assert.throws(() => encode([s]), { message: "value[0][item #0]: cyclic reference" });
  // A cycle deeper than the scanned part of the stack.
  const root: { next?: unknown } = {};
  let node = root;
  for (let i = 0; i < 200; i++) {
    const n = {};
    node.next = n;
    node = n;
  }
  node.next = root;
  assert.throws(() => encode(root), {
    message: /^value(\.next){16}…\(169 levels\)…(\.next){16}: cyclic reference$/,
  });
  let deep: { next?: unknown } = {};
  const start = deep;
  for (let i = 0; i < 100; i++) {
    const n = {};
    deep.next = n;
    deep = n;
  }
  deep.next = start.next; // back to depth 1
  assert.throws(() => encode(start), { message: /cyclic reference$/ });
  // The same object twice, without a cycle, is fine (also deeper than the scanned part).
  const leaf = { x: 1 };
  let chain: unknown = [leaf, leaf];
  for (let i = 0; i < 100; i++) chain = [chain, leaf];
  decode(encode(chain));
});

Deno.test("codec: encodeInto writes at 64-aligned offsets, zero padding, exact length", () => {
  const value = { idx: 1, s: "abc", a: new Float64Array([1, 2]), b: new Uint8Array([7]) };
  const plan = planEncode(value);
  const region = new Uint8Array(plan.byteLength + 100).fill(0xee);
  assert.equal(encodeInto(plan, region), plan.byteLength);
  // Nothing past the plan's length is touched.
  assert.ok(region.subarray(plan.byteLength).every((x) => x === 0xee));
  // No byte of the encoding is left as it was (padding is zeroed).
  assert.ok(!region.subarray(0, plan.byteLength).includes(0xee));
  assertSame(decode(region), value); // bytes after the declared length are ignored
  const view = decode(region, { view: true }) as typeof value;
  assert.equal(view.a.byteOffset % 64, 0);
  assert.equal(view.b.byteOffset % 64, 0);
  // The same plan can be written again, elsewhere.
  const other = new Uint8Array(plan.byteLength);
  encodeInto(plan, other);
  assert.deepEqual(other, region.subarray(0, plan.byteLength));
  assert.throws(() => encodeInto(plan, new Uint8Array(plan.byteLength - 1)), RangeError);
  assert.throws(() => encodeInto({ byteLength: 10, reservations: [] }, other), TypeError);
});

Deno.test("codec: a plan notices arrays that changed size since planning", () => {
  const buf = new ArrayBuffer(64, { maxByteLength: 128 });
  const a = new Uint8Array(buf);
  const plan = planEncode({ a });
  buf.resize(32);
  assert.throws(() => encodeInto(plan, new Uint8Array(plan.byteLength)), TypeError);
  const b = new Float32Array(8);
  const plan2 = planEncode([b]);
  b.buffer.transfer(); // detaches
  assert.throws(() => encodeInto(plan2, new Uint8Array(plan2.byteLength)), TypeError);
});

Deno.test("codec: view mode shares memory with the source; copy mode does not", () => {
  const value = {
    t: new Float32Array([1, 2, 3]),
    n: new NdArray("int16", [2, 2], new Int16Array([1, 2, 3, 4])),
    d: new DataView(new Uint8Array([5, 6]).buffer),
    b: new ArrayBuffer(4),
  };
  const region = new Uint8Array(4096);
  encodeInto(planEncode(value), region);
  const view = decode(region, { view: true }) as typeof value;
  const copy = decode(region) as typeof value;
  assert.equal(view.t.buffer, region.buffer);
  assert.equal(view.n.data.buffer, region.buffer);
  assert.equal(view.d.buffer, region.buffer);
  assert.notEqual(copy.t.buffer, region.buffer);
  assert.notEqual(view.b, region.buffer); // ArrayBuffer values are always copies
  // Write through the source, see it in the views only.
  new Float32Array(region.buffer, view.t.byteOffset, 3)[1] = 42;
  new Int16Array(region.buffer, view.n.data.byteOffset, 4)[3] = -7;
  region[view.d.byteOffset] = 99;
  assert.equal(view.t[1], 42);
  assert.equal(view.n.data[3], -7);
  assert.equal(view.d.getUint8(0), 99);
  assert.equal(copy.t[1], 2);
  assert.equal(copy.n.data[3], 4);
  assert.equal(copy.d.getUint8(0), 5);

  // A region at an odd byte offset: views where the alignment allows, copies elsewhere.
  const big = new Uint8Array(8192);
  const odd = big.subarray(3);
  encodeInto(planEncode(value), odd);
  const oddView = decode(odd, { view: true }) as typeof value;
  assertSame(oddView, value);
  assert.notEqual(oddView.t.buffer, big.buffer); // Float32 at an odd address: copied
  assert.equal(oddView.d.buffer, big.buffer); // DataView: any address
});

Deno.test("codec: copies of every size hold exactly their bytes, in buffers of their own", () => {
  // Around the sizes where the copy changes hands: slice, the constructor, a streaming copy.
  for (const n of [8, 16376, 16384, 65544, (32 << 20) + 8]) {
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i += 4093) bytes[i] = i % 251 + 1;
    bytes[n - 1] = 77;
    const value = { u8: bytes, f64: new Float64Array(bytes.buffer), raw: bytes.buffer };
    const region = new Uint8Array(3 * n + 4096);
    const at = 8; // payloads off the region's start, so a copy from the wrong place shows
    encodeInto(planEncode(value), region.subarray(at));
    const copy = decode(region.subarray(at)) as typeof value;
    region.fill(0); // nothing decoded may still read the region
    for (const [name, got] of [["u8", copy.u8], ["f64", copy.f64], ["raw", copy.raw]] as const) {
      const gotBytes = new Uint8Array(got instanceof ArrayBuffer ? got : got.buffer);
      assert.equal(gotBytes.byteLength, n, `${name} of ${n} bytes: a buffer of its own size`);
      if (!(got instanceof ArrayBuffer)) assert.equal(got.byteOffset, 0, name);
      for (let i = 0; i < n; i += 4093) assert.equal(gotBytes[i], i % 251 + 1, `${name}[${i}]`);
      assert.equal(gotBytes[n - 1], 77, `${name} of ${n} bytes: its last byte`);
    }
  }
});

Deno.test("codec: a large array inside the region it is encoded into is written whole", () => {
  // Once a queue end has loaded the native library, arrays of 32 MiB and more are copied by a
  // streaming copy; TypedArray.prototype.set, which it stands in for, copies within one buffer
  // as if through a temporary.
  const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
  sender.close();
  receiver.close();
  const n = (32 << 20) + 4096;
  for (const shift of [8, 320, 4096 * 3]) {
    const region = new Uint8Array(n + shift + 4096);
    const array = region.subarray(64 + shift, 64 + shift + n);
    for (let i = 0; i < n; i += 61) array[i] = (i * 7 + (i >> 12)) % 251 + 1;
    const want = array.slice();
    const plan = planEncode({ array });
    encodeInto(plan, region);
    const back = (decode(region.subarray(0, plan.byteLength)) as { array: Uint8Array }).array;
    for (let i = 0; i < n; i += 61) {
      if (back[i] !== want[i]) {
        assert.fail(`shift ${shift}: byte ${i} is ${back[i]}, not ${want[i]}`);
      }
    }
  }
});

Deno.test("codec: encode and decode need no permission, large arrays included", async () => {
  // Through mod.ts, which also loads the queue: arrays of 32 MiB and more would stream through
  // the native core, but only once a queue end has loaded it.
  const script = `import { decode, encode } from ${
    JSON.stringify(new URL("../mod.ts", import.meta.url).href)
  };
    const a = new Uint8Array((32 << 20) + 8).fill(5);
    const back = decode(encode({ a }));
    console.log(back.a.length, back.a[a.length - 1]);`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const out = await child.output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout).trim(), `${(32 << 20) + 8} 5`);
});

Deno.test("codec: reserve() encodes without copying; reservedView fills in place", () => {
  const value = {
    frame: reserve("uint16", [2, 3]),
    flat: reserve(Float64Array, 5),
    raw: reserve(ArrayBuffer, 3),
    dv: reserve(DataView, 2),
    step: 7,
  };
  const plan = planEncode(value);
  assert.equal(plan.reservations.length, 4);
  const region = new Uint8Array(plan.byteLength).fill(0xab);
  encodeInto(plan, region);
  for (const slot of plan.reservations) {
    assert.equal(slot.byteOffset % 64, 0);
    // The payload was left as it was.
    assert.ok(
      region.subarray(slot.byteOffset, slot.byteOffset + slot.byteLength).every((x) => x === 0xab),
    );
  }
  const frame = reservedView(region, plan.reservations[0]) as NdArray<Uint16Array>;
  frame.data.set([1, 2, 3, 4, 5, 6]);
  const flat = reservedView(region, plan.reservations[1]) as Float64Array;
  flat.fill(0.25);
  (reservedView(region, plan.reservations[2]) as Uint8Array).set([1, 2, 3]);
  (reservedView(region, plan.reservations[3]) as DataView).setUint16(0, 513, true);
  const back = decode(region) as {
    frame: NdArray<Uint16Array>;
    flat: Float64Array;
    raw: ArrayBuffer;
    dv: DataView;
    step: number;
  };
  assert.equal(back.frame.dtype, dtype("uint16"));
  assert.deepEqual(back.frame.shape, [2, 3]);
  assert.deepEqual([...back.frame.data], [1, 2, 3, 4, 5, 6]);
  assert.ok(back.flat instanceof Float64Array && back.flat[4] === 0.25);
  assert.deepEqual(new Uint8Array(back.raw), new Uint8Array([1, 2, 3]));
  assert.equal(back.dv.getUint16(0, true), 513);
  // A reservation encodes exactly like the value it stands for.
  const real = {
    frame: new NdArray("uint16", [2, 3], new Uint16Array([1, 2, 3, 4, 5, 6])),
    flat: new Float64Array(5).fill(0.25),
    raw: new Uint8Array([1, 2, 3]).buffer,
    dv: new DataView(new Uint8Array([1, 2]).buffer),
    step: 7,
  };
  assert.deepEqual(encode(real), region);
  assert.throws(() => reserve(Array as never, 3), TypeError);
  assert.throws(() => reserve(Uint8Array, -1), /length must be a non-negative integer, got -1/);
  assert.throws(() => reserve(Uint8Array, "3" as never), /non-negative integer, got string/);
  // A shape with a class: the hint names the dtype to use.
  assert.throws(() => reserve(Float32Array, [2, 2] as never), {
    name: "TypeError",
    message: "reserve(Float32Array, length): length must be a number; for an N-d array of " +
      'shape [2, 2], pass its dtype: reserve("float32", [2, 2])',
  });
  assert.throws(() => reserve(BigUint64Array, [3] as never), /reserve\("uint64", \[3\]\)$/);
  assert.throws(() => reserve(DataView, [3] as never), /reserve\("uint8", \[3\]\)$/);
  assert.throws(() => reserve(Float32Array, 2 ** 60), /length 1152921504606847000 is too large/);
  assert.throws(() => reserve("float32", [-1]), RangeError);
  assert.throws(
    () => reserve("float32", ["3" as never]),
    /shape\[0\] = the string "3" is not a non-negative integer/,
  );
});

Deno.test("codec: decode rejects malformed input with DecodeError", () => {
  const good = encode({ a: [1, "x"], b: new Float32Array(2) });
  const bad = (mutate: (b: Uint8Array) => Uint8Array | void, message: RegExp) => {
    const b = good.slice();
    const out = mutate(b) ?? b;
    assert.throws(() => decode(out), (e: unknown) => {
      assert.ok(e instanceof DecodeError && e instanceof QueueError, String(e));
      assert.match((e as Error).message, message);
      return true;
    });
  };
  bad((b) => b.subarray(0, 10), /truncated header/);
  bad((b) => void (b[0] = 0), /bad magic/);
  bad((b) => void (b[4] = 2), /unsupported format version 2/);
  bad((b) => void (b[6] = 1), /reserved/);
  bad((b) => b.subarray(0, b.length - 1), /truncated: the header declares/);
  bad((b) => void (b[8] = 16), /no value/);
  bad((b) => {
    const c = new Uint8Array(b.length + 3);
    c.set(b);
    c[8] += 3; // declared length includes 3 junk bytes
    return c;
  }, /3 trailing bytes/);
  bad((b) => void (b[16] = 0xee), /unknown tag 0xee at byte 16/);
  bad((b) => void (b[17] = 0xff), /count \d+ exceeds the remaining bytes/);
  bad((b) => void (b[21] = 0x05), /object key must be a string/);
  const hole = encode([undefined]);
  hole[21] = 0x0c;
  decode(hole); // a hole inside an array is fine
  hole[16] = 0x0c;
  assert.throws(() => decode(hole), DecodeError);
  const str = encode("abc");
  str[21] = 0xff;
  assert.throws(() => decode(str), /invalid UTF-8/);
  const nd = encode(new NdArray("int8", [4]));
  nd[17] = 99;
  assert.throws(() => decode(nd), /unknown dtype code 99/);
  const bin = encode(new Int32Array(2));
  bin[18] = 7; // 7 bytes: not a multiple of 4
  assert.throws(() => decode(bin), /not a multiple of 4/);
  assert.throws(() => decode(new Uint8Array(0)), DecodeError);
  assert.throws(() => decode([1, 2] as unknown as Uint8Array), TypeError);
});

Deno.test("codec: int64 values beyond the safe range (from other encoders) decode as bigint", () => {
  const b = encode(2 ** 40);
  assert.equal(b[16], 0x06);
  b.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 17);
  assert.equal(decode(b), 2n ** 63n - 1n);
  b.set([0, 0, 0, 0, 0, 0, 0xe0, 0xff], 17); // -2^53
  assert.equal(decode(b), -(2n ** 53n));
  b.set([1, 0, 0, 0, 0, 0, 0xe0, 0xff], 17); // -2^53 + 1
  assert.equal(decode(b), -(2 ** 53) + 1);
  b.set([5, 0, 0, 0, 0, 0, 0, 0], 17); // small value in the int64 form
  assert.equal(decode(b), 5);
});

Deno.test("decode copy mode puts payloads in buffers from the allocate option", () => {
  const bytes = encode({
    a: new Float32Array([1, 2]),
    b: new Uint8Array([3]),
    c: new ArrayBuffer(2),
  });
  const made: ArrayBuffer[] = [];
  const out = decode(bytes, {
    allocate(n) {
      const buffer = new ArrayBuffer(n);
      made.push(buffer);
      return buffer;
    },
  }) as { a: Float32Array; b: Uint8Array; c: ArrayBuffer };
  assert.equal(made.length, 3);
  assert.equal(out.a.buffer, made[0]);
  assert.deepEqual([...out.a], [1, 2]);
  assert.equal(out.b.buffer, made[1]);
  assert.equal(out.c, made[2]);
  assert.throws(() => decode(bytes, { allocate: (n) => new ArrayBuffer(n + 1) }), TypeError);
});

Deno.test("decode with pooled puts small arrays in shared slabs, exact and aligned", () => {
  const value = {
    bytes: new Uint8Array([1, 2, 3]), // 3 bytes: the next array starts unaligned unless padded
    doubles: new Float64Array([0.5, -2]),
    big: new BigInt64Array([-(2n ** 62n)]),
    view: new DataView(new Uint8Array([9, 8, 7]).buffer),
    nd: new NdArray(dtype("int16"), [2, 2], new Int16Array([1, -2, 3, -4])),
    own: new ArrayBuffer(5), // an ArrayBuffer value is the whole buffer: never pooled
    large: new Float32Array(513).fill(1.5), // 2052 bytes: above 2 KiB, a buffer of its own
  };
  startFreshSlab();
  const out = decode(encode(value), { pooled: true }) as typeof value;
  assertSame(out, value);
  const slab = out.bytes.buffer;
  for (const a of [out.doubles, out.big, out.view, out.nd.data]) {
    assert.equal(a.buffer, slab, "the small arrays share one slab");
    assert.equal(a.byteOffset % 8, 0);
  }
  assert.equal(out.own.byteLength, 5);
  assert.notEqual(out.own, slab);
  assert.equal(out.large.buffer.byteLength, 2052);
  // The next decode goes on in the same slab, and leaves what is there alone.
  const again = decode(encode(new Uint8Array([4, 5])), { pooled: true }) as Uint8Array;
  assert.equal(again.buffer, slab);
  assert.deepEqual([...out.bytes, ...again], [1, 2, 3, 4, 5]);
  // An empty array holds no slab alive: its buffer is its own, and empty.
  const none = decode(encode({ a: new Float64Array(0), b: new Uint8Array(0) }), { pooled: true });
  for (const a of Object.values(none as Record<string, ArrayBufferView>)) {
    assert.ok(a.buffer !== slab && a.buffer.byteLength === 0 && a.byteLength === 0);
  }
});

Deno.test("decode with pooled starts a new slab when one is full or was transferred", () => {
  const bytes = encode(new Uint8Array(2048).fill(7));
  const copies = Array.from({ length: 40 }, () => decode(bytes, { pooled: true }) as Uint8Array);
  const slabs = new Set(copies.map((c) => c.buffer));
  assert.ok(slabs.size >= 2 && slabs.size < 40, `40 copies of 2 KiB took ${slabs.size} slabs`);
  for (const c of copies) assert.ok(c.length === 2048 && c.every((x) => x === 7));
  // A caller that transfers a slab takes it away from the decoder, not the other way round.
  const last = copies[copies.length - 1];
  const moved = (last.buffer as ArrayBuffer).transfer();
  const empty = decode(encode(new Uint8Array(0)), { pooled: true }) as Uint8Array;
  assert.equal(empty.length, 0);
  const next = decode(encode(new Uint16Array([513])), { pooled: true }) as Uint16Array;
  assert.deepEqual([...next], [513]);
  assert.notEqual(next.buffer, moved);
  assert.equal(new Uint8Array(moved, last.byteOffset, 1)[0], 7, "the moved slab kept its bytes");
  assert.throws(
    () => decode(bytes, { pooled: "yes" as unknown as boolean }),
    (e: Error) => e instanceof TypeError && /options\.pooled must be a boolean/.test(e.message),
  );
});

Deno.test("decode with pooled and allocate asks allocate only for the large arrays", () => {
  const asked: number[] = [];
  const out = decode(encode([new Uint8Array(16), new Uint8Array(4096), new ArrayBuffer(8)]), {
    pooled: true,
    allocate(n) {
      asked.push(n);
      return new ArrayBuffer(n);
    },
  }) as [Uint8Array, Uint8Array, ArrayBuffer];
  assert.deepEqual(asked, [4096, 8]);
  assert.ok(out[0].buffer.byteLength > 16, "the small one went to a slab");
});

Deno.test("codec: an error from a nested encode inside a getter is placed at the outer getter", () => {
  const value = {
    list: [0, {
      get data() {
        return planEncode({ fn() {} }); // another value, with an unsupported part
      },
    }],
  };
  assert.throws(
    () => planEncode(value),
    (e: Error) => {
      assert.ok(e instanceof TypeError);
      assert.equal(
        e.message,
        "value.list[1].data: reading it threw TypeError: value.fn: functions are not supported",
      );
      assert.ok(e.cause instanceof TypeError);
      return true;
    },
  );
});

Deno.test("codec: keys a getter deletes or adds while the object is encoded go as structuredClone's", () => {
  const deleting = (): Record<string, unknown> => {
    const o: Record<string, unknown> = {
      get a() {
        delete o.b;
        delete o.c;
        o.added = 4; // listed after the keys were: not sent
        return 1;
      },
      b: 2,
      c: undefined,
      d: undefined,
    };
    return o;
  };
  const cloned = structuredClone(deleting());
  assert.deepEqual(Object.keys(cloned), ["a", "d"]);
  const back = decode(encode(deleting())) as Record<string, unknown>;
  assert.deepEqual(Object.keys(back), ["a", "d"], "b and c were deleted, not sent as undefined");
  assert.deepEqual(back, cloned);
  // Deep inside a larger value, the count written still matches what follows it.
  const nested: Record<string, unknown> = {
    get x() {
      delete nested.y;
      return [1, 2];
    },
    y: { z: 1 },
    w: "after",
  };
  assert.deepEqual(decode(encode([nested, "tail"])), [{ x: [1, 2], w: "after" }, "tail"]);
});

Deno.test("codec: encode of a value too large to allocate says how large it is", () => {
  // References to one untouched array: 512 TiB encoded, planned without a byte written, and
  // more than a process's address space, so that no overcommit setting lets it be allocated.
  const value = new Array(2 ** 19).fill(new Uint8Array(2 ** 30));
  assert.throws(() => encode(value), (e: Error) => {
    assert.ok(e instanceof RangeError);
    // Before: V8's "Array buffer allocation failed", alone.
    assert.match(
      e.message,
      /^encode: the value encodes to \d{15} bytes, which could not be allocated \(.+\)$/,
    );
    return true;
  });
});
