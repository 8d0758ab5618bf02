/**
 * Zero-copy handles: a {@linkcode Lease} lends a received message in place, a
 * {@linkcode Draft} lends a message being written in place.
 *
 * @module
 */

import type { MessageView, Reservation, SharedQueue, TakenMessage } from "./shared_queue.ts";

/**
 * A received message whose arrays are views into the queue's shared memory. Release it (or
 * let `using` dispose it) when done: its space goes back to the sender, and every view into
 * it is detached so it can never alias a later message.
 *
 * @example
 * ```ts ignore
 * using lease = await receiver.borrow();
 * const { frame } = lease.value as { frame: Float32Array };
 * console.log(frame[0]); // read in place, no copy
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

/**
 * A message being written in place: its arrays already live in the queue's shared memory.
 * Fill them, then {@linkcode send}. Disposing a draft that was not sent cancels it.
 *
 * @example
 * ```ts ignore
 * import { reserve } from "./mod.ts";
 * using draft = await sender.prepare({ step: 7, obs: reserve("float32", [84, 84, 3]) });
 * draft.value.obs.data.fill(0.5); // writes straight into shared memory
 * draft.send();
 * ```
 */
export class Draft<T = unknown> implements Disposable {
  readonly #queue: SharedQueue;
  readonly #reservation: Reservation;
  readonly #view: MessageView;
  readonly #onSettle: (draft: Draft<T>, sent: boolean) => void;
  readonly #value: T;
  #settled = false;

  /** @internal Made by `Sender.prepare`. */
  constructor(
    queue: SharedQueue,
    reservation: Reservation,
    view: MessageView,
    value: T,
    onSettle: (draft: Draft<T>, sent: boolean) => void,
  ) {
    this.#queue = queue;
    this.#reservation = reservation;
    this.#view = view;
    this.#value = value;
    this.#onSettle = onSettle;
  }

  /** The message, with each reserved array a view into shared memory. */
  get value(): T {
    return this.#value;
  }

  /** Whether it was sent or cancelled. */
  get settled(): boolean {
    return this.#settled;
  }

  /** Publishes the message. Its views are detached: the receiver owns the bytes now. */
  send(): void {
    if (this.#settled) throw new TypeError("Draft.send: this draft was already sent or cancelled");
    this.#settled = true;
    this.#queue.dropView(this.#view);
    this.#queue.publish(this.#reservation);
    this.#onSettle(this, true);
  }

  /** Drops the message unsent and frees its space. Idempotent. */
  cancel(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#queue.dropView(this.#view);
    this.#onSettle(this, false);
    this.#queue.cancel(this.#reservation);
  }

  /** Cancels the draft unless it was sent, for `using`. */
  [Symbol.dispose](): void {
    this.cancel();
  }
}
