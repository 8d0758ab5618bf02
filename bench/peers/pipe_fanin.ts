/**
 * Fan-in over pipes (timer and driver): spawns `--senders` pipe senders whose stdout this
 * process reads concurrently (stream BYOB reads into owned buffers), forwards `go`/`quit`,
 * and times each round from the first marker to the last message of every sender, checking
 * each sender's sequence numbers.
 *
 * Flags: --size=N --senders=N
 *
 * @module
 */

import {
  childArgs,
  CommandReader,
  FrameReader,
  FrameType,
  need,
  peakRssBytes,
  peerFlags,
  report,
} from "../common.ts";

const flags = peerFlags();
const size = Number(need(flags, "size"));
const senders = Number(need(flags, "senders"));
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const children = Array.from({ length: senders }, (_, id) =>
  new Deno.Command(Deno.execPath(), {
    args: childArgs(
      "peers/pipe_sender.ts",
      "--kind=bytes",
      `--size=${size}`,
      `--id=${id}`,
      "--stamp",
    ),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn());
const writers = children.map((c) => c.stdin.getWriter());
const readers = children.map((c) => c.stdout.getReader({ mode: "byob" }));
const frameReaders = children.map(() => new FrameReader());
const nextSeq = new Array<number>(senders).fill(0);
const senderHwm: (number | null)[] = [];
let bad = 0;

/** Reads one sender's frames until its round (or its final frame) is complete. */
async function drain(i: number, onMarker: () => void, onMessage: () => void): Promise<void> {
  let expected = -1;
  let received = 0;
  while (expected < 0 || received < expected) {
    const frame = await frameReaders[i].read(readers[i]);
    if (frame === null) throw new Error(`pipe sender ${i} exited early`);
    if (frame.type === FrameType.Marker) {
      onMarker();
      expected = new DataView(frame.payload.buffer).getFloat64(0, true);
      continue;
    }
    if (frame.type === FrameType.Final) {
      senderHwm.push(JSON.parse(decoder.decode(frame.payload)).hwm);
      return;
    }
    const p = frame.payload;
    const view = new DataView(p.buffer, p.byteOffset, 8);
    if (
      p.length !== size || view.getUint32(0, true) !== i || view.getUint32(4, true) !== nextSeq[i]
    ) {
      bad++;
    }
    nextSeq[i]++;
    received++;
    onMessage();
  }
}

report({ t: "ready" });
const commands = new CommandReader();
for (;;) {
  const cmd = commands.next();
  const line = encoder.encode(cmd.op === "quit" ? "quit\n" : `go ${cmd.n}\n`);
  let t0 = 0;
  let first = 0;
  const onMarker = () => {
    if (t0 === 0) t0 = performance.now();
  };
  const onMessage = () => {
    if (first === 0) first = performance.now() - t0;
  };
  const rounds = children.map((_, i) => drain(i, onMarker, onMessage));
  await Promise.all(writers.map((w) => w.write(line)));
  await Promise.all(rounds);
  if (cmd.op === "quit") break;
  report({ t: "round", ms: performance.now() - t0, firstMs: first, n: cmd.n * senders, bad });
}
for (const w of writers) await w.close();
await Promise.all(children.map((c) => c.status));
report({ t: "final", receiverHwm: peakRssBytes(), senderHwm, bad });
