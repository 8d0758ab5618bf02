/**
 * The encoder, in two phases: {@linkcode planEncode} walks and validates a value and computes
 * the exact encoded size; {@linkcode encodeInto} writes the bytes into a region the caller
 * provides (for example shared memory), copying each array payload exactly once.
 *
 * @module
 */

import { arrayBufferLength, isDetached } from "./array_buffer.ts";
import { copyBytes } from "./bulk_copy.ts";
import { type DType, isDType } from "./dtype.ts";
import {
  ALIGN,
  B_ARRAYBUFFER,
  B_DATAVIEW,
  HEADER_SIZE,
  MAGIC,
  MAX_COUNT,
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
import { describe, NdArray, shapeSize, wrongDataClass, wrongDataLength } from "./ndarray.ts";
import { BINARY_CTORS, binaryClassCode, isReservation, type Reservation } from "./reserve.ts";

/**
 * Where the payload of one {@linkcode Reservation} lands in an encoding: `byteOffset` counts
 * from the start of the target given to `encodeInto` and is a multiple of 64.
 */
export interface ReservedSlot {
  /** The placeholder, as it appeared in the value. */
  readonly reservation: Reservation;
  /** Offset of the payload from the start of the encoding (a multiple of 64). */
  readonly byteOffset: number;
  /** Bytes of the payload. */
  readonly byteLength: number;
  /** Where the placeholder sits in the value, as errors name it (`value.obs`). */
  readonly path: string;
}

/**
 * The result of {@linkcode planEncode}: the exact size of the encoding, and what
 * {@linkcode encodeInto} needs to write it. Otherwise opaque. A plan may be written any
 * number of times; it refers to the TypedArrays of the value (not copies), so their bytes are
 * read when `encodeInto` runs.
 */
export interface EncodePlan {
  /** Exact size of the encoding in bytes. */
  readonly byteLength: number;
  /** The payload locations of every {@linkcode reserve} placeholder, in encoding order. */
  readonly reservations: readonly ReservedSlot[];
}

// Operations of a plan, replayed by encodeInto. Arguments follow in `ops`; strings, bigints
// and byte views go to `refs`, consumed in order.
const OP_BYTE = 0; // tag
const OP_BYTE2 = 1; // tag, byte
const OP_INT32 = 2; // value
const OP_INT64 = 3; // value
const OP_F64 = 4; // tag, value
const OP_ASCII = 5; // length; ref string
const OP_UTF8 = 6; // byte length; ref string
const OP_UTF16 = 7; // code units; ref string
const OP_COUNT = 8; // tag, count
const OP_BIGINT = 9; // sign, magnitude bytes; ref magnitude bigint
const OP_BINARY = 10; // class code, byte length; ref Uint8Array | null (reserved)
const OP_NDARRAY = 11; // dtype code, ndim, dims..., byte length; ref Uint8Array | null

class Plan implements EncodePlan {
  constructor(
    readonly byteLength: number,
    readonly ops: number[],
    readonly refs: unknown[],
    readonly reservations: readonly ReservedSlot[],
  ) {}
}

const NO_RESERVATIONS: readonly ReservedSlot[] = Object.freeze([]);

// Frame kinds of the explicit walk stack.
const K_ARRAY = 0; // items: the array (holes are checked)
const K_OBJECT = 1; // items: the keys; obj: the object
const K_LIST = 2; // items: a flat list (Set members, or Map key, value, key, value ...)
const K_MAP = 3; // like K_LIST, for paths

class WalkStack {
  readonly kind: number[] = [];
  readonly obj: (object | null)[] = [];
  readonly items: (unknown[] | null)[] = [];
  readonly idx: number[] = [];
  readonly len: number[] = [];
  /** Where in the plan's ops the container's count is: a key deleted mid-walk lowers it. */
  readonly countAt: number[] = [];
}

let freeStack: WalkStack | null = new WalkStack();

/** Depth up to which cycles are found by scanning the stack; deeper frames use a Set. */
const SCAN_DEPTH = 32;

/** Binary class code of each TypedArray class, by the name its instances carry inside V8. */
const TYPED_CODES = new Map<string, number>();
for (let code = 0; code < BINARY_CTORS.length; code++) {
  const ctor = BINARY_CTORS[code];
  if (code === 8 && binaryClassCode(ctor) !== 8) continue; // no Float16Array here
  if (ctor !== ArrayBuffer && ctor !== DataView) TYPED_CODES.set(ctor.name, code);
}

// A view's class, buffer, offset and length are read with the built-in getters, called on it:
// its own or inherited properties (a subclass, a swapped prototype, a defineProperty) could
// claim other values, and the bytes copied must be exactly the bytes planned.
function builtinGetter(proto: object, key: PropertyKey): (this: unknown) => unknown {
  return Object.getOwnPropertyDescriptor(proto, key)!.get!;
}
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype);
// A Map's or Set's own Symbol.iterator (or entries) must not decide what is sent, any more
// than an array's own length: read through the built-ins, as structuredClone does.
const mapEntries = Map.prototype.entries;
const mapSize = builtinGetter(Map.prototype, "size") as (this: Map<unknown, unknown>) => number;
const setValues = Set.prototype.values;
const dateTime = Date.prototype.getTime;
/** Prototypes of the binary classes, for naming an object made from one that is not one. */
const BINARY_PROTOS = new Map<object, string>(BINARY_CTORS.map((c) => [c.prototype, c.name]));
const typedArrayName = builtinGetter(TypedArrayPrototype, Symbol.toStringTag);
const typedArrayBuffer = builtinGetter(TypedArrayPrototype, "buffer");
const typedArrayByteOffset = builtinGetter(TypedArrayPrototype, "byteOffset");
const typedArrayByteLength = builtinGetter(TypedArrayPrototype, "byteLength");
// Throws for a TypedArray out of its buffer's bounds, which reads as empty otherwise.
const typedArraySet = (TypedArrayPrototype as { set(source: ArrayLike<number>): void }).set;
const dataViewBuffer = builtinGetter(DataView.prototype, "buffer");
const dataViewByteOffset = builtinGetter(DataView.prototype, "byteOffset");
const dataViewByteLength = builtinGetter(DataView.prototype, "byteLength");

