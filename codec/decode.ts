/**
 * The decoder: bytes (as written by `encodeInto`) back to a value, bounds-checked
 * throughout. Malformed input of any kind throws a {@linkcode DecodeError}.
 *
 * @module
 */

import { DecodeError } from "../queue/errors.ts";
import { refuseUnknownOptions } from "../queue/option_names.ts";
import { shown } from "../queue/shown.ts";
import { arrayBufferLength, isDetached } from "./array_buffer.ts";
import { copyBytes, STREAMING_COPY_BYTES } from "./bulk_copy.ts";
import { dtypeByCode, type TypedArray } from "./dtype.ts";
import {
  ALIGN,
  B_ARRAYBUFFER,
  B_COUNT,
  B_DATAVIEW,
  B_ELEMENT_SIZE,
  HEADER_SIZE,
  MAGIC,
  MAX_NDIM,
  T_ARRAY,
  T_BIGINT,
  T_BINARY,
  T_DATE,
  T_DTYPE,
  T_FALSE,
  T_FLOAT64,
  T_HOLE,
  T_INT32,
  T_INT64,
  T_MAP,
  T_NDARRAY,
  T_NULL,
  T_OBJECT,
  T_OBJECT_NULL,
  T_RECORD,
  T_SET,
  T_STRING,
  T_STRING16,
  T_TRUE,
  T_TUPLE,
  T_UNDEFINED,
  VERSION,
} from "./format.ts";
import { NdArray } from "./ndarray.ts";
import { BINARY_CTORS } from "./reserve.ts";

/** Options of {@linkcode decode}. */
export interface DecodeOptions {
  /**
   * When true, array payloads (TypedArray, DataView and NdArray data) are views into
   * `bytes.buffer` instead of copies, wherever the payload's address suits the element size
   * (it always does when `bytes.byteOffset` is a multiple of 8). `ArrayBuffer` values are
   * always copied. Default false: the result owns all its memory (but for the arrays a
   * `pooled` decode puts in shared slabs).
   */
  view?: boolean;
  /**
   * Makes the ArrayBuffer that each copied payload goes into, given its byte length: every
   * payload in copy mode, and in view mode the ones that are copied all the same
   * (`ArrayBuffer` values, and payloads whose address does not suit their element size);
   * with `pooled`, only those not put in a slab. It
   * must return a fresh, unshared ArrayBuffer of exactly that length. The queue uses it to
   * ready large targets (huge pages, pre-faulted) before the copy. Default: a new ArrayBuffer.
   */
  allocate?: (byteLength: number) => ArrayBuffer;
  /**
   * When true, copied arrays of 1 byte to 2 KiB (TypedArray, DataView and NdArray data; never
   * `ArrayBuffer` values) go into slices of shared 32 KiB ArrayBuffers instead of a fresh
   * ArrayBuffer each, as Node pools small Buffers: a fresh ArrayBuffer costs Deno 0.6-1 µs,
   * several times the rest of a small decode. Such an array's `buffer` then holds other
   * arrays too, of this decode and of earlier ones in this isolate (any queue's): mind its
   * `byteOffset`, and never hand the buffer itself to code that should not see those bytes.
   * `slice()` the array before transferring its buffer (a transfer would detach the others),
   * or sending it elsewhere with `postMessage` or `structuredClone` (which would copy the
   * whole slab, other messages' bytes included). A slab stays in memory while any array in
   * it does. Larger arrays go to `allocate`, or a new ArrayBuffer. Default false.
   */
  pooled?: boolean;
}

/**
 * {@linkcode decodeBytes}'s options: {@linkcode decode}'s, and one the queue's receiver uses.
 */
export interface DecodeBytesOptions extends DecodeOptions {
  /**
   * Payloads smaller than this are copied as without `allocate`: the receiver readies only
   * the largest targets, and the others are made faster by the codec (see
   * {@linkcode copied}). Default 0: `allocate` makes every copy's buffer.
   */
  allocateFrom?: number;
  /**
   * Called with the byte length of each copy the codec made itself, not through `allocate`,
   * once it is made (the receiver nudges the collector for the large ones, as its `allocate`
   * did for each before).
   */
  copiedByCodec?: (byteLength: number) => void;
}

