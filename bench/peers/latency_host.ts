/**
 * Round-trip latency of small messages (timer and driver): for each `go <n>`, n round trips
 * of a `--size` byte Uint8Array to an echo peer and back, one at a time; answers the
 * per-trip times in microseconds.
 *
 * Modes: `shmq-sync` / `shmq-async` (two queues, echo process), `pipe` (echo process on
 * stdin/stdout: this side uses the stream API, the echo blocking reads and writes),
 * `postmessage` (echo Worker).
 *
 * Flags: --mode=shmq-sync|shmq-async|pipe|postmessage --size=N
 *
 * @module
 */

import { createSharedMemoryPair } from "../../mod.ts";
import {
  childArgs,
  CommandReader,
  FRAME_HEADER,
  FrameReader,
  FrameType,
  need,
  peakRssBytes,
  peerFlags,
  report,
  writeHeader,
} from "../common.ts";

const flags = peerFlags();
const mode = need(flags, "mode");
const size = Number(need(flags, "size"));
const message = new Uint8Array(size).fill(7);

/** One round trip; resolves when the echo is back. */
type Trip = () => Promise<unknown> | unknown;
let trip: Trip;
let sync = false;
let stop: () => Promise<void> | void;
let echoHwm: () => Promise<number | null> | number | null = () => null;
const queues: { descriptor: unknown }[] = [];

if (mode === "shmq-sync" || mode === "shmq-async") {
  const [pingSender, pingReceiver] = createSharedMemoryPair({ capacity: 4 });
  const [pongSender, pongReceiver] = createSharedMemoryPair({ capacity: 4 });
  queues.push(pingSender, pongSender);
  const echo = new Deno.Command(Deno.execPath(), {
    args: childArgs(
      "peers/latency_echo.ts",
      `--mode=${mode}`,
      `--ping=${JSON.stringify(pingReceiver.descriptor)}`,
      `--pong=${JSON.stringify(pongSender.descriptor)}`,
    ),
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  // The echo opened both queues once it answers the first trip; then drop our spare ends.
  if (mode === "shmq-sync") {
    sync = true;
    trip = () => {
      pingSender.putSync(message);
      return pongReceiver.getSync();
    };
  } else {
    trip = async () => {
      await pingSender.put(message);
      return await pongReceiver.get();
    };
  }
  await trip();
  pingReceiver.close();
  pongSender.close();
  echoHwm = async () => {
    await pingSender.put("stop");
    return JSON.parse(await pongReceiver.get() as string).hwm;
  };
  stop = async () => {
    await echo.status;
    pingSender.close();
    pongReceiver.close();
  };
} else if (mode === "pipe") {
  const echo = new Deno.Command(Deno.execPath(), {
    args: childArgs("peers/latency_echo.ts", "--mode=pipe"),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = echo.stdin.getWriter();
  const reader = echo.stdout.getReader({ mode: "byob" });
  const frames = new FrameReader(64 * 1024);
  const frame = new Uint8Array(FRAME_HEADER + size);
  writeHeader(new DataView(frame.buffer), 0, size, FrameType.Bytes);
  frame.set(message, FRAME_HEADER);
  trip = async () => {
    await writer.write(frame);
    return await frames.read(reader);
  };
  echoHwm = async () => {
    const stopFrame = new Uint8Array(FRAME_HEADER);
    writeHeader(new DataView(stopFrame.buffer), 0, 0, FrameType.Final);
    await writer.write(stopFrame);
    const answer = await frames.read(reader);
    return answer ? JSON.parse(new TextDecoder().decode(answer.payload)).hwm : null;
  };
  stop = async () => {
    await writer.close();
    await echo.status;
  };
} else if (mode === "postmessage") {
  const worker = new Worker(new URL("./latency_worker.ts", import.meta.url), { type: "module" });
  let resolve: ((v: unknown) => void) | undefined;
  worker.onmessage = (e) => resolve!(e.data);
  trip = () =>
    new Promise((r) => {
      resolve = r;
      worker.postMessage(message);
    });
  stop = () => worker.terminate();
} else {
  throw new TypeError(`unknown mode ${mode}`);
}

report({ t: "ready", queues: queues.map((q) => q.descriptor) });
const commands = new CommandReader();
for (;;) {
  const cmd = commands.next();
  if (cmd.op === "quit") break;
  const samples = new Array<number>(cmd.n);
  const t0 = performance.now();
  if (sync) {
    for (let i = 0; i < cmd.n; i++) {
      const t = performance.now();
      trip();
      samples[i] = Math.round((performance.now() - t) * 1e4) / 10; // µs, 0.1 resolution
    }
  } else {
    for (let i = 0; i < cmd.n; i++) {
      const t = performance.now();
      await trip();
      samples[i] = Math.round((performance.now() - t) * 1e4) / 10;
    }
  }
  report({ t: "round", ms: performance.now() - t0, n: cmd.n, samples, bad: 0 });
}
const echoPeak = await echoHwm();
await stop();
const hwm = peakRssBytes();
report({ t: "final", receiverHwm: hwm, senderHwm: [mode === "postmessage" ? hwm : echoPeak] });
