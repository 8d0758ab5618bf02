/**
 * Writes codec/vectors/v1.json, the golden vectors of the codec: valid encodings of values
 * given in the typed JSON notation of codec/CODEC.md (the hex comes from the encoder and was
 * reviewed by hand against the spec), hand-assembled encodings the TypeScript encoder does
 * not produce but decoders must accept, and invalid encodings decoders must reject.
 *
 * Run: `deno run --allow-write tests/codec_vectors_gen.ts`. tests/codec_vectors_test.ts
 * checks the file in both directions, so regenerate only on a deliberate format change.
 *
 * @module
 */

import { encode } from "../codec/mod.ts";
import { DTYPES, toHex } from "./codec_helpers.ts";
import {
  fromNotation,
  type InvalidVector,
  type Notation,
  type ValidVector,
} from "./codec_vectors.ts";

const valid: [string, string, Notation][] = [
  ["null", "null", ["null"]],
  ["undefined", "undefined", ["undefined"]],
  ["true", "true", ["bool", true]],
  ["false", "false", ["bool", false]],
  ["int-zero", "0 as int32", ["int", 0]],
  ["int-small", "12345 as int32", ["int", 12345]],
  ["int-negative", "-1 as int32", ["int", -1]],
  ["int32-max", "2^31 - 1, the largest int32", ["int", 2147483647]],
  ["int32-min", "-2^31, the smallest int32", ["int", -2147483648]],
  ["int64-small", "2^31: just beyond int32, so int64", ["int", 2147483648]],
  ["int64-max-safe", "2^53 - 1, the largest safe integer", ["int", 9007199254740991]],
  ["int64-min-safe", "-(2^53 - 1)", ["int", -9007199254740991]],
  ["float-half", "1.5", ["float", 1.5]],
  ["float-tenth", "0.1", ["float", 0.1]],
  ["float-negative-zero", "-0 is a float, not an integer", ["float", "-0"]],
  ["float-nan", "NaN, canonical quiet NaN bits", ["float", "NaN"]],
  ["float-infinity", "+Infinity", ["float", "Infinity"]],
  ["float-minus-infinity", "-Infinity", ["float", "-Infinity"]],
  ["float-2-53", "2^53: integral but beyond the safe range, so float64", [
    "float",
    9007199254740992,
  ]],
  ["float-denormal", "the smallest denormal", ["float", 5e-324]],
  ["bigint-zero", "0n: sign 0, no magnitude bytes", ["bigint", "0"]],
  ["bigint-one", "1n", ["bigint", "1"]],
  ["bigint-minus-one", "-1n", ["bigint", "-1"]],
  ["bigint-255", "255n: one byte", ["bigint", "255"]],
  ["bigint-256", "256n: two bytes", ["bigint", "256"]],
  ["bigint-2-64", "2^64: nine bytes", ["bigint", "18446744073709551616"]],
  ["bigint-large-negative", "-(2^100 + 7)", ["bigint", (-(2n ** 100n + 7n)).toString()]],
  ["string-empty", "the empty string", ["str", ""]],
  ["string-ascii", "ASCII", ["str", "actor_3"]],
  ["string-latin", "two-byte UTF-8", ["str", "héllo"]],
  ["string-cjk", "three-byte UTF-8", ["str", "日本"]],
  ["string-astral", "a surrogate pair: four-byte UTF-8", ["str", "😀"]],
  ["string-bom", "a leading U+FEFF is content", ["str", "\ufeffx"]],
  ["string-nul", "NUL characters", ["str", "a\u0000b"]],
  ["string-lone-high", "a lone high surrogate: UTF-16 form", ["str", "\ud800"]],
  ["string-lone-low", "a lone low surrogate between letters: UTF-16 form", ["str", "a\udc00b"]],
  ["date-epoch", "the epoch", ["date", 0]],
  ["date-negative", "before the epoch", ["date", -1]],
  ["date-recent", "2023-11-14T22:13:20Z", ["date", 1700000000000]],
  ["date-invalid", "an invalid date: NaN", ["date", "NaN"]],
  ["binary-arraybuffer", "ArrayBuffer of 3 bytes", ["binary", "ArrayBuffer", "010203"]],
  ["binary-uint8", "Uint8Array (Python bytes)", ["binary", "Uint8Array", "01020304"]],
  ["binary-uint8-empty", "an empty Uint8Array: no payload, still padded", [
    "binary",
    "Uint8Array",
    "",
  ]],
  ["binary-int8", "Int8Array [-1, 2]", ["binary", "Int8Array", "ff02"]],
  ["binary-uint8clamped", "Uint8ClampedArray", ["binary", "Uint8ClampedArray", "00ff"]],
  ["binary-int16", "Int16Array [-2]", ["binary", "Int16Array", "feff"]],
  ["binary-uint16", "Uint16Array [513]", ["binary", "Uint16Array", "0102"]],
  ["binary-int32", "Int32Array [-1, 1]", ["binary", "Int32Array", "ffffffff01000000"]],
  ["binary-uint32", "Uint32Array [0x04030201]", ["binary", "Uint32Array", "01020304"]],
  ["binary-float16", "Float16Array [1.5]", ["binary", "Float16Array", "003e"]],
  ["binary-float32", "Float32Array [1.5, -2]", ["binary", "Float32Array", "0000c03f000000c0"]],
  ["binary-float64", "Float64Array [1.5]", ["binary", "Float64Array", "000000000000f83f"]],
  ["binary-bigint64", "BigInt64Array [-1n]", ["binary", "BigInt64Array", "ffffffffffffffff"]],
  ["binary-biguint64", "BigUint64Array [1n]", ["binary", "BigUint64Array", "0100000000000000"]],
  ["binary-dataview", "DataView of 3 bytes", ["binary", "DataView", "0a0b0c"]],
  ["ndarray-float32", "float32 [2, 3]: 0 .. 5", [
    "ndarray",
    "float32",
    [2, 3],
    "000000000000803f0000004000004040000080400000a040",
  ]],
  ["ndarray-bool", "bool [3]: true, false, true", ["ndarray", "bool", [3], "010001"]],
  ["ndarray-int64", "int64 [2]: -1, 2", [
    "ndarray",
    "int64",
    [2],
    "ffffffffffffffff0200000000000000",
  ]],
  ["ndarray-complex64", "complex64 [1]: 1 + 2j", ["ndarray", "complex64", [1], "0000803f00000040"]],
  ["ndarray-0d", "a 0-d float64 array (a scalar): 1.5", [
    "ndarray",
    "float64",
    [],
    "000000000000f83f",
  ]],
  ["ndarray-empty", "uint8 [0, 3]: no elements", ["ndarray", "uint8", [0, 3], ""]],
  ["dtypes", "every dtype, in an array", [
    "array",
    DTYPES.map((d) => ["dtype", d] as Notation),
  ]],
  ["array-empty", "[]", ["array", []]],
  ["array-mixed", '[1, "a", null]', ["array", [["int", 1], ["str", "a"], ["null"]]]],
  ["array-holes", "[1, <hole>, 3, <hole>]: a sparse array", [
    "array",
    [["int", 1], ["hole"], ["int", 3], ["hole"]],
  ]],
  ["tuple", 'a tuple (frozen Array): (1, "a", True)', ["tuple", [["int", 1], ["str", "a"], [
    "bool",
    true,
  ]]]],
  ["tuple-empty", "the empty tuple", ["tuple", []]],
  ["object-empty", "{}", ["object", []]],
  ["object", "{ a: 1, b: [true] }", ["object", [["a", ["int", 1]], ["b", ["array", [[
    "bool",
    true,
  ]]]]]]],
  ["object-null-prototype", "Object.create(null) with one key", ["object_null", [["k", ["null"]]]]],
  ["object-lone-surrogate-key", "a key with a lone surrogate: UTF-16 key", ["object", [["\ud800", [
    "int",
    1,
  ]]]]],
  ["record", "a record (frozen object, a NamedTuple): name='example', value=99", [
    "record",
    [["name", ["str", "example"]], ["value", ["int", 99]]],
  ]],
  ["map", "Map { 1 => 'one', 'k' => [], null => 1.5 }", [
    "map",
    [
      [["int", 1], ["str", "one"]],
      [["str", "k"], ["array", []]],
      [["null"], ["float", 1.5]],
    ],
  ]],
  ["set", 'Set { 1, "x", 2n }', ["set", [["int", 1], ["str", "x"], ["bigint", "2"]]]],
  ["small-dict", "the reference's small message, with a 4-element array", [
    "object",
    [
      ["idx", ["int", 12345]],
      ["source", ["str", "actor_3"]],
      ["data", ["binary", "Float32Array", "0000803f000000400000404000008040"]],
    ],
  ]],
  ["nested", "arrays, objects, a map and an ndarray nested", [
    "object",
    [
      ["list", ["array", [["array", [["array", [["int", 1]]]]], ["object", [["x", [
        "str",
        "y",
      ]]]]]]],
      ["map", ["map", [[["tuple", [["int", 1], ["int", 2]]], ["set", [["undefined"]]]]]]],
      ["image", ["ndarray", "uint8", [2, 2, 1], "01020304"]],
      ["after", ["bool", false]],
    ],
  ]],
];