/** The errors the walk threw itself, with the path first: anything else came from the value's
 * own code (a getter, a Proxy trap) and gets the path added. */
const placedErrors = new WeakMap<Error, WalkStack>();

/** A TypeError that names where in the value the problem is, thrown by the walk on `st`. */
function placed(st: WalkStack, path: string, message: string): TypeError {
  const error = new TypeError(`${path}: ${message}`);
  placedErrors.set(error, st);
  return error;
}

/**
 * The class code and the bytes of a TypedArray or DataView, as a fresh fixed-length view of
 * its buffer; undefined for a TypedArray class the codec does not know. Throws the error
 * made by `fail` for a view whose buffer is detached or too short for it.
 */
function viewBytes(v: ArrayBufferView, fail: (message: string) => Error): ViewBytes | undefined {
  const name = typedArrayName.call(v) as string | undefined;
  let code: number | undefined;
  let buffer: ArrayBufferLike;
  let offset: number;
  let length: number;
  if (name !== undefined) {
    code = TYPED_CODES.get(name);
    if (code === undefined) return undefined;
    buffer = typedArrayBuffer.call(v) as ArrayBufferLike;
    offset = typedArrayByteOffset.call(v) as number;
    length = typedArrayByteLength.call(v) as number;
  } else {
    code = B_DATAVIEW;
    buffer = dataViewBuffer.call(v) as ArrayBufferLike;
    try {
      offset = dataViewByteOffset.call(v) as number;
      length = dataViewByteLength.call(v) as number;
    } catch {
      throw fail("its ArrayBuffer is detached or too short for it");
    }
  }
  if (length === 0 && isDetached(buffer)) {
    throw fail("its ArrayBuffer is detached");
  }
  if (length === 0 && name !== undefined && (buffer as ArrayBuffer).resizable === true) {
    // A fixed-length view over a resizable buffer that shrank below it reads as empty; sent
    // as such, its elements would vanish without a word.
    try {
      typedArraySet.call(v, []);
    } catch {
      throw fail("its ArrayBuffer shrank below it");
    }
  }
  return { code, bytes: length === 0 ? EMPTY : new Uint8Array(buffer, offset, length) };
}

