/**
 * Element types of N-dimensional arrays, named as numpy names them, and the TypedArray classes
 * the codec knows.
 *
 * @module
 */

/**
 * Any TypedArray class instance the codec can carry. `Float16Array` is included when the
 * runtime has it (Deno 2 does).
 */
export type TypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float16Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/** A constructor of one of the {@linkcode TypedArray} classes. */
export type TypedArrayConstructor =
  | Int8ArrayConstructor
  | Uint8ArrayConstructor
  | Uint8ClampedArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | Float16ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor;

/** The dtype names, as numpy spells them (`np.dtype(name).name`). */
export type DTypeName =
  | "bool"
  | "int8"
  | "uint8"
  | "int16"
  | "uint16"
  | "int32"
  | "uint32"
  | "int64"
  | "uint64"
  | "float16"
  | "float32"
  | "float64"
  | "complex64"
  | "complex128";

/**
 * The TypedArray class that holds the elements of an array of each dtype. `bool` is stored as
 * one byte per element (0 or 1) in a `Uint8Array`; complex numbers as interleaved (real,
 * imaginary) pairs; `float16` in a `Float16Array`, or raw bits in a `Uint16Array` on runtimes
 * without `Float16Array`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type DTypeArrayMap, NdArray } from "../mod.ts";
 * const frame: NdArray<DTypeArrayMap["uint8"]> = NdArray.zeros("uint8", [2, 3]);
 * assert.ok(frame.data instanceof Uint8Array && frame.data.length === 6);
 * ```
 */
export interface DTypeArrayMap {
  /** One byte per element, 0 or 1. */
  bool: Uint8Array;
  /** Signed 8-bit integers. */
  int8: Int8Array;
  /** Unsigned 8-bit integers. */
  uint8: Uint8Array;
  /** Signed 16-bit integers. */
  int16: Int16Array;
  /** Unsigned 16-bit integers. */
  uint16: Uint16Array;
  /** Signed 32-bit integers. */
  int32: Int32Array;
  /** Unsigned 32-bit integers. */
  uint32: Uint32Array;
  /** Signed 64-bit integers. */
  int64: BigInt64Array;
  /** Unsigned 64-bit integers. */
  uint64: BigUint64Array;
  /** IEEE 754 half precision; raw bits in a `Uint16Array` where `Float16Array` is missing. */
  float16: Float16Array | Uint16Array;
  /** IEEE 754 single precision. */
  float32: Float32Array;
  /** IEEE 754 double precision. */
  float64: Float64Array;
  /** Pairs of float32 (real, imaginary): two array elements per value. */
  complex64: Float32Array;
  /** Pairs of float64 (real, imaginary): two array elements per value. */
  complex128: Float64Array;
}

/**
 * The dtype names whose elements a `T` can hold: every name for the default `TypedArray`,
 * `"float32" | "complex64"` for `Float32Array`. `NdArray<T>`'s constructor takes only these,
 * so a dtype name and the array type a variable promises cannot disagree.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { DTypeNameFor } from "../mod.ts";
 * const name: DTypeNameFor<Float64Array> = "complex128"; // or "float64"
 * assert.ok(name === "complex128");
 * ```
 */
export type DTypeNameFor<T extends TypedArray> = {
  // By class name: `Int32Array<ArrayBuffer>` (what `new Int32Array(3)` is) holds int32 too.
  [K in DTypeName]: [
    Extract<DTypeArrayMap[K][typeof Symbol.toStringTag], T[typeof Symbol.toStringTag]>,
  ] extends [never] ? never
    : K;
}[DTypeName];

/** Whether this runtime has `Float16Array`. */
export const HAS_FLOAT16: boolean = typeof (globalThis as { Float16Array?: unknown })
  .Float16Array === "function";

const Float16Ctor: Float16ArrayConstructor | Uint16ArrayConstructor = HAS_FLOAT16
  ? Float16Array
  : Uint16Array;

const token = Symbol("DType");
const byName = new Map<string, DType>();
const byCode: (DType | undefined)[] = [];
/** Every DType there is (they are interned): what `isDType` accepts. */
const interned = new Set<unknown>();

/**
 * An element type of an {@linkcode NdArray}. Instances are interned: get them with
 * {@linkcode dtype}, and compare them with `===`. A `DType` is itself a value the codec can
 * carry (numpy's `np.dtype`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dtype } from "./dtype.ts";
 * const f = dtype("float32");
 * assert.ok(f.itemSize === 4 && f.kind === "f" && f.arrayType === Float32Array);
 * assert.ok(dtype("float32") === f);
 * ```
 */
export class DType {
  /** The numpy name, e.g. `"float32"`. */
  readonly name: DTypeName;
  /** Bytes per array element (numpy's `itemsize`): 8 for `complex64`, 1 for `bool`. */
  readonly itemSize: number;
  /** numpy's kind character: `b` bool, `i` signed, `u` unsigned, `f` float, `c` complex. */
  readonly kind: "b" | "i" | "u" | "f" | "c";
  /** The dtype's code in the byte format (see codec/CODEC.md). */
  readonly code: number;
  /** The TypedArray class that holds the elements (see {@linkcode DTypeArrayMap}). */
  readonly arrayType: TypedArrayConstructor;
  /** TypedArray elements per array element: 2 for complex dtypes, else 1. */
  readonly lanes: number;

