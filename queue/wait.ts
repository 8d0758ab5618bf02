/**
 * Waiting for a queue condition: try, spin briefly, then announce a waiter and futex-wait in
 * slices. A peer only pays for a wake-up syscall when a waiter has announced itself, and an
 * async waiter only pays for a nonblocking FFI call once the spin found nothing, so a queue
 * with messages flowing never leaves JavaScript.
 *
 * @module
 */

import { futexWait, yieldCpu } from "../ffi/native.ts";
import type { FutexWord, SharedQueue } from "./shared_queue.ts";
import { turned, turnIfDue } from "./fairness.ts";
import { asyncWaitsAsleep, futexWaitShared } from "./wait_hub.ts";
import { releaseIdleHeap, releaseIdleHeapAsync } from "./kept_heap.ts";
import { refuseUnknownOptions } from "./option_names.ts";
import { shown } from "./shown.ts";
import { stopIfRequested } from "./stop.ts";

/**
 * Options of every call that can wait.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, EmptyError } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * await assert.rejects(receiver.get({ timeout: 10 }), EmptyError);
 * await assert.rejects(receiver.get({ signal: AbortSignal.timeout(10) }), { name: "TimeoutError" });
 * sender.close();
 * receiver.close();
 * ```
 */
export interface WaitOptions {
  /** Milliseconds to wait at most; omitted or `Infinity` waits as long as it takes. */
  timeout?: number;
  /** Aborts the wait: the call rejects with the signal's reason (`putMany`, aborted with the
   * platform's own reason, with a like DOMException that counts the values put instead). */
  signal?: AbortSignal;
}

/**
 * Options of the calls that block the thread (no AbortSignal can fire while blocked).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, EmptyError } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * assert.throws(() => receiver.getSync({ timeout: 5 }), EmptyError);
 * sender.close();
 * receiver.close();
 * ```
 */
export interface SyncWaitOptions {
  /** Milliseconds to wait at most; omitted or `Infinity` waits as long as it takes. */
  timeout?: number;
}

/** A condition check: a boxed result, or undefined to keep waiting. */
export type Attempt<T> = () => { value: T } | undefined;

/** How long the calls that must not wait give a holder of the queue's lock (see
 * {@linkcode briefDeadline}, {@linkcode NO_WAIT}). A critical section takes microseconds. */
export const BRIEF_LOCK_MS = 2;

/** The deadline of `getNowait()`, `close()`, a draft's cancel and a receiver's give-back: they
 * give up on a stopped lock holder after {@linkcode BRIEF_LOCK_MS}, and wait for a running one
 * (see SharedQueue.#lockBy). */
export function briefDeadline(): number {
  return performance.now() + BRIEF_LOCK_MS;
}

/** The deadline of a call that never waits (`hasSpace()`, `stats()`): it gives up on any
 * live holder, stopped or not, after {@linkcode BRIEF_LOCK_MS}. */
export const NO_WAIT = -Infinity;

/** The deadline of the attempt running now (see {@linkcode attemptBy}), else Infinity. */
let runningDeadline = Infinity;

/**
 * The deadline of the attempt running now: a receiver's take waits for the queue's lock until
 * then at most if its holder is stopped (SIGSTOP, a debugger), which would otherwise hold a
 * `get({ timeout: 100 })` for the 10 s a call without a timeout gives it.
 * A receiver's attempts take no arguments (every call of an end shares them), so the
 * deadline travels here, for the synchronous run of one attempt; a sender's reserve is
 * handed its call's deadline.
 */
export function attemptDeadline(): number {
  return runningDeadline;
}

/** Runs `attempt` for a call whose deadline is `deadline`: a lock a stopped holder keeps past
 * then counts as nothing found yet (see {@linkcode attemptDeadline}). */
export function attemptBy<T>(deadline: number, attempt: Attempt<T>): { value: T } | undefined {
  // The common case, a call without a timeout outside any other attempt: nothing to set.
  if (deadline === runningDeadline) return attempt();
  const outer = runningDeadline;
  runningDeadline = deadline;
  try {
    return attempt();
  } finally {
    runningDeadline = outer;
  }
}

/**
 * How long a waiter spins on the sequence word before it sleeps: between these, adapted per
 * word by {@linkcode adaptSpin}. A sleeping waiter on this VM takes 50-200 µs to run again
 * once woken, and its peer pays a wake-up syscall; a peer's garbage collection pauses it for
 * 40-100 µs every few milliseconds of a busy stream. The longer spin is meant to carry a
 * stream of small messages through such pauses without both ends falling asleep (in A/B runs
 * on the 2-vCPU VM the gain was within its noise); a word whose waits outlast the spin goes
 * back to the short one, so an idle end burns little. An async waiter's spin holds the event
 * loop for as long, at most 0.25 ms, so it spins once per call, and only while no other async
 * wait of its thread sleeps (see waitAsync).
 */