/** The largest array a pooled decode copies into a shared slab (see `DecodeOptions.pooled`). */
const POOLED_MAX_BYTES = 2048;

// Frame kinds of the explicit decode stack.
const F_ARRAY = 0;
const F_TUPLE = 1;
const F_OBJECT = 2;
const F_RECORD = 3;
const F_MAP = 4;
const F_SET = 5;

class DecodeStack {
  readonly kind: number[] = [];
  readonly obj: unknown[] = [];
  readonly left: number[] = [];
  readonly key: unknown[] = [];
}

let freeStack: DecodeStack | null = new DecodeStack();

const HOLE: unique symbol = Symbol("hole");

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const scratch = new DataView(new ArrayBuffer(8));
/** ASCII hex digits, and a decoder that makes one flat string of them. */
const HEX_DIGITS = new TextEncoder().encode("0123456789abcdef");
const latin1 = new TextDecoder("latin1");
/** V8 limits: a BigInt has at most 2^30 bits, a string at most 2^29 - 24 code units. */
const MAX_BIGINT_BYTES = 2 ** 27;
const MAX_STRING_LENGTH = 2 ** 29 - 24;

function fail(msg: string, at: number): never {
  throw new DecodeError(`${msg} at byte ${at}`);
}

function u32(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}

function i32(b: Uint8Array, p: number): number {
  return b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
}

/** An unsigned 64-bit length or dimension; must be a safe integer. */
function u64(b: Uint8Array, p: number, what: string): number {
  const hi = u32(b, p + 4);
  if (hi > 0x1fffff) fail(`${what} too large`, p);
  return hi * 4294967296 + u32(b, p);
}

function f64(b: Uint8Array, p: number): number {
  for (let j = 0; j < 8; j++) scratch.setUint8(j, b[p + j]);
  return scratch.getFloat64(0, true);
}

/**
 * Decodes bytes written by `encode` (or by a queue's sender). `bytes` must start at the
 * header; bytes after the length the header declares are ignored.
 *
 * In copy mode (the default) the result owns all its memory. With `{ view: true }`, array
 * payloads are views into `bytes.buffer` (at `bytes.byteOffset` + their offset), so they
 * change when the source does and become unusable when it is detached; the queue uses this
 * for zero-copy borrows.
 *
 * Throws a {@linkcode DecodeError} for any malformed input: it never reads outside `bytes`,
 * checks every declared count and length against the bytes that remain before allocating,
 * and runs in time linear in the input (nesting is handled with an explicit stack). Options
 * it does not know, or of the wrong type, throw a `TypeError` naming them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encode, decode } from "./mod.ts";
 * const bytes = encode({ idx: 1, data: new Float32Array([1, 2, 3]) });
 * const copy = decode(bytes) as { data: Float32Array };
 * const view = decode(bytes, { view: true }) as { data: Float32Array };
 * assert.ok(copy.data[2] === 3 && view.data.buffer === bytes.buffer);
 * ```
 */
export function decode(bytes: Uint8Array, options?: DecodeOptions): unknown {
  if (options !== undefined) checkDecodeOptions(options);
  return decodeBytes(bytes, options);
}

const DECODE_OPTIONS = ["view", "allocate", "pooled"] as const satisfies (keyof DecodeOptions)[];

function checkDecodeOptions(options: DecodeOptions): void {
  refuseUnknownOptions(options, DECODE_OPTIONS, "decode");
  const { view, allocate, pooled } = options;
  if (view !== undefined && typeof view !== "boolean") {
    throw new TypeError(`decode: options.view must be a boolean, got ${shown(view)}`);
  }
  if (pooled !== undefined && typeof pooled !== "boolean") {
    throw new TypeError(`decode: options.pooled must be a boolean, got ${shown(pooled)}`);
  }
  if (allocate !== undefined && typeof allocate !== "function") {
    throw new TypeError(`decode: options.allocate must be a function, got ${shown(allocate)}`);
  }
}

