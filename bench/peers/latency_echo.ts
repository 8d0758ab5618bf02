/**
 * Echo peer of `latency_host.ts`: sends every message straight back. `stop` (shmq) or a
 * final frame (pipe) makes it answer its peak memory and exit.
 *
 * Flags: --mode=shmq-sync|shmq-async|pipe [--ping=DESCRIPTOR --pong=DESCRIPTOR]
 *
 * @module
 */

import { openReceiver, openSender } from "../../mod.ts";
import { FrameReader, FrameType, FrameWriter, need, peakRssBytes, peerFlags } from "../common.ts";

const flags = peerFlags();
const mode = need(flags, "mode");
const stats = () => JSON.stringify({ hwm: peakRssBytes() });

if (mode === "pipe") {
  const frames = new FrameReader(64 * 1024);
  const out = new FrameWriter(Deno.stdout);
  for (;;) {
    const frame = frames.readSync(Deno.stdin);
    if (frame === null) break;
    if (frame.type === FrameType.Final) {
      out.write(FrameType.Final, new TextEncoder().encode(stats()));
      continue;
    }
    out.write(frame.type, frame.payload);
  }
} else {
  const ping = openReceiver(need(flags, "ping"));
  const pong = openSender(need(flags, "pong"));
  try {
    if (mode === "shmq-sync") {
      for (;;) {
        const v = ping.getSync();
        if (v === "stop") break;
        pong.putSync(v);
      }
    } else {
      for (;;) {
        const v = await ping.get();
        if (v === "stop") break;
        await pong.put(v);
      }
    }
    pong.putSync(stats());
    pong.waitForAllAckSync({ timeout: 10_000 });
  } finally {
    ping.close();
    pong.close();
  }
}
