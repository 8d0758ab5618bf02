/**
 * The exit sweeper: what removes this process's queues from /dev/shm when it dies without
 * closing them. A normal exit closes every end (open_ends.ts), and the last end out unlinks
 * its queue; but SIGKILL, a crash or an uncaught error skips every exit handler, and the
 * queue would stay, its memory with it, until the next sweep of some later queue. So the
 * first end a process opens starts the native core's sweeper (see `shmq_sweeper_start` in
 * `ffi/shmq.h`): a process sharing this one's memory, which wakes when this process is gone
 * and removes each queue it had ends in that no live end holds.
 *
 * `SHMQ_EXIT_SWEEPER=0` (read only when `--allow-env` grants it) starts none: the leftovers
 * then wait for a sweep, as before Linux 5.3, which has no pidfds for it.
 *
 * @module
 */

import * as native from "../ffi/native.ts";
import { envGet } from "../ffi/loader.ts";
import { ANY_ALIVE_LOCK_BYTE } from "./layout.ts";

/** The environment variable that turns the sweeper off when it is "0". */
export const EXIT_SWEEPER_ENV = "SHMQ_EXIT_SWEEPER";

let wanted: boolean | undefined;

/** Counts an end of queue `name` opened in this process, starting the sweeper first if none
 * runs (again, if it was killed). One that cannot start (no pidfds) leaves it to sweeps. False
 * when the table is full: that end is not counted, and must not be uncounted. */
export function sweepOnExit(name: string): boolean {
  wanted ??= envGet(EXIT_SWEEPER_ENV) !== "0";
  if (wanted) {
    try {
      native.sweeperStart();
    } catch {
      // No pidfds (Linux before 5.3) or no process to spare: sweeps still remove leftovers.
    }
  }
  return native.sweeperTrack(name, ANY_ALIVE_LOCK_BYTE, 1);
}

/** Counts an end of queue `name` closed in this process (one {@linkcode sweepOnExit}
 * counted). */
export function noSweepOnExit(name: string): void {
  native.sweeperTrack(name, ANY_ALIVE_LOCK_BYTE, -1);
}
