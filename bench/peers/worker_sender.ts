/**
 * The Worker side of `worker_host.ts`: sends a marker then n messages per `go`, keeping at
 * most `window` in flight (acks are counts for `clone`, returned buffers for `transfer`).
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { type Kind, makePayload, type StructMessage } from "../common.ts";

interface Init {
  mode: "clone" | "transfer";
  kind: Kind;
  size: number;
  window: number;
}

let init: Init;
let payload: Uint8Array | StructMessage;
const pool: ArrayBuffer[] = [];
let toSend = 0;
let inFlight = 0;

function pump(): void {
  while (toSend > 0 && inFlight < init.window) {
    if (init.mode === "clone") {
      self.postMessage(payload);
    } else {
      const buffer = pool.pop()!;
      const message = init.kind === "bytes" ? new Uint8Array(buffer) : {
        idx: (payload as StructMessage).idx,
        source: (payload as StructMessage).source,
        data: new Float32Array(buffer),
      };
      self.postMessage(message, [buffer]);
    }
    toSend--;
    inFlight++;
  }
}

self.onmessage = (e: MessageEvent) => {
  const m = e.data;
  if (typeof m === "number") { // clone ack: m messages received
    inFlight -= m;
    pump();
  } else if (m instanceof ArrayBuffer) { // transfer ack: the buffer came back
    pool.push(m);
    inFlight--;
    pump();
  } else if (m.go !== undefined) {
    toSend = m.go;
    self.postMessage(m.go); // marker
    pump();
  } else if (m.init) {
    init = m.init;
    payload = makePayload(init.kind, init.size);
    if (init.mode === "transfer") {
      const source = init.kind === "bytes"
        ? payload as Uint8Array
        : new Uint8Array((payload as StructMessage).data.buffer);
      for (let i = 0; i < init.window; i++) pool.push(source.slice().buffer);
    }
  }
};
