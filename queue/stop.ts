/**
 * A stop request from the thread that started this Worker, seen by the Worker's sync calls.
 *
 * A Worker blocked in `getSync` (or any sync call of the library) never returns to its event
 * loop, so the "close" message of `WorkerHandle.close()` would wait there unread, and Deno does
 * not stop such a thread either. The handle also raises a word in shared memory; every sync
 * call checks it on entry and between wait slices, and once it is raised the Worker's ends
 * are closed there and then: the call throws `ClosedError`, and the Worker's loop ends.
 *
 * @module
 */

let request: { word: Int32Array; stop: () => void } | undefined;

/** Registers `stop` to run (once) when `word[0]` becomes nonzero. One request per thread. */
export function onStopRequest(word: Int32Array, stop: () => void): void {
  request = { word, stop };
}

/** Runs the registered stop if it was requested; cheap enough for every sync call. */
export function stopIfRequested(): void {
  const r = request;
  if (r === undefined || Atomics.load(r.word, 0) === 0) return;
  request = undefined;
  r.stop();
}
