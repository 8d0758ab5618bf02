/**
 * A few sleeping threads for every async wait of this process. An async wait sleeps through
 * a nonblocking FFI call, which holds a thread of Deno's blocking pool until it returns, and
 * that pool has about 32 threads: with one call per waiter, a process with a few dozen idle
 * async gets kept the pool full, and every other waiter (and Deno's own async file
 * operations) queued for a thread for up to a wait slice.
 *
 * So waits share calls: a hub makes one `futex_waitv` on the words of up to 127 waiters plus
 * a control word of its own. A waiter that joins while the call is out bumps and wakes the
 * control word; the call returns and is made afresh with the newcomer in. On a kernel without
 * `futex_waitv` (before 5.16), or past {@linkcode MAX_HUBS} full hubs, a wait gets a call of
 * its own, as before; those calls fill the pool again, and then delay the hubs' calls back to
 * sleep too (a review measured wake-ups of up to ~210 ms with 2100 sleeping gets).
 *
 * @module
 */

import {
  futexWaitAsync,
  futexWaitManyAsync,
  type FutexWaitResult,
  futexWake,
} from "../ffi/native.ts";
import type { FutexWord } from "./shared_queue.ts";

/** The words one call sleeps on (the syscall's limit), the control word included. */
const MAX_WORDS = 128;
/** Hubs at most: 16 × 127 waiters on 16 of the pool's threads. */
const MAX_HUBS = 16;
/** What a call may return besides an index: the errnos of waits that end as they should. */
const EXPECTED_ERRORS = [-11, -110, -4]; // EAGAIN, ETIMEDOUT, EINTR

interface Waiter {
  readonly word: FutexWord;
  readonly address: bigint;
  readonly seen: number;
  /** When its slice ends, on `performance.now()`'s clock. */
  readonly until: number;
  readonly resolve: (outcome: FutexWaitResult) => void;
}

/** One shared call and the waiters it sleeps for. */
class Hub {
  // Off the V8 heap (an ArrayBuffer's memory never moves), and kept as long as the hub, which
  // lives as long as the module: the sleeping thread reads them.
  readonly #control = new Uint32Array(new ArrayBuffer(64));
  readonly #controlPointer = Deno.UnsafePointer.of(this.#control)!;
  readonly #addresses = new BigUint64Array(new ArrayBuffer(MAX_WORDS * 8));
  readonly #expected = new Uint32Array(new ArrayBuffer(MAX_WORDS * 4));
  readonly waiters = new Set<Waiter>();
  /** The waiter behind each word of the call out, by index (0: the control word). */
  #armed: (Waiter | undefined)[] = [];
  #out = false;
  #kicked = false;

  constructor() {
    this.#addresses[0] = BigInt(Deno.UnsafePointer.value(this.#controlPointer));
  }

  get full(): boolean {
    return this.waiters.size >= MAX_WORDS - 1;
  }

  add(waiter: Waiter): void {
    this.waiters.add(waiter);
    if (!this.#out) this.#arm();
    else if (!this.#kicked) {
      this.#kicked = true;
      Atomics.add(this.#control, 0, 1);
      futexWake(this.#controlPointer, 1);
    }
  }

  /** Makes the shared call for the waiters there are now. */
  #arm(): void {
    this.#expected[0] = Atomics.load(this.#control, 0);
    const armed: (Waiter | undefined)[] = [undefined];
    let soonest = Infinity;
    for (const waiter of this.waiters) {
      this.#addresses[armed.length] = waiter.address;
      this.#expected[armed.length] = waiter.seen >>> 0;
      armed.push(waiter);
      soonest = Math.min(soonest, waiter.until);
    }
    this.#armed = armed;
    this.#out = true;
    this.#kicked = false;
    const timeoutMs = Math.max(0, soonest - performance.now());
    futexWaitManyAsync(this.#addresses, this.#expected, armed.length, timeoutMs)
      .then((rc) => this.#settle(rc), () => this.#settle(-1));
  }

  /** Hands every waiter whose wait is over its outcome, and sleeps again for the others. */
  #settle(rc: number): void {
    this.#out = false;
    // No futex_waitv (ENOSYS), or a failure no wait should meet: from now on every wait makes
    // a call of its own; those here go round again to make theirs.
    if (rc < 0 && !EXPECTED_ERRORS.includes(rc)) supported = false;
    const woken = rc > 0 ? this.#armed[rc]?.address : undefined;
    const now = performance.now();
    for (const waiter of this.waiters) {
      let outcome: FutexWaitResult;
      // Every waiter on the word woken: a wake-up may come without a change of value.
      if (waiter.address === woken || !supported) outcome = "woken";
      else if (Atomics.load(waiter.word.words, waiter.word.seq) !== waiter.seen) {
        outcome = "changed";
      } else if (now >= waiter.until) outcome = "timeout";
      else continue;
      this.waiters.delete(waiter);
      waiter.resolve(outcome);
    }
    if (this.waiters.size > 0) this.#arm();
  }
}

const hubs: Hub[] = [];
let supported = true;

/**
 * Sleeps while `word` holds `seen`, until it is woken or changes, or `timeoutMs` pass: what
 * {@linkcode futexWaitAsync} does, on a call shared with the other waits of the process.
 */
export function futexWaitShared(
  word: FutexWord,
  seen: number,
  timeoutMs: number,
): Promise<FutexWaitResult> {
  asleep++;
  return sleep(word, seen, timeoutMs).finally(() => asleep--);
}

/** Async waits of this process (this thread) asleep right now. */
let asleep = 0;

/** How many async waits of this thread are asleep in {@linkcode futexWaitShared} now. */
export function asyncWaitsAsleep(): number {
  return asleep;
}

function sleep(word: FutexWord, seen: number, timeoutMs: number): Promise<FutexWaitResult> {
  let hub = supported ? hubs.find((h) => !h.full) : undefined;
  if (supported && hub === undefined && hubs.length < MAX_HUBS) hubs.push(hub = new Hub());
  if (hub === undefined) return futexWaitAsync(word.pointer, seen, timeoutMs);
  const target = hub;
  return new Promise((resolve) => {
    const address = BigInt(Deno.UnsafePointer.value(word.pointer));
    target.add({ word, address, seen, until: performance.now() + timeoutMs, resolve });
  });
}
