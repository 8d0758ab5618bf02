/**
 * Keeping a busy queue from starving the event loop. An async `get` or `put` that finds a
 * message or room at once completes without leaving JavaScript, which is what makes it fast;
 * but a `for await` loop over a queue that never runs dry would then never let timers, I/O
 * or other tasks run. So a call that completed at once yields a macrotask turn now and then.
 *
 * @module
 */

/** Longest stretch of immediate completions before a yield. */
const YIELD_EVERY_MS = 10;

let lastYield = performance.now();

/** A promise to await for a turn of the event loop when one is due, else undefined. */
export function turnIfDue(): Promise<void> | undefined {
  const now = performance.now();
  if (now - lastYield < YIELD_EVERY_MS) return undefined;
  lastYield = now;
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Records that the event loop just ran (a call waited), so no yield is due. */
export function turned(): void {
  lastYield = performance.now();
}
