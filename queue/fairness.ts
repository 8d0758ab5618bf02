/**
 * Keeping a busy queue from starving the event loop. An async `get` or `put` that finds a
 * message or room at once completes without leaving JavaScript, which is what makes it fast;
 * but a `for await` loop over a queue that never runs dry would then never let timers, I/O
 * or other tasks run. So a call that completed at once yields a macrotask turn now and then.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** Longest stretch of immediate completions before a yield. */
const YIELD_EVERY_MS = 5;

// Date.now(), not performance.now(): it runs on every call, and in Deno the latter is a call
// into the runtime (~100 ns per message); millisecond resolution is plenty here.
let lastYield = Date.now();

/** A promise to await for a turn of the event loop when one is due, else undefined. */
export function turnIfDue(): Promise<void> | undefined {
  const now = Date.now();
  // A wall clock set back must not postpone the yields: start the stretch anew.
  if (now - lastYield < YIELD_EVERY_MS && now >= lastYield) return undefined;
  lastYield = now;
  // setImmediate runs after the event loop polled timers and I/O, ~10 µs later. Not
  // setTimeout(0): nested in a loop like this one it is clamped, and cost ~2 ms per yield.
  return new Promise((resolve) => setImmediate(resolve));
}

/** Records that the event loop just ran (a call waited), so no yield is due. */
export function turned(): void {
  lastYield = Date.now();
}
