/**
 * Removing the shared-memory entries of queues whose every participant is dead.
 *
 * @module
 */

import * as native from "../ffi/native.ts";
import { ANY_ALIVE_LOCK_BYTE, MAGIC, NAME_PREFIX, SHM_ENTRY_PATTERN } from "./layout.ts";

/** A creator takes its lock microseconds after making the segment, but a loaded machine may
 * stall it in between for a while: an entry still without header and lock is taken for one
 * left by a creator that died in between only once it is this old (by its ctime), and left
 * alone before. Judged by age, not by waiting: a sweep that waited 100 ms and then unlinked
 * removed the queue of a creator stalled longer than that. */
const UNFINISHED_GRACE_MS = 10_000;

/**
 * What {@linkcode sweepStaleQueues} removed.
 *
 * @example
 * ```ts
 * import { sweepStaleQueues, type SweepResult } from "./sweep.ts";
 * const result: SweepResult = sweepStaleQueues();
 * console.log(result.removed);
 * ```
 */
export interface SweepResult {
  /** Names removed from /dev/shm (without the leading slash). */
  readonly removed: string[];
}

/**
 * Removes from /dev/shm every entry of this library whose queue has no live participant:
 * queues whose processes were all killed, and extension segments left without their queue.
 * A queue with any live participant is never touched. Runs automatically when a process makes
 * or opens a queue end (its first, then at most once a second); call it yourself after a
 * crash to clean up at once. A queue whose maker died while making it, before its header was
 * complete, is removed only once it is 10 s old: it cannot be told from one still being made.
 * An entry it cannot remove (another user's, or not a file) is left alone, not an error.
 *
 * @example
 * ```ts
 * import { sweepStaleQueues } from "./sweep.ts";
 * const { removed } = sweepStaleQueues();
 * console.log(`removed ${removed.length} stale entries`);
 * ```
 */
export function sweepStaleQueues(): SweepResult {
  return sweepWithGrace(UNFINISHED_GRACE_MS);
}

/**
 * {@linkcode sweepStaleQueues} with another age from which a queue still without header and
 * lock counts as its dead creator's. For tests, which cannot age a segment: with 0, what a
 * sweep would remove once such entries are old enough. Not exported from mod.ts.
 *
 * @example
 * ```ts
 * import { sweepWithGrace } from "./sweep.ts";
 * console.log(sweepWithGrace(10_000).removed.length);
 * ```
 */
export function sweepWithGrace(unfinishedGraceMs: number): SweepResult {
  const removed: string[] = [];
  const entries = native.shmList(`/${NAME_PREFIX}`);
  const mains = new Set<string>();
  const extensions = new Map<string, string[]>();
  for (const name of entries) {
    const match = SHM_ENTRY_PATTERN.exec(name);
    if (!match) continue;
    if (name.length === NAME_PREFIX.length + 32) {
      mains.add(match[1]);
    } else {
      const list = extensions.get(match[1]) ?? [];
      list.push(name);
      extensions.set(match[1], list);
    }
  }
  for (const id of mains) {
    removed.push(...removeIfDead(id, extensions.get(id) ?? [], unfinishedGraceMs));
    extensions.delete(id);
  }
  // Extensions whose queue is gone belong to nobody.
  for (const list of extensions.values()) {
    for (const name of list) if (unlinked(name)) removed.push(name);
  }
  return { removed };
}

/** Unlinks `/name` if it is one of this user's segments; false when it was gone already or
 * is not (another user's entry, a directory, a file others may open): what the sweep cannot
 * open as its own, it leaves. Even as root: root may unlink any user's entry, and the sticky
 * bit of /dev/shm, which stops everyone else, does not stop it. */
function unlinked(name: string): boolean {
  try {
    native.closeFd(native.shmOpen(`/${name}`)); // refuses what is not this user's (EPERM)
    return native.shmUnlink(`/${name}`, { missingOk: true });
  } catch {
    return false;
  }
}

/** Removes queue `id` and its `extensions` if no participant of it is alive; returns the
 * names removed. */
function removeIfDead(id: string, extensions: string[], unfinishedGraceMs: number): string[] {
  const name = `shmq-${id}`;
  let fd: number;
  try {
    fd = native.shmOpen(`/${name}`);
  } catch {
    return []; // Gone already, or not ours to open.
  }
  try {
    // Every live participant holds a shared lock on this byte; winning it exclusively
    // proves nobody is left, and keeps late openers out until the names are gone.
    if (!native.lockByte(fd, ANY_ALIVE_LOCK_BYTE, "exclusive")) return [];
    if (!headerComplete(fd) && native.fdAgeMs(fd) < unfinishedGraceMs) {
      native.lockByte(fd, ANY_ALIVE_LOCK_BYTE, "unlock");
      return [];
    }
    return [...extensions, name].filter(unlinked);
  } finally {
    native.closeFd(fd);
  }
}

function headerComplete(fd: number): boolean {
  if (native.fdSize(fd) < 4096) return false;
  const pointer = native.map(fd, 4096);
  try {
    return new Deno.UnsafePointerView(pointer).getUint32(0) === MAGIC;
  } finally {
    native.unmap(pointer, 4096);
  }
}
