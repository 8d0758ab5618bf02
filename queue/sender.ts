/**
 * The sending end of a queue.
 *
 * @module
 */

import { type Inspect, inspectEnd } from "./inspect.ts";
import { encodeInto, type EncodePlan, planEncode } from "../codec/mod.ts";
import { decodeBytes } from "../codec/decode.ts";
import { ClosedError, FullError, namingCall } from "./errors.ts";
import { MAX_EXTENSIONS, MAX_MESSAGE_SIZE } from "./layout.ts";
import { DESCRIPTOR_VERSION, type QueueDescriptor } from "./descriptor.ts";
import { cancelOnClose, Draft } from "./lease.ts";
import { type Reservation, SharedQueue } from "./shared_queue.ts";
import { roomHolder } from "./segment.ts";
import type { QueueStats } from "./stats.ts";
import {
  type Attempt,
  deadlineOf,
  NO_WAIT,
  ROOM_SLICE_MS,
  SYNC_WAIT_OPTIONS,
  type SyncWaitOptions,
  WAIT_OPTIONS,
  waitAsync,
  type WaitOptions,
  waitSync,
} from "./wait.ts";
import { BEHIND, Lane, settledBy } from "./lane.ts";
import { stopIfRequested, stoppedByRequest } from "./stop.ts";
import { shown } from "./shown.ts";

/** How often a put that finds room looks for dead receivers (see #noticeDeadPeers). */
const PEER_CHECK_MS = 1000;
/** Puts between two looks at the clock for that. Fewer than a queue's capacity (64 by
 * default) is enough: a sender that fills the queue waits, and waits look anyway. */
const PUTS_PER_PEER_CHECK = 16;

/**
 * Puts messages into a queue. Make one with `createSharedMemoryPair`, or open one in another
 * process or Worker with `openSender(descriptor)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
 * await sender.put({ idx: 1, source: "actor_3" });
 * assert.ok(sender.hasSpace());
 * assert.ok((await receiver.get() as { idx: number }).idx === 1);
 * await sender.waitForAllAck();
 * sender.close();
 * receiver.close();
 * ```
 */
export class Sender implements Disposable {
  readonly #queue: SharedQueue;
  /** Unsent drafts, each with its reservation. */
  readonly #drafts = new Map<Draft<unknown>, Reservation>();
  /** This end's async puts and prepares, served in call order. */
  readonly #lane = new Lane();
  #published = 0;
  /** The stream `writable` hands out, made at its first use. */
  #writable: WritableStream<unknown> | undefined;
  #nextPeerCheck = performance.now() + PEER_CHECK_MS;
  #putsUntilPeerCheck = PUTS_PER_PEER_CHECK;
  /** Set while a call of this sender reads a value it puts (see #startMeasuring). */
  #measuring = false;

  /** @internal Use `createSharedMemoryPair` or `openSender`. */
  constructor(queue: SharedQueue) {
    if (!(queue instanceof SharedQueue)) {
      throw new TypeError("a Sender is made by createSharedMemoryPair() or openSender(), not new");
    }
    this.#queue = queue;
  }

