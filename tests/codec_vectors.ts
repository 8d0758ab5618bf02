/**
 * The typed JSON notation of the golden vectors (see codec/CODEC.md), to and from JavaScript
 * values.
 *
 * @module
 */

import { dtype, type DTypeName, NdArray } from "../codec/mod.ts";
import { fromHex, toHex } from "./codec_helpers.ts";

/** A value in the notation of codec/vectors/v1.json. */
export type Notation = [string, ...unknown[]];

/** One valid vector. */
export interface ValidVector {
  name: string;
  description: string;
  value: Notation;
  hex: string;
  decodeOnly?: boolean;
}

/** One invalid vector. */
export interface InvalidVector {
  name: string;
  description: string;
  hex: string;
  error: string;
}

/** The vectors file. */
export interface VectorFile {
  format: string;
  valid: ValidVector[];
  invalid: InvalidVector[];
}

const CLASSES: Record<string, new (b: ArrayBuffer) => ArrayBufferView> = {
  Uint8Array,
  Int8Array,
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
  DataView,
};

function float(x: unknown): number {
  if (typeof x === "number") return x;
  switch (x) {
    case "NaN":
      return NaN;
    case "-0":
      return -0;
    case "Infinity":
      return Infinity;
    case "-Infinity":
      return -Infinity;
  }
  throw new Error(`bad float ${String(x)}`);
}

/** The JavaScript value a notation stands for. */
export function fromNotation(n: Notation): unknown {
  const [kind, a, b, c] = n;
  switch (kind) {
    case "null":
      return null;
    case "undefined":
      return undefined;
    case "bool":
      return a as boolean;
    case "int": {
      if (typeof a === "number") return a;
      const big = BigInt(a as string);
      return big >= -(2n ** 53n - 1n) && big <= 2n ** 53n - 1n ? Number(big) : big;
    }
    case "float":
      return float(a);
    case "bigint":
      return BigInt(a as string);
    case "str":
      return a as string;
    case "date":
      return new Date(float(a));
    case "binary": {
      const bytes = fromHex(b as string);
      if (a === "ArrayBuffer") return bytes.buffer;
      return new CLASSES[a as string](bytes.buffer);
    }
    case "ndarray": {
      const dt = dtype(a as DTypeName);
      const bytes = fromHex(c as string);
      const C = dt.arrayType as unknown as new (b: ArrayBuffer) => Float32Array;
      return new NdArray(dt, b as number[], new C(bytes.buffer));
    }
    case "dtype":
      return dtype(a as DTypeName);
    case "array":
    case "tuple": {
      const items = a as Notation[];
      const out: unknown[] = [];
      for (const item of items) {
        if (item[0] === "hole") out.length++;
        else out.push(fromNotation(item));
      }
      return kind === "tuple" ? Object.freeze(out) : out;
    }
    case "object":
    case "object_null":
    case "record": {
      const o: Record<string, unknown> = kind === "object_null" ? Object.create(null) : {};
      for (const [k, v] of a as [string, Notation][]) {
        Object.defineProperty(o, k, {
          value: fromNotation(v),
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
      return kind === "record" ? Object.freeze(o) : o;
    }
    case "map":
      return new Map(
        (a as [Notation, Notation][]).map(([k, v]) => [fromNotation(k), fromNotation(v)]),
      );
    case "set":
      return new Set((a as Notation[]).map(fromNotation));
  }
  throw new Error(`unknown notation ${JSON.stringify(n)}`);
}

/** The notation of a JavaScript value (the inverse of {@linkcode fromNotation}). */
export function toNotation(v: unknown): Notation {
  switch (typeof v) {
    case "undefined":
      return ["undefined"];
    case "boolean":
      return ["bool", v];
    case "number":
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) return ["int", v];
      if (Number.isNaN(v) || !Number.isFinite(v) || Object.is(v, -0)) {
        return ["float", String(v === 0 ? "-0" : v)];
      }
      return ["float", v];
    case "bigint":
      return ["bigint", v.toString()];
    case "string":
      return ["str", v];
  }
  if (v === null) return ["null"];
  if (v instanceof Date) {
    const t = v.getTime();
    return ["date", Number.isNaN(t) ? "NaN" : t];
  }
  if (v instanceof ArrayBuffer) return ["binary", "ArrayBuffer", toHex(new Uint8Array(v))];
  if (ArrayBuffer.isView(v)) {
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    return ["binary", v.constructor.name, toHex(bytes)];
  }
  if (v instanceof NdArray) {
    const d = v.data;
    return [
      "ndarray",
      v.dtype.name,
      [...v.shape],
      toHex(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)),
    ];
  }
  if (typeof v === "object" && v !== null && "itemSize" in v && "name" in v) {
    return ["dtype", String((v as { name: string }).name)];
  }
  if (Array.isArray(v)) {
    const items: Notation[] = [];
    for (let i = 0; i < v.length; i++) items.push(i in v ? toNotation(v[i]) : ["hole"]);
    return [Object.isFrozen(v) ? "tuple" : "array", items];
  }
  if (v instanceof Map) return ["map", [...v].map(([k, x]) => [toNotation(k), toNotation(x)])];
  if (v instanceof Set) return ["set", [...v].map(toNotation)];
  const o = v as Record<string, unknown>;
  const entries = Object.keys(o).map((k) => [k, toNotation(o[k])]);
  if (Object.getPrototypeOf(o) === null) return ["object_null", entries];
  return [Object.isFrozen(o) ? "record" : "object", entries];
}