interface ViewBytes {
  readonly code: number;
  readonly bytes: Uint8Array;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Walks `value`, checks that the codec supports every part of it, and computes the exact
 * size of its encoding. Nothing is written. Throws a `TypeError` that names the path to the
 * first unsupported part, for example `value.samples[1].fn: functions are not supported` or
 * `value.a.b: cyclic reference`. A value reachable twice without a cycle is encoded twice.
 *
 * Paths use `.key` or `["key"]` for object keys, `[i]` for array elements,
 * `.get(key)` / `.get(<key #i>)` for Map values, `[key #i]` for Map keys and `[item #i]`
 * for Set members.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { planEncode, encodeInto } from "./encode.ts";
 * const plan = planEncode({ idx: 12345, source: "actor_3", data: new Float32Array(256) });
 * const region = new Uint8Array(plan.byteLength); // e.g. a slot in shared memory
 * assert.ok(encodeInto(plan, region) === plan.byteLength);
 * ```
 */
export function planEncode(value: unknown): EncodePlan {
  try {
    return planValue(value);
  } catch (error) {
    // V8's own words for an array past its limit name neither the value nor a remedy.
    if (error instanceof RangeError && error.message === "Invalid array length") {
      throw tooManyItems(error);
    }
    throw error;
  }
}

/** Elements a JavaScript array holds at most (V8's FixedArray limit on 64-bit): the plan is
 * one, with at least two entries per item. */
const MAX_PLAN_ENTRIES = 134_217_725;

function tooManyItems(cause: unknown): RangeError {
  return new RangeError(
    "encode: the value holds too many items for one message (its plan outgrew a " +
      "JavaScript array: tens of millions of numbers or strings): put numbers in a " +
      "TypedArray or NdArray, which have no such limit",
    { cause },
  );
}

function planValue(value: unknown): EncodePlan {
  const ops: number[] = [];
  const refs: unknown[] = [];
  let reservations: ReservedSlot[] | null = null;
  let size = HEADER_SIZE;

  // The explicit stack of open containers, reused between calls (a getter of the value may
  // call planEncode again: such a nested call gets a fresh stack).
  const st = freeStack ?? new WalkStack();
  freeStack = null;
  const fKind = st.kind;
  const fObj = st.obj;
  const fItems = st.items;
  const fIdx = st.idx;
  const fLen = st.len;
  const fCountAt = st.countAt;
  let sp = 0;
  let maxSp = 0;
  let deep: Set<object> | null = null;
  let cur: unknown = value;
  try {
    walk: for (;;) {
      switch (typeof cur) {
        case "number": {
          const v = cur as number;
          if ((v | 0) === v && (v !== 0 || 1 / v > 0)) {
            ops.push(OP_INT32, v);
            size += 5;
          } else if (Number.isSafeInteger(v) && v !== 0) {
            ops.push(OP_INT64, v);
            size += 9;
          } else {
            ops.push(OP_F64, T_FLOAT64, v);
            size += 9;
          }
          break;
        }
        case "string":
          size += planString(cur as string, ops, refs);
          break;
        case "boolean":
          ops.push(OP_BYTE, cur ? T_TRUE : T_FALSE);
          size += 1;
          break;
        case "undefined":
          ops.push(OP_BYTE, T_UNDEFINED);
          size += 1;
          break;
        case "bigint": {
          let v = cur as bigint;
          let sign = 0;
          if (v < 0n) {
            sign = 1;
            v = -v;
          }
          const n = v === 0n ? 0 : (v.toString(16).length + 1) >> 1;
          if (n > MAX_COUNT) throw placed(st, pathOf(st, sp), "bigint too large");
          ops.push(OP_BIGINT, sign, n);
          refs.push(v);
          size += 6 + n;
          break;
        }
        case "object": {
          if (cur === null) {
            ops.push(OP_BYTE, T_NULL);
            size += 1;
            break;
          }
          if (ArrayBuffer.isView(cur)) {
            // A subclass (e.g. node's Buffer) goes as the built-in class it is made of.
            const view = viewBytes(cur, (m) => placed(st, pathOf(st, sp), m));
            if (view === undefined) throw placed(st, pathOf(st, sp), unsupported(cur));
            const bytes = view.bytes;
            size = planPayload(OP_BINARY, view.code, bytes.byteLength, bytes, size, ops, refs, 10);
            break;
          }
          let kind: number;
          let items: unknown[];
          let tag: number;
          if (Array.isArray(cur)) {
            if (Object.getPrototypeOf(cur) !== Array.prototype) {
              throw placed(st, pathOf(st, sp), unsupported(cur));
            }
            kind = K_ARRAY;
            items = cur;
            tag = Object.isFrozen(cur) ? T_TUPLE : T_ARRAY;
          } else {
            const proto = Object.getPrototypeOf(cur);
            if (proto === Object.prototype) {
              kind = K_OBJECT;
              items = Object.keys(cur);
              tag = Object.isFrozen(cur) ? T_RECORD : T_OBJECT;
            } else if (proto === null) {
              kind = K_OBJECT;
              items = Object.keys(cur);
              tag = T_OBJECT_NULL;
            } else if (cur instanceof NdArray) {
              const a = cur as NdArray;
              const dt = a.dtype;
              const data = a.data;
              // Each read once: what is planned is what is written.
              let shape: number[];
              let elements: number;
              try {
                const s = a.shape;
                // Spread, a non-array would fail with V8's words ("a.shape is not iterable").
                if (!Array.isArray(s)) throw new TypeError("shape must be an array of integers");
                shape = [...s];
                elements = shapeSize(shape);
              } catch (error) {
                throw placed(st, pathOf(st, sp), `NdArray ${(error as Error).message}`);
              }
              // The constructor's checks, again: `data` and `dtype` are writable at run time.
              const nd = (m: string) => placed(st, pathOf(st, sp), `NdArray ${m}`);
              if (!isDType(dt)) throw nd(`dtype must be a DType, not ${describe(dt)}`);
              if (
                !ArrayBuffer.isView(data) || Object.getPrototypeOf(data) !== dt.arrayType.prototype
              ) {
                throw nd(wrongDataClass(dt, data));
              }
              const view = viewBytes(data, (m) => placed(st, pathOf(st, sp), m));
              if (view === undefined) throw nd(`data ${describe(data)} is not supported`);
              const itemBytes = dt.arrayType.BYTES_PER_ELEMENT;
              if (view.bytes.byteLength !== elements * dt.lanes * itemBytes) {
                throw nd(wrongDataLength(view.bytes.byteLength / itemBytes, shape, dt));
              }
              size = planNd(dt, shape, view.bytes.byteLength, view.bytes, size, ops, refs);
              break;
            } else if (proto === Map.prototype) {
              kind = K_MAP;
              const m = cur as Map<unknown, unknown>;
              items = new Array(builtIn(() => mapSize.call(m), "Map", st, sp) * 2);
              let i = 0;
              for (const [k, v] of mapEntries.call(m)) {
                items[i++] = k;
                items[i++] = v;
              }
              items.length = i;
              tag = T_MAP;
            } else if (proto === Set.prototype) {
              kind = K_LIST;
              const values = builtIn(() => setValues.call(cur as Set<unknown>), "Set", st, sp);
              items = Array.from(values);
              tag = T_SET;
            } else if (proto === Date.prototype) {
              ops.push(OP_F64, T_DATE, builtIn(() => dateTime.call(cur), "Date", st, sp));
              size += 9;
              break;
            } else if (proto === ArrayBuffer.prototype) {
              // Read through the prototype's getter: an object made with the prototype has
              // no bytes, whatever its own properties say.
              const byteLength = arrayBufferLength(cur);
              if (byteLength === undefined) {
                throw placed(
                  st,
                  pathOf(st, sp),
                  "an object made with ArrayBuffer.prototype is no ArrayBuffer: not supported",
                );
              }
              if (isDetached(cur)) {
                throw placed(st, pathOf(st, sp), "the ArrayBuffer is detached");
              }
              // Fixed at its length now, as views are: a resizable buffer that grows before the
              // plan is written is written at this size, not refused as shrunk.
              const bytes = new Uint8Array(cur as ArrayBuffer, 0, byteLength);
              size = planPayload(
                OP_BINARY,
                B_ARRAYBUFFER,
                bytes.byteLength,
                bytes,
                size,
                ops,
                refs,
                10,
              );
              break;
            } else if (isDType(cur)) {
              ops.push(OP_BYTE2, T_DTYPE, cur.code);
              size += 2;
              break;
            } else if (isReservation(cur)) {
              const r = cur;
              if (r.dtype !== null) {
                size = planNd(r.dtype, r.shape!, r.byteLength, null, size, ops, refs);
              } else {
                const code = binaryClassCode(r.ctor);
                size = planPayload(OP_BINARY, code, r.byteLength, null, size, ops, refs, 10);
              }
              (reservations ??= []).push(
                Object.freeze({
                  reservation: r,
                  byteOffset: size - r.byteLength,
                  byteLength: r.byteLength,
                  path: pathOf(st, sp),
                }),
              );
              break;
            } else {
              throw placed(st, pathOf(st, sp), unsupported(cur));
            }
          }
          // Read once: a Proxy may answer differently each time, and the count written must
          // match the elements walked.
          const length = items.length;
          const count = kind === K_MAP ? length >> 1 : length;
          if (count > MAX_COUNT) {
            throw placed(st, pathOf(st, sp), `too many elements (${count})`);
          }
          // A sparse array this long would walk its holes for seconds before the plan
          // outgrew its own array.
          if (kind === K_ARRAY && ops.length + 2 * length > MAX_PLAN_ENTRIES) {
            const error = new RangeError(
              `${pathOf(st, sp)}: an array of ${length} items, holes included, is more than ` +
                "one message can hold: put numbers in a TypedArray or NdArray, which have no " +
                "such limit",
            );
            placedErrors.set(error, st);
            throw error;
          }
          // Cycle check: is this container one of the open ones?
          const scan = sp < SCAN_DEPTH ? sp : SCAN_DEPTH;
          for (let j = 0; j < scan; j++) {
            if (fObj[j] === cur) throw placed(st, pathOf(st, sp), "cyclic reference");
          }
          if (deep !== null && deep.has(cur)) {
            throw placed(st, pathOf(st, sp), "cyclic reference");
          }
          ops.push(OP_COUNT, tag, count);
          size += 5;
          if (length > 0) {
            if (sp >= SCAN_DEPTH) (deep ??= new Set()).add(cur);
            fKind[sp] = kind;
            fObj[sp] = cur;
            fItems[sp] = items;
            fIdx[sp] = 0;
            fLen[sp] = length;
            fCountAt[sp] = ops.length - 1;
            if (++sp > maxSp) maxSp = sp;
          }
          break;
        }
        case "function":
          throw placed(st, pathOf(st, sp), "functions are not supported");
        case "symbol":
          throw placed(st, pathOf(st, sp), "symbols are not supported");
        default:
          throw placed(st, pathOf(st, sp), `${typeof cur} values are not supported`);
      }

      // Move to the next value: the next child of the innermost open container.
      for (;;) {
        if (sp === 0) break walk;
        const f = sp - 1;
        const i = fIdx[f];
        if (i < fLen[f]) {
          fIdx[f] = i + 1;
          const items = fItems[f]!;
          const kind = fKind[f];
          if (kind === K_ARRAY) {
            cur = items[i];
            if (cur === undefined && !(i in items)) {
              ops.push(OP_BYTE, T_HOLE);
              size += 1;
              continue;
            }
          } else if (kind === K_OBJECT) {
            const key = items[i] as string;
            const obj = fObj[f] as Record<string, unknown>;
            cur = obj[key];
            // Deleted since the keys were listed (by a getter met earlier in the walk): left
            // out, as structuredClone does, not sent as undefined.
            if (cur === undefined && !Object.hasOwn(obj, key)) {
              ops[fCountAt[f]]--;
              continue;
            }
            size += planString(key, ops, refs);
          } else {
            cur = items[i];
          }
          continue walk;
        }
        sp--;
        if (sp >= SCAN_DEPTH) deep!.delete(fObj[sp]!);
      }
    }
  } catch (error) {
    throw placedErrors.get(error as Error) === st
      ? error
      : fromValueCode(error, st, pathOf(st, sp));
  }
  // Drop references to the value, then hand the stack back. (A call that throws does not hand
  // it back: the next call makes a new one.)
  for (let j = 0; j < maxSp; j++) {
    fObj[j] = null;
    fItems[j] = null;
  }
  freeStack = st;
  return new Plan(size, ops, refs, reservations ?? NO_RESERVATIONS);
}

/**
 * An error thrown by the value's own code while it was walked (a getter, a Proxy trap), with
 * where it happened. V8's "Invalid array length" is the walk's own, handled by planEncode.
 */
function fromValueCode(error: unknown, st: WalkStack, path: string): unknown {
  if (error instanceof RangeError && error.message === "Invalid array length") return error;
  let what = "a value that cannot be shown";
  try {
    what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  } catch { /* a thrown object whose own getters throw too */ }
  const wrapped = new TypeError(`${path}: reading it threw ${what}`, { cause: error });
  placedErrors.set(wrapped, st);
  return wrapped;
}

/** Levels of a deep path shown at each end, and characters of a key shown: a path names the
 * value the error is about, and must not outweigh it (100,000 levels made a 300 kB message). */
const PATH_ENDS = 16;
const KEY_SHOWN = 64;

/** The path of the value being planned, for error messages. */
function pathOf(st: WalkStack, sp: number): string {
  const fKind = st.kind;
  const fItems = st.items;
  const fIdx = st.idx;
  let p = "value";
  for (let f = 0; f < sp; f++) {
    if (f === PATH_ENDS && sp > 3 * PATH_ENDS) {
      p += `…(${sp - 2 * PATH_ENDS} levels)…`;
      f = sp - PATH_ENDS - 1;
      continue;
    }
    const i = fIdx[f] - 1;
    const items = fItems[f]!;
    switch (fKind[f]) {
      case K_ARRAY:
        p += `[${i}]`;
        break;
      case K_OBJECT: {
        const key = items[i] as string;
        p += /^[A-Za-z_$][\w$]*$/.test(key) && key.length <= KEY_SHOWN
          ? `.${key}`
          : `[${shownKey(key)}]`;
        break;
      }
      case K_MAP: {
        const e = i >> 1;
        if ((i & 1) === 0) p += `[key #${e}]`;
        else p += `.get(${describeKey(items[i - 1], e)})`;
        break;
      }
      default:
        p += `[item #${i}]`;
    }
  }
  return p;
}

