/**
 * Run by `spawnActor` before the actor's own code (`deno run --preload`, with the parent's pid
 * in `SHMQ_ACTOR_PARENT`, which the actor may read): the actor exits should its parent go away
 * before it reaches `actorContext()`. Without it, an actor still starting, busy, or one that
 * never calls `actorContext()`, outlived a parent that exited or was killed.
 *
 * @module
 */

import { ACTOR_PARENT_ENV, watchParentWhileStarting } from "./parent_watch.ts";

let parent = NaN;
try {
  parent = Number(Deno.env.get(ACTOR_PARENT_ENV));
} catch {
  // Not readable (not started by spawnActor): nothing to watch.
}
if (Number.isSafeInteger(parent) && parent > 0) {
  try {
    watchParentWhileStarting(parent);
  } catch {
    // The native core cannot load here: the actor's own code meets that error, and says it.
  }
}
