/**
 * The physical limit of one copy: `TypedArray.prototype.set` of `size` bytes between two
 * already-touched buffers, in one thread. `go n` copies n times.
 *
 * Flags: --size=N
 *
 * @module
 */

import { CommandReader, need, peakRssBytes, peerFlags, report } from "../common.ts";

const flags = peerFlags();
const size = Number(need(flags, "size"));
const src = new Uint8Array(size).fill(0x5a);
const dst = new Uint8Array(size).fill(1);
report({ t: "ready" });

const commands = new CommandReader();
for (;;) {
  const cmd = commands.next();
  if (cmd.op === "quit") break;
  const t0 = performance.now();
  dst.set(src);
  const first = performance.now() - t0;
  for (let i = 1; i < cmd.n; i++) dst.set(src);
  const ms = performance.now() - t0;
  report({ t: "round", ms, firstMs: first, n: cmd.n, bad: dst[size - 1] === 0x5a ? 0 : 1 });
}
const hwm = peakRssBytes();
report({ t: "final", receiverHwm: hwm, senderHwm: [hwm], bad: 0, sameProcess: true });