export const MIN_SPIN_MS = 0.05;
const MAX_SPIN_MS = 0.25;
/** How long of that it spins without yielding the CPU. */
const PURE_SPIN_MS = 0.01;
/** Liveness checks run this often while waiting, and in polling calls that find nothing: a
 * dead peer is noticed within this. */
export const REAP_EVERY_MS = 200;
/** The longest sleep of a waiter for room. A receiver draining a full queue wakes sleeping
 * senders once a quarter of the capacity is free (see SharedQueue.release); when it stops
 * short of that, a sender finds the room it left at its next slice. */
export const ROOM_SLICE_MS = 20;

/** The options of the calls that wait asynchronously. */
export const WAIT_OPTIONS = ["timeout", "signal"] as const satisfies (keyof WaitOptions)[];
/** The options of the calls that block the thread. */
export const SYNC_WAIT_OPTIONS = ["timeout"] as const satisfies (keyof SyncWaitOptions)[];

/** The `signal` option of `caller`, refused unless an AbortSignal: checked before the call
 * does anything (an actor's start included, which would otherwise leave a process running). */
export function signalOption(value: unknown, caller: string): AbortSignal | undefined {
  if (value !== undefined && !isAbortSignal(value)) {
    throw new TypeError(`${caller}: signal must be an AbortSignal, got ${shown(value)}`);
  }
  return value;
}

const abortedOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, "aborted")!.get!;

/** Whether `value` is a real AbortSignal: its prototype's getter checks the object itself, so
 * one made with `Object.create(AbortSignal.prototype)` is not (it throws at its first use). */