/** {@linkcode decode} without the check of its options, for the queue's own calls. */
export function decodeBytes(bytes: Uint8Array, options?: DecodeBytesOptions): unknown {
  if (!(bytes instanceof Uint8Array)) throw new TypeError("decode: bytes must be a Uint8Array");
  if (!LITTLE_ENDIAN) throw new Error("shmq codec: big-endian hosts are not supported");
  const view = options !== undefined && options.view === true;
  const pooled = options !== undefined && options.pooled === true;
  // A subclass such as node's Buffer overrides slice() with a view: use a plain Uint8Array.
  const b = Object.getPrototypeOf(bytes) === Uint8Array.prototype
    ? bytes
    : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  const len = b.length;
  if (len < HEADER_SIZE) throw new DecodeError(`truncated header: ${len} bytes`);
  if (b[0] !== MAGIC[0] || b[1] !== MAGIC[1] || b[2] !== MAGIC[2] || b[3] !== MAGIC[3]) {
    throw new DecodeError("not a shmq encoding (bad magic)");
  }
  if (b[4] !== VERSION) throw new DecodeError(`unsupported format version ${b[4]}`);
  if (b[5] !== 0 || b[6] !== 0 || b[7] !== 0) fail("nonzero reserved header bytes", 5);
  const end = u64(b, 8, "total length");
  if (end > len) fail(`truncated: the header declares ${end} bytes but only ${len} are given`, 8);
  if (end <= HEADER_SIZE) fail("the encoding has no value", 8);

  // The explicit stack of open containers, reused between calls. A call that throws does
  // not hand it back (it may hold references); a nested call, possible only through a setter
  // someone put on Object.prototype, gets a fresh one.
  const st = freeStack ?? new DecodeStack();
  freeStack = null;
  const sKind = st.kind;
  const sObj = st.obj;
  const sLeft = st.left;
  const sKey = st.key;
  let sp = 0;

  let p = HEADER_SIZE;
  let v: unknown;
  for (;;) {
    // An object entry starts with its key.
    if (sp > 0) {
      const k = sKind[sp - 1];
      if ((k === F_OBJECT || k === F_RECORD) && (sLeft[sp - 1] & 1) === 0) {
        if (p + 5 > end) fail("truncated object key", p);
        const t = b[p];
        const n = u32(b, p + 1);
        const at = p;
        p += 5;
        let key: string;
        if (t === T_STRING) {
          if (n > end - p) fail("truncated object key", at);
          key = readKey(b, p, n, at);
          p += n;
        } else if (t === T_STRING16) {
          if (n > (end - p) / 2) fail("truncated object key", at);
          if (n > MAX_STRING_LENGTH) fail("object key too long for this runtime", at);
          key = readUtf16(b, p, n);
          p += 2 * n;
        } else {
          fail(`object key must be a string, found tag 0x${t.toString(16)}`, at);
        }
        sKey[sp - 1] = key;
        sLeft[sp - 1]--;
      }
    }
    if (p >= end) fail("truncated value", p);
    const at = p;
    const tag = b[p++];
    switch (tag) {
      case T_NULL:
        v = null;
        break;
      case T_UNDEFINED:
        v = undefined;
        break;
      case T_FALSE:
        v = false;
        break;
      case T_TRUE:
        v = true;
        break;
      case T_INT32:
        if (p + 4 > end) fail("truncated int32", at);
        v = i32(b, p);
        p += 4;
        break;
      case T_INT64: {
        if (p + 8 > end) fail("truncated int64", at);
        const lo = u32(b, p);
        const hi = i32(b, p + 4);
        p += 8;
        const n = hi * 4294967296 + lo;
        v = hi >= -0x200000 && hi < 0x200000 && n !== -9007199254740992
          ? n
          : (BigInt(hi) << 32n) | BigInt(lo);
        break;
      }
      case T_FLOAT64:
        if (p + 8 > end) fail("truncated float64", at);
        v = f64(b, p);
        p += 8;
        break;
      case T_DATE:
        if (p + 8 > end) fail("truncated date", at);
        v = new Date(f64(b, p));
        p += 8;
        break;
      case T_STRING: {
        if (p + 4 > end) fail("truncated string", at);
        const n = u32(b, p);
        p += 4;
        if (n > end - p) fail("truncated string", at);
        v = readUtf8(b, p, n, at);
        p += n;
        break;
      }
      case T_STRING16: {
        if (p + 4 > end) fail("truncated string", at);
        const n = u32(b, p);
        p += 4;
        if (n > (end - p) / 2) fail("truncated string", at);
        if (n > MAX_STRING_LENGTH) fail("string too long for this runtime", at);
        v = readUtf16(b, p, n);
        p += 2 * n;
        break;
      }
      case T_BIGINT: {
        if (p + 5 > end) fail("truncated bigint", at);
        const sign = b[p];
        if (sign > 1) fail("bad bigint sign", at);
        const n = u32(b, p + 1);
        p += 5;
        if (n > end - p) fail("truncated bigint", at);
        let m: bigint;
        if (n <= 8) {
          let lo = 0;
          let hi = 0;
          for (let j = n - 1; j >= 0; j--) {
            if (j >= 4) hi = hi * 256 + b[p + j];
            else lo = lo * 256 + b[p + j];
          }
          m = hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
        } else {
          // Refused before any work, and parsed from one flat hex string: a string built by
          // appending costs tens of bytes per digit, and a hostile length would exhaust memory.
          if (n > MAX_BIGINT_BYTES) fail("bigint too large for this runtime", at);
          const digits = new Uint8Array(2 + 2 * n);
          digits[0] = 0x30; // "0"
          digits[1] = 0x78; // "x"
          for (let j = n - 1, q = 2; j >= 0; j--, q += 2) {
            const byte = b[p + j];
            digits[q] = HEX_DIGITS[byte >> 4];
            digits[q + 1] = HEX_DIGITS[byte & 15];
          }
          try {
            m = BigInt(latin1.decode(digits));
          } catch {
            fail("bigint too large for this runtime", at);
          }
        }
        v = sign === 1 ? -m : m;
        p += n;
        break;
      }
      case T_DTYPE: {
        if (p >= end) fail("truncated dtype", at);
        const d = dtypeByCode(b[p]);
        if (d === undefined) fail(`unknown dtype code ${b[p]}`, at);
        v = d;
        p += 1;
        break;
      }
      case T_HOLE:
        if (sp === 0 || (sKind[sp - 1] !== F_ARRAY && sKind[sp - 1] !== F_TUPLE)) {
          fail("a hole outside an array", at);
        }
        v = HOLE;
        break;
      case T_BINARY: {
        if (p + 9 > end) fail("truncated binary header", at);
        const code = b[p];
        if (code >= B_COUNT) fail(`unknown binary class ${code}`, at);
        const n = u64(b, p + 1, "binary length");
        p += 9;
        const start = p + ((ALIGN - (p & (ALIGN - 1))) & (ALIGN - 1));
        if (start > end || n > end - start) fail("truncated binary payload", at);
        const es = B_ELEMENT_SIZE[code];
        if (n % es !== 0) fail(`binary length ${n} is not a multiple of ${es}`, at);
        if (code === B_ARRAYBUFFER) v = bufferCopy(b, start, n, options);
        else if (code === B_DATAVIEW) {
          v = makeArray(DataView, 1, b, start, n, view, pooled, options);
        } else {
          const C = BINARY_CTORS[code] as ViewCtor;
          v = makeArray(C, es, b, start, n, view, pooled, options);
        }
        p = start + n;
        break;
      }
      case T_NDARRAY: {
        if (p + 2 > end) fail("truncated ndarray header", at);
        const dt = dtypeByCode(b[p]);
        if (dt === undefined) fail(`unknown dtype code ${b[p]}`, at);
        const ndim = b[p + 1];
        if (ndim > MAX_NDIM) fail(`ndarray has ${ndim} dimensions`, at);
        p += 2;
        if (p + 8 * ndim > end) fail("truncated ndarray shape", at);
        const shape: number[] = new Array(ndim);
        let zero = false;
        for (let j = 0; j < ndim; j++) {
          const d = u64(b, p, "ndarray dimension");
          shape[j] = d;
          if (d === 0) zero = true;
          p += 8;
        }
        const start = p + ((ALIGN - (p & (ALIGN - 1))) & (ALIGN - 1));
        if (start > end) fail("truncated ndarray payload", at);
        const room = end - start;
        let n = 0;
        if (!zero) {
          n = dt.itemSize;
          for (let j = 0; j < ndim; j++) {
            n *= shape[j];
            if (n > room) fail("truncated ndarray payload", at);
          }
        }
        if (n > room) fail("truncated ndarray payload", at);
        const data = makeArray(
          dt.arrayType as ViewCtor,
          dt.arrayType.BYTES_PER_ELEMENT,
          b,
          start,
          n,
          view,
          pooled,
          options,
        );
        try {
          v = new NdArray(dt, shape, data);
        } catch (error) {
          // A shape the header allows but the runtime cannot hold (e.g. dimensions whose
          // product overflows, next to a zero).
          fail(`invalid ndarray: ${(error as Error).message}`, at);
        }
        p = start + n;
        break;
      }
      case T_ARRAY:
      case T_TUPLE:
      case T_OBJECT:
      case T_OBJECT_NULL:
      case T_RECORD:
      case T_MAP:
      case T_SET: {
        if (p + 4 > end) fail("truncated count", at);
        const n = u32(b, p);
        p += 4;
        // Each element needs at least 1 byte; an object entry 6, a Map entry 2.
        const min = tag === T_OBJECT || tag === T_OBJECT_NULL || tag === T_RECORD
          ? 6
          : tag === T_MAP
          ? 2
          : 1;
        if (n > (end - p) / min) fail(`count ${n} exceeds the remaining bytes`, at);
        let c: unknown;
        let kind: number;
        switch (tag) {
          case T_ARRAY:
            c = [];
            kind = F_ARRAY;
            break;
          case T_TUPLE:
            c = [];
            kind = F_TUPLE;
            break;
          case T_OBJECT:
            c = {};
            kind = F_OBJECT;
            break;
          case T_OBJECT_NULL:
            c = Object.create(null);
            kind = F_OBJECT;
            break;
          case T_RECORD:
            c = {};
            kind = F_RECORD;
            break;
          case T_MAP:
            c = new Map();
            kind = F_MAP;
            break;
          default:
            c = new Set();
            kind = F_SET;
        }
        if (n === 0) {
          v = kind === F_TUPLE || kind === F_RECORD ? Object.freeze(c) : c;
          break;
        }
        sKind[sp] = kind;
        sObj[sp] = c;
        sLeft[sp] = kind === F_OBJECT || kind === F_RECORD || kind === F_MAP ? 2 * n : n;
        sp++;
        continue;
      }
      default:
        fail(`unknown tag 0x${tag.toString(16)}`, at);
    }

    // Give the finished value to its container; close containers that are complete.
    for (;;) {
      if (sp === 0) {
        if (p !== end) fail(`${end - p} trailing bytes`, p);
        freeStack = st;
        return v;
      }
      const f = sp - 1;
      const c = sObj[f];
      switch (sKind[f]) {
        case F_ARRAY:
        case F_TUPLE:
          if (v === HOLE) (c as unknown[]).length++;
          else (c as unknown[]).push(v);
          break;
        case F_OBJECT:
        case F_RECORD: {
          const key = sKey[f] as string;
          // A key Object.prototype has ("__proto__", or one made an accessor or read-only
          // there) would run its setter, or throw, on assignment: define an own property.
          if (key in Object.prototype) {
            Object.defineProperty(c, key, {
              value: v,
              writable: true,
              enumerable: true,
              configurable: true,
            });
          } else {
            (c as Record<string, unknown>)[key] = v;
          }
          break;
        }
        case F_MAP:
          if ((sLeft[f] & 1) === 0) sKey[f] = v;
          else (c as Map<unknown, unknown>).set(sKey[f], v);
          break;
        default:
          (c as Set<unknown>).add(v);
      }
      if (--sLeft[f] > 0) break;
      sp--;
      const k = sKind[f];
      v = k === F_TUPLE || k === F_RECORD ? Object.freeze(c) : c;
      sObj[f] = undefined;
      sKey[f] = undefined;
    }
  }
}