/** A string key as JSON, its middle left out when long. */
function shownKey(key: string): string {
  if (key.length <= KEY_SHOWN) return JSON.stringify(key);
  const half = KEY_SHOWN >> 1;
  return `${JSON.stringify(key.slice(0, half)).slice(0, -1)}…(${key.length} chars)…` +
    JSON.stringify(key.slice(-half)).slice(1);
}

function describeKey(k: unknown, e: number): string {
  switch (typeof k) {
    case "string":
      return shownKey(k);
    case "number":
    case "boolean":
    case "undefined":
      return String(k);
    case "bigint":
      return `${k}n`;
    default:
      return k === null ? "null" : `<key #${e}>`;
  }
}

/** The classes whose instances wrap a primitive value. */
const BOXED = new Set(["Number", "String", "Boolean", "BigInt", "Symbol"]);

function unsupported(x: object): string {
  // Not a view (that was asked first), yet made from a view class's prototype.
  const binary = BINARY_PROTOS.get(Object.getPrototypeOf(x));
  if (binary !== undefined) return notBuiltIn(binary);
  const tag = Object.prototype.toString.call(x).slice(8, -1);
  switch (tag) {
    case "Promise":
      // Most often an async call's result, handed over without its await.
      return "Promise is not supported (a missing await?)";
    case "WeakMap":
    case "WeakSet":
    case "WeakRef":
    case "SharedArrayBuffer":
    case "RegExp":
    case "Error":
      return `${tag} is not supported`;
  }
  let name = "";
  try {
    const c = (x as { constructor?: { name?: unknown } }).constructor;
    if (typeof c?.name === "string") name = c.name;
  } catch {
    // a throwing getter: no name
  }
  if (Array.isArray(x)) {
    return `Array subclass instances${name ? ` (${name})` : ""} are not supported`;
  }
  if (name === "" || name === "Object") {
    return "objects with a prototype other than Object.prototype or null are not supported";
  }
  if (BOXED.has(tag) && name === tag) {
    return `boxed primitives (a ${name} object) are not supported: pass the primitive value`;
  }
  return `class instances (${name}) are not supported`;
}

