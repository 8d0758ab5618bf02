/**
 * Sender of the reference design rebuilt in Deno (py-sharedmemory): every message gets a
 * fresh shared-memory segment (create, size, map, pre-fault, copy in, unmap), and its
 * metadata goes to the receiver through a pipe (stdout) as a length-prefixed JSON frame. At
 * most `window` messages may be unacknowledged; acks come back on stdin. Segments are named
 * `/shmq-bench-<run>-<pid>-<n>` (outside the library's sweep pattern; see segmentPrefix);
 * any left unreceived at exit are unlinked.
 *
 * stdin (from the receiver): `a` = one ack, `g` + f64 = go n, `q` = quit.
 *
 * Flags: --kind=bytes|struct --size=N --window=N [--no-prefault]
 *
 * @module
 */

import { closeFd, map, prefault, shmCreate, shmUnlink, unmap } from "../../ffi/native.ts";
import {
  FrameType,
  FrameWriter,
  type Kind,
  makePayload,
  need,
  peakRssBytes,
  peerFlags,
  segmentPrefix,
  type StructMessage,
} from "../common.ts";

const flags = peerFlags();
const kind = need(flags, "kind") as Kind;
const size = Number(need(flags, "size"));
const window = Number(need(flags, "window"));
const usePrefault = !flags.has("no-prefault");
const payload = makePayload(kind, size);
const bytes = kind === "bytes"
  ? payload as Uint8Array
  : new Uint8Array((payload as StructMessage).data.buffer);
const segBytes = bytes.length;
const prefix = `/${segmentPrefix(flags.get("bench-run"))}${Deno.pid}-`;
const outstanding = new Set<string>();
const encoder = new TextEncoder();

/** Reads the receiver's control bytes with blocking reads. */
class Control {
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;
  acks = 0;

  /** Blocks until at least one control byte is available; false at EOF. */
  #fill(min: number): boolean {
    if (this.#end - this.#start >= min) return true;
    this.#buf.copyWithin(0, this.#start, this.#end);
    this.#end -= this.#start;
    this.#start = 0;
    while (this.#end < min) {
      const n = Deno.stdin.readSync(this.#buf.subarray(this.#end));
      if (n === null) return false;
      this.#end += n;
    }
    return true;
  }

  /** Next command (`go`/`quit`); acks met on the way are counted. */
  command(): number | "quit" {
    for (;;) {
      if (!this.#fill(1)) return "quit";
      const op = this.#buf[this.#start];
      if (op === 0x61) { // a
        this.#start++;
        this.acks++;
      } else if (op === 0x67) { // g
        if (!this.#fill(9)) return "quit";
        const n = new DataView(this.#buf.buffer, this.#start + 1, 8).getFloat64(0, true);
        this.#start += 9;
        return n;
      } else {
        return "quit";
      }
    }
  }

  /** Blocks until an ack arrives; false at EOF or on anything else. */
  ack(): boolean {
    if (!this.#fill(1)) return false;
    if (this.#buf[this.#start] !== 0x61) return false;
    this.#start++;
    this.acks++;
    return true;
  }
}

const control = new Control();
const out = new FrameWriter(Deno.stdout);
const marker = new Uint8Array(8);
let seq = 0;
let sent = 0;

function sendOne(): void {
  while (sent - control.acks >= window) {
    if (!control.ack()) throw new Error("segment sender: receiver went away");
  }
  const name = prefix + seq++;
  const fd = shmCreate(name, segBytes);
  outstanding.add(name);
  try {
    const ptr = map(fd, segBytes);
    if (usePrefault) prefault(ptr, segBytes);
    const view = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ptr, segBytes));
    view.set(bytes);
    view.buffer.transfer(0); // detach before unmapping: nothing can touch the mapping after
    unmap(ptr, segBytes);
  } finally {
    closeFd(fd);
  }
  const meta = kind === "bytes" ? { name, size: segBytes } : {
    name,
    idx: (payload as StructMessage).idx,
    source: (payload as StructMessage).source,
    n: (payload as StructMessage).data.length,
  };
  out.write(FrameType.Json, encoder.encode(JSON.stringify(meta)));
  sent++;
}

try {
  for (;;) {
    const cmd = control.command();
    if (cmd === "quit") break;
    new DataView(marker.buffer).setFloat64(0, cmd, true);
    out.write(FrameType.Marker, marker);
    for (let i = 0; i < cmd; i++) sendOne();
    // Names the receiver already unlinked are forgotten lazily: keep the set small.
    if (outstanding.size > 4 * window) {
      for (const name of outstanding) {
        if (Number(name.slice(prefix.length)) < control.acks) outstanding.delete(name);
      }
    }
  }
  out.write(
    FrameType.Final,
    encoder.encode(JSON.stringify({ hwm: peakRssBytes() ?? null })),
  );
} finally {
  for (const name of outstanding) shmUnlink(name, { missingOk: true });
}
