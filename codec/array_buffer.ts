/**
 * Facts about ArrayBuffers read through ArrayBuffer.prototype's own getters, which check the
 * object's internal slots: an own `detached` or `byteLength` property, a Proxy, or an object
 * made with ArrayBuffer.prototype cannot fake them.
 *
 * @module
 */

const byteLengthOf = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, "byteLength")!.get!;
const detachedOf = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, "detached")!.get!;

/** The byte length of a real ArrayBuffer (0 once detached); undefined for anything else. */
export function arrayBufferLength(value: unknown): number | undefined {
  try {
    return byteLengthOf.call(value) as number;
  } catch {
    return undefined;
  }
}

/** Whether `value` is a real ArrayBuffer that is detached (false for anything else). */
export function isDetached(value: unknown): boolean {
  try {
    return detachedOf.call(value) as boolean;
  } catch {
    return false;
  }
}