  /** A JSON-serializable reference to this queue, for `openSender`/`openReceiver` elsewhere. */
  get descriptor(): QueueDescriptor {
    return { shmq: DESCRIPTOR_VERSION, end: "sender", name: this.#queue.name };
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
   * How many receivers of this queue ended without closing (their process killed or
   * crashed, or their Worker ended) since the queue was made. A message a dead receiver was
   * working on counts as received; this says such a loss may have happened. A death counts
   * once an end has noticed it (within about a second). After `close()`, the figure this end
   * last saw.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * receiver.close();
   * assert.equal(sender.receiversDied, 0, "it closed");
   * sender.close();
   * ```
   */
  get receiversDied(): number {
    return this.#queue.peersDied;
  }

  /** Whether a `put` would find room right now: fewer than `capacity` messages outstanding,
   * and a free slot behind any message held for long (a lease, an unsent draft). Never waits:
   * a lock that a peer keeps (a stopped process) makes it false after a few milliseconds.
   * It counts messages, not bytes: a large message may still wait for room in the arena or
   * byte budget (or, no longer than making a new segment would take, for one a receiver is
   * about to give back). True while every receiver is gone too (a `put` then throws
   * `ClosedError`, which a loop waiting for room would otherwise never learn). False once
   * this end is closed; in a Worker whose handle closed it (`WorkerHandle.close()`), it throws
   * `ClosedError` instead, so that a loop polling it ends. */
  hasSpace(): boolean {
    stopIfRequested();
    const queue = this.#queue;
    if (queue.closed) {
      if (stoppedByRequest()) queue.assertOpen("Sender.hasSpace");
      return false;
    }
    const room = () => queue.inFlight < queue.capacity && !queue.ringFull;
    if (room()) return true;
    // Locks only briefly: a holder that keeps the lock (stopped) would hold a put up as long,
    // so there is no room to promise, but the poll must not wait the 10 s a put gives it.
    if (queue.unsettled) {
      // Receivers released messages without the lock: count them.
      try {
        if (queue.settle(NO_WAIT) && room()) return true;
      } catch {
        return false;
      }
    }
    // Full with no receiver left: a put would throw ClosedError at once, which a loop polling
    // for room must get to learn.
    if (queue.livePeers === 0) return true;
    // Full, maybe only because a dead receiver holds messages. Waiting calls notice dead
    // peers on their own; a caller that only polls must, too.
    try {
      if (!queue.reapIfDue(NO_WAIT)) return false;
    } catch {
      return false; // Corrupt: no room either way.
    }
    return room() || queue.livePeers === 0;
  }

  /**
   * A snapshot of the queue for monitoring: messages waiting and in flight, totals put and
   * received, shared memory in use, the ends open and dead (see {@linkcode QueueStats}).
   * Takes the queue's lock for a moment, as a put does, but never waits for it for more than
   * a few milliseconds (a stopped peer may keep it): past that, it reads without it. Throws
   * `ClosedError` once this end is closed, or when the queue is found corrupt.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
   * sender.putSync(new Float64Array(1024));
   * const { waiting, inFlight, bytesInUse } = sender.stats();
   * assert.deepEqual([waiting, inFlight], [1, 1]);
   * assert.ok(bytesInUse >= 8192);
   * sender.close();
   * receiver.close();
   * ```
   */
  stats(): QueueStats {
    try {
      stopIfRequested();
      this.#queue.assertOpen("Sender.stats");
      return this.#queue.stats();
    } catch (error) {
      throw namingCall(error, "Sender.stats");
    }
  }

  /**
   * Puts a message, waiting while `capacity` messages are outstanding. Rejects with
   * `FullError` when `timeout` ms pass first, `ClosedError` when every receiver has closed,
   * `TypeError` (before anything is written) for a value the codec does not support.
   *
   * Calls that overlap (not awaited one by one) are put in the order they were made. With
   * room, the message is written during the call. Without, the value's structure, numbers and
   * strings are read when you call and its arrays' contents once room comes, so leave them
   * alone until the promise settles (an array detached or shrunk meanwhile rejects it with a
   * `TypeError`, and nothing is sent; to name a detached one, the value is read again,
   * getters included); a signal already aborted rejects at once, and an abort
   * later cancels the put only while it waits.
   */
  put(value: unknown, options?: WaitOptions): Promise<void> {
    return this.#put(value, options, "put");
  }

  /** {@linkcode put}, its errors named after `method` ("put", "writable"). */
  async #put(value: unknown, options: WaitOptions | undefined, method: string): Promise<void> {
    const call = `Sender.${method}`;
    try {
      this.#queue.assertOpen(call);
      const deadline = deadlineOf(options, call, WAIT_OPTIONS);
      options?.signal?.throwIfAborted();
      const plan = this.#plan(value, method);
      const attempt = this.#putAttempt(value, plan, method, deadline);
      const put = this.#putInLane(attempt, deadline, options?.signal);
      if (put !== true) {
        const done = await put;
        if (done !== true) {
          throw this.#full(method, options?.timeout, plan.byteLength, done === BEHIND);
        }
      }
    } catch (error) {
      throw namingCall(error, call, options?.signal);
    }
  }

  /**
   * Like {@linkcode put}, but blocks the thread: for actors and Workers that do nothing else.
   * Throws `TypeError` while a `put` or `prepare` of this sender is still waiting: it would
   * overtake it.
   */
  putSync(value: unknown, options?: SyncWaitOptions): void {
    try {
      stopIfRequested();
      this.#queue.assertOpen("Sender.putSync");
      const deadline = deadlineOf(options, "Sender.putSync", SYNC_WAIT_OPTIONS);
      this.#assertNoneWaiting("putSync");
      const plan = this.#plan(value, "putSync");
      const attempt = this.#putAttempt(value, plan, "putSync", deadline);
      const done = attempt() ?? this.#waitForRoomSync(attempt, deadline);
      if (done === undefined) throw this.#full("putSync", options?.timeout, plan.byteLength);
    } catch (error) {
      throw namingCall(error, "Sender.putSync");
    }
  }

  /**
   * Puts several messages, in order, as {@linkcode put} would one after the other, but takes
   * the queue's lock once for as many of them as there is room for: for a stream of small
   * messages that is most of a put's cost. Every value is checked before any is written: one
   * the codec rejects throws `TypeError` naming it (`values[3].pos: …`) and nothing is sent.
   * So the whole iterable is read, and held, before the first put: a generator that never ends
   * never sends, and one of millions holds them all in memory first. Stream such a source in
   * batches of an array each, through {@linkcode writable}, or with `put` in a loop.
   * Waits for room as `put` does, as often as it takes; when the timeout passes first, the messages
   * put so far stay put and the `FullError`'s `sent` says how many. A `ClosedError` part way leaves
   * them too, and its `sent` says how many. So does an abort: with a reason that is a
   * `DOMException` named "AbortError" or "TimeoutError" (the platform's own, from
   * `controller.abort()` with none or `AbortSignal.timeout()`) it rejects with a new one of that
   * name made for this call, whose `sent` says how many were put and whose `cause` is the signal's
   * reason (the reason itself, shared by every call the signal aborts, cannot carry a count); with
   * any other reason it rejects with that reason, as it is, and no count: abort with no reason, or
   * use a timeout, where the count matters. While it finds room, an async batch runs on without
   * yielding to the event loop, as a `put` that finds room does. An array detached while it waits
   * for room stops it there, with a `TypeError` naming the array (found by reading that value
   * again, getters included). Any other error once the values were checked (a `RangeError` when
   * `/dev/shm` has no room for a large value, say) has a `sent` too, and says how many were put.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * await sender.putMany([{ tick: 1 }, { tick: 2 }, new Float64Array([0.5])]);
   * assert.deepEqual(receiver.getNowait(), { tick: 1 });
   * assert.deepEqual(receiver.getNowait(), { tick: 2 });
   * assert.ok((receiver.getNowait() as Float64Array)[0] === 0.5);
   * sender.close();
   * receiver.close();
   * ```
   *
   * @example Resume after an abort
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
   * const values = ["a", "b", "c"];
   * let next = 0;
   * try {
   *   await sender.putMany(values, { signal: AbortSignal.timeout(50) }); // room for 2
   * } catch (e) {
   *   if (!(e instanceof DOMException && e.name === "TimeoutError")) throw e;
   *   next = (e as DOMException & { sent: number }).sent; // 2: "a" and "b" went
   * }
   * assert.deepEqual([receiver.getNowait(), receiver.getNowait()], ["a", "b"]);
   * await sender.putMany(values.slice(next)); // "c"
   * assert.ok(receiver.getNowait() === "c");
   * sender.close();
   * receiver.close();
   * ```
   */
  async putMany(values: Iterable<unknown>, options?: WaitOptions): Promise<void> {
    let batch: Batch | undefined;
    try {
      this.#queue.assertOpen("Sender.putMany");
      const deadline = deadlineOf(options, "Sender.putMany", WAIT_OPTIONS);
      options?.signal?.throwIfAborted();
      batch = this.#planMany(values, "putMany");
      const attempt = this.#putManyAttempt(batch, "putMany", deadline);
      const put = this.#putInLane(attempt, deadline, options?.signal);
      if (put !== true) {
        const done = await put;
        if (done !== true) {
          throw this.#fullMany(batch, "putMany", options?.timeout, done === BEHIND);
        }
      }
    } catch (error) {
      const signal = options?.signal;
      if (signal?.aborted && error === signal.reason) throw countingAbort(error, batch);
      throw namingCall(countingSent(error, batch), "Sender.putMany", signal);
    }
  }

  /**
   * Like {@linkcode putMany}, but blocks the thread: for actors and Workers that do nothing
   * else. Throws `TypeError` while a `put`, `putMany` or `prepare` of this sender is still
   * waiting.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair, FullError } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
   * assert.throws(
   *   () => sender.putManySync(["a", "b", "c"], { timeout: 10 }),
   *   (e: unknown) => e instanceof FullError && e.sent === 2,
   * );
   * assert.deepEqual([receiver.getNowait(), receiver.getNowait()], ["a", "b"]);
   * sender.close();
   * receiver.close();
   * ```
   */
  putManySync(values: Iterable<unknown>, options?: SyncWaitOptions): void {
    let batch: Batch | undefined;
    try {
      stopIfRequested();
      this.#queue.assertOpen("Sender.putManySync");
      const deadline = deadlineOf(options, "Sender.putManySync", SYNC_WAIT_OPTIONS);
      this.#assertNoneWaiting("putManySync");
      batch = this.#planMany(values, "putManySync");
      const attempt = this.#putManyAttempt(batch, "putManySync", deadline);
      const done = attempt() ?? this.#waitForRoomSync(attempt, deadline);
      if (done === undefined) throw this.#fullMany(batch, "putManySync", options?.timeout);
    } catch (error) {
      throw namingCall(countingSent(error, batch), "Sender.putManySync");
    }
  }

  /**
   * Reserves a message in shared memory for the zero-copy write path. `template` is any
   * value where the arrays to fill are `reserve(dtype, shape)` (or `reserve(Ctor, length)`)
   * placeholders; in the returned draft's `value` they are views into shared memory. Fill
   * them and call `draft.send()`. Waits for room like {@linkcode put}.
   *
   * The reserved arrays start with whatever bytes their space held before (earlier
   * messages'), not zeros: write every element you send.
   */
  async prepare<T = unknown>(template: unknown, options?: WaitOptions): Promise<Draft<T>> {
    try {
      this.#queue.assertOpen("Sender.prepare");
      const deadline = deadlineOf(options, "Sender.prepare", WAIT_OPTIONS);
      options?.signal?.throwIfAborted();
      const plan = this.#plan(template, "prepare", true);
      const attempt = this.#reserveAttempt(plan.byteLength, deadline);
      const lane = this.#lane;
      const first = !lane.busy;
      const reserved = lane.now(attempt, deadline) ??
        await lane.later(
          attempt,
          deadline,
          options?.signal,
          this.#waitForRoom,
          lane.takeDueTurn(),
          first ? this.#dropBudgetClaim : undefined,
        );
      if (reserved === undefined || reserved === BEHIND) {
        throw this.#full("prepare", options?.timeout, plan.byteLength, reserved === BEHIND);
      }
      return this.#draft<T>(template, plan, reserved.value, "prepare");
    } catch (error) {
      throw namingCall(error, "Sender.prepare", options?.signal);
    }
  }

  /** Like {@linkcode prepare}, but blocks the thread while the queue is full. */
  prepareSync<T = unknown>(template: unknown, options?: SyncWaitOptions): Draft<T> {
    try {
      stopIfRequested();
      this.#queue.assertOpen("Sender.prepareSync");
      const deadline = deadlineOf(options, "Sender.prepareSync", SYNC_WAIT_OPTIONS);
      this.#assertNoneWaiting("prepareSync");
      const plan = this.#plan(template, "prepareSync", true);
      const attempt = this.#reserveAttempt(plan.byteLength, deadline);
      const reserved = attempt() ?? this.#waitForRoomSync(attempt, deadline);
      if (reserved === undefined) {
        throw this.#full("prepareSync", options?.timeout, plan.byteLength);
      }
      return this.#draft<T>(template, plan, reserved.value, "prepareSync");
    } catch (error) {
      throw namingCall(error, "Sender.prepareSync");
    }
  }

  /**
   * Waits until every message this sender put has been received and released, including
   * those of `put` calls still waiting for room, but none put after this call (a producer
   * that keeps the queue busy does not keep it waiting). A draft from {@linkcode prepare}
   * counts once sent: one still unsent is not waited for, though messages put after it are
   * (they are delivered after it, so a timeout names the unsent drafts). Rejects with `FullError` on
   * timeout, and `ClosedError` when every receiver closed first.
   */
  async waitForAllAck(options?: WaitOptions): Promise<void> {
    try {
      this.#queue.assertOpen("Sender.waitForAllAck");
      const deadline = deadlineOf(options, "Sender.waitForAllAck", WAIT_OPTIONS);
      options?.signal?.throwIfAborted();
      if (this.#lane.busy && !(await settledBy(this.#lane.drained, deadline, options?.signal))) {
        const stillOut = this.#ackWait(deadline).stillOut();
        throw this.#ackTimeout("waitForAllAck", options?.timeout, stillOut);
      }
      // The messages of puts that waited count: they were put before this call.
      const wait = this.#ackWait(deadline);
      const done = await waitAsync(
        this.#queue,
        this.#queue.ackSignal,
        wait.attempt,
        deadline,
        options?.signal,
      );
      if (done === undefined) {
        throw this.#ackTimeout("waitForAllAck", options?.timeout, wait.stillOut());
      }
    } catch (error) {
      throw namingCall(error, "Sender.waitForAllAck", options?.signal);
    }
  }

  /** Like {@linkcode waitForAllAck}, but blocks the thread. Throws `TypeError` while a `put` of
   * this sender is still waiting: blocking, it could never see that message acked. */
  waitForAllAckSync(options?: SyncWaitOptions): void {
    try {
      stopIfRequested();
      this.#queue.assertOpen("Sender.waitForAllAckSync");
      const deadline = deadlineOf(options, "Sender.waitForAllAckSync", SYNC_WAIT_OPTIONS);
      this.#assertNoneWaiting("waitForAllAckSync");
      const wait = this.#ackWait(deadline);
      const done = waitSync(this.#queue, this.#queue.ackSignal, wait.attempt, deadline);
      if (done === undefined) {
        throw this.#ackTimeout("waitForAllAckSync", options?.timeout, wait.stillOut());
      }
    } catch (error) {
      throw namingCall(error, "Sender.waitForAllAckSync");
    }
  }

  /**
   * This sender as a `WritableStream`, for `pipeTo` and `pipeThrough`, as Deno's own resources
   * have one (`Deno.FsFile.writable`): each chunk is put as {@linkcode put} puts it, waiting for
   * room (so a faster source waits too). The stream owns this sender: closing or aborting it
   * closes the sender, whose messages are still delivered (its writer's `abort()` stops a
   * chunk still waiting for room, which is not sent; a `pipeTo` stopped by its signal waits for
   * that chunk first, as streams finish a write before they abort: with nobody reading, close
   * the sender to end the wait), and so does a chunk it refuses (the stream errors
   * with that chunk's error, named `Sender.writable`, and the chunks before it went). A second
   * `pipeTo` into it needs the first to pass `preventClose: true`. Aborted, or refusing a chunk,
   * it closes the sender as one that died, so that receivers tell the stream cut short from one
   * that finished (`receiver.sendersDied` counts it). The stream hands its chunks
   * to the sender one at a time: a `put` called meanwhile may go before chunks written earlier.
   * The same stream on every access; on a sender closed already, it errors at once.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { createSharedMemoryPair } from "../mod.ts";
   * const [sender, receiver] = createSharedMemoryPair();
   * await ReadableStream.from([1, 2, 3]).pipeTo(sender.writable);
   * assert.equal(sender.closed, true);
   * assert.deepEqual(await Array.fromAsync(receiver), [1, 2, 3]);
   * receiver.close();
   * ```
   */
  get writable(): WritableStream<unknown> {
    return this.#writable ??= this.#makeWritable();
  }

  #makeWritable(): WritableStream<unknown> {
    // The stream's abort signal stops a write waiting for room: its sink's abort runs only
    // once the write under way has settled.
    let aborted: AbortSignal | undefined;
    return new WritableStream<unknown>({
      start: (controller) => {
        aborted = controller.signal;
        // As an error of the stream: one thrown here would come out of the getter.
        try {
          this.#queue.assertOpen("Sender.writable");
        } catch (error) {
          controller.error(error);
        }
      },
      write: async (chunk) => {
        try {
          await this.#put(chunk, { signal: aborted }, "writable");
        } catch (error) {
          this.#closeCutShort();
          throw error;
        }
      },
      close: () => this.close(),
      abort: () => this.#closeCutShort(),
    });
  }

  /** Closes this end as one that died: its stream was cut short (aborted, or a chunk refused),
   * and receivers must be able to tell that from a stream that finished (`sendersDied`). */
  #closeCutShort(): void {
    if (!this.#queue.closed) this.#queue.leaveAsDead();
    this.close();
  }

  /**
   * Leaves the queue. Messages already put are still delivered; drafts not yet sent are
   * cancelled. Calls of this end still waiting (`put`, `putMany`, `prepare`, `waitForAllAck`)
   * reject with `ClosedError` (reason `"closed"`), and the value of a `put` still waiting for
   * room is not delivered (of a `putMany`, the values it had not put yet). When this was the
   * last sender, receivers get `ClosedError` once drained. Waits only briefly for a peer
   * stopped while it keeps the queue's lock (SIGSTOP, a debugger): this end then leaves
   * without it, for the next reap of any end, once the lock is free, to remove as a close.
   */
  close(): void {
    if (this.#queue.closed) return;
    // The end leaves first, and drops its drafts' slots with its own: under one lock, or by
    // the reap of its entry when a stopped peer keeps the lock (each cancel would take the
    // lock, or give that peer 2 ms). The drafts then settle as cancelled.
    this.#queue.close();
    for (const draft of [...this.#drafts.keys()]) cancelOnClose(draft);
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** How `console.log` shows this end: its queue's name and whether it is closed. */
  [Symbol.for("Deno.customInspect")](inspect: Inspect, options?: unknown): string {
    return inspectEnd("Sender", this, inspect, options);
  }

  /**
   * Runs an async put's attempt in this end's lane: at once when no call of this end is ahead
   * and there is room, else once the calls ahead are done, waiting for room. True, or a
   * promise of whether it was put before the deadline (BEHIND: the deadline passed while
   * calls ahead still waited, so it never tried): a put that finds room at once, with
   * no fairness turn to wait for, costs no promise of its own (an await of one cost a 100 B
   * async put and get 5-8% in one process).
   */
  #putInLane(
    attempt: Attempt<true>,
    deadline: number,
    signal: AbortSignal | undefined,
  ): true | Promise<boolean | typeof BEHIND> {
    const lane = this.#lane;
    // Only a call that finds none of this end's ahead of it tries in Lane.now (and may claim).
    const first = !lane.busy;
    const put = lane.now(attempt, deadline, true);
    const turn = lane.takeDueTurn();
    if (put === undefined) return this.#putLater(attempt, deadline, signal, turn, first);
    const settles = lane.settleAfterTurns(turn);
    return settles === undefined ? true : settles.then(() => true);
  }

  /** {@linkcode #putInLane} for a put that waits. */
  async #putLater(
    attempt: Attempt<true>,
    deadline: number,
    signal: AbortSignal | undefined,
    turn: Promise<void> | undefined,
    first: boolean,
  ): Promise<boolean | typeof BEHIND> {
    const lane = this.#lane;
    const done = await lane.later(
      attempt,
      deadline,
      signal,
      this.#waitForRoom,
      turn,
      first ? this.#dropBudgetClaim : undefined,
    );
    if (done === BEHIND) return BEHIND;
    if (done === undefined) return false;
    const settles = lane.settleAfterTurns(undefined);
    if (settles) await settles;
    return true;
  }

  /** Waits until `attempt` finds room, waking on releases (or a room slice) and the signal.
   * However the wait ends, the budget claim it may have made goes (see dropBudgetClaim). */
  readonly #waitForRoom = async <T>(
    attempt: Attempt<T>,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<{ value: T } | undefined> => {
    const queue = this.#queue;
    try {
      return await waitAsync(queue, queue.releaseSignal, attempt, deadline, signal, ROOM_SLICE_MS);
    } finally {
      queue.dropBudgetClaim();
    }
  };

  /** The first attempt of an async put or prepare (Lane.now) may have claimed budget, and the
   * call may end (abort, close) before it reaches #waitForRoom: the claim goes all the same.
   * Only for a call that had none of this end's ahead of it: a later one giving up early
   * must not drop the claim of an earlier one still waiting. */
  readonly #dropBudgetClaim = (): void => this.#queue.dropBudgetClaim();

  #assertNoneWaiting(method: string): void {
    if (this.#lane.busy) {
      throw new TypeError(
        `Sender.${method}: a put(), putMany() or prepare() of this sender is still waiting; ` +
          "await it first, so that the messages keep the order they were put in",
      );
    }
  }

  /** Like {@linkcode #waitForRoom}, blocking the thread. */
  #waitForRoomSync<T>(attempt: Attempt<T>, deadline: number): { value: T } | undefined {
    try {
      return waitSync(this.#queue, this.#queue.releaseSignal, attempt, deadline, ROOM_SLICE_MS);
    } finally {
      this.#queue.dropBudgetClaim();
    }
  }

  #plan(value: unknown, method: string, drafting = false): EncodePlan {
    this.#startMeasuring(method);
    try {
      return this.#planValue(value, method, drafting);
    } finally {
      this.#measuring = false;
    }
  }

  /**
   * Refuses a call made while this sender measures another's value, from one of its getters
   * (or the iterator of a putMany's values): it would find room and go before the call that
   * was made first. From then on until {@linkcode #measuring} is cleared, it is measuring.
   */
  #startMeasuring(method: string): void {
    if (this.#measuring) {
      throw new TypeError(
        `Sender.${method}: called while this sender reads the value of an earlier call (from ` +
          "a getter, or the iterator of putMany's values), which it would overtake",
      );
    }
    this.#measuring = true;
  }

