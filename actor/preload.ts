/**
 * Run by `spawnActor` before the actor's own code (`deno run --preload`, with the parent's pid
 * in the URL's query): the actor exits should its parent go away before it reaches
 * `actorContext()`. Without it, an actor still starting, busy, or one that never calls
 * `actorContext()`, outlived a parent that exited or was killed.
 *
 * @module
 */

import { watchParentWhileStarting } from "./parent_watch.ts";

const parent = Number(new URL(import.meta.url).searchParams.get("parent"));
if (Number.isSafeInteger(parent) && parent > 0) watchParentWhileStarting(parent);
