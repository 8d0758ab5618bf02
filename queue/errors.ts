/**
 * The errors a queue throws. Every one of them is a {@linkcode QueueError}, so a caller can
 * catch the whole family with one `instanceof` check.
 *
 * @module
 */

/**
 * Base class of every error this library throws for queue conditions.
 *
 * @example Catch any queue error
 * ```ts
 * import { QueueError } from "./errors.ts";
 * try {
 *   throw new QueueError("example");
 * } catch (e) {
 *   if (!(e instanceof QueueError)) throw e;
 * }
 * ```
 */
export class QueueError extends Error {
  /** Creates the error with a message that says what happened. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Thrown by `get`/`getSync`/`borrow`/`borrowSync` when no message arrived before the
 * timeout.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EmptyError } from "./errors.ts";
 * const e = new EmptyError("no message within 3000 ms");
 * assert.ok(e.name === "EmptyError");
 * ```
 */
export class EmptyError extends QueueError {}

/**
 * Thrown by `put`/`putSync`, `putMany`/`putManySync` and `prepare`/`prepareSync` when the
 * queue stayed full until the timeout, and by `waitForAllAck`/`waitForAllAckSync` when
 * messages were still not received then; the message says which, and what holds the room.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FullError } from "./errors.ts";
 * const e = new FullError("queue still full after 100 ms");
 * assert.ok(e.name === "FullError");
 * ```
 */
export class FullError extends QueueError {
  /**
   * Of `putMany`/`putManySync`: how many of the values were put (the first ones, in order)
   * before the timeout. Undefined for the other calls, which put nothing when they time out.
   */
  readonly sent: number | undefined;

  /** Creates the error; `sent` is for `putMany`'s. */
  constructor(message: string, options?: ErrorOptions & { sent?: number }) {
    super(message, options);
    this.sent = options?.sent;
  }
}

/**
 * Thrown when the end used is closed, when every sender has closed and the queue is drained
 * (on `get`), or when every receiver has closed (on `put`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClosedError } from "./errors.ts";
 * const e = new ClosedError("every sender has closed", { reason: "drained" });
 * assert.ok(e.name === "ClosedError" && e.reason === "drained");
 * ```
 */
export class ClosedError extends QueueError {
  /**
   * Why: `"closed"` this end was closed; `"drained"` every sender closed and nothing is left;
   * `"no-receivers"` every receiver closed; `"gone"` the queue no longer exists; `"corrupt"`
   * its shared state (or the segment by its name) was found corrupt; `"stuck"` a live end has
   * held the queue's lock too long (a process stopped with SIGSTOP, or hung inside a call).
   * A call with a timeout under 10 s that a stopped holder keeps out throws its `EmptyError` or
   * `FullError` when it expires instead.
   */
  readonly reason: ClosedReason;

  /**
   * Of `putMany`/`putManySync`: how many of the values were put (the first ones, in order)
   * before the queue closed for the call. Undefined for the other calls, and for a `putMany`
   * refused before it began (its end already closed).
   */
  readonly sent: number | undefined;

  /** Creates the error; `reason` says which of the closed conditions it is, `sent` is for
   * `putMany`'s. */
  constructor(
    message: string,
    options?: ErrorOptions & { reason?: ClosedReason; sent?: number },
  ) {
    super(message, options);
    this.reason = options?.reason ?? "closed";
    this.sent = options?.sent;
  }
}

/**
 * The conditions a {@linkcode ClosedError} reports.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClosedError, type ClosedReason } from "./errors.ts";
 * const reason: ClosedReason = new ClosedError("drained", { reason: "drained" }).reason;
 * assert.ok(reason === "drained");
 * ```
 */
export type ClosedReason = "closed" | "drained" | "no-receivers" | "gone" | "corrupt" | "stuck";

/**
 * Thrown when bytes cannot be decoded: truncated, corrupt, or forged data.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DecodeError } from "./errors.ts";
 * const e = new DecodeError("truncated string at byte 12");
 * assert.ok(e instanceof Error);
 * ```
 */
export class DecodeError extends QueueError {}

/** Errors the caller's own code threw into a call (its `allocate` callback): theirs, not ours
 * to rename. */
const callersOwn = new WeakSet<object>();

/** Marks `error`, thrown by the caller's own code inside a call, as one
 * {@linkcode namingCall} leaves alone. Returns it, to be thrown. */
export function thrownByCaller(error: unknown): unknown {
  if (typeof error === "object" && error !== null) callersOwn.add(error);
  return error;
}

/**
 * Puts `method` ("Receiver.get") in front of the message of a queue error (or of an error of
 * the operating system, a NativeError) that does not name its call yet: one raised while the
 * call waited (its end closed meanwhile, every peer left, the queue found corrupt). Returns the
 * error, to be thrown. An error of the caller's own (the reason its `signal` aborted with, one
 * its `allocate` threw) is left as it is: the same object may reject other calls too, and the
 * caller may keep it.
 */
export function namingCall(error: unknown, method: string, signal?: AbortSignal): unknown {
  if (
    isLibrarys(error) && !callersOwn.has(error) &&
    !(signal?.aborted && error === signal.reason) && !NAMES_CALL.test(error.message)
  ) {
    error.message = `${method}: ${error.message}`;
  }
  return error;
}

/** A message that starts with the call it came from ("Receiver.get: "). */
const NAMES_CALL = /^\w+\.\w+: /;

/** Errors of other classes this library raised itself (see {@linkcode ours}). */
const ownErrors = new WeakSet<object>();

/** Marks an error of another class (a RangeError: /dev/shm is full) as this library's own, so
 * that {@linkcode namingCall} names the call it came from. Returns it, to be thrown. */
export function ours<E extends Error>(error: E): E {
  ownErrors.add(error);
  return error;
}

/** Whether `error` is one of this library's: a QueueError, one marked {@linkcode ours}, or a
 * NativeError (told by its name: the codec imports this module, and must not pull in the
 * native core with it). */
function isLibrarys(error: unknown): error is Error {
  return error instanceof QueueError || ownErrors.has(error as object) ||
    (error instanceof Error && error.name === "NativeError");
}

/**
 * Says, in the message of an error a later call will throw for `method` (a getMany that
 * consumed a broken message after others it returned), which call consumed that message: the
 * one that throws never saw it. Returns the error, to be held.
 */
export function consumedEarlier(error: unknown, method: string, returned: number): unknown {
  if (isLibrarys(error) && !callersOwn.has(error) && !NAMES_CALL.test(error.message)) {
    error.message = `a message ${method} consumed after the ${returned} it returned could ` +
      `not be read: ${error.message}`;
  }
  return error;
}