  /** Not callable from outside: use {@linkcode dtype}. */
  private constructor(
    secret: symbol,
    name: DTypeName,
    code: number,
    itemSize: number,
    kind: "b" | "i" | "u" | "f" | "c",
    arrayType: TypedArrayConstructor,
  ) {
    if (secret !== token) throw new TypeError("use dtype(name) to get a DType");
    this.name = name;
    this.code = code;
    this.itemSize = itemSize;
    this.kind = kind;
    this.arrayType = arrayType;
    this.lanes = kind === "c" ? 2 : 1;
    Object.freeze(this);
  }

  /** How `console.log` shows a dtype: by its name (`DType(float32)`), not its fields. */
  [Symbol.for("Deno.customInspect")](): string {
    return `DType(${this.name})`;
  }

  static {
    const add = (
      name: DTypeName,
      code: number,
      itemSize: number,
      kind: "b" | "i" | "u" | "f" | "c",
      arrayType: TypedArrayConstructor,
    ) => {
      const d = new DType(token, name, code, itemSize, kind, arrayType);
      byName.set(name, d);
      byCode[code] = d;
      interned.add(d);
    };
    add("bool", 1, 1, "b", Uint8Array);
    add("int8", 2, 1, "i", Int8Array);
    add("uint8", 3, 1, "u", Uint8Array);
    add("int16", 4, 2, "i", Int16Array);
    add("uint16", 5, 2, "u", Uint16Array);
    add("int32", 6, 4, "i", Int32Array);
    add("uint32", 7, 4, "u", Uint32Array);
    add("int64", 8, 8, "i", BigInt64Array);
    add("uint64", 9, 8, "u", BigUint64Array);
    add("float16", 10, 2, "f", Float16Ctor);
    add("float32", 11, 4, "f", Float32Array);
    add("float64", 12, 8, "f", Float64Array);
    add("complex64", 13, 8, "c", Float32Array);
    add("complex128", 14, 16, "c", Float64Array);
  }

  /** The numpy name. */
  toString(): string {
    return this.name;
  }

  /** The numpy name, so that `JSON.stringify` shows something useful. */
  toJSON(): string {
    return this.name;
  }
}

/**
 * The interned {@linkcode DType} for a numpy dtype name. Throws a `TypeError` for unknown names.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dtype } from "./dtype.ts";
 * assert.ok(dtype("int64").itemSize === 8);
 * assert.ok(dtype("bool").arrayType === Uint8Array);
 * ```
 */
export function dtype(name: DTypeName): DType {
  const d = byName.get(name);
  if (d === undefined) {
    // A constructor (Float32Array) shows by its name, not by its source.
    const fn = typeof name === "function" ? (name as { name?: string }).name || "anonymous" : "";
    const alias = typeof name === "string" ? NUMPY_ALIASES[name] : undefined;
    const shownName = fn !== ""
      ? `${fn} (a function; dtype names are strings such as "float32")`
      : alias !== undefined
      ? `${JSON.stringify(name)} (numpy's other name for "${alias}")`
      : JSON.stringify(String(name));
    throw new TypeError(
      `unknown dtype ${shownName}; the names are ${[...byName.keys()].join(", ")}`,
    );
  }
  return d;
}

/** numpy's other spellings of the dtypes (`np.dtype("bool_")`, `"f4"`), for an error that says
 * which name to use: the names stay one per dtype, as the type `DTypeName` lists them. */
const NUMPY_ALIASES: Readonly<Record<string, DTypeName>> = Object.assign(Object.create(null), {
  bool_: "bool",
  "?": "bool",
  b1: "bool",
  i1: "int8",
  byte: "int8",
  u1: "uint8",
  ubyte: "uint8",
  i2: "int16",
  short: "int16",
  u2: "uint16",
  ushort: "uint16",
  i4: "int32",
  intc: "int32",
  u4: "uint32",
  uintc: "uint32",
  i8: "int64",
  int_: "int64",
  long: "int64",
  longlong: "int64",
  u8: "uint64",
  uint: "uint64",
  ulong: "uint64",
  ulonglong: "uint64",
  f2: "float16",
  half: "float16",
  f4: "float32",
  single: "float32",
  f8: "float64",
  float_: "float64",
  double: "float64",
  c8: "complex64",
  csingle: "complex64",
  c16: "complex128",
  complex_: "complex128",
  cdouble: "complex128",
});

/** The dtype with a format code, or undefined. Internal to the codec. */
export function dtypeByCode(code: number): DType | undefined {
  return byCode[code];
}

/** Whether `value` is one of the DTypes (not an object made with `DType.prototype`): checked
 * without reading any property of it. */
export function isDType(value: unknown): value is DType {
  return interned.has(value);
}
