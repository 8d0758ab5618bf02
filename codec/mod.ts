/**
 * The codec: the nested data model of shmq to bytes and back. Values are measured first
 * ({@linkcode planEncode}), then written straight into a caller-given region
 * ({@linkcode encodeInto}), with array payloads 64-byte aligned so the receiver can view them
 * in place ({@linkcode decode} with `{ view: true }`). The byte layout is specified in
 * `codec/CODEC.md`.
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { decode, encode, NdArray } from "./mod.ts";
 * const msg = { idx: 12345, source: "actor_3", obs: new NdArray("float32", [4, 84, 84]) };
 * const back = decode(encode(msg)) as typeof msg;
 * assert.ok(back.obs.shape[2] === 84 && back.source === "actor_3");
 * ```
 *
 * @module
 */

export { DType, dtype } from "./dtype.ts";
export type {
  DTypeArrayMap,
  DTypeName,
  DTypeNameFor,
  TypedArray,
  TypedArrayConstructor,
} from "./dtype.ts";
export { NdArray } from "./ndarray.ts";
export { Reservation, reserve } from "./reserve.ts";
export type { ReservableConstructor } from "./reserve.ts";
export { encode, encodeInto, planEncode, reservedView } from "./encode.ts";
export type { EncodePlan, ReservedSlot } from "./encode.ts";
export { decode } from "./decode.ts";
export type { DecodeOptions } from "./decode.ts";