// Hand-assembled encodings: the bytes after the header, as hex. The header is added below.
const decodeOnly: [string, string, Notation, string][] = [
  [
    "int64-form-small",
    "5 in the int64 form (other encoders may do this)",
    ["int", 5],
    "060500000000000000",
  ],
  ["int64-beyond-safe", "2^63 - 1 in the int64 form: beyond 2^53, JavaScript gives a bigint", [
    "int",
    "9223372036854775807",
  ], "06ffffffffffffff7f"],
  ["int64-min", "-2^63 in the int64 form", ["int", "-9223372036854775808"], "060000000000000080"],
  ["bigint-non-minimal", "5n with a three-byte magnitude", ["bigint", "5"], "080003000000050000"],
  [
    "bigint-negative-zero",
    "sign 1 with a zero magnitude: 0n",
    ["bigint", "0"],
    "080101000000" + "00",
  ],
  ["string16-well-formed", '"ab" in the UTF-16 form', ["str", "ab"], "0a0200000061006200"],
  [
    "object-repeated-key",
    "{a: 1, a: 2}: the later entry wins",
    ["object", [["a", ["int", 2]]]],
    "120200000009010000006105010000000901000000610502000000",
  ],
  ["padding-not-zero", "padding bytes are skipped, whatever they hold", [
    "binary",
    "Uint8Array",
    "07",
  ], "20010100000000000000" + "ff".repeat(38) + "07"],
];

