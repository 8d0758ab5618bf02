/**
 * Timer of the stdio-pipe one-way case: reads frames from stdin with blocking reads into
 * buffers it owns (see `FrameReader`), deserializes structured messages with `node:v8`, and
 * times each round from its marker to its last message.
 *
 * Flags: --kind=bytes|struct --size=N
 *
 * @module
 */

import { deserialize } from "node:v8";
import {
  FrameReader,
  FrameType,
  isPayload,
  type Kind,
  need,
  peakRssBytes,
  peerFlags,
  report,
} from "../common.ts";

const flags = peerFlags();
const kind = need(flags, "kind") as Kind;
const size = Number(need(flags, "size"));

const reader = new FrameReader();
let expected = 0;
let received = 0;
let t0 = 0;
let first = 0;
let bad = 0;
let senderHwm: number | null = null;
report({ t: "ready" });
for (;;) {
  const frame = reader.readSync(Deno.stdin);
  if (frame === null) break;
  if (frame.type === FrameType.Marker) {
    t0 = performance.now();
    expected = new DataView(frame.payload.buffer).getFloat64(0, true);
    received = 0;
    if (expected === 0) report({ t: "round", ms: performance.now() - t0, n: 0, bad });
    continue;
  }
  if (frame.type === FrameType.Final) {
    senderHwm = JSON.parse(new TextDecoder().decode(frame.payload)).hwm;
    break;
  }
  const value = frame.type === FrameType.V8 ? deserialize(frame.payload) : frame.payload;
  if (!isPayload(value, kind, size)) bad++;
  if (++received === 1) first = performance.now() - t0;
  if (received === expected) {
    report({ t: "round", ms: performance.now() - t0, firstMs: first, n: expected, bad });
  }
}
report({ t: "final", receiverHwm: peakRssBytes(), senderHwm: [senderHwm], bad });
