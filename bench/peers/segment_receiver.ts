/**
 * Timer of the per-message-segment case (the py-sharedmemory design): spawns the sender,
 * forwards the orchestrator's `go`/`quit`, reads each message's metadata from the sender's
 * stdout, opens and maps its segment, copies the payload out into memory it owns, unmaps
 * and unlinks the segment, and acks on the sender's stdin.
 *
 * Flags: --kind=bytes|struct --size=N --window=N [--no-prefault]
 *
 * @module
 */

import { closeFd, map, shmOpen, shmUnlink, unmap } from "../../ffi/native.ts";
import {
  childArgs,
  CommandReader,
  FrameReader,
  FrameType,
  isPayload,
  type Kind,
  need,
  peakRssBytes,
  peerFlags,
  report,
  type StructMessage,
} from "../common.ts";

const flags = peerFlags();
const kind = need(flags, "kind") as Kind;
const size = Number(need(flags, "size"));
const window = need(flags, "window");
const extra = flags.has("no-prefault") ? ["--no-prefault"] : [];

const child = new Deno.Command(Deno.execPath(), {
  args: childArgs(
    "peers/segment_sender.ts",
    `--kind=${kind}`,
    `--size=${size}`,
    `--window=${window}`,
    ...extra,
  ),
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const toSender = child.stdin.getWriter();
const fromSender = child.stdout.getReader({ mode: "byob" });
const frames = new FrameReader(64 * 1024);
const decoder = new TextDecoder();
const ACK = new Uint8Array([0x61]);
let pending: Promise<void> = Promise.resolve();

interface Meta {
  name: string;
  size?: number;
  idx?: number;
  source?: string;
  n?: number;
}

/** Opens, copies out, unmaps and unlinks one message's segment; returns the owned value. */
function receive(meta: Meta): unknown {
  const bytes = meta.size ?? meta.n! * 4;
  const fd = shmOpen(meta.name);
  let value: unknown;
  try {
    shmUnlink(meta.name);
    const ptr = map(fd, bytes);
    const shared = Deno.UnsafePointerView.getArrayBuffer(ptr, bytes);
    if (meta.size !== undefined) {
      value = new Uint8Array(shared).slice();
    } else {
      const data = new Float32Array(meta.n!);
      data.set(new Float32Array(shared));
      value = { idx: meta.idx, source: meta.source, data } satisfies Partial<StructMessage>;
    }
    shared.transfer(0); // detach before unmapping
    unmap(ptr, bytes);
  } finally {
    closeFd(fd);
  }
  return value;
}

const commands = new CommandReader();
let bad = 0;
let senderHwm: number | null = null;
report({ t: "ready" });
try {
  for (;;) {
    const cmd = commands.next();
    const go = new Uint8Array(9);
    if (cmd.op === "quit") {
      await toSender.write(new Uint8Array([0x71]));
    } else {
      go[0] = 0x67;
      new DataView(go.buffer).setFloat64(1, cmd.n, true);
      await toSender.write(go);
    }
    let expected = -1;
    let received = 0;
    let t0 = 0;
    let first = 0;
    while (expected < 0 || received < expected) {
      const frame = await frames.read(fromSender);
      if (frame === null) throw new Error("segment sender exited early");
      if (frame.type === FrameType.Marker) {
        t0 = performance.now();
        expected = new DataView(frame.payload.buffer).getFloat64(0, true);
        continue;
      }
      if (frame.type === FrameType.Final) {
        senderHwm = JSON.parse(decoder.decode(frame.payload)).hwm;
        break;
      }
      const value = receive(JSON.parse(decoder.decode(frame.payload)) as Meta);
      if (!isPayload(value, kind, size)) bad++;
      if (++received === 1) first = performance.now() - t0;
      pending = toSender.write(ACK); // acks are queued in order; not awaited one by one
    }
    if (cmd.op === "quit") break;
    report({ t: "round", ms: performance.now() - t0, firstMs: first, n: expected, bad });
    await pending;
  }
  await toSender.close();
  await child.status;
  report({ t: "final", receiverHwm: peakRssBytes(), senderHwm: [senderHwm], bad });
} catch (error) {
  report({ t: "error", message: String((error as Error)?.stack ?? error) });
  try {
    // SIGKILL: peers outlive SIGTERM (see outliveInterrupt), and this one would then wait with
    // its stdin open until the orchestrator's timeout.
    child.kill("SIGKILL");
  } catch { /* already gone */ }
}
