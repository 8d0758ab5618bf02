/**
 * A stop request from the thread that started this Worker, seen by the Worker's sync calls.
 *
 * A Worker in a loop of the library's blocking or polling calls (`getSync`, `getNowait`, …)
 * never returns to its event loop, so the "close" message of `WorkerHandle.close()` would wait
 * there unread, and Deno does not stop such a thread either. The handle also raises a word in
 * shared memory; those calls check it on entry and between wait slices, and once it is raised
 * every end of the Worker is closed there and then: the call throws `ClosedError`, and the
 * Worker's loop ends.
 *
 * @module
 */

/** What a raised word asks for: `WorkerHandle.close()` a clean close of every end. */
export const STOP_CLOSE = 1;
/** `WorkerHandle.terminate()`: the ends leave as dead ones do, so peers can tell that what
 * the Worker was doing was cut short (see Receiver.sendersDied). */
export const STOP_TERMINATED = 2;

let request: { word: Int32Array; stop: (how: number) => void } | undefined;

/** Registers `stop` to run (once) when `word[0]` becomes nonzero, with that value. One
 * request per thread. */
export function onStopRequest(word: Int32Array, stop: (how: number) => void): void {
  request = { word, stop };
}

/** Runs the registered stop if it was requested; cheap enough for every sync call. */
export function stopIfRequested(): void {
  const r = request;
  if (r === undefined) return;
  const how = Atomics.load(r.word, 0);
  if (how === 0) return;
  request = undefined;
  stopped = true;
  r.stop(how);
}

let stopped = false;

/** Whether this thread's ends were closed by a stop request. */
export function stoppedByRequest(): boolean {
  return stopped;
}
