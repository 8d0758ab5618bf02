/**
 * Descriptors: the plain JSON values that carry a queue end to another process or Worker.
 *
 * @module
 */

import { QUEUE_NAME_PATTERN } from "./layout.ts";

/** Version of the descriptor format. */
export const DESCRIPTOR_VERSION = 1;

/**
 * A JSON-serializable reference to a queue. Pass it to another process or Worker (stdin,
 * argv, postMessage, a file) and open an end there with `openSender` or `openReceiver`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { QueueDescriptor } from "./descriptor.ts";
 * const d: QueueDescriptor = { shmq: 1, end: "receiver", name: "/shmq-00112233445566778899aabbccddeeff" };
 * assert.ok(JSON.parse(JSON.stringify(d)).name === d.name);
 * ```
 */
export interface QueueDescriptor {
  /** Descriptor format version. */
  readonly shmq: 1;
  /** The end it was taken from. `openSender` and `openReceiver` open either end from either
   * end's descriptor; `spawnActor` and `spawnWorker` open this end in the actor. */
  readonly end: "sender" | "receiver";
  /** The queue's shared-memory name: `/shmq-` and 32 hex digits. */
  readonly name: string;
}

/**
 * Checks a descriptor that may come from untrusted text, so that it can never make the
 * library open or unlink anything outside its own naming scheme.
 */
export function parseDescriptor(input: unknown, caller: string): QueueDescriptor {
  const bad = (what: string): never => {
    throw new TypeError(`${caller}: invalid queue descriptor: ${what}`);
  };
  let value = input;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch {
      bad("a string that is not JSON");
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    bad(
      `expected an object, got ${
        value === null ? "null" : Array.isArray(value) ? "an array" : typeof value
      }`,
    );
  }
  // Each field is read once: a getter or proxy must not pass the checks with one value and
  // hand over another.
  let shmq: unknown, end: unknown, name: unknown;
  try {
    ({ shmq, end, name } = value as Record<string, unknown>);
  } catch {
    bad("its fields cannot be read");
  }
  if (shmq !== DESCRIPTOR_VERSION) {
    // A Sender or Receiver itself, passed where its descriptor belongs.
    let end = false;
    try {
      end = shmq === undefined && "descriptor" in (value as object);
    } catch { /* a proxy that throws: no hint */ }
    if (end) bad("got a queue end: pass its .descriptor");
    let fields = -1;
    try {
      fields = Object.keys(value as object).length;
    } catch { /* a proxy that throws: no hint */ }
    // What JSON.stringify makes of a Sender or Receiver: it has no enumerable fields.
    if (shmq === undefined && fields === 0) {
      bad("got an empty object (JSON.stringify of a queue end gives {}): pass its .descriptor");
    }
    bad(`version ${show(shmq)}, this library reads version ${DESCRIPTOR_VERSION}`);
  }
  if (end !== "sender" && end !== "receiver") {
    bad(`end must be "sender" or "receiver", got ${show(end)}`);
  }
  if (typeof name !== "string" || !QUEUE_NAME_PATTERN.test(name)) {
    bad(`name must be "/shmq-" and 32 hex digits, got ${show(name)}`);
  }
  return { shmq: DESCRIPTOR_VERSION, end: end as "sender" | "receiver", name: name as string };
}

/** A short rendering of an untrusted value for an error message. */
function show(value: unknown): string {
  let text: string;
  try {
    text = typeof value === "bigint" ? `${value}n` : JSON.stringify(value) ?? String(value);
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > 80 ? `${text.slice(0, 80)}… (${text.length} characters)` : text;
}
