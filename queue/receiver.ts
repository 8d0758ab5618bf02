/**
 * The receiving end of a queue.
 *
 * @module
 */

import { type Inspect, inspectEnd } from "./inspect.ts";
import { decodeBytes, type DecodeBytesOptions, wrongAllocation } from "../codec/decode.ts";
import {
  mallocFromHeap,
  memoryRoom,
  prefaultJoin,
  prefaultStart,
  prepareCopyTarget,
  tuneMallocForCopies,
} from "../ffi/native.ts";
import {
  ClosedError,
  consumedEarlier,
  EmptyError,
  namingCall,
  ours,
  thrownByCaller,
} from "./errors.ts";
import { freeDroppedMemory, memoryLeft, roomHolder } from "./segment.ts";
import { DESCRIPTOR_VERSION, type QueueDescriptor } from "./descriptor.ts";
import { Lease } from "./lease.ts";
import type { MessageView } from "./extension_mappings.ts";
import { SharedQueue, type TakenMessage } from "./shared_queue.ts";
import type { QueueStats } from "./stats.ts";
import {
  type Attempt,
  attemptBy,
  briefDeadline,
  checkOptionsObject,
  deadlineOf,
  SYNC_WAIT_OPTIONS,
  type SyncWaitOptions,
  WAIT_OPTIONS,
  waitAsync,
  type WaitOptions,
  waitSync,
} from "./wait.ts";
import { BEHIND, Lane } from "./lane.ts";
import { collectBeforeCopy } from "./collector.ts";
import { keepHeapFor, releaseKeptHeap } from "./kept_heap.ts";
import { stopIfRequested, stopRequested } from "./stop.ts";
import { shown } from "./shown.ts";
import { isMainThread } from "./this_thread.ts";

/**
 * Options of `get`: where its arrays are copied to.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * // Two frames' worth of memory, reused: the copy runs at memcpy speed (no fresh pages).
 * const frames = [new ArrayBuffer(4096), new ArrayBuffer(4096)];
 * let turn = 0;
 * const allocate = (byteLength: number) =>
 *   byteLength === 4096 ? frames[turn++ % 2] : new ArrayBuffer(byteLength);
 * await sender.put(new Float32Array(1024).fill(7));
 * const frame = await receiver.get<Float32Array>({ timeout: 3000, allocate });
 * assert.ok(frame.buffer === frames[0] && frame[1023] === 7);
 * sender.close();
 * receiver.close();
 * ```
 */
export interface GetOptions extends WaitOptions {
  /**
   * Returns the ArrayBuffer an array of the message is copied into: exactly `byteLength`
   * bytes, called once per array (TypedArray, NdArray, DataView, ArrayBuffer) in the message
   * (with `pooled`, only for those not put in a slab).
   * Hand out buffers you have finished with to skip the allocation and page faults of fresh
   * memory, which bound a large `get` at a few GB/s. Default: a new ArrayBuffer. It must not
   * call this receiver's gets or borrows (they throw `TypeError`), nor hand out one buffer
   * twice for one message.
   */
  allocate?: (byteLength: number) => ArrayBuffer;
  /**
   * Copies the message's arrays of at most 2 KiB into slices of shared 32 KiB ArrayBuffers,
   * not a fresh ArrayBuffer each, as Node pools small Buffers: a fresh one costs Deno 0.6-1
   * µs, which bounds a stream of small arrays (measured on a 2-vCPU VM, one process, 100 B:
   * `getSync` 1.02 -> 0.36 µs). Such an array's `buffer` holds other arrays too, of this
   * message and of earlier ones in this isolate (any queue's): mind its `byteOffset`, and
   * never hand the buffer itself to code that should not see those bytes. `slice()` the
   * array before you transfer its buffer (that would detach the others), or send it elsewhere
   * with `postMessage` or `structuredClone` (that would copy the whole slab, other messages'
   * bytes included). A slab stays in memory while any array in it does. Larger arrays go to
   * `allocate`, or fresh memory. Default false.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * sender.putSync(new Uint8Array([1, 2, 3]));
   * sender.putSync(new Uint8Array([4, 5, 6]));
   * const a = receiver.getSync<Uint8Array>({ timeout: 3000, pooled: true });
   * const b = receiver.getSync<Uint8Array>({ timeout: 3000, pooled: true });
   * assert.deepEqual([...a, ...b], [1, 2, 3, 4, 5, 6]);
   * assert.ok(a.buffer === b.buffer, "one slab holds both");
   * const own = b.slice(); // a copy with a buffer of its own, safe to transfer
   * assert.equal(own.buffer.byteLength, 3);
   * sender.close();
   * receiver.close();
   * ```
   */
  pooled?: boolean;
}

/**
 * Options of `getSync`: a timeout and where its arrays are copied to.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * const target = new ArrayBuffer(8);
 * sender.putSync(new Uint8Array(8).fill(1));
 * const bytes = receiver.getSync<Uint8Array>({ timeout: 3000, allocate: () => target });
 * assert.ok(bytes.buffer === target && bytes[7] === 1);
 * sender.close();
 * receiver.close();
 * ```
 */
export interface SyncGetOptions extends SyncWaitOptions {
  /** See {@linkcode GetOptions.allocate}. */
  allocate?: (byteLength: number) => ArrayBuffer;
  /** See {@linkcode GetOptions.pooled}. */
  pooled?: boolean;
}

/**
 * Options of `getNowait`: where its arrays are copied to.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, type NowaitGetOptions } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * const options: NowaitGetOptions = { pooled: true };
 * assert.equal(receiver.getNowait(options), undefined);
 * sender.putSync(new Float64Array([0.5]));
 * assert.equal(receiver.getNowait<Float64Array>(options)?.[0], 0.5);
 * sender.close();
 * receiver.close();
 * ```
 */
export type NowaitGetOptions = Pick<GetOptions, "allocate" | "pooled">;

