/**
 * Zero-copy handles: a {@linkcode Lease} lends a received message in place, a
 * {@linkcode Draft} lends a message being written in place.
 *
 * @module
 */

import { ClosedError } from "./errors.ts";
import type { MessageView } from "./extension_mappings.ts";
import { type Reservation, SharedQueue, type TakenMessage } from "./shared_queue.ts";

/**
 * A received message whose arrays are views into the queue's shared memory (for a message of
 * at most 2 KiB, into a copy the receiver recycles). Release it (or let `using` dispose it)
 * when done: its space goes back to the sender, and every view into it is detached so it can
 * never alias a later message. Release only once no async call still uses its arrays (await
 * a `file.write(lease.value)` first): an operation running inside Deno holds the memory
 * past the detaching, and would read the next message written there. (Do not `transfer()` a
 * view's buffer: a moved buffer escapes the detaching. It can never crash the process, and
 * is cut off from shared memory once every view of its mapping is released; while other
 * leases of this end are held it still shows, and if written corrupts, later messages. Its
 * mapping stays reserved for the life of the process. Copy with `slice()` to keep bytes.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * await sender.put({ frame: new Float32Array([0.5, 1.5]) });
 * const lease = await receiver.borrow<{ frame: Float32Array }>();
 * const { frame } = lease.value;
 * assert.equal(frame[1], 1.5); // read in place, no copy
 * lease.release();
 * assert.equal(frame.length, 0); // detached: it can never alias a later message
 * sender.close();
 * receiver.close();
 * ```
 */
export class Lease<T = unknown> implements Disposable {
  readonly #queue: SharedQueue;
  readonly #message: TakenMessage;
  readonly #view: MessageView;
  readonly #onRelease: (lease: Lease<T>) => void;
  readonly #value: T;
  #released = false;

  /** @internal Made by `Receiver.borrow`. */
  constructor(
    queue: SharedQueue,
    message: TakenMessage,
    view: MessageView,
    value: T,
    onRelease: (lease: Lease<T>) => void,
  ) {
    if (!(queue instanceof SharedQueue)) {
      throw new TypeError("a Lease is made by Receiver.borrow() or borrowSync(), not new");
    }
    this.#queue = queue;
    this.#message = message;
    this.#view = view;
    this.#value = value;
    this.#onRelease = onRelease;
  }

  /** The decoded message; its arrays view shared memory until {@linkcode release}. */
  get value(): T {
    return this.#value;
  }

  /** Encoded size of the message in bytes. */
  get byteLength(): number {
    return this.#message.length;
  }

  /** Whether the lease was released. */
  get released(): boolean {
    return this.#released;
  }

  /** Returns the message's space to the queue and detaches its views. Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#queue.dropView(this.#view);
    this.#onRelease(this);
    this.#queue.release(this.#message.slot);
  }

  /** Same as {@linkcode release}, for `using`. */
  [Symbol.dispose](): void {
    this.release();
  }
}

/** Drafts cancelled because their sender closed, not by a call of the user's. */
const cancelledOnClose = new WeakSet<object>();

/** Cancels a draft because its sender closes: a later `send` then says so. */
export function cancelOnClose<T>(draft: Draft<T>): void {
  cancelledOnClose.add(draft);
  draft.cancel();
}

/**
 * A message being written in place: its arrays already live in the queue's shared memory.
 * Fill them, then {@linkcode send}. Disposing a draft that was not sent cancels it. Send only
 * once no async call still fills its arrays (await a `file.read(draft.value.data)` first). (Do
 * not `transfer()` their buffer: a moved buffer escapes the detaching on send.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, type NdArray, reserve } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * const draft = await sender.prepare<{ step: number; obs: NdArray<Float32Array> }>({
 *   step: 7,
 *   obs: reserve("float32", [84, 84, 3]),
 * });
 * draft.value.obs.data.fill(0.5); // writes straight into shared memory
 * draft.send();
 * const got = await receiver.get<{ step: number; obs: NdArray<Float32Array> }>();
 * assert.deepEqual(got.obs.shape, [84, 84, 3]);
 * assert.equal(got.obs.data[100], 0.5);
 * sender.close();
 * receiver.close();
 * ```
 */
export class Draft<T = unknown> implements Disposable {
  readonly #queue: SharedQueue;
  readonly #reservation: Reservation;
  readonly #view: MessageView;
  readonly #onSettle: (draft: Draft<T>, sent: boolean) => void;
  readonly #value: T;
  #settled = false;
  #sent = false;

  /** @internal Made by `Sender.prepare`. */
  constructor(
    queue: SharedQueue,
    reservation: Reservation,
    view: MessageView,
    value: T,
    onSettle: (draft: Draft<T>, sent: boolean) => void,
  ) {
    if (!(queue instanceof SharedQueue)) {
      throw new TypeError("a Draft is made by Sender.prepare() or prepareSync(), not new");
    }
    this.#queue = queue;
    this.#reservation = reservation;
    this.#view = view;
    this.#value = value;
    this.#onSettle = onSettle;
  }

  /** The message, with every array a view into shared memory: the reserved ones, and those the
   * template carried. What is written into them is sent; numbers, strings and the structure
   * were written by `prepare`, and changing them here sends nothing. */
  get value(): T {
    return this.#value;
  }

  /** Whether it was sent or cancelled. */
  get settled(): boolean {
    return this.#settled;
  }

  /** Publishes the message. Its views are detached: the receiver owns the bytes now. Throws
   * `ClosedError` (and cancels the draft) when every receiver has closed, as `put` does. */
  send(): void {
    // Closed under it without a cancel: a Worker's stop closes the ends it opened itself.
    if (!this.#settled && this.#queue.closed) cancelOnClose(this);
    if (this.#settled) {
      throw this.#sent
        ? new TypeError("Draft.send: this draft was already sent")
        : cancelledOnClose.has(this)
        ? new ClosedError("Draft.send: its sender was closed, which cancelled this draft")
        : new TypeError("Draft.send: this draft was cancelled");
    }
    // As a put finds it: a message no receiver is left to take is not sent.
    if (this.#queue.livePeers === 0) {
      this.cancel();
      throw new ClosedError(
        `Draft.send: ${this.#queue.goneMessage("receiver")}; the draft was cancelled`,
        { reason: "no-receivers" },
      );
    }
    this.#settled = true;
    this.#sent = true;
    this.#queue.dropView(this.#view);
    this.#queue.publish(this.#reservation);
    this.#onSettle(this, true);
  }

  /** Drops the message unsent and frees its space. Idempotent. Behind a peer stopped while it
   * keeps the queue's lock (SIGSTOP, a debugger) it returns within about 2 ms, and the space
   * comes back at the next take, put or `stats()` once the lock is free. Should it throw (a
   * running peer keeps the lock past 10 s: `ClosedError`, reason `"stuck"`), the draft is
   * still unsent, and still yours to cancel again, or to send. */
  cancel(): void {
    if (this.#settled) return;
    // First: settled before a cancel that threw, its slot stayed reserved for good, holding
    // back its sender's later messages, and no retry could free it.
    this.#queue.cancel(this.#reservation);
    this.#settled = true;
    this.#queue.dropView(this.#view);
    this.#onSettle(this, false);
  }

  /** Cancels the draft unless it was sent, for `using`. */
  [Symbol.dispose](): void {
    this.cancel();
  }
}