  #planValue(value: unknown, method: string, drafting: boolean): EncodePlan {
    this.#queue.assertOpen();
    let plan: EncodePlan;
    try {
      plan = planEncode(value);
    } catch (error) {
      throw named(error, method, true);
    }
    if (plan.byteLength > MAX_MESSAGE_SIZE) {
      throw new RangeError(
        `Sender.${method}: a message of ${plan.byteLength} bytes exceeds the limit of ` +
          `${MAX_MESSAGE_SIZE} bytes`,
      );
    }
    for (const { reservation, path } of plan.reservations) {
      // A put would send whatever the space held before: another message's bytes.
      if (!drafting) {
        throw new TypeError(
          `Sender.${method}: ${path}: a reserve() placeholder, which only prepare() fills in ` +
            "place; put the array itself",
        );
      }
      // An ArrayBuffer cannot view part of shared memory, so a draft could only hand out a
      // copy, and what was written into it would be lost.
      if (reservation.ctor === ArrayBuffer) {
        throw new TypeError(
          `Sender.${method}: ${path}: reserve(ArrayBuffer, n) cannot be written in place; use ` +
            "reserve(Uint8Array, n) (the receiver then gets a Uint8Array)",
        );
      }
    }
    return plan;
  }

  /**
   * Only waiting calls look for dead peers, and a sender that always finds room never waits:
   * it would go on filling a queue whose receivers all died. So a put also looks, once per
   * PEER_CHECK_MS, and throws `ClosedError` (the reserve does) once none is left.
   */
  #noticeDeadPeers(deadline: number): void {
    // Reading the clock on every put cost 10-15% of a 64 B stream: only every few puts.
    if (--this.#putsUntilPeerCheck > 0) return;
    this.#putsUntilPeerCheck = PUTS_PER_PEER_CHECK;
    const now = performance.now();
    if (now < this.#nextPeerCheck) return;
    this.#nextPeerCheck = now + PEER_CHECK_MS;
    try {
      this.#queue.reapDead(deadline);
    } catch {
      // Corrupt or stuck: the reservation reports it.
    }
  }

  #putAttempt(
    value: unknown,
    plan: EncodePlan,
    method: string,
    deadline: number,
  ): Attempt<true> {
    const queue = this.#queue;
    const length = plan.byteLength;
    // Only the reservation takes the lock: encoding runs outside it, in parallel with the
    // receivers, and publishing is one atomic store.
    return () => {
      this.#noticeDeadPeers(deadline);
      const r = queue.reserve(length, deadline, this.#holdsExtensionDrafts(), true);
      if (r === undefined) return undefined;
      try {
        encodeInto(plan, queue.reservedBytes(r));
      } catch (error) {
        queue.cancel(r);
        throw named(replanned(error, value), method);
      }
      queue.publish(r);
      this.#published++;
      return DONE;
    };
  }

  /** The plans of a putMany's values, every one checked before any is written. */
  #planMany(values: Iterable<unknown>, method: string): Batch {
    if (values === null || typeof values !== "object" || !(Symbol.iterator in values)) {
      throw new TypeError(
        `Sender.${method}: values must be an iterable (an array) of values, got ` +
          shown(values),
      );
    }
    // Iterable too, but surely one message meant: its elements would go as messages of a number.
    if (ArrayBuffer.isView(values)) {
      const kind = Object.prototype.toString.call(values).slice(8, -1);
      throw new TypeError(
        `Sender.${method}: values must be an iterable (an array) of values, got a ${kind}: ` +
          "put it with put(), or wrap it: [array]",
      );
    }
    const plans: EncodePlan[] = [];
    const kept: unknown[] = [];
    this.#startMeasuring(method);
    try {
      for (const value of values) {
        kept.push(value);
        try {
          plans.push(this.#planValue(value, method, false));
        } catch (error) {
          throw indexed(error, method, plans.length);
        }
      }
    } finally {
      this.#measuring = false;
    }
    return { values: kept, plans, lengths: plans.map((plan) => plan.byteLength), sent: 0 };
  }

  /**
   * Puts what is left of a batch, as many messages per critical section as there is room
   * for (an extension-sized one goes alone); undefined when it has to wait for room.
   */
  #putManyAttempt(batch: Batch, method: string, deadline: number): Attempt<true> {
    const queue = this.#queue;
    const { plans, lengths } = batch;
    const reserved: Reservation[] = [];
    const published = (count: number) => {
      batch.sent += count;
      this.#published += count;
    };
    return () => {
      while (batch.sent < plans.length) {
        this.#noticeDeadPeers(deadline);
        reserved.length = 0;
        queue.reserveMany(lengths, batch.sent, reserved, deadline);
        if (reserved.length === 0) {
          const r = queue.reserve(lengths[batch.sent], deadline, this.#holdsExtensionDrafts());
          if (r === undefined) return undefined;
          reserved.push(r);
        }
        let written = 0;
        try {
          for (; written < reserved.length; written++) {
            encodeInto(plans[batch.sent + written], queue.reservedBytes(reserved[written]));
          }
        } catch (error) {
          // An array detached (or shrunk) while the call waited: the messages before it go,
          // in order; it and those after it do not.
          for (let k = written; k < reserved.length; k++) queue.cancel(reserved[k]);
          queue.publishMany(reserved.slice(0, written), published);
          const refused = replanned(error, batch.values[batch.sent]);
          throw indexed(named(refused, method), method, batch.sent, batch.sent);
        }
        queue.publishMany(reserved, published);
      }
      return DONE;
    };
  }

  #fullMany(batch: Batch, method: string, timeout: number | undefined, behind = false): FullError {
    const full = this.#full(method, timeout, batch.lengths[batch.sent], behind);
    return new FullError(`${full.message}; ${putSoFar(batch.sent, batch.plans.length)}`, {
      sent: batch.sent,
    });
  }

  /** Whether an unsent draft of this sender is in an extension segment, taking byte budget
   * until sent or cancelled (see SharedQueue.reserve). */
  #holdsExtensionDrafts(): boolean {
    for (const r of this.#drafts.values()) if (r.segment > 0) return true;
    return false;
  }

  #reserveAttempt(length: number, deadline: number): Attempt<Reservation> {
    return () => {
      this.#noticeDeadPeers(deadline);
      const r = this.#queue.reserve(length, deadline, this.#holdsExtensionDrafts());
      return r === undefined ? undefined : { value: r };
    };
  }

  #draft<T>(template: unknown, plan: EncodePlan, r: Reservation, method: string): Draft<T> {
    const queue = this.#queue;
    // Closed while a waiting prepare resumed: the close gave the reservation back.
    queue.assertOpen();
    let view;
    let value: T;
    try {
      view = queue.openView(
        r.segment,
        r.offset,
        r.length,
        r.createExtension ? "create" : "reserve",
      );
      const bytes = new Uint8Array(view.buffer, 0, r.length);
      encodeInto(plan, bytes);
      value = decodeBytes(bytes, { view: true }) as T;
    } catch (error) {
      if (view) queue.dropView(view);
      queue.cancel(r);
      // An array of the template detached while the call waited: named by its path, as a put's.
      throw named(replanned(error, template), method);
    }
    const draft = new Draft<T>(queue, r, view, value, (d, sent) => {
      this.#drafts.delete(d as Draft<unknown>);
      if (sent) this.#published++;
    });
    this.#drafts.set(draft as Draft<unknown>, r);
    return draft;
  }

  /**
   * A `waitForAllAck` from now: its attempt, done once every message this sender has put is
   * released (puts made later are not waited for: a producer that keeps the queue busy would
   * hold the goal out of reach), and what is still out of those, for its errors.
   */
  #ackWait(deadline: number): { attempt: Attempt<true>; stillOut(): number } {
    const queue = this.#queue;
    // Closed while the call waited behind a put of this sender: its memory is gone.
    queue.assertOpen();
    const published = this.#published;
    // Caught up: no look at the ring. Else the ring says which messages are out, in order.
    const out = queue.acked === (published >>> 0) ? [] : queue.outOfSelf(deadline);
    if (out === undefined) {
      // A stopped holder kept the lock past the deadline: the call times out, and its words give
      // the count (which a receiver killed between its release and its count leaves high).
      return { attempt: () => undefined, stillOut: () => (published - queue.acked) >>> 0 };
    }
    let first = 0;
    const stillOut = () => out.slice(first).filter((at) => queue.isOut(at)).length;
    const attempt = () => {
      queue.assertOpen();
      // Credits the acks, and lets a released message's room (its extension segment) go.
      if (queue.unsettled) queue.settle(deadline);
      while (first < out.length && !queue.isOut(out[first])) first++;
      if (first === out.length || queue.acked === (this.#published >>> 0)) return DONE;
      if (queue.livePeers === 0) {
        throw new ClosedError(
          queue.goneMessage(
            "receiver",
            `and ${stillOut()} message(s) of this sender were not received`,
          ),
          { reason: "no-receivers" },
        );
      }
      return undefined;
    };
    return { attempt, stillOut };
  }

  /** `behind`: the call waited out its timeout behind an earlier one of this sender. */
  #full(
    method: string,
    timeout: number | undefined,
    byteLength: number,
    behind = false,
  ): FullError {
    if (behind) {
      return new FullError(
        `Sender.${method}: no room for ${timeout} ms: the call waited all that time behind an ` +
          `earlier put(), putMany() or prepare() of this sender, still waiting for room (calls ` +
          `of one sender keep their order), and never tried`,
      );
    }
    const queue = this.#queue;
    // The room may have been there all the while: the other words would mislead.
    const lockKept = queue.lockKeptWords();
    if (lockKept !== undefined) {
      return new FullError(`Sender.${method}: no room for ${timeout} ms: ${lockKept}`);
    }
    const {
      inFlight,
      extensionBytes,
      byteBudget,
      arenaHeld,
      claimedByOthers,
      waitingForShm,
      waitingForExtension,
    } = queue.usage();
    const capacity = queue.capacity;
    const why = waitingForShm !== undefined && !queue.fitsArena(byteLength)
      ? `${roomHolder(waitingForShm.setBy, waitingForShm.free)} for a ` +
        `${waitingForShm.size}-byte segment; this queue's messages in flight hold ` +
        `${extensionBytes} bytes of segments there, and those it dropped for room come back ` +
        `once every end has unmapped them${
          waitingForShm.setBy === "shm" ? " (df -h /dev/shm)" : ""
        }`
      : inFlight >= capacity
      ? `${inFlight} of capacity ${capacity} messages are unreleased`
      : queue.ringFull
      ? `the oldest unreleased message (a lease not yet released, a draft not yet sent, or a ` +
        `large put still being written) holds back the queue's ${queue.ringSize} slots, which ` +
        `are reused in order: release it, or send or cancel the draft`
      : waitingForExtension && !queue.fitsArena(byteLength)
      ? `all ${MAX_EXTENSIONS} extension segments carry messages in flight (each message of ` +
        `over ${queue.largestArenaMessage} bytes, a quarter of the arena, holds one until it ` +
        `is released)`
      : queue.fitsArena(byteLength)
      ? `the arena has no room for this ${byteLength}-byte message: ${arenaHeld} of its ` +
        `${queue.arenaSize} bytes are held, reclaimed in order behind the oldest unreleased ` +
        `message (a lease not yet released, a draft not yet sent, or a large put still being ` +
        `written, holds back what follows it)`
      : `the byte budget of ${byteBudget} bytes has no room for this ${byteLength}-byte ` +
        `message: the arena takes ${queue.arenaSize} bytes of it and messages in flight hold ` +
        `${extensionBytes} bytes of extension segments` +
        (claimedByOthers > 0
          ? `, and another sender's waiting put has claimed ` +
            `${claimedByOthers} bytes`
          : "") +
        this.#ownExtensionDrafts();
    return new FullError(`Sender.${method}: no room for ${timeout} ms: ${why}`);
  }

  /** Words on this sender's unsent drafts in extension segments, for a put that found no
   * budget: room that only this sender can give back. */
  #ownExtensionDrafts(): string {
    let drafts = 0;
    for (const r of this.#drafts.values()) if (r.segment > 0) drafts++;
    return drafts === 0 ? "" : `, ${drafts} of them this sender's own unsent draft(s): send ` +
      "or cancel them, as no other end can free their room";
  }

  #ackTimeout(method: string, timeout: number | undefined, missing: number): FullError {
    // An unsent draft holds back this sender's later messages (their order is kept).
    const drafts = this.#drafts.size > 0
      ? `; this sender has ${this.#drafts.size} unsent draft(s), which the messages put after ` +
        `them wait behind`
      : "";
    // Counted too, though not sent yet: they are what waitForAllAck waits for first.
    const waiting = this.#lane.waiting;
    const unsent = waiting > 0
      ? `; ${waiting} call(s) of this sender (put, putMany, prepare) still wait to send ` +
        "their messages"
      : "";
    const lockKept = this.#queue.lockKeptWords();
    return new FullError(
      `Sender.${method}: ${missing} message(s) still not received and released after ` +
        `${timeout} ms` +
        `${unsent}${drafts}${lockKept === undefined ? "" : `; ${lockKept}`}`,
    );
  }
}

