/**
 * Placeholders for the zero-copy write path: a value that encodes like an array of a given
 * type and size, without copying any element, so that the caller can fill the payload in
 * place afterwards.
 *
 * @module
 */

import {
  type DType,
  dtype,
  dtypeByCode,
  type DTypeName,
  HAS_FLOAT16,
  isDType,
  type TypedArrayConstructor,
} from "./dtype.ts";
import { B_ARRAYBUFFER, B_DATAVIEW } from "./format.ts";
import { shapeSize } from "./ndarray.ts";

/** The dtype of a TypedArray class, for the hint when a shape comes with the class: bytes
 * for the byte classes that have none of their own. */
function dtypeNameOf(ctor: unknown): DTypeName {
  for (let code = 0; code < 64; code++) {
    const d = dtypeByCode(code);
    if (d !== undefined && d.arrayType === ctor && d.lanes === 1 && d.kind !== "b") return d.name;
  }
  return "uint8";
}

/** The classes {@linkcode reserve} accepts besides a dtype: TypedArrays, ArrayBuffer, DataView
 * (`prepare` refuses an ArrayBuffer placeholder: reserve a `Uint8Array`). */
export type ReservableConstructor =
  | TypedArrayConstructor
  | ArrayBufferConstructor
  | DataViewConstructor;

const token = Symbol("Reservation");

/** Binary class code of each constructor (see CODEC.md, tag 0x20). */
export function binaryClassCode(ctor: unknown): number {
  switch (ctor) {
    case ArrayBuffer:
      return B_ARRAYBUFFER;
    case Uint8Array:
      return 1;
    case Int8Array:
      return 2;
    case Uint8ClampedArray:
      return 3;
    case Int16Array:
      return 4;
    case Uint16Array:
      return 5;
    case Int32Array:
      return 6;
    case Uint32Array:
      return 7;
    case Float32Array:
      return 9;
    case Float64Array:
      return 10;
    case BigInt64Array:
      return 11;
    case BigUint64Array:
      return 12;
    case DataView:
      return B_DATAVIEW;
  }
  if (HAS_FLOAT16 && ctor === Float16Array) return 8;
  return -1;
}

/** Every Reservation `reserve` made: what `isReservation` accepts. */
const made = new WeakSet<object>();

/** Whether `value` was made by {@linkcode reserve} (not an object made with its prototype). */
export function isReservation(value: unknown): value is Reservation {
  return typeof value === "object" && value !== null && made.has(value);
}

// Set by the static block of Reservation: the only way to construct one.
let makeReservation: (
  dt: DType | null,
  shape: readonly number[] | null,
  ctor: ReservableConstructor | null,
  length: number,
  byteLength: number,
) => Reservation;

/**
 * A placeholder leaf made by {@linkcode reserve}. It encodes exactly like the value it stands
 * for (an `NdArray` of `dtype` and `shape`, or a `ctor` instance of `length` elements) but the
 * encoder leaves the payload bytes untouched; decoding gives back an ordinary value of that
 * kind. With `Sender.prepare`, the draft's `value` holds, in its place, the array to fill in
 * shared memory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { reserve } from "./reserve.ts";
 * const r = reserve("float32", [480, 640, 3]);
 * assert.ok(r.byteLength === 480 * 640 * 3 * 4);
 * ```
 */
export class Reservation {
  /** The dtype when this stands for an `NdArray`, else null. */
  readonly dtype: DType | null;
  /** The shape when this stands for an `NdArray`, else null. */
  readonly shape: readonly number[] | null;
  /** The class when this stands for a TypedArray, ArrayBuffer or DataView, else null. */
  readonly ctor: ReservableConstructor | null;
  /** Element count for a class (bytes for ArrayBuffer and DataView); element count of the shape. */
  readonly length: number;
  /** Bytes of payload. */
  readonly byteLength: number;

  /** Not callable from outside: use {@linkcode reserve}. */
  private constructor(
    secret: symbol,
    dt: DType | null,
    shape: readonly number[] | null,
    ctor: ReservableConstructor | null,
    length: number,
    byteLength: number,
  ) {
    if (secret !== token) throw new TypeError("use reserve() to make a Reservation");
    this.dtype = dt;
    this.shape = shape;
    this.ctor = ctor;
    this.length = length;
    this.byteLength = byteLength;
    Object.freeze(this);
  }

