/**
 * A futex mutex in shared memory that survives the death of its holder.
 *
 * The lock word holds `owner + 1` (the holder's participant index), a tag drawn at random by
 * each end, and a contention bit:
 *
 * ```
 *  bit 31   30          29 ........ 12   11 ........ 0
 *     ┌───┬───────────┬───────────────┬───────────────┐
 *     │ 0 │ contended │ the end's tag │   owner + 1   │
 *     └───┴───────────┴───────────────┴───────────────┘
 * ```
 *
 * The tag tells apart two ends that held the same participant index in turn: a waiter that
 * found the holder dead and was then preempted must not take the lock over from a new end
 * that has since claimed the dead one's index and the lock, whose word would otherwise be
 * the same.
 *
 * Critical sections are short and never await, so a waiter spins, then futex-waits in
 * slices; after each slice it asks whether the owner still lives and, if not, takes the lock
 * over and lets the queue repair what the dead owner may have left half done.
 *
 * @module
 */

import { futexWait, futexWake, yieldCpu } from "../ffi/native.ts";
import { ClosedError } from "./errors.ts";

const CONTENDED = 0x40000000;
const OWNER_BITS = 12;
const OWNER_MASK = (1 << OWNER_BITS) - 1;
/** How many tags there are: the bits between the owner and CONTENDED. */
const TAGS = CONTENDED >> OWNER_BITS;
const SPINS = 200;
/**
 * How long a contended lock() spins before it sleeps on the futex. Critical sections take a
 * few microseconds (more when a receiver prefetches), and a sleeper costs its holder a wake-up
 * syscall and itself tens of microseconds: 200 loads alone, well under a microsecond, put a
 * 100 B stream's sender to sleep on the lock 1.5-5.5k times per 600k messages; this spin,
 * about 30 times.
 */
const SPIN_MS = 0.05;
/** Rounds of SPINS loads before each further round yields the CPU (a preempted holder runs). */
const PURE_SPIN_ROUNDS = 4;
/** How long a lock waiter sleeps before it checks that the holder is alive: at first briefly,
 * so a call with a timeout of a few ms is not held 100 ms by a holder that died, then each
 * time twice as long, up to the full slice (a live holder keeping the lock costs a liveness
 * check per slice). */
const FIRST_LIVENESS_SLICE_MS = 1;
const LIVENESS_SLICE_MS = 100;
/** A live holder keeping the lock this long is buggy or hostile: give up rather than hang. */
const STUCK_MS = 10_000;
/** Once a call gave up on a holder, later calls that find the lock word unchanged give up
 * after this: a stopped holder costs each of them one liveness slice, not STUCK_MS. */
const STILL_STUCK_MS = 2 * LIVENESS_SLICE_MS;

/** Callbacks a mutex needs from its queue. */
export interface MutexHooks {
  /** Whether participant `index` is alive. */
  isAlive(index: number): boolean;
  /** Called with the lock held after it was taken over from a dead holder. */
  recover(deadOwner: number): void;
  /** Whether participant `index` is stopped (SIGSTOP, a debugger): alive, but keeping the
   * lock until resumed. */
  isStopped?(index: number): boolean;
  /** How long a live holder may keep the lock before a waiter gives up (default STUCK_MS):
   * shorter while the process exits, which should not wait 10 s per queue for a stopped one. */
  stuckMs?(): number | undefined;
}

/** A mutex over one 32-bit word of shared memory. */
export class ShmMutex {
  readonly #words: Int32Array;
  readonly #index: number;
  readonly #pointer: Deno.PointerObject;
  /** The word while this end holds the lock uncontended: its tag and its index + 1. */
  readonly #ownWord: number;
  readonly #hooks: MutexHooks;
  /** The lock word a previous call gave up on, or 0. */
  #stuckWord = 0;
  /** The live holder that kept the lock past the patience of the last call that gave up. */
  #keptBy = -1;

  /**
   * @param words Int32 view of the mapping that holds the lock word.
   * @param byteOffset Byte offset of the lock word in that mapping.
   * @param pointer Address of the lock word, for the futex calls.
   * @param self This participant's index.
   */
  constructor(
    words: Int32Array,
    byteOffset: number,
    pointer: Deno.PointerObject,
    self: number,
    hooks: MutexHooks,
  ) {
    this.#words = words;
    this.#index = byteOffset >> 2;
    this.#pointer = pointer;
    if (!(self >= 0 && self < OWNER_MASK)) throw new RangeError(`participant index ${self}`);
    this.#ownWord = ((Math.random() * TAGS) << OWNER_BITS) | (self + 1);
    this.#hooks = hooks;
  }

  /** Takes the lock, blocking the thread (briefly: holders never wait while holding it). */
  lock(): void {
    this.#acquire(Infinity, false);
  }

  /**
   * Takes the lock unless a live holder keeps it for more than about `patienceMs`; returns
   * whether it did. A dead holder's lock is taken over as {@linkcode lock} does: for calls that
   * promise not to wait, which a stopped holder must not hold for the STUCK_MS others give it.
   * Throws as {@linkcode lock} does when the queue is found beyond repair after a takeover.
   */
  lockWithin(patienceMs: number): boolean {
    return this.#acquire(patienceMs, true);
  }

  /**
   * Takes the lock as {@linkcode lock} does, but gives up, returning false, once `patienceMs`
   * passed while a stopped holder (SIGSTOP, a debugger) keeps it: for calls with a deadline,
   * which such a holder would otherwise hold for the STUCK_MS it is given. A holder that runs
   * is waited for, however long its deadline is past: on a loaded machine a peer descheduled
   * inside its critical section keeps the lock for tens of milliseconds, and a call that gave
   * up on it would report an empty or full queue that is neither.
   */
  lockUnlessStopped(patienceMs: number): boolean {
    return this.#acquire(patienceMs, false);
  }