const DONE = { value: true as const };

/** A putMany's values, planned, and how many of them are put so far. */
interface Batch {
  readonly values: readonly unknown[];
  readonly plans: readonly EncodePlan[];
  readonly lengths: readonly number[];
  sent: number;
}

/**
 * The codec's refusal of a value whose array changed while the call waited for room, named by
 * its path: measured again, an array detached, or of fixed length over a resizable buffer
 * that shrank below it, is refused where it is (`value.data: …`). A length-tracking one that
 * shrank measures again without complaint: the error stays as it was.
 */
function replanned(error: unknown, value: unknown): unknown {
  if (!(error instanceof TypeError)) return error;
  try {
    planEncode(value);
  } catch (again) {
    // Only what this error is about: the value may have changed elsewhere meanwhile, and a
    // getter may throw its own TypeError the second time round.
    if (
      again instanceof TypeError &&
      /: (its|the) ArrayBuffer (is detached|shrank below it)/.test(again.message)
    ) {
      return new TypeError(
        `${again.message} (since the value was measured: while the call waited for room, or ` +
          "by a getter of the value)",
        { cause: error },
      );
    }
  }
  return error;
}

/**
 * An error that cut a putMany short once its values were planned, telling how many went before
 * it (`sent`, 0 when none had): a ClosedError, or any other the queue or the codec made for
 * this call alone (a RangeError for want of shared memory, a native error, an array detached
 * while the call waited). A FullError counts them already; one from before the batch was
 * planned (an end already closed, or a getter of the values) is left alone.
 */
