/**
 * Driver of the shmq one-way cases: opens the queue from its descriptor and, for each
 * `go <n>` on stdin, puts a marker (the number n) then n messages. On `quit` it puts its
 * peak memory as a JSON string and leaves.
 *
 * Flags: --mode=async|sync|sync-many|zerocopy --kind=bytes|struct --size=N --descriptor=JSON
 * [--id=N --stamp] (fan-in: stamp sender id and sequence number in the first 8 bytes).
 * sync-many puts BATCH messages per `putManySync`.
 *
 * @module
 */

import { ClosedError, openSender, reserve } from "../../mod.ts";
import {
  BATCH,
  CommandReader,
  floatsFor,
  type Kind,
  makePayload,
  need,
  peakRssBytes,
  peerFlags,
  type StructMessage,
} from "../common.ts";

const flags = peerFlags();
const mode = need(flags, "mode");
const kind = need(flags, "kind") as Kind;
const size = Number(need(flags, "size"));
const sender = openSender(need(flags, "descriptor"));
const id = Number(flags.get("id") ?? 0);

const payload = makePayload(kind, size);
let stampView: DataView | undefined;
if (flags.has("stamp")) {
  const bytes = payload as Uint8Array;
  stampView = new DataView(bytes.buffer, bytes.byteOffset, 8);
  stampView.setUint32(0, id, true);
}
let seq = 0;

const template = kind === "bytes"
  ? reserve(Uint8Array, size)
  : { idx: 12345, source: "actor_3", data: reserve(Float32Array, floatsFor(size)) };

function sendSync(count: number): void {
  for (let i = 0; i < count; i++) {
    if (stampView) stampView.setUint32(4, seq++, true);
    sender.putSync(payload);
  }
}

function sendMany(count: number): void {
  const batch = Array(BATCH).fill(payload);
  for (let i = 0; i < count; i += BATCH) {
    sender.putManySync(count - i >= BATCH ? batch : batch.slice(0, count - i));
  }
}

async function sendAsync(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    if (stampView) stampView.setUint32(4, seq++, true);
    await sender.put(payload);
  }
}

function sendZeroCopy(count: number): void {
  if (kind === "bytes") {
    const src = payload as Uint8Array;
    for (let i = 0; i < count; i++) {
      const draft = sender.prepareSync<Uint8Array>(template);
      draft.value.set(src); // the producer writes its output once, in place
      draft.send();
    }
  } else {
    const src = (payload as StructMessage).data;
    for (let i = 0; i < count; i++) {
      const draft = sender.prepareSync<StructMessage>(template);
      draft.value.data.set(src);
      draft.send();
    }
  }
}

const commands = new CommandReader();
try {
  for (;;) {
    const cmd = commands.next();
    if (cmd.op === "quit") break;
    if (mode === "async") {
      await sender.put(cmd.n);
      await sendAsync(cmd.n);
    } else {
      sender.putSync(cmd.n);
      if (mode === "sync") sendSync(cmd.n);
      else if (mode === "sync-many") sendMany(cmd.n);
      else sendZeroCopy(cmd.n);
    }
  }
  try {
    sender.putSync(JSON.stringify({ hwm: peakRssBytes() ?? null }));
    sender.waitForAllAckSync({ timeout: 30_000 });
  } catch (error) {
    // Stopped by Ctrl-C (see outliveInterrupt): the receiver left with the orchestrator, and
    // nobody waits for this report. Anything else is the case's failure.
    if (!(error instanceof ClosedError && error.reason === "no-receivers")) throw error;
  }
} finally {
  sender.close();
}
