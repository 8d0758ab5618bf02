/**
 * The receiving end of a queue.
 *
 * @module
 */

import { decode } from "../codec/mod.ts";
import { prepareCopyTarget } from "../ffi/native.ts";
import { ClosedError, EmptyError } from "./errors.ts";
import { DESCRIPTOR_VERSION, type QueueDescriptor } from "./descriptor.ts";
import { Lease } from "./lease.ts";
import type { SharedQueue, TakenMessage } from "./shared_queue.ts";
import {
  type Attempt,
  deadlineOf,
  type SyncWaitOptions,
  waitAsync,
  type WaitOptions,
  waitSync,
} from "./wait.ts";
import { turnIfDue } from "./fairness.ts";

/** Messages up to this size are decoded inside the critical section that takes them, and
 * released in the same one. */
const SMALL_MESSAGE = 16 * 1024;
/** How often polling calls (getNowait) look for dead peers when they find nothing. */
const REAP_EVERY_MS = 200;

/**
 * Gets messages from a queue. Make one with `createSharedMemoryPair`, or open one in another
 * process or Worker with `openReceiver(descriptor)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, EmptyError } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * assert.ok(receiver.getNowait() === undefined);
 * await sender.put(new Float32Array([1, 2, 3]));
 * const floats = await receiver.get({ timeout: 3000 }) as Float32Array;
 * assert.ok(floats[2] === 3);
 * try {
 *   await receiver.get({ timeout: 10 });
 * } catch (e) {
 *   assert.ok(e instanceof EmptyError);
 * }
 * sender.close();
 * receiver.close();
 * ```
 */
export class Receiver implements Disposable, AsyncIterable<unknown> {
  readonly #queue: SharedQueue;
  readonly #leases = new Set<Lease<unknown>>();
  #nextReap = 0;

  /** @internal Use `createSharedMemoryPair` or `openReceiver`. */
  constructor(queue: SharedQueue) {
    this.#queue = queue;
  }

