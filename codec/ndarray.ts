/**
 * N-dimensional arrays: a dtype, a shape and a flat TypedArray of elements in C order.
 *
 * @module
 */

import {
  type DType,
  dtype,
  type DTypeArrayMap,
  type DTypeName,
  type DTypeNameFor,
  isDType,
  type TypedArray,
} from "./dtype.ts";
import { MAX_NDIM } from "./format.ts";

/**
 * Checks a shape (non-negative safe integers, at most 64 dimensions) and returns its element
 * count. Throws a `RangeError` otherwise. Internal to the codec.
 */
export function shapeSize(shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw new TypeError("shape must be an array of integers");
  if (shape.length > MAX_NDIM) {
    throw new RangeError(`shape has ${shape.length} dimensions; at most ${MAX_NDIM} are supported`);
  }
  let size = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (!Number.isSafeInteger(d) || d < 0) {
      const shown = typeof d === "string" ? `the string ${JSON.stringify(d)}` : String(d);
      throw new RangeError(`shape[${i}] = ${shown} is not a non-negative integer`);
    }
    size *= d;
    // Checked as each dimension is read (CODEC.md): a later 0 does not make a product past
    // 2^53 - 1 valid.
    if (size > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`shape [${shape}] has too many elements`);
    }
  }
  return size;
}

/**
 * An N-dimensional array, the counterpart of numpy's `ndarray`: a {@linkcode DType}, a shape,
 * and the elements in C (row-major) order in a TypedArray of the dtype's
 * {@linkcode DType.arrayType} class. `bool` elements are bytes (0 or 1) in a `Uint8Array`;
 * complex elements are interleaved (real, imaginary) pairs, so `data.length` is twice the
 * element count; `float16` uses `Float16Array` (or a `Uint16Array` of raw bits where the
 * runtime has no `Float16Array`).
 *
 * The constructor checks that `data` has the right class and exactly
 * `product(shape) * lanes` elements; without `data` it allocates zeros. The shape is frozen.
 * TypeScript types `data` from `data` or from the array type asked for; for zeros typed by
 * the dtype name, use {@linkcode NdArray.zeros}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NdArray } from "./ndarray.ts";
 * const img = NdArray.zeros("float32", [2, 3]); // img.data: Float32Array
 * img.data[1 * 3 + 2] = 1.5; // element [1, 2]
 * assert.ok(img.size === 6 && img.ndim === 2 && img.data.at(-1) === 1.5);
 *
 * const labels = new NdArray("int32", [3], new Int32Array([7, 8, 9]));
 * assert.ok(labels.data[2] === 9);
 * ```
 */
export class NdArray<T extends TypedArray = TypedArray> {
  /** The element type. */
  readonly dtype: DType;
  /** The dimensions (frozen). An empty shape is a 0-d array (a scalar) with one element. */
  readonly shape: readonly number[];
  /** The elements in C order (see the class description for bool, complex and float16). */
  readonly data: T;

  /**
   * Makes an array of `dtype` and `shape` over `data`, or over fresh zeros when `data` is
   * omitted. Throws a `TypeError` when `data` has the wrong class, a `RangeError` when its
   * length does not match the shape.
   */
  constructor(dtype: DType | DTypeNameFor<T>, shape: readonly number[], data?: T) {
    const dt = typeof dtype === "string" ? dtypeOf(dtype) : dtype;
    if (!isDType(dt)) throw new TypeError("dtype must be a DType or a dtype name");
    const size = shapeSize(shape);
    const length = size * dt.lanes;
    let d: TypedArray;
    if (data === undefined) {
      d = new dt.arrayType(length);
    } else {
      if (Object.getPrototypeOf(data) !== dt.arrayType.prototype) {
        throw new TypeError(wrongDataClass(dt, data));
      }
      d = data;
      if (d.length !== length) throw new RangeError(wrongDataLength(d.length, shape, dt));
    }
    this.dtype = dt;
    this.shape = Object.freeze(shape.slice());
    this.data = d as T;
  }

  /** Number of elements: the product of the shape (1 for a 0-d array). */
  get size(): number {
    return this.data.length / this.dtype.lanes;
  }

  /** Number of dimensions. */
  get ndim(): number {
    return this.shape.length;
  }

  /** Bytes of the elements: `size * dtype.itemSize`. */
  get byteLength(): number {
    return this.data.byteLength;
  }

  /**
   * A zero-filled array with the TypedArray class that belongs to the dtype.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { NdArray } from "./ndarray.ts";
   * const a = NdArray.zeros("int64", [2, 2]);
   * const first: bigint = a.data[0]; // data is a BigInt64Array
   * assert.ok(first === 0n);
   * ```
   */
  static zeros<N extends DTypeName>(name: N, shape: readonly number[]): NdArray<DTypeArrayMap[N]> {
    return new NdArray<DTypeArrayMap[N]>(dtypeOf(name), shape);
  }
}

function dtypeOf(name: DTypeName): DType {
  return dtype(name);
}

/** Why `data` cannot be the elements of a `dt` array: not of its class. (Also encode's words
 * for an NdArray whose `data` was changed since.) */
export function wrongDataClass(dt: DType, data: unknown): string {
  return `data of a ${dt.name} array must be a ${dt.arrayType.name}, not ${describe(data)}`;
}

/** Why data of `elements` elements cannot be those of a `dt` array of `shape`. */
export function wrongDataLength(elements: number, shape: readonly number[], dt: DType): string {
  return `data has ${elements} elements; shape [${shape}] of ${dt.name} needs ${
    shapeSize(shape) * dt.lanes
  }`;
}

/** What `x` is, for an error message: "null", its type, or "a ClassName". */
export function describe(x: unknown): string {
  if (x === null) return "null";
  if (typeof x !== "object") return typeof x;
  const c = (x as { constructor?: { name?: unknown } }).constructor;
  if (typeof c?.name !== "string") return "an object";
  return `${/^[AEIOU]/.test(c.name) ? "an" : "a"} ${c.name}`;
}