const COPY_TARGET_OPTIONS = ["allocate", "pooled"] as const satisfies (keyof NowaitGetOptions)[];
const GET_OPTIONS = [...WAIT_OPTIONS, ...COPY_TARGET_OPTIONS] as const satisfies (
  keyof GetOptions
)[];
const SYNC_GET_OPTIONS = [...SYNC_WAIT_OPTIONS, ...COPY_TARGET_OPTIONS] as const satisfies (
  keyof SyncGetOptions
)[];

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
 * await assert.rejects(receiver.get({ timeout: 10 }), EmptyError); // nothing within 10 ms
 * sender.close();
 * receiver.close();
 * ```
 */
export class Receiver implements Disposable, AsyncIterable<unknown> {
  readonly #queue: SharedQueue;
  readonly #leases = new Set<Lease<unknown>>();
  /** This end's async gets and borrows, served in call order. */
  readonly #lane = new Lane();
  #pending: TakenMessage | undefined;
  /** Messages a waiting borrow took, until it resumes and lends them: a close in between gives
   * them back to the queue (see close). */
  readonly #inTransit = new Set<TakenMessage>();
  /** A caller's `allocate` runs: this end takes nothing meanwhile (see #takeNext). */
  #inAllocate = false;
  /** The error of a message a getMany consumed after others it returned: the next call of
   * this end throws it (see #manyAttempt). */
  #deferred: { error: unknown } | undefined;
  /** The error of a message #takeDecoded consumed after others of a getMany batch, for
   * #manyAttempt to tell it from errors no message went with (and then to drop). */
  #consumedError: unknown;
  /** While a getMany batch is copied: its messages so far, held rather than released (see
   * L.SlotState.Held), each with whether it is (SharedQueue.hold). */
  #batch: BatchEntry[] | undefined;
  /** The stream `readable` hands out, made at its first use. */
  #readable: ReadableStream<unknown> | undefined;

  /** @internal Use `createSharedMemoryPair` or `openReceiver`. */
  constructor(queue: SharedQueue) {
    if (!(queue instanceof SharedQueue)) {
      throw new TypeError(
        "a Receiver is made by createSharedMemoryPair() or openReceiver(), not new",
      );
    }
    this.#queue = queue;
  }

  /** A JSON-serializable reference to this queue, for `openSender`/`openReceiver` elsewhere. */
  get descriptor(): QueueDescriptor {
    return { shmq: DESCRIPTOR_VERSION, end: "receiver", name: this.#queue.name };
  }

  /** The queue's capacity: how many messages may be outstanding. */
  get capacity(): number {
    return this.#queue.capacity;
  }

  /** Whether this end was closed. */
  get closed(): boolean {
    return this.#queue.closed;
  }

  /**
   * How many senders of this queue ended without closing (their process killed or crashed,
   * their Worker ended, or their `writable` stream aborted or refusing a chunk) since the queue
   * was made: nonzero tells a stream cut short from one whose senders all finished, which
   * `for await` and a `"drained"` `ClosedError` do not.
   * A death counts once an end has noticed it: within about a second, and always by the time
   * `for await` ends. After `close()`, the figure this end last saw.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * sender.putSync("last");
   * sender.close();
   * for await (const message of receiver) assert.equal(message, "last");
   * assert.equal(receiver.sendersDied, 0, "every sender closed: the stream is whole");
   * receiver.close();
   * ```
   */
  get sendersDied(): number {
    return this.#queue.peersDied;
  }

  /**
   * A snapshot of the queue for monitoring, the same as the senders see (see
   * {@linkcode QueueStats}): for instance, how many messages wait for this end and its peers.
   * Takes the queue's lock for a moment, as a put does, but never waits for it for more than
   * a few milliseconds (a stopped peer may keep it): past that, it reads without it. Throws
   * `ClosedError` once this end is closed, or when the queue is found corrupt.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * sender.putManySync([1, 2, 3]);
   * assert.equal(receiver.stats().waiting, 3);
   * using lease = receiver.borrowSync();
   * assert.deepEqual([receiver.stats().waiting, receiver.stats().inFlight], [2, 3]);
   * lease.release();
   * assert.equal(receiver.stats().received, 1);
   * sender.close();
   * receiver.close();
   * ```
   */
  stats(): QueueStats {
    try {
      stopIfRequested();
      this.#queue.assertOpen("Receiver.stats");
      return this.#queue.stats();
    } catch (error) {
      throw namingCall(error, "Receiver.stats");
    }
  }

  /**
   * Waits for a message and returns it decoded into memory the caller owns. Rejects with
   * `EmptyError` when `timeout` ms pass first, `ClosedError` once every sender has closed
   * and the queue is drained, `DecodeError` for a message that cannot be decoded (it is
   * consumed, and the queue stays usable). When `allocate` throws or returns the wrong
   * buffer, that error propagates and the message stays first in line for this end; so it
   * does when its extension segment cannot be mapped now (a `NativeError` such as `EMFILE`),
   * and, with a `RangeError`, when the memory left (the machine's, or the memory cgroup's)
   * cannot take the copy of a message of 64 MiB or more (or of a sixteenth of the cgroup's
   * limit, if less), counted as its encoded size, even after a garbage collection (without
   * `allocate`, whose buffers are yours): `borrow` views its arrays in place. A large string
   * takes more than its size once decoded, and a borrow decodes it too.
   *
   * Calls that overlap (not awaited one by one) get messages in the order they were made
   * (`getSync`, `getManySync`, `getNowait` and `borrowSync`, which cannot wait for them, go
   * first).
   */
  get<T = unknown>(options?: GetOptions): Promise<T> {
    return this.#get<T>(options, "Receiver.get");
  }

  /**
   * {@linkcode get}, its errors naming `call` (a `for await` loop calls no get itself), with
   * the attempt a loop made once for all its messages, and its timeout named after `method`.
   */
  async #get<T>(
    options: GetOptions | undefined,
    call: string,
    loopAttempt?: Attempt<unknown>,
    method = "get",
  ): Promise<T> {
    try {
      this.#queue.assertOpen("Receiver.get");
      this.#refuseInsideAllocate();
      const deadline = deadlineOf(options, "Receiver.get", GET_OPTIONS);
      options?.signal?.throwIfAborted();
      const attempt = loopAttempt ?? this.#getAttemptFor(options, "get");
      const got = this.#lane.now(attempt, deadline) ??
        await this.#waitInLane(attempt, deadline, options?.signal);
      if (got === undefined || got === BEHIND) {
        throw this.#empty(method, options?.timeout, got === BEHIND);
      }
      return got.value as T;
    } catch (error) {
      throw namingCall(error, call, options?.signal);
    }
  }

  /** Like {@linkcode get}, but blocks the thread: for actors and Workers that do nothing else. */
  getSync<T = unknown>(options?: SyncGetOptions): T {
    try {
      stopIfRequested();
      this.#queue.assertOpen("Receiver.getSync");
      const deadline = deadlineOf(options, "Receiver.getSync", SYNC_GET_OPTIONS);
      const attempt = this.#getAttemptFor(options, "getSync");
      const got = attemptBy(deadline, attempt) ??
        waitSync(this.#queue, this.#queue.putSignal, attempt, deadline);
      if (got === undefined) throw this.#empty("getSync", options?.timeout);
      return got.value as T;
    } catch (error) {
      throw namingCall(error, "Receiver.getSync");
    }
  }

  /**
   * Returns the next message, or `undefined` when none is waiting. Throws `ClosedError`
   * once every sender has closed and the queue is drained. A message whose value is
   * `undefined` looks the same as none: on a queue that carries such values, use
   * `getSync({ timeout: 0 })`, which throws `EmptyError` when none is waiting.
   * Waits for nothing but the queue's lock, held for microseconds: while a stopped peer
   * (SIGSTOP, a debugger) keeps it, this returns `undefined` after 2 ms too, as Python's
   * `get_nowait` raises `Empty` when its lock is busy; a hung peer that keeps it running is
   * given the 10 s of any call, then `ClosedError` "stuck".
   */
  getNowait<T = unknown>(options?: NowaitGetOptions): T | undefined {
    try {
      stopIfRequested();
      this.#queue.assertOpen("Receiver.getNowait");
      if (options !== undefined) {
        checkOptionsObject(options, "Receiver.getNowait", COPY_TARGET_OPTIONS);
      }
      const attempt = this.#getAttemptFor(options, "getNowait");
      const deadline = briefDeadline();
      const got = attemptBy(deadline, attempt);
      if (got !== undefined) return got.value as T;
      // Nothing ready, maybe only because a dead sender's unfinished message is in the way.
      // Waiting calls notice dead peers on their own; a caller that only polls must, too.
      if (!this.#queue.reapIfDue(deadline)) return undefined;
      return attemptBy(deadline, attempt)?.value as T | undefined;
    } catch (error) {
      throw namingCall(error, "Receiver.getNowait");
    }
  }

  /**
   * Waits for a message like {@linkcode get}, then takes the ones already waiting behind it,
   * up to `max` in all (`Infinity`: every one waiting, at most the queue's capacity), and
   * returns them in order: one call, and for an async consumer one promise, per batch of a
   * stream of small messages. Never waits for more than the first.
   * Takes the options of `get`. Should a message after the first fail to decode, the
   * messages before it are returned and the next call of this end throws its error, which
   * names this call (unless this end closes first); should its `allocate` fail, the batch ends
   * there with no error, and the message stays first in line: the next call tries it again
   * (and throws, should `allocate` fail for it again). So it does when `allocate` hands out a
   * buffer it gave for an earlier message of the batch, which would overwrite that message's
   * array: the batch ends there. While this end is the queue's only receiver, the batch's messages are
   * released together as it returns (their room comes back to senders then): should this end
   * be killed while it copies them, those it had copied go back to the queue, and only the
   * one it was copying counts as received. With other receivers open, each is released as it
   * is copied (holding them would hold back their senders' later messages from the others),
   * and a receiver killed inside a batch loses what it had copied, as a get loses its message.
   * A receiver that joins while a lone one copies a batch takes none of its senders' later
   * messages until the batch returns, and is not told the queue is drained before then.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * sender.putManySync(["a", "b", "c"]);
   * assert.deepEqual(await receiver.getMany(2), ["a", "b"]);
   * assert.deepEqual(await receiver.getMany(16, { pooled: true }), ["c"]);
   * sender.close();
   * receiver.close();
   * ```
   */
  async getMany<T = unknown>(max: number, options?: GetOptions): Promise<T[]> {
    try {
      this.#queue.assertOpen("Receiver.getMany");
      this.#refuseInsideAllocate();
      const deadline = deadlineOf(options, "Receiver.getMany", GET_OPTIONS);
      const attempt = this.#manyAttempt(max, options, "getMany");
      options?.signal?.throwIfAborted();
      const got = this.#lane.now(attempt, deadline) ??
        await this.#waitInLane(attempt, deadline, options?.signal);
      if (got === undefined || got === BEHIND) {
        throw this.#empty("getMany", options?.timeout, got === BEHIND);
      }
      return got.value as T[];
    } catch (error) {
      throw namingCall(error, "Receiver.getMany", options?.signal);
    }
  }

  /**
   * Like {@linkcode getMany}, but blocks the thread while none is waiting.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair, EmptyError } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * sender.putSync(1);
   * assert.deepEqual(receiver.getManySync(8, { timeout: 100 }), [1]);
   * assert.throws(() => receiver.getManySync(8, { timeout: 5 }), EmptyError);
   * sender.close();
   * receiver.close();
   * ```
   */
  getManySync<T = unknown>(max: number, options?: SyncGetOptions): T[] {
    try {
      stopIfRequested();
      this.#queue.assertOpen("Receiver.getManySync");
      this.#refuseInsideAllocate();
      const deadline = deadlineOf(options, "Receiver.getManySync", SYNC_GET_OPTIONS);
      const attempt = this.#manyAttempt(max, options, "getManySync");
      const got = attemptBy(deadline, attempt) ??
        waitSync(this.#queue, this.#queue.putSignal, attempt, deadline);
      if (got === undefined) throw this.#empty("getManySync", options?.timeout);
      return got.value as T[];
    } catch (error) {
      throw namingCall(error, "Receiver.getManySync");
    }
  }

  /**
   * Waits for a message and lends it in place: its arrays are views into shared memory, no
   * copy is made. Release the lease (or use `using`) to give the space back; its views are
   * detached then. (A message of at most 2 KiB is lent from a copy this end recycles: that
   * costs less than a view at this size, and release detaches it the same way.)
   */
  async borrow<T = unknown>(options?: WaitOptions): Promise<Lease<T>> {
    try {
      this.#queue.assertOpen("Receiver.borrow");
      this.#refuseInsideAllocate();
      const deadline = deadlineOf(options, "Receiver.borrow", WAIT_OPTIONS);
      options?.signal?.throwIfAborted();
      const lane = this.#lane;
      const now = lane.now(this.#takeAttempt, deadline);
      if (now !== undefined) return this.#lease<T>(now.value);
      const taken = await this.#waitInLane(this.#borrowAttempt, deadline, options?.signal);
      if (taken === undefined || taken === BEHIND) {
        throw this.#empty("borrow", options?.timeout, taken === BEHIND);
      }
      // Gone from the set: this end closed before the borrow resumed, and gave the message back.
      if (!this.#inTransit.delete(taken.value)) this.#queue.assertOpen("Receiver.borrow");
      return this.#lease<T>(taken.value);
    } catch (error) {
      throw namingCall(error, "Receiver.borrow", options?.signal);
    }
  }

  readonly #borrowAttempt: Attempt<TakenMessage> = () => {
    const taken = this.#takeAttempt();
    if (taken !== undefined) this.#inTransit.add(taken.value);
    return taken;
  };

  /** Like {@linkcode borrow}, but blocks the thread. */
  borrowSync<T = unknown>(options?: SyncWaitOptions): Lease<T> {
    try {
      stopIfRequested();
      this.#queue.assertOpen("Receiver.borrowSync");
      const deadline = deadlineOf(options, "Receiver.borrowSync", SYNC_WAIT_OPTIONS);
      const taken = attemptBy(deadline, this.#takeAttempt) ??
        waitSync(this.#queue, this.#queue.putSignal, this.#takeAttempt, deadline);
      if (taken === undefined) throw this.#empty("borrowSync", options?.timeout);
      return this.#lease<T>(taken.value);
    } catch (error) {
      throw namingCall(error, "Receiver.borrowSync");
    }
  }

  /** Yields messages until every sender has closed and the queue is drained, or until this
   * end is closed while the loop runs (how a loop is stopped from elsewhere). A loop over an
   * end closed already throws `ClosedError`. Leaving the loop early (`break`, `return`, a
   * throw) leaves this end open, with the messages not yet taken still queued: close it
   * yourself, or declare it with `using`. */
  [Symbol.asyncIterator](): AsyncGenerator<unknown, void, undefined> {
    return this.#messages(this.#getAttempt, "Receiver (for await)");
  }

  /**
   * The messages as a `ReadableStream`, for `pipeTo` and `pipeThrough`, as Deno's own
   * resources have one (`Deno.FsFile.readable`): each read takes one message as {@linkcode get}
   * takes it, and only when the reader asks (none is taken ahead, to be lost if the reader
   * stops; but `tee()` reads ahead for the branch that lags). The stream ends once every sender
   * has closed and the queue is drained, or this receiver closes. It owns this receiver: its
   * end, its cancel (a read still waiting takes nothing) and an error of a take close the
   * receiver; so `break` out of `for await (const m of receiver.readable)` closes it, where a
   * `for await` over the receiver itself leaves it open (or iterate
   * `readable.values({ preventCancel: true })`). A read still waiting when its reader lets go
   * (`releaseLock()`, a `pipeTo` stopped with `preventCancel`) takes the next message all the
   * same, for the stream's next reader: take messages through one of the two, the stream or
   * the receiver. Its chunks are `unknown`: cast it (`as ReadableStream<T>`) as you would name
   * `get<T>()`'s type. The same stream on every access; on a receiver closed already, it errors
   * at once.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * sender.putManySync([1, 2, 3]);
   * sender.close();
   * const doubled = receiver.readable.pipeThrough(
   *   new TransformStream<unknown, number>({ transform: (n, out) => out.enqueue(2 * Number(n)) }),
   * );
   * assert.deepEqual(await Array.fromAsync(doubled), [2, 4, 6]);
   * assert.equal(receiver.closed, true);
   * ```
   */
  get readable(): ReadableStream<unknown> {
    return this.#readable ??= this.#makeReadable();
  }

  #makeReadable(): ReadableStream<unknown> {
    // A cancel stops the read waiting, which takes nothing then.
    const cancelled = new AbortController();
    const options = { signal: cancelled.signal };
    return new ReadableStream<unknown>({
      start: (controller) => {
        // As an error of the stream: one thrown here would come out of the getter.
        try {
          this.#queue.assertOpen("Receiver.readable");
        } catch (error) {
          controller.error(error);
        }
      },
      pull: async (controller) => {
        let value: unknown;
        try {
          value = await this.#get(options, "Receiver.readable");
        } catch (error) {
          if (cancelled.signal.aborted) return;
          const ended = this.#endsTheMessages(error); // before the close below
          this.close();
          if (ended) controller.close();
          else controller.error(error);
          return;
        }
        controller.enqueue(value);
      },
      cancel: () => {
        cancelled.abort();
        this.close();
      },
    }, { highWaterMark: 0 });
  }

  /**
   * The messages of `for await (const v of receiver)`, each taken as `get` takes it with these
   * options: copied into buffers `allocate` hands out, or small arrays into shared slabs
   * (`pooled`); waiting at most `timeout` ms for each (then the loop throws `EmptyError`);
   * until `signal` aborts (then the loop throws its reason, and no message is taken for it).
   * Otherwise the loop ends as `for await` does.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * for (let i = 0; i < 3; i++) sender.putSync(new Int32Array([i]));
   * const seen: number[] = [];
   * // A loop stopped from elsewhere, the receiver left open: here once three have come.
   * const stop = new AbortController();
   * await assert.rejects(async () => {
   *   for await (const m of receiver.messages<Int32Array>({ pooled: true, signal: stop.signal })) {
   *     seen.push(m[0]);
   *     if (seen.length === 3) setTimeout(() => stop.abort(), 10);
   *   }
   * }, { name: "AbortError" });
   * assert.deepEqual(seen, [0, 1, 2]);
   * sender.close();
   * receiver.close();
   * ```
   */
  messages<T = unknown>(options?: GetOptions): AsyncGenerator<T, void, undefined> {
    let attempt: Attempt<unknown>;
    try {
      // Once for the whole loop, so the option errors come at the call, not at its first step.
      deadlineOf(options, "Receiver.messages", GET_OPTIONS);
      attempt = this.#getAttemptFor(options, "messages");
    } catch (error) {
      throw namingCall(error, "Receiver.messages");
    }
    return this.#messages<T>(attempt, "Receiver.messages", options);
  }

  async *#messages<T>(
    attempt: Attempt<unknown>,
    call: string,
    options?: GetOptions,
  ): AsyncGenerator<T, void, undefined> {
    this.#queue.assertOpen(call);
    for (;;) {
      let value: T;
      try {
        value = await this.#get<T>(options, call, attempt, "messages");
      } catch (error) {
        if (this.#endsTheMessages(error)) return;
        throw error;
      }
      yield value;
    }
  }

  /** Whether a take's `error` ends the messages (a for await, the stream) rather than fails
   * them: every sender closed and the queue drained, or this receiver closed. */
  #endsTheMessages(error: unknown): boolean {
    return error instanceof ClosedError &&
      (error.reason === "drained" || (error.reason === "closed" && this.closed));
  }

  /** Leaves the queue. Outstanding leases are released and their views detached; a message
   * kept after a failed `allocate`, or taken by a borrow that had not resumed yet, goes back
   * to the queue for the other receivers, behind what they may have taken of its sender's
   * later messages meanwhile (and, after every sender closed, only for those still asking:
   * one whose `get` found the queue drained, or whose `for await` ended, does not look
   * again). Calls of this end still waiting (`get`, `getMany`, `borrow`, a `for await`)
   * then end: a `for await` ends, the others reject with `ClosedError` (reason `"closed"`),
   * and no message is taken for them. An error a `getMany` held for the next call is
   * dropped with its message. Waits only briefly for a peer stopped while it keeps the
   * queue's lock (SIGSTOP, a debugger): this end then leaves without it, for the next reap of
   * any end, once the lock is free, to remove as a close. Messages it took for calls that
   * never got them are not lost then: the next take or reap puts them back in line, before
   * their senders' later messages. */
  close(): void {
    if (this.#queue.closed) return;
    // Its message is gone, like every message a close drops; calls still waiting get the
    // close's ClosedError, not it.
    this.#deferred = undefined;
    for (const lease of [...this.#leases]) lease.release();
    // Taken and never handed to a caller: back in line for any receiver, not lost.
    const untouched = [...this.#inTransit, ...(this.#pending ? [this.#pending] : [])];
    this.#inTransit.clear();
    this.#pending = undefined;
    for (const m of untouched) {
      try {
        this.#queue.giveBack(m.slot);
      } catch {
        // A lock given up on (the message then goes back at the next lock holder's look, as
        // behind a stopped holder), a queue found corrupt: the close below leaves all the same.
      }
    }
    this.#queue.close();
    releaseKeptHeap();
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** How `console.log` shows this end: its queue's name and whether it is closed. */
  [Symbol.for("Deno.customInspect")](inspect: Inspect, options?: unknown): string {
    return inspectEnd("Receiver", this, inspect, options);
  }

  readonly #getAttempt = (laterInBatch = false): ReturnType<Attempt<unknown>> =>
    this.#takeDecoded(COPY_OPTIONS, undefined, laterInBatch);
  readonly #pooledGetAttempt = (laterInBatch = false): ReturnType<Attempt<unknown>> =>
    this.#takeDecoded(POOLED_COPY_OPTIONS, undefined, laterInBatch);

  /** An async call's wait, for one that did not find its message at once (Lane.now): after
   * the calls of this end ahead of it, until `attempt` succeeds or the deadline passes. */
  #waitInLane<T>(
    attempt: Attempt<T>,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<{ value: T } | undefined | typeof BEHIND> {
    const lane = this.#lane;
    return lane.later(attempt, deadline, signal, this.#waitForMessage, lane.takeDueTurn());
  }

  /** Waits until `attempt` finds a message, waking on puts and the signal. */
  readonly #waitForMessage = <T>(
    attempt: Attempt<T>,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<{ value: T } | undefined> => {
    return waitAsync(this.#queue, this.#queue.putSignal, attempt, deadline, signal);
  };

  #getAttemptFor(
    options: NowaitGetOptions | undefined,
    method: string,
  ): (laterInBatch?: boolean) => ReturnType<Attempt<unknown>> {
    const allocate = options?.allocate;
    const pooled = options?.pooled;
    if (pooled !== undefined && typeof pooled !== "boolean") {
      throw new TypeError(`Receiver.${method}: pooled must be a boolean, got ${shown(pooled)}`);
    }
    if (allocate === undefined) return pooled ? this.#pooledGetAttempt : this.#getAttempt;
    if (typeof allocate !== "function") {
      throw new TypeError(
        `Receiver.${method}: allocate must be a function, got ${shown(allocate)}`,
      );
    }
    // Whether the caller's allocate threw or returned a wrong buffer: the codec's own errors,
    // and a QueueError the callback itself may throw, are told apart by this, not by type.
    let failed = false;
    // The buffers handed out for the message being decoded (and, in a getMany, for the
    // messages before it in the batch): one handed out twice would hold two of its arrays,
    // the later overwriting the earlier.
    let given: Set<ArrayBuffer> | undefined;
    const decodeOptions = {
      pooled,
      allocate(byteLength: number): ArrayBuffer {
        failed = true;
        let buffer: ArrayBuffer;
        try {
          buffer = allocate(byteLength);
        } catch (error) {
          throw thrownByCaller(error);
        }
        given ??= new Set();
        // Nothing is written into an empty one: sharing it is harmless.
        if (byteLength > 0 && given.has(buffer)) {
          throw new TypeError(
            `Receiver.${method}: allocate returned one ArrayBuffer for two arrays of a message` +
              (inBatch ? " or of one batch" : ""),
          );
        }
        given.add(buffer);
        const wrong = wrongAllocation(buffer, byteLength);
        if (wrong !== undefined) {
          throw new TypeError(
            `Receiver.${method}: allocate(${byteLength}) must return an ArrayBuffer of ` +
              `${byteLength} bytes, ${wrong}; the message stays first in line`,
          );
        }
        failed = false;
        return buffer;
      },
    };
    // Whether the message being decoded follows others of one getMany batch.
    let inBatch = false;
    return (later = false) => {
      failed = false;
      inBatch = later;
      if (!later) given = undefined;
      return this.#takeDecoded(decodeOptions, () => failed, later);
    };
  }

  /**
   * A getMany's attempt: the first message as `get` takes it (its errors thrown), then as
   * many as are waiting, up to `max`. An error after the first ends the batch: a message kept
   * for a failed `allocate` is retried by the next call, which also meets a drained or closed
   * queue again; any other error (its message consumed) is held for the next call to throw.
   */
  #manyAttempt(
    max: number,
    options: NowaitGetOptions | undefined,
    method: string,
  ): Attempt<unknown[]> {
    if (typeof max !== "number") {
      throw new TypeError(`Receiver.${method}: max must be a number, got ${shown(max)}`);
    }
    if (!((Number.isInteger(max) || max === Infinity) && max >= 1)) {
      throw new RangeError(
        `Receiver.${method}: max must be a whole number of messages >= 1 (or Infinity), got ` +
          shown(max),
      );
    }
    // "Every one waiting": at most the capacity. Released as the batch goes (other receivers
    // open), its messages make room for more, behind a sender that keeps up.
    const most = max === Infinity ? this.#queue.capacity : max;
    const one = this.#getAttemptFor(options, method);
    return () => {
      const batch: BatchEntry[] = [];
      const values: unknown[] = [];
      // A call refused from inside this end's allocate must not end the batch it interrupts.
      const outer = this.#batch;
      this.#batch = batch;
      try {
        const first = one();
        if (first === undefined) return undefined;
        values.push(first.value);
        while (values.length < most) {
          let next: { value: unknown } | undefined;
          try {
            next = one(true);
          } catch (error) {
            // The error of a message consumed (one that could not be read or decoded, such as
            // one whose extension segment is missing) must not go unreported: the next call
            // throws it. Anything else, the next call meets again: a message kept after a
            // failed allocate, a drained, closed or corrupt queue.
            if (error === this.#consumedError && !this.#queue.closed) {
              this.#deferred = {
                error: consumedEarlier(error, `Receiver.${method}`, values.length),
              };
            }
            this.#consumedError = undefined;
            break;
          }
          if (next === undefined) break;
          values.push(next.value);
        }
      } finally {
        this.#batch = outer;
      }
      return this.#releaseBatch(values, batch);
    };
  }

  /**
   * Releases the messages of a getMany batch as it returns them: until now they were held
   * (while this end is the only receiver, see SharedQueue.hold), so that a receiver killed
   * while it copied the batch gives them back to the queue rather than count them received
   * unseen. One that went back meanwhile (a reap wrongly took this end for dead) may be
   * another receiver's now: its copy is dropped from the batch.
   */
  #releaseBatch(
    values: unknown[],
    batch: readonly BatchEntry[],
  ): { value: unknown[] } | undefined {
    const queue = this.#queue;
    const kept: unknown[] = [];
    for (let i = 0; i < values.length; i++) {
      const { slot, held } = batch[i];
      // The last wakes waiting senders: the batch is over. A close from inside the batch
      // counted its held messages received: they are still its caller's. A reap (this end
      // taken for dead, or ended as dead by a Worker's terminate) gave them back.
      if (
        held && !queue.releaseHeld(slot, i < values.length - 1) && !queue.heldReceivedAtClose
      ) continue;
      kept.push(values[i]);
    }
    queue.batchEnded();
    if (kept.length === values.length) return { value: values };
    return kept.length > 0 ? { value: kept } : undefined;
  }

  #takeDecoded(
    options: DecodeBytesOptions,
    allocateFailed?: () => boolean,
    laterInBatch = false,
  ): { value: unknown } | undefined {
    const queue = this.#queue;
    const got = this.#takeNext();
    if (got === undefined) return undefined;
    // Copies into buffers of the library's own making (not the caller's `allocate`).
    const ownCopies = options === COPY_OPTIONS || options === POOLED_COPY_OPTIONS;
    if (ownCopies && got.length >= checkedCopyBytes(got.length)) {
      let memory = memoryLeft();
      // Copies dropped but not collected yet may hold what this one needs.
      if (got.length > memory.bytes && freeDroppedMemory()) memory = memoryLeft();
      if (got.length > memory.bytes) {
        // Kept, as after a failed allocate: a borrow can still view it without a copy.
        if (!queue.closed) this.#pending = got;
        throw ours(
          new RangeError(
            `not enough memory to copy this ${got.length}-byte message out: ` +
              `${roomHolder(memory.setBy, memory.bytes)}; the message stays first in line: ` +
              "borrow() views its arrays in place, without a copy, or free memory",
          ),
        );
      }
    }
    // Decoding runs outside the lock, and the release takes none (but now and then to reap).
    let value: unknown;
    let failed: { cause: unknown } | undefined;
    // Whether the message's bytes could be reached (its extension segment mapped).
    let reached = false;
    try {
      // Messages too small to hold a large array need no readied copy targets.
      const small = got.length < LARGE_COPY;
      const used = !small || !ownCopies ? options : options.pooled ? POOLED_OPTIONS : undefined;
      if (ownCopies && !small) beforeLargeCopies();
      this.#inAllocate = allocateFailed !== undefined;
      try {
        const bytes = queue.messageBytes(got);
        reached = true;
        value = decodeBytes(bytes, used);
      } finally {
        this.#inAllocate = false;
        finishCopy();
      }
    } catch (error) {
      // A message that cannot be decoded, or whose segment is gone (ClosedError), is
      // consumed. One whose caller-supplied `allocate` failed, or whose segment could not be
      // mapped now (out of file descriptors or memory: not the message's fault), is kept for
      // the next call of this end, as a borrow keeps it: not lost, and nothing overtakes it.
      const unreachable = !reached && !(error instanceof ClosedError);
      if ((allocateFailed?.() || unreachable) && !queue.closed) this.#pending = got;
      else {
        queue.release(got.slot);
        if (laterInBatch) this.#consumedError = error;
      }
      if (!queue.closed || error instanceof ClosedError) throw error;
      failed = { cause: error };
    }
    // Closed from inside the call (an `allocate` that closed this end): the decode failed on
    // the unmapped message, which says nothing useful; or, while the mapping stayed for an
    // async wait, it read a message the close had released, whose space a sender may be
    // writing by now. Either way nothing is returned (a close drops every message an end
    // holds).
    if (queue.closed) {
      throw new ClosedError("the receiver was closed while it decoded a message", {
        reason: "closed",
        ...failed,
      });
    }
    if (this.#batch !== undefined) this.#batch.push({ slot: got.slot, held: queue.hold(got) });
    else queue.release(got.slot, true);
    return { value };
  }

  /**
   * A take from inside `allocate` would overtake the message being decoded, and should both
   * allocates fail, the one kept for the next call would push out the other, for good. An
   * async call is refused as it is made: its take may come later (after a fairness turn, or
   * behind other calls), when the allocate has returned, and so only now and then.
   */
  #refuseInsideAllocate(): void {
    if (this.#inAllocate) {
      throw new TypeError(
        "Receiver: a get or borrow was called from inside this receiver's own allocate " +
          "callback, which must only return a buffer",
      );
    }
  }

  /** The message a failed `allocate` left, else the next one of the queue. */
  #takeNext(): TakenMessage | undefined {
    this.#refuseInsideAllocate();
    // A message kept for this end came before the one whose error is held: a borrow took it
    // ahead of the getMany, and kept it when no view could be made.
    const pending = this.#pending;
    if (pending !== undefined) {
      this.#pending = undefined;
      return pending;
    }
    const deferred = this.#deferred;
    if (deferred !== undefined) {
      this.#deferred = undefined;
      throw deferred.error;
    }
    const taken = this.#queue.take();
    // A stop raised between this call's check and its take (WorkerHandle.terminate(), then a
    // put the Worker woke for): the message goes back in line, for another receiver, rather
    // than out with this Worker, and the stop runs now, so that an async call, which never
    // checks, does not take and give back in a loop. Seen once in a loaded suite.
    if (taken !== undefined && stopRequested()) {
      this.#queue.giveBack(taken.slot);
      stopIfRequested(); // closes this thread's ends: the call throws ClosedError next
      return undefined;
    }
    return taken;
  }

  readonly #takeAttempt: Attempt<TakenMessage> = () => {
    const taken = this.#takeNext();
    return taken === undefined ? undefined : { value: taken };
  };

  #lease<T>(m: TakenMessage): Lease<T> {
    const queue = this.#queue;
    // Closed while a waiting borrow resumed: the close dropped the message, whose space may
    // be another's by now, and this end's fd number may name another queue's segment.
    queue.assertOpen();
    let view;
    let value: T;
    try {
      view = m.length <= SMALL_LEASE
        ? this.#smallView(m)
        : queue.openView(m.segment, m.offset, m.length);
      value = decodeBytes(new Uint8Array(view.buffer, 0, m.length), { view: true }) as T;
    } catch (error) {
      if (view) queue.dropView(view);
      // No view could be made (out of address space or memory): the message is not at
      // fault, and stays first in line for this end. One that cannot be decoded is consumed.
      if (view === undefined && !(error instanceof ClosedError) && !queue.closed) {
        this.#pending = m;
      } else {
        queue.release(m.slot);
      }
      throw error;
    }
    const lease = new Lease<T>(queue, m, view, value, (l) => {
      this.#leases.delete(l as Lease<unknown>);
    });
    this.#leases.add(lease as Lease<unknown>);
    return lease;
  }

  /**
   * A small message's lease views a copy in a buffer this end recycles: an external buffer
   * over shared memory (an FFI call to make, a detach to revoke) costs more than copying
   * this little. Release detaches the views all the same.
   */
  #smallView(m: TakenMessage): MessageView {
    const buffer = this.#spareLeaseBuffers.pop() ?? new ArrayBuffer(SMALL_LEASE);
    new Uint8Array(buffer, 0, m.length).set(this.#queue.messageBytes(m));
    return { buffer, mapping: undefined, recycle: this.#recycleLeaseBuffer, used: m.length };
  }

  readonly #spareLeaseBuffers: ArrayBuffer[] = [];
  readonly #recycleLeaseBuffer = (memory: ArrayBuffer, used: number): void => {
    if (this.#spareLeaseBuffers.length >= SPARE_LEASE_BUFFERS) return;
    // Zeroed, so a later lease's buffer shows nothing of an earlier message past its own.
    new Uint8Array(memory, 0, used).fill(0);
    this.#spareLeaseBuffers.push(memory);
  };

  /** `behind`: the call waited out its timeout behind an earlier one of this receiver. */
  #empty(method: string, timeout: number | undefined, behind = false): EmptyError {
    if (behind) {
      return new EmptyError(
        `Receiver.${method}: no message arrived within ${timeout} ms: the call waited all that ` +
          `time behind an earlier get(), getMany() or borrow() of this receiver, still waiting ` +
          `(calls of one receiver are served in order)`,
      );
    }
    const queue = this.#queue;
    const held = this.#leases.size;
    const lockKept = queue.lockKeptWords();
    // Senders may be waiting for room this very receiver holds: say so, or the wait looks
    // like a silent producer.
    const why = lockKept !== undefined
      ? `: ${lockKept}`
      : held === 0
      ? this.#heldBack()
      : queue.inFlight >= queue.capacity
      ? `: this receiver holds ${held} unreleased lease(s), and the queue's capacity of ` +
        `${queue.capacity} messages is taken, so senders wait for room: release leases`
      : queue.ringFull
      ? `: this receiver holds ${held} unreleased lease(s), and the queue's ${queue.ringSize} ` +
        `slots, reused in order, are all taken behind the oldest unreleased message (one of ` +
        `these, or another end's lease or unsent draft), so senders wait for room: release ` +
        `leases you are done with`
      : queue.usage().arenaHeld > queue.arenaSize / 2
      ? `: this receiver holds ${held} unreleased lease(s), and the arena's space, reclaimed in ` +
        `order, is held behind the oldest unreleased message (one of these, or another end's ` +
        `lease or unsent draft), so senders may wait for room: release leases you are done with`
      : this.#heldBack();
    return new EmptyError(`Receiver.${method}: no message arrived within ${timeout} ms${why}`);
  }

  /** Why messages in the queue did not come, if some are there: each waits behind an earlier
   * message of its sender, or the timeout looks like a silent producer. */
  #heldBack(): string {
    const held = this.#queue.heldBackMessages();
    return held === 0 ? "" : `: ${held} message(s) in the queue wait behind an earlier ` +
      "message of their sender that is not ready: one still being written (an unsent draft, a " +
      "large put under way), or in another receiver's getMany batch";
  }
}

/** Copies this large tune malloc first (see heapCopyLimit), and go into buffers readied for
 * them (huge pages, pre-faulted) from heapCopyLimit, or all when malloc was left alone (then
 * it maps them afresh): a fresh buffer otherwise takes a page fault every 4 KiB during the
 * copy. Measured on a 2-vCPU VM, getSync in a loop, before malloc was tuned: 256 KiB 2.4-2.8
 * -> 5.6 GB/s, 1 MiB 1.4-2.0 -> 3.3-5.1 GB/s. */
const LARGE_COPY = 256 * 1024;

/**
 * Messages this large are copied out only when the memory left can take the copy: past it,
 * the copy does not fail but has the OOM killer end a process, most often this one, mid-copy.
 * Smaller copies are left unchecked: reading the figures (/proc, the memory cgroup) takes
 * about 35 µs, half a percent of a 64 MiB copy. In a cgroup with a small limit, from a
 * sixteenth of it (16 MiB in 256 MiB: a few dropped copies of 40 MiB, not collected yet, had
 * such a container's receiver killed). The copy is counted as the message's encoded size,
 * right for arrays, the data this queue is for; a string takes two or three times that once
 * decoded, and is not covered.
 */
const MEMORY_CHECKED_COPY = 64 << 20;
/** Copies this small are never checked: they could not matter to any limit. */
const UNCHECKED_COPY = 1 << 20;

/** This isolate's threshold for checking copies, found at its first copy of 1 MiB or more
 * (a cgroup's limit stays as it is, near enough). */
let checkedCopyFrom: number | undefined;

/** From how many bytes a copy of `byteLength` is checked (see MEMORY_CHECKED_COPY). */
function checkedCopyBytes(byteLength: number): number {
  if (byteLength < UNCHECKED_COPY) return Infinity;
  if (checkedCopyFrom === undefined) {
    let limit: number;
    try {
      limit = memoryRoom().cgroupLimit;
    } catch {
      return MEMORY_CHECKED_COPY; // No figures now (out of fds?): asked again next time.
    }
    checkedCopyFrom = Math.max(UNCHECKED_COPY, Math.min(MEMORY_CHECKED_COPY, limit / 16));
  }
  return checkedCopyFrom;
}

/** Messages up to this size are lent from a copy (see Receiver.#smallView): a copy and a
 * detach cost ~250 ns at 100 B against ~430 ns for an external buffer made and detached. */
const SMALL_LEASE = 2048;
/** Spare buffers kept for small leases: enough for the leases a loop holds at once. */
const SPARE_LEASE_BUFFERS = 8;

/**
 * Copies this large have their target pre-faulted by a helper thread, from its end, while
 * the copy fills it from the front (native.prefaultStart): the kernel's zeroing of fresh
 * pages, which costs more than the copy on this VM, then runs on the other core. Measured on
 * a 2-vCPU VM, two processes, getSync, runs taken in turn: 4 MiB 3.5-4.3 -> 4.7-5.1 GB/s,
 * 10 MiB 3.1-3.9 -> 3.5-4.3, 100 MiB 2.3-3.9 -> 3.7-4.8, 1 GiB 1.0-1.3 -> 1.8-3.6; at 1 MiB
 * it gained nothing (starting a thread costs tens of microseconds).
 */
const PIPELINED_COPY = 4 << 20;

/** The helper readying the target of this isolate's current copy, if any: one at a time. */
let copyHelper: number | undefined;

/** Whether a readied copy was made since the last nudge. */
let readiedCopyDone = false;

/** Ends the current copy: waits for its helper, before the copy's result leaves the decode
 * that made it, then, after a readied copy, nudges the collector (see nudgeAfterReadiedCopy). */
function finishCopy(): void {
  if (copyHelper !== undefined) {
    const id = copyHelper;
    copyHelper = undefined;
    prefaultJoin(id);
  }
  if (readiedCopyDone) {
    readiedCopyDone = false;
    nudgeAfterReadiedCopy();
  }
}

/**
 * Copies below this size are left to the codec once malloc is tuned (tuneMallocForCopies):
 * the heap keeps what the collector frees for the next copies, their pages are in place, and
 * readying them would cost more than it saves. Without the tuning, glibc gave a batch of
 * freed buffers back to the kernel once it passed twice the largest buffer glibc had mapped,
 * and the next copies faulted it in again, zeroed. Measured on a 2-vCPU VM, two processes,
 * getSync, runs taken in turn: 256 KiB 3.0-3.4 -> 4.7-5.0 GB/s, 1 MiB 4.3-5.3 -> 6.5-7.1
 * (async 4.0-4.2 -> 5.6-6.7), 4 MiB 5.1-6.4 -> 6.9-7.2, 10 MiB 4.5-5.7 -> 5.6-6.5; 1 MiB tuned
 * but still readied 5.2-5.6.
 *
 * Copies from this size are readied. On the main thread they come from the heap too when it
 * can keep them (see heapBuffer, kept_heap.ts), and the ones the heap grows for get huge pages
 * and their pre-faulting on the other core: left to the codec instead, 1 GiB copies at
 * capacity 1 took fresh pages a fault at a time, and ran at 0.3 GB/s in some runs. `undefined`
 * until this isolate's first large copy, 0 when malloc was left alone.
 */
let heapCopyLimit: number | undefined;
/** What malloc adds to a request before it compares it with its mmap threshold (a chunk
 * header, rounding), with room to spare: a buffer just below the limit is mapped afresh too. */
const MALLOC_CHUNK_OVERHEAD = 64;

/** A buffer for a large copy, readied for it. */
function readiedBuffer(byteLength: number): ArrayBuffer {
  const fromHeap = heapCopyLimit! > 0 && isMainThread() && keepHeapFor(byteLength);
  collectBeforeCopy(byteLength);
  const buffer = fromHeap ? heapBuffer(byteLength) : new ArrayBuffer(byteLength);
  // The array before this one in the message is copied by now: its helper is done.
  finishCopy();
  if (byteLength >= PIPELINED_COPY) copyHelper = prefaultStart(buffer);
  if (copyHelper === undefined) prepareCopyTarget(buffer);
  readiedCopyDone = true;
  return buffer;
}

/**
 * A buffer from malloc's heap, for a copy too large for the tuned mmap threshold (glibc's
 * ceiling, 32 MiB), which glibc would map afresh and unmap when the collector frees it: each
 * copy then took pages fresh from the kernel, zeroed and faulted in. From the heap, it takes
 * the pages of a copy freed before (kept_heap.ts lets the heap keep them). Malloc's mapping is
 * switched off for this allocation only, so the program's own large buffers stay mapped alone
 * (lazily zeroed, grown by mremap). Only on the main thread, whose heap can grow: a Worker's
 * arena holds heaps of 64 MiB, one for each copy up to that size, and copies of 40 MiB ran
 * 2.4-3.5 GB/s there against 3.1-4.2 mapped alone. Measured on a 2-vCPU VM with bench/stream.ts,
 * two processes, getSync, runs taken in turn, mapped -> from the heap: 50 MiB at capacity 20
 * 3.7-4.2 -> 5.8-6.0 GB/s (async 4.3-4.8 -> 6.2-6.6), 100 MiB at capacity 10 3.9-5.4 ->
 * 7.9-8.2, 1 GiB at capacity 1 3.9-4.6 -> 5.3-5.8; 10 MiB unchanged.
 */
function heapBuffer(byteLength: number): ArrayBuffer {
  mallocFromHeap(true);
  try {
    return new ArrayBuffer(byteLength);
  } finally {
    mallocFromHeap(false);
  }
}

/** A large copy into malloc's heap, made by the codec: nudges the collector (see
 * nudgeCollector), once for each such copy. */
function heapCopied(byteLength: number): void {
  if (byteLength >= LARGE_COPY) nudgeCollector();
}

/** A message of a getMany batch: its slot, and whether it is held (SharedQueue.hold). */
interface BatchEntry {
  readonly slot: number;
  readonly held: boolean;
}

/** A get's decode options for a large message: the largest copies get readied buffers, and
 * smaller ones are left to the codec, which skips the zero-fill (see beforeLargeCopies). */
const COPY_OPTIONS: DecodeBytesOptions = {
  allocate: readiedBuffer,
  allocateFrom: LARGE_COPY,
  copiedByCodec: heapCopied,
};
/** A pooled get's: small arrays share slabs (see GetOptions.pooled), large ones as above. */
const POOLED_COPY_OPTIONS: DecodeBytesOptions = { ...COPY_OPTIONS, pooled: true };
const POOLED_OPTIONS = { pooled: true };

/** Tunes malloc before this isolate's first large message (LARGE_COPY bytes or more, whatever
 * its arrays), and from then on readies only the copies from heapCopyLimit (all from LARGE_COPY
 * when it was left alone). */
function beforeLargeCopies(): void {
  if (heapCopyLimit !== undefined) return;
  heapCopyLimit = tuneMallocForCopies() ?? 0;
  const from = Math.max(LARGE_COPY, heapCopyLimit - MALLOC_CHUNK_OVERHEAD);
  COPY_OPTIONS.allocateFrom = POOLED_COPY_OPTIONS.allocateFrom = from;
}

/** Heap bytes allocated per large copy, so the collector keeps pace (see nudgeCollector). */
const NUDGE_BYTES = 64 * 1024;
const nudgeSink: { last?: unknown[] } = {};

/**
 * A loop of large copies allocates next to nothing on the JS heap, and V8's incremental
 * marking advances on heap allocation, or on tasks that run only when the event loop turns.
 * In a `getSync` loop it stalls: copies already dropped pile up as external memory, and the
 * kernel must find ever fresh pages, which on this VM cost a host fault each. A little heap
 * garbage per large copy drives the marking. Measured on a 2-vCPU VM, one process, putSync +
 * getSync in a loop: 100 MiB 0.72 -> 1.8-2.8 GB/s and peak RSS 4.0 -> 0.7 GB; 1 GiB 1.1 ->
 * 1.7-2.8 GB/s; 1 MiB unchanged in speed, RSS halved. 16 KiB of garbage did part of it, 1 KiB
 * nothing.
 */
function nudgeCollector(): void {
  nudgeSink.last = new Array(NUDGE_BYTES / 8); // stored, so not optimized away
}

/** Heap garbage made after each readied copy, in NUDGE_BYTES pieces. */
const READIED_COPY_NUDGES = 4;

/**
 * The nudge for readied copies (heapCopyLimit and up), whose dead copies each hold their size
 * of RSS: made after the copy, not before it. Every ArrayBuffer made while V8's incremental
 * marking runs survives that marking's collection, dead or not, and the new buffer is what
 * starts the marking (external memory passes the limit). Marking completes only in a step
 * taken once the concurrent marker has caught up, and the steps of a getSync loop are the
 * nudges: one made right after the new buffer came too early, the next came with the next
 * message's buffer, which was kept then too, and the next marking started later still (the
 * limit grows with what survives), so each marking kept more dead copies. Made after the copy,
 * in pieces, the steps find the marking done (the concurrent marker had the copy's time), and
 * it completes at the next function call, before the next buffer: the dead copy before this
 * one goes. Measured on a 2-vCPU VM, one process, peak RSS over the shared memory and the live
 * copy (dead copies kept): drafted 600 MiB messages, getSync 1.8-4.2 GB (3-7) -> 0.6-1.2 GB
 * (1-2), get 1.8 (3) -> 1.2-1.8 (2-3), and with --no-incremental-marking 0.6 (1); putSync +
 * get of 300 MiB 0.6-2.1 (2-7) -> 0.6 (2); 1200 MiB getSync and get at most 2. Copies no
 * slower: 100 MiB 3.0-3.4 -> 3.5-4.2 GB/s, 600 MiB 1.1-2.3 -> 1.4-4.7. A single 64 KiB piece
 * did it only now and then.
 */
function nudgeAfterReadiedCopy(): void {
  const pieces: unknown[] = [];
  // A loop: its back edges let a completion the allocations requested run right here.
  for (let i = 0; i < READIED_COPY_NUDGES; i++) pieces.push(new Array(NUDGE_BYTES / 8));
  nudgeSink.last = pieces;
}
