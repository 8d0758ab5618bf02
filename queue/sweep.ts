/**
 * Removing the shared-memory entries of queues whose every participant is dead.
 *
 * @module
 */

import * as native from "../ffi/native.ts";
import { ANY_ALIVE_LOCK_BYTE, MAGIC, SHM_ENTRY_PATTERN } from "./layout.ts";

const SHM_DIR = "/dev/shm";
/** An entry without a complete header is a queue being created, unless it is this old. */
const UNFINISHED_GRACE_MS = 60_000;

/** What {@linkcode sweepStaleQueues} removed. */
export interface SweepResult {
  /** Names removed from /dev/shm (without the leading slash). */
  readonly removed: string[];
}

/**
 * Removes from /dev/shm every entry of this library whose queue has no live participant:
 * queues whose processes were all killed, and extension segments left without their queue.
 * A queue with any live participant is never touched. Runs once, automatically, the first
 * time a process creates a queue; call it yourself after a crash to clean up at once.
 *
 * @example
 * ```ts
 * import { sweepStaleQueues } from "./sweep.ts";
 * const { removed } = sweepStaleQueues();
 * console.log(`removed ${removed.length} stale entries`);
 * ```
 */
export function sweepStaleQueues(): SweepResult {
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = [...Deno.readDirSync(SHM_DIR)].map((e) => e.name);
  } catch {
    return { removed }; // No /dev/shm to read (or no read permission): nothing to sweep.
  }
  const mains = new Set<string>();
  const extensions = new Map<string, string[]>();
  for (const name of entries) {
    const match = SHM_ENTRY_PATTERN.exec(name);
    if (!match) continue;
    if (name.length === `shmq-`.length + 32) {
      mains.add(match[1]);
    } else {
      const list = extensions.get(match[1]) ?? [];
      list.push(name);
      extensions.set(match[1], list);
    }
  }
  for (const id of mains) {
    if (removeIfDead(id, extensions.get(id) ?? [])) {
      removed.push(`shmq-${id}`, ...(extensions.get(id) ?? []));
    }
    extensions.delete(id);
  }
  // Extensions whose queue is gone belong to nobody.
  for (const list of extensions.values()) {
    for (const name of list) {
      if (native.shmUnlink(`/${name}`, { missingOk: true })) removed.push(name);
    }
  }
  return { removed };
}

function removeIfDead(id: string, extensions: string[]): boolean {
  const name = `/shmq-${id}`;
  let fd: number;
  try {
    fd = native.shmOpen(name);
  } catch {
    return false; // Gone already, or not ours to open.
  }
  try {
    // Every live participant holds a shared lock on this byte; winning it exclusively
    // proves nobody is left, and keeps late openers out until the names are gone.
    if (!native.lockByte(fd, ANY_ALIVE_LOCK_BYTE, "exclusive")) return false;
    if (!headerComplete(fd) && !olderThan(name, UNFINISHED_GRACE_MS)) return false;
    for (const ext of extensions) native.shmUnlink(`/${ext}`, { missingOk: true });
    native.shmUnlink(name, { missingOk: true });
    return true;
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

function olderThan(name: string, ms: number): boolean {
  try {
    const mtime = Deno.statSync(`${SHM_DIR}${name}`).mtime;
    return mtime !== null && Date.now() - mtime.getTime() > ms;
  } catch {
    return false;
  }
}
