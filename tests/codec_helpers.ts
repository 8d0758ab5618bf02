/**
 * Helpers of the codec tests: a strict, iterative deep comparison and a seeded PRNG.
 *
 * @module
 */

import { decode, DType, type DTypeName, encode, NdArray } from "../codec/mod.ts";

export { prng } from "./prng.ts";

const SLAB_FILLER = encode(new Uint8Array(2048));

/** Makes the isolate's pooled decodes (`pooled: true`) go on in a slab with 30 KiB free, so a
 * test's few small arrays land in one: whatever earlier tests left, not by luck. */
export function startFreshSlab(): void {
  while ((decode(SLAB_FILLER, { pooled: true }) as Uint8Array).byteOffset !== 0);
}

/** Every dtype name the codec supports, as numpy spells them. */
export const DTYPES: readonly DTypeName[] = [
  "bool",
  "int8",
  "uint8",
  "int16",
  "uint16",
  "int32",
  "uint32",
  "int64",
  "uint64",
  "float16",
  "float32",
  "float64",
  "complex64",
  "complex128",
];

function bytesOf(x: ArrayBufferView | ArrayBuffer): Uint8Array {
  return x instanceof ArrayBuffer
    ? new Uint8Array(x)
    : new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

/**
 * Compares two values the way the codec promises to preserve them: same kinds and classes,
 * `Object.is` for primitives, bit-identical array payloads, holes, frozenness, key order, Map
 * and Set order. Iterative, so it copes with any nesting depth. Returns null when equal, else
 * a description of the first difference.
 */
export function difference(a: unknown, b: unknown): string | null {
  const stack: [unknown, unknown, string][] = [[a, b, "value"]];
  while (stack.length > 0) {
    const [x, y, path] = stack.pop()!;
    if (typeof x !== typeof y) return `${path}: ${typeof x} vs ${typeof y}`;
    if (typeof x !== "object" || x === null || y === null) {
      if (!Object.is(x, y)) return `${path}: ${String(x)} vs ${String(y)}`;
      continue;
    }
    const yo = y as object;
    if (Object.getPrototypeOf(x) !== Object.getPrototypeOf(yo)) return `${path}: prototypes differ`;
    if (Object.isFrozen(x) !== Object.isFrozen(yo)) return `${path}: frozenness differs`;
    if (x instanceof DType) {
      if (x !== yo) return `${path}: dtypes differ`;
      continue;
    }
    if (x instanceof Date) {
      if (!Object.is(x.getTime(), (yo as Date).getTime())) return `${path}: dates differ`;
      continue;
    }
    if (ArrayBuffer.isView(x) || x instanceof ArrayBuffer) {
      const p = bytesOf(x);
      const q = bytesOf(yo as ArrayBuffer);
      if (p.length !== q.length) return `${path}: byte lengths ${p.length} vs ${q.length}`;
      for (let i = 0; i < p.length; i++) {
        if (p[i] !== q[i]) return `${path}: byte ${i} differs`;
      }
      continue;
    }
    if (x instanceof NdArray) {
      const z = yo as NdArray;
      if (x.dtype !== z.dtype) return `${path}: dtype ${x.dtype} vs ${z.dtype}`;
      if (x.shape.join() !== z.shape.join()) return `${path}: shape [${x.shape}] vs [${z.shape}]`;
      stack.push([x.data, z.data, `${path}.data`]);
      continue;
    }
    if (Array.isArray(x)) {
      const z = yo as unknown[];
      if (x.length !== z.length) return `${path}: length ${x.length} vs ${z.length}`;
      for (let i = x.length - 1; i >= 0; i--) {
        if ((i in x) !== (i in z)) return `${path}[${i}]: hole vs value`;
        stack.push([x[i], z[i], `${path}[${i}]`]);
      }
      continue;
    }
    if (x instanceof Map) {
      const z = yo as Map<unknown, unknown>;
      if (x.size !== z.size) return `${path}: Map size ${x.size} vs ${z.size}`;
      const p = [...x];
      const q = [...z];
      for (let i = p.length - 1; i >= 0; i--) {
        stack.push([p[i][0], q[i][0], `${path}[key #${i}]`]);
        stack.push([p[i][1], q[i][1], `${path}[value #${i}]`]);
      }
      continue;
    }
    if (x instanceof Set) {
      const z = yo as Set<unknown>;
      if (x.size !== z.size) return `${path}: Set size ${x.size} vs ${z.size}`;
      const p = [...x];
      const q = [...z];
      for (let i = p.length - 1; i >= 0; i--) stack.push([p[i], q[i], `${path}[item #${i}]`]);
      continue;
    }
    const kx = Object.keys(x);
    const ky = Object.keys(yo);
    if (kx.join("\u0000") !== ky.join("\u0000")) return `${path}: keys [${kx}] vs [${ky}]`;
    for (let i = kx.length - 1; i >= 0; i--) {
      const k = kx[i];
      stack.push([
        (x as Record<string, unknown>)[k],
        (yo as Record<string, unknown>)[k],
        `${path}.${k}`,
      ]);
    }
  }
  return null;
}

/** Throws when {@linkcode difference} finds one. */
export function assertSame(actual: unknown, expected: unknown, message = ""): void {
  const d = difference(actual, expected);
  if (d !== null) throw new Error(`${message ? message + ": " : ""}${d}`);
}

/** Hex of bytes, lower case, no separators. */
export function toHex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += b[i].toString(16).padStart(2, "0");
  return s;
}

/** Bytes of a hex string (whitespace ignored). */
export function fromHex(hex: string): Uint8Array<ArrayBuffer> {
  const h = hex.replace(/\s+/g, "");
  if (h.length % 2 !== 0 || /[^0-9a-fA-F]/.test(h)) throw new Error("bad hex");
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}