  static {
    makeReservation = (dt, shape, ctor, length, byteLength) => {
      const r = new Reservation(token, dt, shape, ctor, length, byteLength);
      made.add(r);
      return r;
    };
  }
}

/**
 * Reserves room for an array in a message without providing its elements: a placeholder for
 * `Sender.prepare`, which allocates the array in shared memory for the caller to fill in place
 * before `draft.send()` (no copy). Two forms:
 *
 * - `reserve(dtype, shape)` stands for an `NdArray` of that dtype and shape;
 * - `reserve(ctor, length)` stands for an instance of a TypedArray class with `length`
 *   elements, or a `DataView` of `length` bytes.
 *
 * Throws a `TypeError` or `RangeError` for an unknown class or dtype or an invalid size.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, type NdArray, reserve } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * const draft = sender.prepareSync<{ step: number; frame: NdArray<Uint8Array> }>({
 *   step: 7,
 *   frame: reserve("uint8", [2, 2]),
 * });
 * draft.value.frame.data.set([1, 2, 3, 4]); // written straight into shared memory
 * draft.send();
 * const back = receiver.getSync<{ step: number; frame: NdArray<Uint8Array> }>();
 * assert.ok(back.frame.data[3] === 4);
 * sender.close();
 * receiver.close();
 * ```
 */
export function reserve(dtype: DType | DTypeName, shape: readonly number[]): Reservation;
/** Reserves a TypedArray of `length` elements, or a DataView of `length` bytes.
 * `reserve(ArrayBuffer, n)` makes a placeholder too, but `prepare` refuses it (an
 * ArrayBuffer cannot view shared memory): reserve a `Uint8Array` instead. */
export function reserve(ctor: ReservableConstructor, length: number): Reservation;
export function reserve(
  kind: DType | DTypeName | ReservableConstructor,
  size: readonly number[] | number,
): Reservation {
  if (typeof kind === "string" || isDType(kind)) {
    const dt = typeof kind === "string" ? dtype(kind) : kind;
    if (!Array.isArray(size)) throw new TypeError("reserve(dtype, shape): shape must be an array");
    const shape = Object.freeze((size as readonly number[]).slice());
    const n = shapeSize(shape);
    const byteLength = n * dt.itemSize;
    if (!Number.isSafeInteger(byteLength)) {
      throw new RangeError(
        `reserve(dtype, shape): shape [${shape.join(", ")}] is too large (${n} × ` +
          `${dt.itemSize} bytes is past 2^53)`,
      );
    }
    return makeReservation(dt, shape, null, n, byteLength);
  }
  const code = binaryClassCode(kind);
  if (code < 0) {
    throw new TypeError(
      "reserve(ctor, length): ctor must be a TypedArray class, ArrayBuffer or DataView",
    );
  }
  if (Array.isArray(size)) {
    // A shape belongs to an N-d array, which is described by a dtype.
    const shape = `[${size.join(", ")}]`;
    throw new TypeError(
      `reserve(${(kind as { name?: string }).name ?? "ctor"}, length): length must be a ` +
        `number; for an N-d array of shape ${shape}, pass its dtype: ` +
        `reserve("${dtypeNameOf(kind)}", ${shape})`,
    );
  }
  if (typeof size !== "number" || !Number.isInteger(size) || size < 0) {
    const shown = typeof size === "number" ? String(size) : typeof size;
    throw new RangeError(
      `reserve(ctor, length): length must be a non-negative integer, got ${shown}`,
    );
  }
  const per = (kind as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
  const byteLength = size * per;
  if (!Number.isSafeInteger(byteLength)) {
    throw new RangeError(
      `reserve(ctor, length): length ${size} is too large (${size} × ${per} bytes is past 2^53)`,
    );
  }
  return makeReservation(null, null, kind, size, byteLength);
}

/**
 * The class that decodes from each binary class code (index = code). Float16 falls back to
 * Uint16Array (raw bits) on runtimes without Float16Array. Internal to the codec.
 */
export const BINARY_CTORS: readonly ReservableConstructor[] = [
  ArrayBuffer,
  Uint8Array,
  Int8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  HAS_FLOAT16 ? Float16Array : Uint16Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
];