const invalid: [string, string, string, string][] = [
  ["short", "shorter than a header", "534d5143010000", "truncated header"],
  ["magic", "wrong magic", "00".repeat(16) + "01", "bad magic"],
  [
    "version",
    "version 2",
    "534d5143020000001100000000000000" + "01",
    "unsupported format version 2",
  ],
  ["reserved", "a nonzero reserved byte", "534d5143010100001100000000000000" + "01", "reserved"],
  [
    "length-beyond",
    "L larger than the region",
    "534d5143010000001200000000000000" + "01",
    "truncated: the header declares",
  ],
  ["length-empty", "L = 16: no value", "534d5143010000001000000000000000", "no value"],
  ["length-huge", "L above 2^53 - 1", "534d514301000000110000000000200001", "too large"],
  [
    "trailing",
    "the root value ends before L",
    "534d5143010000001300000000000000" + "010101",
    "trailing bytes",
  ],
];

function withHeader(bodyHex: string): string {
  const body = bodyHex.length / 2;
  const total = 16 + body;
  const header = new Uint8Array(16);
  header.set([0x53, 0x4d, 0x51, 0x43, 1]);
  new DataView(header.buffer).setUint32(8, total, true);
  return toHex(header) + bodyHex;
}

const invalidBodies: [string, string, string, string][] = [
  ["tag-unknown", "tag 0xFF", "ff", "unknown tag 0xff"],
  ["tag-zero", "tag 0x00", "00", "unknown tag 0x0"],
  ["hole-root", "a hole as the root", "0c", "a hole outside an array"],
  [
    "hole-in-object",
    "a hole as an object value",
    "120100000009010000006b0c",
    "a hole outside an array",
  ],
  ["int32-truncated", "an int32 with 3 bytes", "05010203", "truncated int32"],
  ["float64-truncated", "a float64 with 7 bytes", "0700000000000000", "truncated float64"],
  ["string-truncated", "a string longer than what is left", "0905000000616263", "truncated string"],
  [
    "string16-truncated",
    "a UTF-16 string with an odd byte left",
    "0a0100000061",
    "truncated string",
  ],
  ["utf8-invalid", "an invalid UTF-8 sequence", "0902000000c328", "invalid UTF-8"],
  ["utf8-overlong", "an overlong encoding of NUL", "0902000000c080", "invalid UTF-8"],
  ["utf8-surrogate", "a surrogate code point in UTF-8", "0903000000eda080", "invalid UTF-8"],
  ["utf8-beyond", "a code point above U+10FFFF", "0904000000f4908080", "invalid UTF-8"],
  [
    "count-too-large",
    "an array claiming 2^32 - 1 elements",
    "10ffffffff01",
    "exceeds the remaining bytes",
  ],
  [
    "object-count-too-large",
    "an object claiming more entries than bytes allow",
    "120200000009000000000a",
    "exceeds the remaining bytes",
  ],
  [
    "key-not-string",
    "an object key that is an int32",
    "12010000000501000000" + "01",
    "object key must be a string",
  ],
  ["bigint-sign", "a bigint sign byte of 2", "080200000000", "bad bigint sign"],
  ["bigint-truncated", "a bigint magnitude past the end", "080009000000ff", "truncated bigint"],
  [
    "binary-class",
    "an unknown binary class 0x0E",
    "200e0000000000000000",
    "unknown binary class 14",
  ],
  [
    "binary-length-multiple",
    "a Float32Array of 6 bytes",
    "20090600000000000000" + "00".repeat(38) + "000000000000",
    "not a multiple of 4",
  ],
  [
    "binary-truncated",
    "a payload past the end",
    "20010a00000000000000" + "00".repeat(38) + "0102",
    "truncated binary payload",
  ],
  [
    "binary-length-huge",
    "a byte length above 2^53 - 1",
    "2001ffffffffffff2000",
    "binary length too large",
  ],
  ["ndarray-dtype", "an unknown dtype code 0x0F", "210f00", "unknown dtype code 15"],
  ["ndarray-ndim", "65 dimensions", "210b41", "65 dimensions"],
  [
    "ndarray-truncated",
    "an ndarray whose payload would pass the end",
    "210b01ffffffff00000000" + "00".repeat(37) + "00000000",
    "truncated ndarray payload",
  ],
  ["dtype-unknown", "a dtype value with code 0", "2200", "unknown dtype code 0"],
];