/** What refuses an object with a built-in class's prototype that is not of that class. */
function notBuiltIn(name: string): string {
  return `not a real ${name} (a Proxy, or an object made from ${name}.prototype): not supported`;
}

/**
 * `read`, a built-in method called on the value being planned: its brand check failing means
 * the value only has the class's prototype (a Proxy of one, `Object.create(Map.prototype)`),
 * which is said as such, not in V8's words about an incompatible receiver.
 */
function builtIn<T>(read: () => T, name: string, st: WalkStack, sp: number): T {
  try {
    return read();
  } catch {
    throw placed(st, pathOf(st, sp), notBuiltIn(name));
  }
}

const EMPTY = new Uint8Array(0);

/** Adds a T_BINARY value; returns the new size. `headerBytes` = tag + class + u64. */
function planPayload(
  op: number,
  code: number,
  byteLength: number,
  bytes: Uint8Array | null,
  size: number,
  ops: number[],
  refs: unknown[],
  headerBytes: number,
): number {
  ops.push(op, code, byteLength);
  refs.push(bytes);
  size += headerBytes;
  return size + ((ALIGN - (size & (ALIGN - 1))) & (ALIGN - 1)) + byteLength;
}

/** Adds a T_NDARRAY value; returns the new size. */
function planNd(
  dt: DType,
  shape: readonly number[],
  byteLength: number,
  bytes: Uint8Array | null,
  size: number,
  ops: number[],
  refs: unknown[],
): number {
  const ndim = shape.length;
  ops.push(OP_NDARRAY, dt.code, ndim);
  for (let i = 0; i < ndim; i++) ops.push(shape[i]);
  ops.push(byteLength);
  refs.push(bytes);
  size += 3 + 8 * ndim;
  return size + ((ALIGN - (size & (ALIGN - 1))) & (ALIGN - 1)) + byteLength;
}