function isAbortSignal(value: unknown): value is AbortSignal {
  if (!(value instanceof AbortSignal)) return false;
  try {
    abortedOf.call(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks a method's options (`known` names those it takes) and turns their `timeout` into an
 * absolute deadline on `performance.now()`'s clock. Options that are not an object are
 * refused rather than ignored: `get(50)`, the py-sharedmemory way, would otherwise wait
 * forever; so are misspelled ones.
 */
export function deadlineOf(
  options: { timeout?: number; signal?: AbortSignal } | undefined,
  method: string,
  known: readonly string[],
): number {
  if (options === undefined) return Infinity;
  checkOptionsObject(options, method, known);
  const { timeout, signal } = options;
  signalOption(signal, method);
  if (timeout === undefined || timeout === Infinity) return Infinity;
  if (typeof timeout !== "number") {
    throw new TypeError(
      `${method}: timeout must be a number of milliseconds, got ${shown(timeout)}`,
    );
  }
  if (!(timeout >= 0)) {
    throw new RangeError(
      `${method}: timeout must be a number of milliseconds >= 0, got ${timeout}`,
    );
  }
  return performance.now() + timeout;
}

/** Refuses options that are not an object (`get(50)`), which would otherwise be ignored, and
 * options the method does not take. A call that blocks (it takes a timeout but no signal),
 * told of a signal, hears why it has none. */
export function checkOptionsObject(
  options: unknown,
  method: string,
  known: readonly string[],
): void {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    const example = known.includes("timeout") ? " such as { timeout: 100 }" : "";
    throw new TypeError(`${method}: options must be an object${example}, got ${shown(options)}`);
  }
  const { signal } = options as { signal?: unknown };
  if (signal !== undefined && known.includes("timeout") && !known.includes("signal")) {
    throw new TypeError(
      `${method}: takes no signal: it blocks the thread, where no abort can reach it; ` +
        `use its async form, or a timeout`,
    );
  }
  refuseUnknownOptions(options, known, method);
}

/**
 * Spins until the word's sequence moves past `seen` or the spin budget is spent. After the
 * first few microseconds it yields the CPU between rounds of checks: with more busy
 * processes than cores (four senders and a receiver on two), a plain spin takes the CPU
 * from the very peer it waits for. Measured on a 2-vCPU VM with the bench: fan-in of 4
 * senders, 64 B, 219-321k -> 563-736k msg/s; 64 B round trip p99 117-125 -> 30-34 µs, p50
 * unchanged (2.8-3.0 µs; yielding from the start made it 8 µs).
 */
function spin(word: FutexWord, seen: number): boolean {
  const words = word.words;
  const started = performance.now();
  for (;;) {
    for (let n = 0; n < 64; n++) {
      if (Atomics.load(words, word.seq) !== seen) return true;
      Atomics.pause(); // spin-wait hint: the peer's core or hyperthread runs faster meanwhile
    }
    const spent = performance.now() - started;
    if (spent >= word.spinMs) return false;
    // A reply within microseconds is caught without the syscall.
    if (spent >= PURE_SPIN_MS) yieldCpu();
  }
}

/** Spins longer on a word whose sleeps end soon after they start (the event would have been
 * caught by a longer spin), and shorter on one whose sleeps run long. */
function adaptSpin(word: FutexWord, outcome: string, sleptMs: number): void {
  if (outcome !== "timeout" && sleptMs < MAX_SPIN_MS) {
    word.spinMs = Math.min(MAX_SPIN_MS, word.spinMs * 2);
  } else {
    word.spinMs = Math.max(MIN_SPIN_MS, word.spinMs / 2);
  }
}

/** Blocks the thread until `attempt` succeeds or the deadline passes (then undefined). */
export function waitSync<T>(
  queue: SharedQueue,
  word: FutexWord,
  attempt: Attempt<T>,
  deadline: number,
  sliceMs = REAP_EVERY_MS,
): { value: T } | undefined {
  queue.assertOpen();
  const words = word.words;
  for (;;) {
    stopIfRequested();
    queue.assertOpen(); // closed by the stop: its words are unmapped
    const seen = Atomics.load(words, word.seq);
    const result = attemptBy(deadline, attempt);
    if (result !== undefined) return result;
    const left = deadline - performance.now();
    if (left <= 0) return timedOut(queue, attempt, deadline);
    if (spin(word, seen)) continue;
    queue.announceWaiter(word, 1);
    let outcome = "changed";
    try {
      if (Atomics.load(words, word.seq) === seen) {
        const before = performance.now();
        outcome = futexWait(word.pointer, seen, Math.min(left, sliceMs));
        adaptSpin(word, outcome, performance.now() - before);
      }
    } finally {
      queue.announceWaiter(word, -1);
    }
    if (outcome === "timeout") {
      queue.reapIfDue(deadline);
      releaseIdleHeap();
    }
  }
}

/**
 * The end of a wait whose deadline passed: undefined, unless a look for dead peers, when due,
 * changed the outcome (a drained queue's ClosedError, room a dead receiver held). A caller
 * polling with timeouts shorter than a wait slice learns of the death this way.
 */
function timedOut<T>(
  queue: SharedQueue,
  attempt: Attempt<T>,
  deadline: number,
): { value: T } | undefined {
  return queue.reapIfDue(deadline) ? attemptBy(deadline, attempt) : undefined;
}

/** Like {@linkcode waitSync}, but sleeps off the main thread, one slice at a time, so the event
 * loop keeps running: every async wait of the process on one thread (wait_hub.ts). */
export async function waitAsync<T>(
  queue: SharedQueue,
  word: FutexWord,
  attempt: Attempt<T>,
  deadline: number,
  signal: AbortSignal | undefined,
  sliceMs = REAP_EVERY_MS,
): Promise<{ value: T } | undefined> {
  signal?.throwIfAborted();
  queue.assertOpen();
  const words = word.words;
  let onAbort: (() => void) | undefined;
  let slept = false;
  try {
    for (;;) {
      const seen = Atomics.load(words, word.seq);
      const result = attemptBy(deadline, attempt);
      if (result !== undefined) return result;
      const left = deadline - performance.now();
      if (left <= 0) return timedOut(queue, attempt, deadline);
      // A spin holds the event loop: only before this call's first sleep, and only while no
      // other async wait of this thread sleeps. Spinning after every wake-up, 150 receivers of
      // one queue woken by one put held the loop ~8 ms (each spins ~50 µs, and all but one
      // find nothing), and 300 timed gets on 300 queues ran their timeouts up to 20 ms late
      // (a review's runs). The lone waiter of a stream, the case the spin is for, still spins.
      if (!slept && asyncWaitsAsleep() === 0 && spin(word, seen)) {
        // The word moved, yet the attempt found nothing: a peer that keeps moving it (one
        // scribbling over it in a loop, or other ends winning every message) would otherwise
        // keep this loop from ever awaiting, and hold the event loop (its timers, this
        // call's signal) until the deadline, or for good without one.
        const turn = turnIfDue();
        if (turn !== undefined) {
          await turn;
          signal?.throwIfAborted();
          queue.assertOpen();
        }
        continue;
      }
      if (signal && onAbort === undefined) {
        onAbort = () => queue.wakeAll(word);
        signal.addEventListener("abort", onAbort, { once: true });
      }
      // Keeps the memory mapped while the wait is out, even if this end closes meanwhile: so
      // the count announced here is always taken back (a stale one would cost every peer a
      // wake-up syscall per message for the queue's lifetime).
      queue.beginAsyncWait();
      queue.announceWaiter(word, 1);
      let outcome = "changed";
      try {
        if (Atomics.load(words, word.seq) === seen) {
          const before = performance.now();
          outcome = await futexWaitShared(word, seen, Math.min(left, sliceMs));
          slept = true;
          adaptSpin(word, outcome, performance.now() - before);
          turned();
        }
      } finally {
        queue.announceWaiter(word, -1);
        queue.endAsyncWait();
      }
      signal?.throwIfAborted();
      queue.assertOpen();
      if (outcome === "timeout") {
        queue.reapIfDue(deadline);
        const release = releaseIdleHeapAsync();
        if (release !== undefined) {
          await release;
          signal?.throwIfAborted();
          queue.assertOpen();
        }
      }
    }
  } finally {
    if (onAbort) signal!.removeEventListener("abort", onAbort);
  }
}