  /** A JSON-serializable reference to this queue, for `openSender`/`openReceiver` elsewhere. */
  get descriptor(): QueueDescriptor {
    return { shmq: DESCRIPTOR_VERSION, end: "receiver", name: this.#queue.name };
  }

  /** Whether this end was closed. */
  get closed(): boolean {
    return this.#queue.closed;
  }

  /**
   * Waits for a message and returns it decoded into memory the caller owns. Rejects with
   * `EmptyError` when `timeout` ms pass first, `ClosedError` once every sender has closed
   * and the queue is drained, `DecodeError` for a message that cannot be decoded (it is
   * consumed, and the queue stays usable).
   */
  async get<T = unknown>(options?: WaitOptions): Promise<T> {
    const deadline = deadlineOf(options?.timeout, "Receiver.get");
    options?.signal?.throwIfAborted();
    const turn = turnIfDue();
    if (turn) await turn;
    const got = this.#getAttempt() ??
      await waitAsync(
        this.#queue,
        this.#queue.putSignal,
        this.#getAttempt,
        deadline,
        options?.signal,
      );
    if (got === undefined) throw this.#empty("get", options?.timeout);
    return got.value as T;
  }

  /** Like {@linkcode get}, but blocks the thread: for actors and Workers that do nothing else. */
  getSync<T = unknown>(options?: SyncWaitOptions): T {
    const deadline = deadlineOf(options?.timeout, "Receiver.getSync");
    const got = waitSync(this.#queue, this.#queue.putSignal, this.#getAttempt, deadline);
    if (got === undefined) throw this.#empty("getSync", options?.timeout);
    return got.value as T;
  }

  /**
   * Returns the next message, or `undefined` when none is waiting. Throws `ClosedError`
   * once every sender has closed and the queue is drained.
   */
  getNowait<T = unknown>(): T | undefined {
    const got = this.#getAttempt();
    if (got !== undefined) return got.value as T;
    // Nothing ready, maybe only because a dead sender's unfinished message is in the way.
    // Waiting calls notice dead peers on their own; a caller that only polls must, too.
    const now = performance.now();
    if (now < this.#nextReap) return undefined;
    this.#nextReap = now + REAP_EVERY_MS;
    this.#queue.reapDead();
    return this.#getAttempt()?.value as T | undefined;
  }

  /**
   * Waits for a message and lends it in place: its arrays are views into shared memory, no
   * copy is made. Release the lease (or use `using`) to give the space back; its views are
   * detached then.
   */
  async borrow<T = unknown>(options?: WaitOptions): Promise<Lease<T>> {
    const deadline = deadlineOf(options?.timeout, "Receiver.borrow");
    options?.signal?.throwIfAborted();
    const turn = turnIfDue();
    if (turn) await turn;
    const taken = this.#takeAttempt() ??
      await waitAsync(
        this.#queue,
        this.#queue.putSignal,
        this.#takeAttempt,
        deadline,
        options?.signal,
      );
    if (taken === undefined) throw this.#empty("borrow", options?.timeout);
    return this.#lease<T>(taken.value);
  }

  /** Like {@linkcode borrow}, but blocks the thread. */
  borrowSync<T = unknown>(options?: SyncWaitOptions): Lease<T> {
    const deadline = deadlineOf(options?.timeout, "Receiver.borrowSync");
    const taken = waitSync(this.#queue, this.#queue.putSignal, this.#takeAttempt, deadline);
    if (taken === undefined) throw this.#empty("borrowSync", options?.timeout);
    return this.#lease<T>(taken.value);
  }

  /** Yields messages until every sender has closed and the queue is drained. */
  async *[Symbol.asyncIterator](): AsyncGenerator<unknown, void, undefined> {
    for (;;) {
      let value: unknown;
      try {
        value = await this.get();
      } catch (error) {
        if (error instanceof ClosedError && error.reason === "drained") return;
        throw error;
      }
      yield value;
    }
  }

  /** Leaves the queue. Outstanding leases are released and their views detached. */
  close(): void {
    if (this.#queue.closed) return;
    for (const lease of [...this.#leases]) lease.release();
    this.#queue.close();
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  readonly #getAttempt: Attempt<unknown> = () => {
    const queue = this.#queue;
    const got = queue.takeSmall(SMALL_MESSAGE, decodeCopy);
    if (got === undefined || "value" in got) return got;
    try {
      return { value: decode(queue.messageBytes(got), COPY_OPTIONS) };
    } finally {
      queue.release(got.slot);
    }
  };

  readonly #takeAttempt: Attempt<TakenMessage> = () => {
    const taken = this.#queue.take();
    return taken === undefined ? undefined : { value: taken };
  };

  #lease<T>(m: TakenMessage): Lease<T> {
    const queue = this.#queue;
    let view;
    let value: T;
    try {
      view = queue.openView(m.segment, m.offset, m.length);
      value = decode(new Uint8Array(view.buffer, 0, m.length), { view: true }) as T;
    } catch (error) {
      if (view) queue.dropView(view);
      queue.release(m.slot);
      throw error;
    }
    const lease = new Lease<T>(queue, m, view, value, (l) => {
      this.#leases.delete(l as Lease<unknown>);
    });
    this.#leases.add(lease as Lease<unknown>);
    return lease;
  }

  #empty(method: string, timeout: number | undefined): EmptyError {
    return new EmptyError(`Receiver.${method}: no message arrived within ${timeout} ms`);
  }
}

/** Copies this large go into buffers readied for them first (huge pages, pre-faulted): a
 * fresh buffer otherwise takes a page fault every 4 KiB during the copy. */
const LARGE_COPY = 8 * 1024 * 1024;

const COPY_OPTIONS = {
  allocate(byteLength: number): ArrayBuffer {
    const buffer = new ArrayBuffer(byteLength);
    if (byteLength >= LARGE_COPY) prepareCopyTarget(buffer);
    return buffer;
  },
};

function decodeCopy(bytes: Uint8Array): unknown {
  return decode(bytes);
}