/** Adds a string value; returns its encoded size. */
function planString(s: string, ops: number[], refs: unknown[]): number {
  const n = s.length;
  refs.push(s);
  let i = 0;
  while (i < n && s.charCodeAt(i) < 0x80) i++;
  if (i === n) {
    ops.push(OP_ASCII, n);
    return 5 + n;
  }
  let bytes = n;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
    } else if ((c & 0xf800) !== 0xd800) {
      bytes += 2;
    } else if (c < 0xdc00 && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 2; // a pair: 2 units, 4 bytes
      i++;
    } else {
      // A lone surrogate: UTF-8 cannot carry it.
      ops.push(OP_UTF16, n);
      return 5 + 2 * n;
    }
  }
  if (bytes > MAX_COUNT) throw new RangeError("string too long");
  ops.push(OP_UTF8, bytes);
  return 5 + bytes;
}

const textEncoder = new TextEncoder();
const scratch = new DataView(new ArrayBuffer(8));

function writeU32(t: Uint8Array, p: number, v: number): void {
  t[p] = v;
  t[p + 1] = v >>> 8;
  t[p + 2] = v >>> 16;
  t[p + 3] = v >>> 24;
}

/** Writes a safe integer (possibly negative) as 64-bit two's complement. */
function writeI64(t: Uint8Array, p: number, v: number): void {
  writeU32(t, p, v >>> 0);
  writeU32(t, p + 4, Math.floor(v / 4294967296) >>> 0);
}

/**
 * Writes the encoding planned by {@linkcode planEncode} into `target[0 .. plan.byteLength)`
 * and returns the number of bytes written (`plan.byteLength`). Array payloads start at
 * multiples of 64 counted from `target[0]`; give a 64-byte aligned target if the receiver
 * wants to view them in place with any element type. Each payload is copied exactly once;
 * the payloads of {@linkcode reserve} placeholders are not touched. Throws a `RangeError`
 * when `target` is too small, and a `TypeError` when the buffer of an array of the value was
 * detached or shrank below it since the plan was made (an array over a buffer that grew is
 * written at its planned size). Never writes past `plan.byteLength`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { planEncode, encodeInto, decode } from "./mod.ts";
 * const plan = planEncode([1, "two", new Float64Array([3])]);
 * const region = new Uint8Array(4096);
 * const n = encodeInto(plan, region);
 * assert.ok(n === plan.byteLength);
 * assert.ok((decode(region.subarray(0, n)) as unknown[])[1] === "two");
 * ```
 */
