/**
 * Constants of the byte format specified in codec/CODEC.md. Internal to the codec.
 *
 * @module
 */

/** The four magic bytes "SMQC" at offset 0. */
export const MAGIC = [0x53, 0x4d, 0x51, 0x43] as const;
/** The format version at offset 4. */
export const VERSION = 1;
/** Bytes of the header; the root value starts here. */
export const HEADER_SIZE = 16;
/** Array payloads start at a multiple of this, counted from the start of the encoding. */
export const ALIGN = 64;
/** Most dimensions an ndarray may have (numpy 2's limit). */
export const MAX_NDIM = 64;
/** Largest element count of a container, and largest string length in bytes. */
export const MAX_COUNT = 0xffffffff;

/** Tag bytes: the first byte of every encoded value. */
export const T_NULL = 0x01;
/** `undefined`. */
export const T_UNDEFINED = 0x02;
/** `false`. */
export const T_FALSE = 0x03;
/** `true`. */
export const T_TRUE = 0x04;
/** Integer number in int32 range: i32. */
export const T_INT32 = 0x05;
/** Other safe integer number: i64. */
export const T_INT64 = 0x06;
/** Any other number: f64. */
export const T_FLOAT64 = 0x07;
/** bigint: u8 sign, u32 n, n magnitude bytes little-endian. */
export const T_BIGINT = 0x08;
/** string as UTF-8: u32 byte length, bytes. */
export const T_STRING = 0x09;
/** string as UTF-16LE code units: u32 unit count, 2*count bytes. */
export const T_STRING16 = 0x0a;
/** Date: f64 time value (NaN for an invalid date). */
export const T_DATE = 0x0b;
/** A hole of a sparse array; valid only as an element of an array or tuple. */
export const T_HOLE = 0x0c;
/** Array: u32 count, items. */
export const T_ARRAY = 0x10;
/** Tuple (frozen Array): u32 count, items. */
export const T_TUPLE = 0x11;
/** Plain object: u32 count, (string key, value) pairs. */
export const T_OBJECT = 0x12;
/** Object with a null prototype: like T_OBJECT. */
export const T_OBJECT_NULL = 0x13;
/** Record (frozen plain object / NamedTuple): like T_OBJECT. */
export const T_RECORD = 0x14;
/** Map: u32 count, (key, value) pairs. */
export const T_MAP = 0x15;
/** Set: u32 count, items. */
export const T_SET = 0x16;
/** Binary (ArrayBuffer, TypedArray, DataView): u8 class, u64 byte length, pad, payload. */
export const T_BINARY = 0x20;
/** N-d array: u8 dtype, u8 ndim, ndim x u64 dims, pad, payload. */
export const T_NDARRAY = 0x21;
/** dtype: u8 dtype code. */
export const T_DTYPE = 0x22;

/** Binary class codes (the byte after T_BINARY). */
export const B_ARRAYBUFFER = 0;
/** Uint8Array. */
export const B_UINT8 = 1;
/** DataView. */
export const B_DATAVIEW = 13;
/** Number of binary class codes (codes are 0 .. B_COUNT-1). */
export const B_COUNT = 14;

/** Element sizes of each binary class code. */
export const B_ELEMENT_SIZE: readonly number[] = [1, 1, 1, 1, 2, 2, 4, 4, 2, 4, 8, 8, 8, 1];

/** Names of each binary class code, as in CODEC.md. */
export const B_NAMES: readonly string[] = [
  "ArrayBuffer",
  "Uint8Array",
  "Int8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "Float16Array",
  "Float32Array",
  "Float64Array",
  "BigInt64Array",
  "BigUint64Array",
  "DataView",
];
