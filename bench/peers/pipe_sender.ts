/**
 * Driver of the stdio-pipe one-way case: for each `go <n>` on stdin, writes a marker frame
 * then n length-prefixed frames to stdout with blocking writes (one write call per small
 * frame). Structured messages are `node:v8` serialized per message. Also used by the pipe
 * fan-in case, with `--stamp`.
 *
 * Flags: --kind=bytes|struct --size=N [--id=N --stamp] [--batched: BATCH frames per write]
 *
 * @module
 */

import { serialize } from "node:v8";
import {
  BATCH,
  CommandReader,
  FrameType,
  FrameWriter,
  type Kind,
  makePayload,
  need,
  peakRssBytes,
  peerFlags,
} from "../common.ts";

const flags = peerFlags();
const kind = need(flags, "kind") as Kind;
const size = Number(need(flags, "size"));
const id = Number(flags.get("id") ?? 0);
const batched = flags.has("batched");
const payload = makePayload(kind, size);
let stampView: DataView | undefined;
if (flags.has("stamp")) {
  const bytes = payload as Uint8Array;
  stampView = new DataView(bytes.buffer, bytes.byteOffset, 8);
  stampView.setUint32(0, id, true);
}
let seq = 0;

const out = new FrameWriter(Deno.stdout);
const marker = new Uint8Array(8);
const commands = new CommandReader();
for (;;) {
  const cmd = commands.next();
  if (cmd.op === "quit") break;
  new DataView(marker.buffer).setFloat64(0, cmd.n, true);
  out.write(FrameType.Marker, marker);
  if (batched) {
    for (let i = 0; i < cmd.n; i += BATCH) {
      const n = Math.min(BATCH, cmd.n - i);
      if (kind === "bytes") {
        out.writeMany(FrameType.Bytes, Array(n).fill(payload));
      } else {
        out.writeMany(FrameType.V8, Array.from({ length: n }, () => serialize(payload)));
      }
    }
  } else if (kind === "bytes") {
    const bytes = payload as Uint8Array;
    for (let i = 0; i < cmd.n; i++) {
      if (stampView) stampView.setUint32(4, seq++, true);
      out.write(FrameType.Bytes, bytes);
    }
  } else {
    for (let i = 0; i < cmd.n; i++) out.write(FrameType.V8, serialize(payload));
  }
}
const stats = JSON.stringify({ hwm: peakRssBytes() ?? null });
out.write(FrameType.Final, new TextEncoder().encode(stats));