type ViewCtor<V extends TypedArray | DataView = TypedArray> = new (
  b: ArrayBufferLike,
  o: number,
  l: number,
) => V;

/**
 * The `n` payload bytes at `rel` of `b` as an instance of `C`: a view when `view` is set and
 * the address suits the element size, else a copy: in a slab when pooled and small enough,
 * else with its own ArrayBuffer (see {@linkcode bufferCopy}).
 */
function makeArray<V extends TypedArray | DataView>(
  C: ViewCtor<V>,
  es: number,
  b: Uint8Array,
  rel: number,
  n: number,
  view: boolean,
  pooled: boolean,
  options: DecodeBytesOptions | undefined,
): V {
  const abs = b.byteOffset + rel;
  if (view && abs % es === 0) return new C(b.buffer, abs, n / es);
  // An empty array in a slab would keep all 32 KiB of it alive for nothing.
  if (pooled && n > 0 && n <= POOLED_MAX_BYTES) return pooledCopy(C, es, b, rel, n);
  // The copy is a Uint8Array already: wrapping its buffer again would cost a second object.
  if (C === (Uint8Array as unknown) && !allocates(n, options)) {
    return copied(b, rel, n, options) as V;
  }
  return new C(bufferCopy(b, rel, n, options), 0, n / es);
}

