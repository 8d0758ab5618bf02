/**
 * The queue ends this thread has open, as a process-wide concern: closing them all when the
 * thread unloads (or its Worker is stopped), the memory of ends closed with async waits still
 * out, and the queues the main thread removes on the process's way out.
 *
 * @module
 */

import * as native from "../ffi/native.ts";
import * as L from "./layout.ts";
import { isMainThread, processToken } from "./this_thread.ts";

/** What this module needs of a queue end (a SharedQueue). */
export interface OpenEnd {
  readonly name: string;
  close(): void;
  closeAtExit(): void;
  leaveAsDead(): void;
}

/** Ends open in this process (or Worker), closed on a normal exit so that the last one out
 * unlinks the queue's names; a killed process leaves that to its exit sweeper (see
 * exit_sweeper.ts), or to the next sweep. */
const openEnds = new Set<OpenEnd>();
let closeOnUnload = false;
/** This thread is unloading (the process exiting, on the main thread): a lock held by a live
 * but stopped participant is given up on after EXIT_STUCK_MS, not the usual 10 s per queue. */
let unloading = false;
const EXIT_STUCK_MS = 500;

/** How long a live lock holder may keep the lock before a waiter gives up: EXIT_STUCK_MS while
 * this thread unloads, else undefined (the mutex's own limit). */
export function stuckMsAtExit(): number | undefined {
  return unloading ? EXIT_STUCK_MS : undefined;
}

/** Closes every end this thread (a Worker being stopped, see queue/stop.ts) has open. */
export function closeEndsOfThisThread(): void {
  for (const end of [...openEnds]) end.close();
}

/** Closes every end this thread has open as its exit does: on its way out, or when the thread
 * that started this Worker exits, and what the Worker was doing is never finished (a getMany
 * batch's held messages go back to the queue). */
export function closeEndsOfThisThreadAtExit(): void {
  for (const end of [...openEnds]) end.closeAtExit();
}

/** Has every end this thread has open leave as a dead one does when it closes: its Worker
 * was terminated, and what it was doing is cut short (see WorkerHandle.terminate). */
export function recordEndsOfThisThreadAsDead(): void {
  for (const end of openEnds) end.leaveAsDead();
}

/** Ends of this thread closed with an async wait still out, whose memory the wait's return
 * unmaps (see SharedQueue.endAsyncWait), and who waits for the last of them. */
let unmapsDeferred = 0;
const unmapWaiters: (() => void)[] = [];

/** Counts an end closed with an async wait still out: its memory is unmapped later. */
export function deferUnmap(): void {
  unmapsDeferred++;
}

/** Counts such an end's memory unmapped (or its unmap failed); the last one resolves
 * {@linkcode closedEndsUnmapped}. */
export function deferredUnmapDone(): void {
  if (--unmapsDeferred === 0) {
    for (const resolve of unmapWaiters.splice(0)) resolve();
  }
}

/**
 * Resolves once every end this thread closed has unmapped its memory: one closed with an
 * async wait still out does so when that wait returns, which the close made it do at once,
 * but only as this thread's event loop runs. A Worker about to be terminated awaits this
 * first (see actor/worker.ts), or the memory stays mapped until the parent's next reclaim.
 */
export function closedEndsUnmapped(): Promise<void> {
  if (unmapsDeferred === 0) return Promise.resolve();
  return new Promise((resolve) => unmapWaiters.push(resolve));
}

/** The queue names of the ends this process (or Worker) has open: for leak checks in tests. */
export function openEndNames(): string[] {
  return [...openEnds].map((end) => end.name);
}

/**
 * Queues an end of the main thread left while ends of Workers of this process, and none of
 * another process, remained in them (Workers maybe terminated since, whose threads had not
 * ended yet then). Nobody else is left to remove such a queue once this process exits: the
 * main thread does it on its way out, if that is still so (see SharedQueue.removeAtExit).
 */
const leftToThisProcess = new Set<string>();

/** The queues the main thread will check on its way out (see leftToThisProcess): for tests. */
export function queuesLeftToThisProcess(): string[] {
  return [...leftToThisProcess];
}

/** Leaves queue `name` to the main thread's way out (see leftToThisProcess). */
export function leaveToThisProcess(name: string): void {
  leftToThisProcess.add(name);
}

/** Queue `name` is removed: the main thread's way out need not look at it. */
export function noLongerLeftToThisProcess(name: string): void {
  leftToThisProcess.delete(name);
}

/**
 * Counts `end` open in this thread. The first end tracked adds the unload listener that closes
 * every end still open, and on the main thread removes the queues left to this process with
 * `removeAtExit` (SharedQueue.removeAtExit).
 */
export function track(end: OpenEnd, removeAtExit: (name: string) => void): void {
  openEnds.add(end);
  if (closeOnUnload) return;
  closeOnUnload = true;
  globalThis.addEventListener("unload", () => {
    unloading = true;
    for (const hook of exitHooks) hook();
    closeEndsOfThisThreadAtExit();
    if (!isMainThread()) return;
    // Also the queues whose ends were only ever in Workers, which run no unload at exit.
    const left = new Set([...leftToThisProcess, ...queuesWithEndsOfThisProcess()]);
    for (const name of left) removeAtExit(name);
    leftToThisProcess.clear();
  });
}

/** Runs `hook` on this thread's way out, before it closes its ends: what must be known before
 * peers see them close (the Workers it started are told that it exits). It runs in the listener
 * the first end tracked adds, not one of its own added sooner: the program's unload listeners
 * added before the first end must still run before the library's (as the README says). */
export function beforeClosingAtExit(hook: () => void): void {
  exitHooks.push(hook);
}

const exitHooks: (() => void)[] = [];

/** Counts `end` closed. */
export function untrack(end: OpenEnd): void {
  openEnds.delete(end);
}

/**
 * The queues in /dev/shm that still record an end of this process and no live end of another:
 * on the main thread's way out, after it closed its own, those ends are Workers', and the
 * queue ends with this process. Reads each queue's participant table without joining it (the
 * exit check then opens only these); an entry it cannot open (another user's) is skipped.
 */
function queuesWithEndsOfThisProcess(): string[] {
  const token = processToken();
  const tableEnd = L.PARTICIPANTS_OFFSET + L.MAX_PARTICIPANTS * L.PARTICIPANT_STRIDE;
  const found: string[] = [];
  for (const entry of native.shmList(`/${L.NAME_PREFIX}`)) {
    if (!L.QUEUE_NAME_PATTERN.test(`/${entry}`)) continue; // a main segment, no extension
    let fd: number;
    try {
      fd = native.shmOpen(`/${entry}`);
    } catch {
      continue;
    }
    try {
      if (native.fdSize(fd) < tableEnd) continue;
      const pointer = native.map(fd, tableEnd);
      try {
        const view = new Deno.UnsafePointerView(pointer);
        let ours = false;
        let elsewhere = false;
        for (let i = 0; i < L.MAX_PARTICIPANTS && !elsewhere; i++) {
          const at = L.participantOffset(i);
          if (view.getUint32(at + L.P_KIND) === L.ParticipantKind.Free) continue;
          if (view.getFloat64(at + L.P_PROCESS) === token) ours = true;
          else elsewhere = native.lockProbe(fd, L.participantLockByte(i));
        }
        if (ours && !elsewhere) found.push(`/${entry}`);
      } finally {
        native.unmap(pointer, tableEnd);
      }
    } catch {
      // Gone meanwhile, or not ours to map: nothing this exit can do.
    } finally {
      native.closeFd(fd);
    }
  }
  return found;
}
