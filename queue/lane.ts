/**
 * Serving the async calls of one queue end in the order they were made.
 *
 * An async `put` that waits (for a fairness turn, or for room) must not be overtaken by a
 * later `put` of the same sender that finds room at once: the receiver would get the two
 * messages the other way round. The same holds for a receiver's `get`s, which would hand
 * messages to their callers out of order. So an end's async calls queue in a lane: a call
 * with nobody ahead of it tries at once (the common case, which costs one field read and no
 * promise), and one that has to wait lets every earlier call of that end finish first.
 *
 * @module
 */

import { turnIfDue } from "./fairness.ts";
import { timerFor } from "./timer.ts";
import { type Attempt, attemptBy } from "./wait.ts";

/** The async calls of one queue end, in call order. */
export class Lane {
  #queued = 0;
  /** Calls that completed at once, settling after a fairness turn (theirs or an earlier
   * call's), and the promise the last of them settles on. */
  #turning = 0;
  #turnsTail: Promise<void> = Promise.resolve();
  /** Settles once every call that joined so far has left. */
  #tail: Promise<void> = Promise.resolve();
  /** A fairness turn {@linkcode now} found due, until {@linkcode takeDueTurn}. */
  #dueTurn: Promise<void> | undefined;

  /** Whether a call of this end is still waiting (for a turn, for room, or for a message). */
  get busy(): boolean {
    return this.#queued > 0;
  }

  /** How many calls of this end are still waiting. */
  get waiting(): number {
    return this.#queued;
  }

  /** Settles once every call queued now has finished (whatever its outcome). */
  get drained(): Promise<void> {
    return this.#tail;
  }

  /**
   * The fast path of an async call: runs `attempt` at once when nothing of this end waits.
   * When a fairness turn is due, a receiver (`turnAfter` false) takes it first, in
   * {@linkcode later}: a message taken now would sit in a promise while a sync get of the
   * same end took the next one. A sender (`turnAfter` true) puts at once and takes the turn
   * afterwards: its message is out, so its sync calls need not wait for the yield. Either
   * way, call {@linkcode takeDueTurn} right after, in the same synchronous step. `deadline`:
   * the call's (see attemptBy).
   */
  now<T>(attempt: Attempt<T>, deadline: number, turnAfter = false): { value: T } | undefined {
    this.#dueTurn = undefined;
    if (this.#queued !== 0) return undefined;
    const turn = turnIfDue();
    this.#dueTurn = turn;
    if (turn !== undefined && !turnAfter) return undefined;
    return attemptBy(deadline, attempt);
  }

  /** The fairness turn the last {@linkcode now} found due, handed over: await it after a
   * call that `now` completed, or pass it to {@linkcode later}. */
  takeDueTurn(): Promise<void> | undefined {
    const turn = this.#dueTurn;
    this.#dueTurn = undefined;
    return turn;
  }

  /**
   * What a sender's call that is done (its message is out) awaits before it settles: its own
   * fairness `turn`, if one was due, and the turns earlier calls of this end are still taking,
   * so that the calls settle in the order they were made. Undefined when there is none, the
   * common case. Nothing waits behind it: later calls write at once, and sync calls are not
   * held back ({@linkcode busy} stays false).
   */
  settleAfterTurns(turn: Promise<void> | undefined): Promise<void> | undefined {
    if (turn === undefined && this.#turning === 0) return undefined;
    const settles = turn === undefined
      ? this.#turnsTail
      : Promise.all([this.#turnsTail, turn]).then(() => {});
    this.#turnsTail = settles;
    this.#turning++;
    return settles.finally(() => this.#turning--);
  }

  /**
   * The rest of an async call that {@linkcode now} could not finish: after every earlier call
   * of this end has finished and `turn` was taken, `attempt` again, then `wait` (until the
   * deadline, or the signal aborts). Resolves undefined when the deadline passed first, or
   * {@linkcode BEHIND} when it passed while earlier calls of this end were still going: this
   * call never tried, which its error should say (its own attempt would explain nothing).
   * `leaving`, if given, runs however the call ends, before the next call of this end may go
   * on: what the attempt {@linkcode now} made left behind is undone there even when `wait`
   * is never reached (an abort or close while it waited for its turn).
   */
  async later<T>(
    attempt: Attempt<T>,
    deadline: number,
    signal: AbortSignal | undefined,
    wait: (
      attempt: Attempt<T>,
      deadline: number,
      signal: AbortSignal | undefined,
    ) => Promise<{ value: T } | undefined>,
    turn: Promise<void> | undefined,
    leaving?: () => void,
  ): Promise<{ value: T } | undefined | typeof BEHIND> {
    const ahead = this.#tail;
    let leave!: () => void;
    const left = new Promise<void>((resolve) => (leave = resolve));
    // The next call waits for this one and for everything ahead of it: a call that gives up
    // early (timeout, abort) must not let a later one pass an earlier one still waiting.
    this.#tail = Promise.all([ahead, left]).then(() => {});
    this.#queued++;
    try {
      if (!(await settledBy(ahead, deadline, signal))) return BEHIND;
      if (turn) await turn;
      signal?.throwIfAborted();
      return attemptBy(deadline, attempt) ?? await wait(attempt, deadline, signal);
    } finally {
      try {
        leaving?.();
      } finally {
        this.#queued--;
        leave();
      }
    }
  }
}

/** What {@linkcode Lane.later} resolves when the deadline passed behind earlier calls. */
export const BEHIND = "behind";

/**
 * Waits for `promise` to settle: true once it has, false when `deadline` (on
 * `performance.now()`'s clock) passes first. Rejects with the signal's reason on abort.
 */
export async function settledBy(
  promise: Promise<unknown>,
  deadline: number,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  signal?.throwIfAborted();
  if (deadline === Infinity && signal === undefined) {
    await promise.catch(() => {});
    return true;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await new Promise<boolean>((resolve, reject) => {
      promise.then(() => resolve(true), () => resolve(true));
      // A timer runs after the microtask that reports a promise settled already, so a call
      // with nothing left to wait for is never timed out here.
      timer = timerFor(deadline - performance.now(), () => resolve(false));
      if (signal !== undefined) {
        onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal!.removeEventListener("abort", onAbort);
  }
}