  /** `anyHolder`: patience runs out on a live holder of any kind, else only on a stopped one. */
  #acquire(patienceMs: number, anyHolder: boolean): boolean {
    const words = this.#words;
    const i = this.#index;
    if (Atomics.compareExchange(words, i, 0, this.#ownWord) === 0) {
      this.#stuckWord = 0;
      return true;
    }
    const spinUntil = performance.now() + SPIN_MS;
    for (let round = 0;; round++) {
      for (let n = 0; n < SPINS; n++) {
        if (
          Atomics.load(words, i) === 0 && Atomics.compareExchange(words, i, 0, this.#ownWord) === 0
        ) {
          this.#stuckWord = 0;
          return true;
        }
        Atomics.pause();
      }
      if (performance.now() >= spinUntil) break;
      if (round >= PURE_SPIN_ROUNDS) yieldCpu();
    }
    const mine = this.#ownWord | CONTENDED;
    const started = performance.now();
    const stuckMs = this.#hooks.stuckMs?.() ?? STUCK_MS;
    // Whether the lock moved since this call began: then its holder is not the stuck one.
    let moved = false;
    // The word's value, and since when it has held it: a wake alone is no progress (a peer
    // can send them without ever letting go), a change of the word is.
    let held = 0;
    let heldSince = started;
    // Whether this call saw the lock free: a word that changes between live holders without
    // ever being free is no progress either (a peer can forge it to alternate), and costs
    // the call stuckMs in all, not stuckMs per value.
    let sawFree = false;
    let slice = FIRST_LIVENESS_SLICE_MS;
    for (;;) {
      let seen = Atomics.load(words, i);
      if (seen === 0) {
        if (Atomics.compareExchange(words, i, 0, mine) === 0) {
          this.#stuckWord = 0;
          return true;
        }
        moved = true;
        sawFree = true;
        continue;
      }
      if ((seen & CONTENDED) === 0) {
        if (Atomics.compareExchange(words, i, seen, seen | CONTENDED) !== seen) continue;
        seen |= CONTENDED;
      }
      if (seen !== held) {
        if (held !== 0) moved = true;
        held = seen;
        heldSince = performance.now();
        slice = FIRST_LIVENESS_SLICE_MS;
      }
      // A call that may give up at its deadline wakes for it, not a slice after.
      const left = patienceMs - (performance.now() - started);
      const woke = futexWait(this.#pointer, seen, left > 0 ? Math.min(slice, left) : slice) !==
        "timeout";
      // Moved on while this waiter slept (an unlock wakes one waiter only, maybe another):
      // the holder to judge is the word's now, not the one read before the sleep.
      if (Atomics.load(words, i) !== seen) continue;
      if (!woke) slice = Math.min(slice * 2, LIVENESS_SLICE_MS);
      const owner = (seen & OWNER_MASK) - 1;
      // A word naming this participant's index is garbage, or a dead end's that held the
      // index before: this end never waits on a lock it holds.
      if (owner !== (this.#ownWord & OWNER_MASK) - 1 && this.#hooks.isAlive(owner)) {
        // Looked up only for a call that may give up before the stuck limit: it reads /proc.
        const stopped = !anyHolder && patienceMs < stuckMs &&
          this.#hooks.isStopped?.(owner) === true;
        if ((anyHolder || stopped) && performance.now() - started >= patienceMs) {
          this.#keptBy = owner;
          return false;
        }
        // A stopped holder keeps the lock until resumed: the call waits for its own deadline,
        // not only the STILL_STUCK_MS a holder already known to be stuck is given.
        if (stopped) continue;
        const again = !moved && seen === this.#stuckWord;
        const now = performance.now();
        const neverFree = !sawFree && now - started > stuckMs;
        if (neverFree || now - heldSince > (again ? STILL_STUCK_MS : stuckMs)) {
          this.#stuckWord = seen;
          throw new ClosedError(
            (again
              ? `queue lock still held by live participant ${owner}, which kept it for over ` +
                `${stuckMs} ms before`
              : now - heldSince > stuckMs
              ? `queue lock held for over ${stuckMs} ms by live participant ${owner}`
              : `queue lock held for over ${stuckMs} ms, never free, by live participants ` +
                `(lately ${owner})`) +
              " (a stopped or hung process): this call gave up; calls work again once it lets go",
            { reason: "stuck" },
          );
        }
        continue;
      }
      if (Atomics.compareExchange(words, i, seen, mine) === seen) {
        this.#stuckWord = 0;
        try {
          this.#hooks.recover(owner);
        } catch (error) {
          // Beyond repair (the queue is poisoned now): let the others see it at once.
          this.unlock();
          throw error;
        }
        return true;
      }
    }
  }

  /** The participant index of the live holder that kept the lock past the patience of the
   * last {@linkcode lockWithin} or {@linkcode lockUnlessStopped} that returned false (-1
   * before any did). */
  get keptBy(): number {
    return this.#keptBy;
  }

  /** Takes the lock if it is free, without waiting; returns whether it did. */
  tryLock(): boolean {
    return Atomics.compareExchange(this.#words, this.#index, 0, this.#ownWord) === 0;
  }

  /** Releases the lock and wakes one waiter if any announced itself. */
  unlock(): void {
    if (Atomics.exchange(this.#words, this.#index, 0) & CONTENDED) futexWake(this.#pointer, 1);
  }
}
