/**
 * A stop request from the thread that started this Worker, seen by the Worker's sync calls.
 *
 * A Worker in a loop of the library's blocking or polling calls (`getSync`, `getNowait`, …)
 * never returns to its event loop, so the "close" message of `WorkerHandle.close()` would wait
 * there unread, and Deno does not stop such a thread either. The handle also raises a word in
 * shared memory; those calls check it on entry and between wait slices, and once it is raised
 * every end of the Worker is closed there and then: the call throws `ClosedError`, and the
 * Worker's loop ends. The stop holds for good: a loop that catches the error and opens a new
 * end is refused that end (see {@linkcode refuseIfStopped}), and the calls of any end it
 * opened otherwise close it again.
 *
 * @module
 */

import { ClosedError } from "./errors.ts";

/** What a raised word asks for: `WorkerHandle.close()` a clean close of every end. */
export const STOP_CLOSE = 1;
/** `WorkerHandle.terminate()`: the ends leave as dead ones do, so peers can tell that what
 * the Worker was doing was cut short (see Receiver.sendersDied). */
export const STOP_TERMINATED = 2;
/** The thread that started the Worker is exiting (its `unload`): its ends are closing, so the
 * Worker's calls that fail for want of them are expected, not errors to print. */
export const STOP_EXITING = 3;

let request: { word: Int32Array; stop: (how: number) => void } | undefined;

/** Registers `stop` to run when `word[0]` becomes nonzero, with that value: at the first
 * sync call that sees it, and at every one after. One request per thread. */
export function onStopRequest(word: Int32Array, stop: (how: number) => void): void {
  request = { word, stop };
}

/** Runs the registered stop if it was requested; cheap enough for every sync call. */
export function stopIfRequested(): void {
  const r = request;
  if (r === undefined) return;
  const how = Atomics.load(r.word, 0);
  if (how === 0) return;
  stopped = true;
  r.stop(how);
}

/** Whether this thread was asked to stop, without running the stop (see stopIfRequested). */
export function stopRequested(): boolean {
  const r = request;
  return r !== undefined && Atomics.load(r.word, 0) !== 0;
}

/** Throws ClosedError naming `caller` once this thread was asked to stop: a Worker that a
 * `WorkerHandle.close()` or `terminate()` stopped opens no queue end again. */
export function refuseIfStopped(caller: string): void {
  stopIfRequested();
  if (!stopped) return;
  throw new ClosedError(
    `${caller}: this Worker was stopped by WorkerHandle.close() or terminate(), and opens no ` +
      "queue ends any more",
  );
}

let stopped = false;

/** Whether this thread's ends were closed by a stop request. */
export function stoppedByRequest(): boolean {
  return stopped;
}