export function encodeInto(plan: EncodePlan, target: Uint8Array): number {
  if (!(plan instanceof Plan)) throw new TypeError("encodeInto: plan must come from planEncode");
  if (!(target instanceof Uint8Array)) {
    throw new TypeError("encodeInto: target must be a Uint8Array");
  }
  if (!LITTLE_ENDIAN) throw new Error("shmq codec: big-endian hosts are not supported");
  const total = plan.byteLength;
  if (target.length < total) {
    throw new RangeError(
      `encodeInto: target has ${target.length} bytes; the encoding needs ${total}`,
    );
  }
  const t = target;
  const ops = plan.ops;
  const refs = plan.refs;
  t[0] = MAGIC[0];
  t[1] = MAGIC[1];
  t[2] = MAGIC[2];
  t[3] = MAGIC[3];
  t[4] = VERSION;
  t[5] = 0;
  t[6] = 0;
  t[7] = 0;
  writeI64(t, 8, total);
  let p = HEADER_SIZE;
  let r = 0;
  const nops = ops.length;
  for (let i = 0; i < nops;) {
    switch (ops[i]) {
      case OP_BYTE:
        t[p++] = ops[i + 1];
        i += 2;
        break;
      case OP_BYTE2:
        t[p] = ops[i + 1];
        t[p + 1] = ops[i + 2];
        p += 2;
        i += 3;
        break;
      case OP_INT32:
        t[p] = T_INT32;
        writeU32(t, p + 1, ops[i + 1]);
        p += 5;
        i += 2;
        break;
      case OP_INT64:
        t[p] = T_INT64;
        writeI64(t, p + 1, ops[i + 1]);
        p += 9;
        i += 2;
        break;
      case OP_F64: {
        t[p] = ops[i + 1];
        scratch.setFloat64(0, ops[i + 2], true);
        for (let j = 0; j < 8; j++) t[p + 1 + j] = scratch.getUint8(j);
        p += 9;
        i += 3;
        break;
      }
      case OP_COUNT:
        t[p] = ops[i + 1];
        writeU32(t, p + 1, ops[i + 2]);
        p += 5;
        i += 3;
        break;
      case OP_ASCII: {
        const n = ops[i + 1];
        const s = refs[r++] as string;
        t[p] = T_STRING;
        writeU32(t, p + 1, n);
        p += 5;
        if (n <= 64) {
          for (let j = 0; j < n; j++) t[p + j] = s.charCodeAt(j);
        } else {
          textEncoder.encodeInto(s, t.subarray(p, p + n));
        }
        p += n;
        i += 2;
        break;
      }
      case OP_UTF8: {
        const n = ops[i + 1];
        const s = refs[r++] as string;
        t[p] = T_STRING;
        writeU32(t, p + 1, n);
        p += 5;
        if (n <= 64) writeUtf8(t, p, s);
        else textEncoder.encodeInto(s, t.subarray(p, p + n));
        p += n;
        i += 2;
        break;
      }
      case OP_UTF16: {
        const n = ops[i + 1];
        const s = refs[r++] as string;
        t[p] = T_STRING16;
        writeU32(t, p + 1, n);
        p += 5;
        for (let j = 0; j < n; j++) {
          const c = s.charCodeAt(j);
          t[p] = c;
          t[p + 1] = c >>> 8;
          p += 2;
        }
        i += 2;
        break;
      }
      case OP_BIGINT: {
        const n = ops[i + 2];
        t[p] = T_BIGINT;
        t[p + 1] = ops[i + 1];
        writeU32(t, p + 2, n);
        p += 6;
        writeMagnitude(t, p, n, refs[r++] as bigint);
        p += n;
        i += 3;
        break;
      }
      case OP_BINARY: {
        const len = ops[i + 2];
        t[p] = T_BINARY;
        t[p + 1] = ops[i + 1];
        writeI64(t, p + 2, len);
        p += 10;
        p = writePayload(t, p, len, refs[r++] as Uint8Array | null);
        i += 3;
        break;
      }
      case OP_NDARRAY: {
        const ndim = ops[i + 2];
        t[p] = T_NDARRAY;
        t[p + 1] = ops[i + 1];
        t[p + 2] = ndim;
        p += 3;
        for (let j = 0; j < ndim; j++) {
          writeI64(t, p, ops[i + 3 + j]);
          p += 8;
        }
        const len = ops[i + 3 + ndim];
        p = writePayload(t, p, len, refs[r++] as Uint8Array | null);
        i += 4 + ndim;
        break;
      }
      default:
        throw new Error(`internal error: bad plan op ${ops[i]}`);
    }
  }
  if (p !== total) throw new Error(`internal error: wrote ${p} bytes, planned ${total}`);
  return total;
}

function writePayload(t: Uint8Array, p: number, len: number, bytes: Uint8Array | null): number {
  const pad = (ALIGN - (p & (ALIGN - 1))) & (ALIGN - 1);
  for (let j = 0; j < pad; j++) t[p + j] = 0;
  p += pad;
  if (bytes !== null) {
    if (bytes.byteLength !== len) {
      throw new TypeError(
        `encodeInto: an array of the value (${len} bytes when the value was measured) was ` +
          `detached, or its resizable buffer shrank below it, before it was written`,
      );
    }
    if (len > 0) copyBytes(t, p, bytes);
  }
  return p + len;
}

function writeUtf8(t: Uint8Array, p: number, s: string): void {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      t[p++] = c;
    } else if (c < 0x800) {
      t[p++] = 0xc0 | (c >> 6);
      t[p++] = 0x80 | (c & 0x3f);
    } else if ((c & 0xfc00) === 0xd800) {
      // A well-formed pair (planString checked).
      c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
      t[p++] = 0xf0 | (c >> 18);
      t[p++] = 0x80 | ((c >> 12) & 0x3f);
      t[p++] = 0x80 | ((c >> 6) & 0x3f);
      t[p++] = 0x80 | (c & 0x3f);
    } else {
      t[p++] = 0xe0 | (c >> 12);
      t[p++] = 0x80 | ((c >> 6) & 0x3f);
      t[p++] = 0x80 | (c & 0x3f);
    }
  }
}