/** Whether the `allocate` of `options` makes the buffer of a copy of `n` bytes. */
function allocates(n: number, options: DecodeBytesOptions | undefined): boolean {
  return options?.allocate !== undefined && n >= (options.allocateFrom ?? 0);
}

/** Copies this large are made by the Uint8Array constructor (see {@linkcode copied}). */
const UNZEROED_COPY_BYTES = 16 * 1024;

/**
 * A copy of the `n` bytes at `rel` of `b` in a new buffer of its own, made here (not through
 * `allocate`: `copiedByCodec` of `options` is told). `slice()` zero-fills
 * the new buffer before copying into it; the constructor, given an array, does not. Measured
 * on a 2-vCPU VM, one process, copies in a loop: 16 KiB 4.1 -> 3.6 us, 256 KiB 29 -> 22 us,
 * 10 MiB 5.3 -> 7.9 GB/s; below 16 KiB no gain. From STREAMING_COPY_BYTES the buffer comes
 * fresh from the kernel, already zero, and the copy streams once a queue end has installed the
 * streaming copy (see bulk_copy.ts).
 */
function copied(
  b: Uint8Array,
  rel: number,
  n: number,
  options: DecodeBytesOptions | undefined,
): Uint8Array<ArrayBuffer> {
  let copy: Uint8Array<ArrayBuffer>;
  if (n < UNZEROED_COPY_BYTES) copy = b.slice(rel, rel + n);
  else if (n < STREAMING_COPY_BYTES) copy = new Uint8Array(b.subarray(rel, rel + n));
  else {
    copy = new Uint8Array(n);
    copyBytes(copy, 0, b.subarray(rel, rel + n));
  }
  options?.copiedByCodec?.(n);
  return copy;
}