const file = {
  format: "shmq codec v1 golden vectors; see codec/CODEC.md",
  valid: [
    ...valid.map(([name, description, value]): ValidVector => ({
      name,
      description,
      value,
      hex: toHex(encode(fromNotation(value))),
    })),
    ...decodeOnly.map(([name, description, value, body]): ValidVector => ({
      name,
      description,
      value,
      hex: withHeader(body),
      decodeOnly: true,
    })),
  ],
  invalid: [
    ...invalid.map(([name, description, hex, error]): InvalidVector => ({
      name,
      description,
      hex,
      error,
    })),
    ...invalidBodies.map(([name, description, body, error]): InvalidVector => ({
      name,
      description,
      hex: withHeader(body),
      error,
    })),
  ],
};

if (import.meta.main) {
  const url = new URL("../codec/vectors/v1.json", import.meta.url);
  await Deno.mkdir(new URL(".", url), { recursive: true });
  // One vector per line, so diffs stay readable.
  const list = (xs: object[]) => xs.map((x) => "    " + JSON.stringify(x)).join(",\n");
  const text = `{\n  "format": ${JSON.stringify(file.format)},\n` +
    `  "valid": [\n${list(file.valid)}\n  ],\n  "invalid": [\n${list(file.invalid)}\n  ]\n}\n`;
  await Deno.writeTextFile(url, text);
  console.log(
    `wrote ${file.valid.length} valid and ${file.invalid.length} invalid vectors to ${url.pathname}`,
  );
}