function countingSent(error: unknown, batch: Batch | undefined): unknown {
  if (!(error instanceof Error) || error instanceof FullError || batch === undefined) return error;
  const { sent } = batch;
  Object.defineProperty(error, "sent", {
    value: sent,
    enumerable: true,
    writable: true,
    configurable: true,
  });
  if (sent === 0) return error;
  if (error instanceof ClosedError) {
    error.message += `; ${sent} of the ${batch.plans.length} values were put before it, in order`;
  } else if (!error.message.endsWith(REST_NOT_PUT)) {
    // A codec refusal (see indexed) names the value, and says so already.
    error.message += `; ${putSoFar(sent, batch.plans.length)}`;
  }
  return error;
}

/** How the words on a putMany cut short end: what was not put. */
const REST_NOT_PUT = "and the rest were not";

/** How much of a putMany of `n` values (unknown: not planned yet) went before it stopped. */
function putSoFar(sent: number, n: number | undefined): string {
  return sent === 0
    ? `none of the ${n === undefined ? "" : `${n} `}values was put`
    : `${sent} of the ${n} values were put, in order, ${REST_NOT_PUT}`;
}

/**
 * The rejection of a putMany aborted with signal `reason`, in place of the reason. The
 * platform's own reasons (`abort()` with none, `AbortSignal.timeout()`: a DOMException named
 * "AbortError" or "TimeoutError") become a DOMException of the same name for this call alone,
 * telling how many of its values went before it (`sent`, 0 when none had), the reason its
 * `cause`: the reason is shared by every call the signal aborts, and cannot carry a count. A
 * reason of the caller's own is theirs, to compare and to keep: it is left as it is.
 */
