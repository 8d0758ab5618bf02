/**
 * Timers for timeouts that may be longer than a timer can hold.
 *
 * @module
 */

import { shown } from "./shown.ts";

/** What `setTimeout` returns. */
export type Timer = ReturnType<typeof setTimeout>;

/** The longest delay `setTimeout` honors: a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `setTimeout(fire, ms)` for a timeout that may be `Infinity` or longer than a timer holds:
 * then nothing is set (such a timeout never fires in practice) and undefined is returned.
 * Negative delays fire at once. Cancel with `clearTimeout`.
 */
export function timerFor(ms: number, fire: () => void): Timer | undefined {
  if (!(ms <= MAX_TIMER_MS)) return undefined;
  return setTimeout(fire, Math.max(0, ms));
}

/**
 * `value`, or `fallback` when it is undefined, checked as a timeout: a number of
 * milliseconds >= 0 (`Infinity` included). Throws a TypeError naming `what` for another type,
 * a RangeError for a negative number or NaN.
 */
export function timeoutOption(value: unknown, fallback: number, what: string): number {
  const ms = value ?? fallback;
  if (typeof ms !== "number") {
    throw new TypeError(`${what} must be a number of milliseconds, got ${shown(ms)}`);
  }
  if (!(ms >= 0)) throw new RangeError(`${what} must be a number of milliseconds >= 0, got ${ms}`);
  return ms;
}
