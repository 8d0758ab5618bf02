/**
 * Timer of the shmq one-way cases: creates the queue, prints its descriptor, receives and
 * times every round. A round starts when the first sender's marker (a number: the round's
 * message count) arrives and ends when the receiver has every message of every sender.
 *
 * Flags: --mode=get-async|get-sync|get-reuse|get-pooled-sync|get-pooled-async|borrow --kind=bytes|struct --size=N --window=N
 * [--senders=N] [--check-order] [--arena=N]
 *
 * @module
 */

import { createSharedMemoryPair, EmptyError, type Lease } from "../../mod.ts";
import { isPayload, type Kind, need, peakRssBytes, peerFlags, report } from "../common.ts";

const flags = peerFlags();
const mode = need(flags, "mode");
const kind = need(flags, "kind") as Kind;
const size = Number(need(flags, "size"));
const window = Number(need(flags, "window"));
const senders = Number(flags.get("senders") ?? 1);
const checkOrder = flags.has("check-order");
const arena = flags.has("arena") ? Number(flags.get("arena")) : undefined;

const [spare, receiver] = createSharedMemoryPair({ capacity: window, arenaBytes: arena });
let spareOpen = true;
report({ t: "ready", descriptor: receiver.descriptor });

let expected = 0; // messages of the current round
let received = 0;
let markers = 0;
let t0 = 0;
let first = 0;
let finals = 0;
const senderHwm: (number | null)[] = [];
const nextSeq = new Map<number, number>();
let bad = 0;

/** Handles one received value; returns false once every sender has finished. */
function handle(value: unknown): boolean {
  if (typeof value === "number") {
    if (markers === 0) {
      t0 = performance.now();
      expected = value * senders;
      received = 0;
      if (spareOpen) {
        spare.close(); // the real senders are attached now
        spareOpen = false;
      }
    }
    markers++;
    if (expected === 0 && markers === senders) endRound();
    return true;
  }
  if (typeof value === "string") {
    const stats = JSON.parse(value) as { hwm: number | null };
    senderHwm.push(stats.hwm);
    return ++finals < senders;
  }
  if (!isPayload(value, kind, size)) bad++;
  else if (checkOrder) {
    const bytes = value as Uint8Array;
    const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
    const id = view.getUint32(0, true);
    const seq = view.getUint32(4, true);
    const want = nextSeq.get(id) ?? 0;
    if (seq !== want) bad++;
    nextSeq.set(id, seq + 1);
  }
  if (++received === 1) first = performance.now() - t0;
  if (received === expected && markers === senders) endRound();
  return true;
}

function endRound(): void {
  const ms = performance.now() - t0;
  report({ t: "round", ms, firstMs: first, n: expected, bad });
  markers = 0;
  expected = 0;
  received = 0;
}

/**
 * Takes the first message (a marker, a number: any of the modes' calls would do) once the
 * senders are attached. Until then the spare sender keeps the queue open, so a receiver
 * whose orchestrator left first (Ctrl-C as the case started) would wait for good: it
 * checks, and exits, closing the queue. Returns what handle() said of it.
 */
function awaitSenders(): boolean {
  const orchestrator = Deno.ppid;
  for (;;) {
    let value: unknown;
    try {
      value = receiver.getSync({ timeout: 200 });
    } catch (error) {
      if (!(error instanceof EmptyError)) throw error;
      if (Deno.ppid !== orchestrator) Deno.exit(0);
      continue;
    }
    return handle(value);
  }
}

try {
  if (!awaitSenders()) {
    // Every sender finished without a round: nothing more comes.
  } else if (mode === "get-sync") {
    while (handle(receiver.getSync()));
  } else if (mode === "get-reuse") {
    // Two buffers per array size, in turn: the previous message is done with by the time
    // the next get copies into its buffer.
    const pool = new Map<number, ArrayBuffer[]>();
    let turn = 0;
    const allocate = (byteLength: number): ArrayBuffer => {
      let buffers = pool.get(byteLength);
      if (buffers === undefined) {
        buffers = [new ArrayBuffer(byteLength), new ArrayBuffer(byteLength)];
        pool.set(byteLength, buffers);
      }
      return buffers[turn++ & 1];
    };
    while (handle(receiver.getSync({ allocate })));
  } else if (mode === "get-async") {
    while (handle(await receiver.get()));
  } else if (mode === "get-pooled-sync") {
    while (handle(receiver.getSync({ pooled: true })));
  } else if (mode === "get-pooled-async") {
    while (handle(await receiver.get({ pooled: true })));
  } else if (mode === "borrow") {
    for (;;) {
      const lease: Lease = receiver.borrowSync();
      const more = handle(lease.value);
      lease.release();
      if (!more) break;
    }
  } else {
    throw new TypeError(`unknown mode ${mode}`);
  }
  report({ t: "final", receiverHwm: peakRssBytes(), senderHwm, bad });
} catch (error) {
  report({ t: "error", message: String((error as Error)?.stack ?? error) });
} finally {
  if (spareOpen) spare.close();
  receiver.close();
}