function writeMagnitude(t: Uint8Array, p: number, n: number, v: bigint): void {
  if (n <= 8) {
    let lo = Number(v & 0xffffffffn);
    let hi = Number(v >> 32n);
    for (let j = 0; j < n; j++) {
      if (j < 4) {
        t[p + j] = lo;
        lo >>>= 8;
      } else {
        t[p + j] = hi;
        hi >>>= 8;
      }
    }
    return;
  }
  const hex = v.toString(16);
  // Byte j (little-endian) is hex digits [len - 2j - 2, len - 2j).
  let end = hex.length;
  for (let j = 0; j < n; j++) {
    const start = end - 2;
    t[p + j] = start < 0 ? parseInt(hex.slice(0, end), 16) : parseInt(hex.slice(start, end), 16);
    end = start;
  }
}

/**
 * Encodes `value` into a fresh buffer. Offsets of array payloads are multiples of 64 from the
 * start of the returned bytes, which start at offset 0 of their own ArrayBuffer. (JavaScript
 * cannot choose the address of a new ArrayBuffer; V8 aligns it to at least 16 bytes, enough
 * to view any element type in place. A queue's messages are 64-byte aligned.) A value it
 * cannot encode (a function, a class instance, a cycle, a {@linkcode reserve} placeholder)
 * throws a `TypeError` naming its path, such as `value.job.run`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encode, decode } from "./mod.ts";
 * const bytes = encode({ idx: 12345, source: "actor_3", data: new Float32Array(256) });
 * const back = decode(bytes) as { idx: number; data: Float32Array };
 * assert.ok(back.idx === 12345 && back.data.length === 256);
 * ```
 */
export function encode(value: unknown): Uint8Array {
  const plan = planEncode(value);
  // Its payload would go out as zeros, with no way to find it to fill in.
  if (plan.reservations.length > 0) {
    const placeholder = plan.reservations[0];
    throw new TypeError(
      `${placeholder.path}: a reserve() placeholder, which only Sender.prepare() fills in ` +
        "place; encode the array itself",
    );
  }
  let out: Uint8Array;
  try {
    out = new Uint8Array(plan.byteLength);
  } catch (error) {
    // V8 says only "Array buffer allocation failed", or "Invalid typed array length: …".
    throw new RangeError(
      `encode: the value encodes to ${plan.byteLength} bytes, which could not be allocated ` +
        `(${(error as Error).message})`,
      { cause: error },
    );
  }
  encodeInto(plan, out);
  return out;
}

/**
 * A view of the payload of a {@linkcode reserve} placeholder inside `target` (the region a
 * plan was written into with `encodeInto`), for filling it in place: an `NdArray` for
 * `reserve(dtype, shape)`, an instance of the class for `reserve(ctor, length)`, and a
 * `Uint8Array` for `reserve(ArrayBuffer, n)`. It shares memory with `target`. Throws a
 * `RangeError` when the slot lies outside `target` or its address does not suit the element
 * size (it always does when `target.byteOffset` is a multiple of 8).
 *
 * @example
 * ```ts
 * import { encodeInto, planEncode, reserve, reservedView } from "./mod.ts";
 * const plan = planEncode([reserve(Float64Array, 4)]);
 * const region = new Uint8Array(plan.byteLength);
 * encodeInto(plan, region);
 * const xs = reservedView(region, plan.reservations[0]) as Float64Array;
 * xs.fill(0.5);
 * ```
 */
export function reservedView(
  target: Uint8Array,
  slot: ReservedSlot,
): NdArray | ArrayBufferView {
  const r = slot.reservation;
  if (!isReservation(r)) throw new TypeError("reservedView: not a reserved slot");
  if (slot.byteOffset < 0 || slot.byteOffset + slot.byteLength > target.length) {
    throw new RangeError("reservedView: the slot lies outside the target");
  }
  const abs = target.byteOffset + slot.byteOffset;
  const buf = target.buffer;
  if (r.dtype !== null) {
    const C = r.dtype.arrayType as unknown as new (
      b: ArrayBufferLike,
      o: number,
      l: number,
    ) => never;
    const es = r.dtype.arrayType.BYTES_PER_ELEMENT;
    if (abs % es !== 0) throw new RangeError("reservedView: misaligned target");
    return new NdArray(r.dtype, r.shape!, new C(buf, abs, slot.byteLength / es));
  }
  const code = binaryClassCode(r.ctor);
  if (code === B_ARRAYBUFFER) return new Uint8Array(buf, abs, slot.byteLength);
  if (r.ctor === DataView) return new DataView(buf, abs, slot.byteLength);
  const C = BINARY_CTORS[code] as unknown as {
    new (b: ArrayBufferLike, o: number, l: number): ArrayBufferView;
    BYTES_PER_ELEMENT: number;
  };
  if (abs % C.BYTES_PER_ELEMENT !== 0) throw new RangeError("reservedView: misaligned target");
  return new C(buf, abs, slot.byteLength / C.BYTES_PER_ELEMENT);
}