/** A copy of the `n` bytes at `rel` of `b` in a buffer of its own: from the `allocate` of
 * `options` when it makes one this large, else made here (and `copiedByCodec` told). */
function bufferCopy(
  b: Uint8Array,
  rel: number,
  n: number,
  options: DecodeBytesOptions | undefined,
): ArrayBuffer {
  if (!allocates(n, options)) return copied(b, rel, n, options).buffer;
  const target = options!.allocate!(n);
  const wrong = wrongAllocation(target, n);
  if (wrong !== undefined) {
    throw new TypeError(
      `decode: allocate(${n}) must return an ArrayBuffer of ${n} bytes, ${wrong}`,
    );
  }
  copyBytes(new Uint8Array(target), 0, b.subarray(rel, rel + n));
  return target;
}

/** Size of the shared buffers of pooled copies: a new one every 16 copies of the largest. */
const SLAB_BYTES = 32 * 1024;
/** The slab pooled copies go into now, and its bytes (empty once a caller detached it). */
let slab = new ArrayBuffer(0);
let slabBytes = new Uint8Array(slab);
let slabUsed = 0;

/** A copy of the `n` bytes at `rel` of `b` as a `C` in the slab, 8-aligned for any element
 * type. `n` is at most POOLED_MAX_BYTES. */