function countingAbort(reason: unknown, batch: Batch | undefined): unknown {
  if (
    !(reason instanceof DOMException) ||
    (reason.name !== "AbortError" && reason.name !== "TimeoutError")
  ) {
    return reason;
  }
  const sent = batch?.sent ?? 0;
  const put = putSoFar(sent, batch?.plans.length);
  const error = new DOMException(`Sender.putMany: ${reason.message}; ${put}`, reason.name);
  // As an Error's own `cause` is made (the typings know no options of DOMException's).
  Object.defineProperty(error, "cause", { value: reason, writable: true, configurable: true });
  return Object.defineProperty(error, "sent", { value: sent, enumerable: true });
}

/**
 * A codec refusal of a putMany, naming the value by its index (`values[3].pos: …`), and saying
 * how many of the batch went before it (none when planning).
 */
function indexed(error: unknown, method: string, index: number, sent = 0): unknown {
  const kind = (error as Error | undefined)?.constructor;
  if (kind !== TypeError && kind !== RangeError) return error;
  const prefix = `Sender.${method}: `;
  let message = (error as Error).message;
  if (message.startsWith(prefix)) message = message.slice(prefix.length);
  message = /^value\b/.test(message)
    ? message.replace(/^value/, `values[${index}]`)
    : `values[${index}]: ${message}`;
  if (sent > 0) {
    const before = sent === 1 ? "the value before it was put" : `the ${sent} before it were put`;
    message = message.replace(/; nothing was sent$/, `; ${before}, in order, ${REST_NOT_PUT}`);
  }
  const Ctor = kind === TypeError ? TypeError : RangeError;
  return new Ctor(prefix + message, { cause: (error as Error).cause ?? error });
}

/**
 * A codec refusal, named after the method the user called: while `planning`, a value it
 * cannot encode (TypeError, with the path of the offending part) or too large a part
 * (RangeError); afterwards, an array that was detached, or whose resizable buffer shrank,
 * while the call waited for room. Other errors (the queue's own) pass unchanged.
 */
function named(error: unknown, method: string, planning = false): unknown {
  const kind = (error as Error | undefined)?.constructor;
  if (kind !== TypeError && !(planning && kind === RangeError)) return error;
  const Ctor = kind === TypeError ? TypeError : RangeError;
  const what = (error as Error).message.replace(/^encodeInto: /, "");
  // The value's own error (a getter's) stays the cause, where the codec put it.
  const cause = "cause" in (error as Error) ? (error as Error).cause : error;
  return new Ctor(`Sender.${method}: ${what}; nothing was sent`, { cause });
}
