/**
 * An actor's watch on its parent while it starts: from the first line the actor runs (see
 * preload.ts) until `actorContext()` has opened its queues, whose watchdog (stdin closing)
 * takes over from there.
 *
 * @module
 */

import { watchParent } from "../ffi/native.ts";

/** The environment variable that names an actor's parent (its pid) to the preload. */
export const ACTOR_PARENT_ENV = "SHMQ_ACTOR_PARENT";

/** After the parent goes, how long the actor gets to close its queue ends and exit before it
 * is ended from another thread (its main thread may be blocked in a sync wait). */
export const PARENT_GONE_GRACE_MS = 1000;

/** Where the watch leaves its stop function: the actor's code may use another copy of this
 * library (another version, or the same files under another URL), whose native core is
 * another library with its own watch state. */
const STOP_KEY = Symbol.for("shmq.actor.stopParentWatch");

/** Ends this process once the process `parent` is no longer its parent (it exited or died);
 * at once when it is not its parent any more. */
export function watchParentWhileStarting(parent: number): void {
  if (!watchParent(parent, PARENT_GONE_GRACE_MS)) Deno.exit(0);
  (globalThis as Record<symbol, unknown>)[STOP_KEY] = () => watchParent(0, 0);
}

/** Stops the watch, whichever copy of the library started it (an older one left no stop
 * function: this copy's own is stopped too): the actor has started, and answers for itself
 * from here on. */
export function stopWatchingParent(): void {
  const stop = (globalThis as Record<symbol, unknown>)[STOP_KEY];
  if (typeof stop === "function") stop();
  watchParent(0, 0);
}