function pooledCopy<V extends TypedArray | DataView>(
  C: new (buffer: ArrayBuffer, byteOffset: number, length: number) => V,
  es: number,
  b: Uint8Array,
  rel: number,
  n: number,
): V {
  let at = (slabUsed + 7) & ~7;
  // A detached slab (its buffer transferred by a caller) reads as empty: start a new one.
  if (at + n > slabBytes.length || slabBytes.length === 0) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabBytes = new Uint8Array(slab);
    at = 0;
  }
  slabBytes.set(b.subarray(rel, rel + n), at);
  slabUsed = at + n;
  return new C(slab, at, n / es);
}

/** Why `target` cannot take a copy of `n` bytes ("got …"), or undefined when it can. */
export function wrongAllocation(target: unknown, n: number): string | undefined {
  const got = arrayBufferLength(target);
  if (got === undefined) return `got ${shownBuffer(target)}`;
  if (isDetached(target)) return "got a detached ArrayBuffer";
  return got === n ? undefined : `got one of ${got} bytes`;
}

function shownBuffer(value: unknown): string {
  if (value instanceof SharedArrayBuffer) return "a SharedArrayBuffer";
  if (value instanceof ArrayBuffer) return "an object that is no real ArrayBuffer";
  // A likely slip: the array made over the buffer rather than the buffer.
  if (ArrayBuffer.isView(value)) {
    return `a ${Object.prototype.toString.call(value).slice(8, -1)} (return its ArrayBuffer)`;
  }
  return value === null ? "null" : typeof value === "object" ? "an object" : typeof value;
}

const KEY_CACHE_BITS = 12;
const keyCache: string[] = new Array<string>(1 << KEY_CACHE_BITS).fill("");

/** An object key: short ASCII keys come from a cache, saving the allocation. */
function readKey(b: Uint8Array, p: number, n: number, at: number): string {
  if (n === 0 || n > 32) return readUtf8(b, p, n, at);
  const h = (Math.imul(n, 0x9e3779b1) ^ Math.imul(b[p], 0x85ebca6b) ^
    Math.imul(b[p + n - 1], 0xc2b2ae35) ^ Math.imul(b[p + (n >> 1)], 0x27d4eb2f)) >>>
    (32 - KEY_CACHE_BITS);
  const c = keyCache[h];
  if (c.length === n) {
    let j = 0;
    while (j < n && c.charCodeAt(j) === b[p + j]) j++;
    if (j === n) return c;
  }
  const s = readUtf8(b, p, n, at);
  if (s.length === n) keyCache[h] = s; // ASCII only: then the bytes are the code units
  return s;
}

function readUtf8(b: Uint8Array, p: number, n: number, at: number): string {
  if (n <= 24) {
    let s = "";
    for (let j = 0; j < n; j++) {
      const c = b[p + j];
      if (c >= 0x80) return readUtf8Slow(b, p, n, at);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return readUtf8Slow(b, p, n, at);
}

function readUtf8Slow(b: Uint8Array, p: number, n: number, at: number): string {
  try {
    return utf8.decode(b.subarray(p, p + n));
  } catch (error) {
    fail(
      error instanceof RangeError ? "string too long for this runtime" : "invalid UTF-8 in string",
      at,
    );
  }
}

function readUtf16(b: Uint8Array, p: number, n: number): string {
  if (n <= 24) {
    let s = "";
    for (let j = 0; j < n; j++) s += String.fromCharCode(b[p + 2 * j] | (b[p + 2 * j + 1] << 8));
    return s;
  }
  const CHUNK = 4096;
  const units: number[] = new Array(Math.min(n, CHUNK));
  let s = "";
  for (let done = 0; done < n; done += CHUNK) {
    const m = Math.min(CHUNK, n - done);
    if (m < units.length) units.length = m;
    for (let j = 0; j < m; j++) {
      const q = p + 2 * (done + j);
      units[j] = b[q] | (b[q + 1] << 8);
    }
    s += String.fromCharCode.apply(null, units);
  }
  return s;
}
