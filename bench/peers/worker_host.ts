/**
 * Timer of the Worker `postMessage` cases (in-process reference): a Worker sends, this
 * thread receives. `clone`: every message is structured-cloned, the receiver acks in
 * batches so at most `window` are in flight. `transfer`: the sender owns a pool of `window`
 * buffers and transfers one per message; the receiver transfers it back as the ack.
 *
 * Flags: --mode=clone|transfer --kind=bytes|struct --size=N --window=N
 *
 * @module
 */

import {
  CommandReader,
  isPayload,
  type Kind,
  need,
  peakRssBytes,
  peerFlags,
  report,
  type StructMessage,
} from "../common.ts";

const flags = peerFlags();
const mode = need(flags, "mode");
const kind = need(flags, "kind") as Kind;
const size = Number(need(flags, "size"));
const window = Number(need(flags, "window"));
const ackEvery = Math.max(1, Math.floor(window / 4));

const worker = new Worker(new URL("./worker_sender.ts", import.meta.url), { type: "module" });
worker.postMessage({ init: { mode, kind, size, window } });
report({ t: "ready" });

let expected = -1;
let received = 0;
let unacked = 0;
let t0 = 0;
let first = 0;
let bad = 0;
let done: (() => void) | undefined;

worker.onmessage = (e: MessageEvent) => {
  const value = e.data;
  if (typeof value === "number") { // marker
    t0 = performance.now();
    expected = value;
    received = 0;
    if (expected === 0) done?.();
    return;
  }
  if (!isPayload(value, kind, size)) bad++;
  if (mode === "transfer") {
    const buffer = (kind === "bytes"
      ? (value as Uint8Array).buffer
      : (value as StructMessage).data.buffer) as ArrayBuffer;
    worker.postMessage(buffer, [buffer]);
  } else if (++unacked === ackEvery) {
    worker.postMessage(unacked);
    unacked = 0;
  }
  if (++received === 1) first = performance.now() - t0;
  if (received === expected) done?.();
};
worker.onerror = (e) => {
  report({ t: "error", message: e.message });
  Deno.exit(1);
};

const commands = new CommandReader();
for (;;) {
  const cmd = commands.next();
  if (cmd.op === "quit") break;
  const finished = new Promise<void>((resolve) => done = resolve);
  worker.postMessage({ go: cmd.n });
  await finished;
  report({ t: "round", ms: performance.now() - t0, firstMs: first, n: expected, bad });
  if (unacked > 0) {
    worker.postMessage(unacked);
    unacked = 0;
  }
}
worker.terminate();
const hwm = peakRssBytes();
report({ t: "final", receiverHwm: hwm, senderHwm: [hwm], bad, sameProcess: true });
