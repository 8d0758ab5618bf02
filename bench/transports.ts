/**
 * The transports compared by the benchmark, and how each one's processes are started.
 *
 * @module
 */

import { BATCH, childArgs, type Kind } from "./common.ts";
import { type CaseProcs, shellQuote } from "./procs.ts";

/** Identifiers of the one-way throughput transports. */
export type TransportId =
  | "shmq-get-async"
  | "shmq-get-sync"
  | "shmq-get-reuse"
  | "shmq-get-pooled-sync"
  | "shmq-get-pooled-async"
  | "shmq-putmany-pooled-sync"
  | "shmq-borrow"
  | "shmq-zerocopy"
  | "pipe"
  | "pipe-batched"
  | "postmessage-clone"
  | "postmessage-transfer"
  | "segment"
  | "memcpy";

/** One transport of the throughput tables. */
export interface Transport {
  id: TransportId;
  /** Name in tables and charts. */
  label: string;
  /** What exactly is measured. */
  description: string;
  /** Whether this is the library (vs an alternative or a reference). */
  library: boolean;
  /** Estimated peak memory of the case, in multiples of the message size. */
  memoryFactor(kind: Kind, window: number): number;
  /**
   * Whether the transport keeps resources per message in flight that are made on first use
   * (the queue's extension segments): then the warm-up sends at least window + 1 messages.
   */
  madeOnFirstUse: boolean;
  /** The largest message size worth measuring (larger ones behave as another transport). */
  maxSize?: number;
  /** Starts the case's processes; resolves when it is ready for `go`. */
  launch(procs: CaseProcs, spec: CaseSpec): Promise<void>;
}

/** One throughput case. */
export interface CaseSpec {
  transport: TransportId;
  kind: Kind;
  size: number;
  window: number;
}

const READY_MS = 60_000;

function shmq(
  id: TransportId,
  label: string,
  receiverMode: string,
  senderMode: string,
  description: string,
  maxSize?: number,
): Transport {
  return {
    id,
    label,
    description,
    library: true,
    madeOnFirstUse: true,
    maxSize,
    // sender's source + the messages in shared memory + the receiver's copies (and garbage)
    memoryFactor: (_kind, window) =>
      1 + window + (receiverMode === "borrow" ? 0 : Math.min(window, 2) + 1),
    async launch(procs, spec) {
      await launchShmq(procs, spec, receiverMode, senderMode, 1);
    },
  };
}

/** Starts a shmq receiver (timer) and `senders` sender processes (drivers). */
export async function launchShmq(
  procs: CaseProcs,
  spec: Omit<CaseSpec, "transport">,
  receiverMode: string,
  senderMode: string,
  senders: number,
): Promise<void> {
  const common = [`--kind=${spec.kind}`, `--size=${spec.size}`];
  procs.spawnDeno("peers/shmq_receiver.ts", [
    `--mode=${receiverMode}`,
    ...common,
    `--window=${spec.window}`,
    `--senders=${senders}`,
    ...(senders > 1 ? ["--check-order"] : []),
  ], { timer: true });
  const ready = await procs.expect("ready", READY_MS);
  const descriptor = JSON.stringify(ready.descriptor);
  for (let id = 0; id < senders; id++) {
    procs.spawnDeno("peers/shmq_sender.ts", [
      `--mode=${senderMode}`,
      ...common,
      `--descriptor=${descriptor}`,
      `--id=${id}`,
      ...(senders > 1 ? ["--stamp"] : []),
    ], { driver: true });
  }
}

/** The stdio-pipe case: `A | B` through `sh`, the writer batching frames or not. */
function pipe(
  id: TransportId,
  label: string,
  description: string,
  batched: boolean,
  maxSize?: number,
): Transport {
  return {
    id,
    label,
    description,
    library: false,
    madeOnFirstUse: false,
    maxSize,
    // Peaks of the 1 GiB cases in a full run (2026-11-28, sender and receiver): bytes 1.0 + 2.1 GiB, struct
    // (node:v8) 5.0 + 4.1 GiB; with room to spare, so the memory check skips what cannot run.
    memoryFactor: (kind) => kind === "bytes" ? 4 : 10,
    async launch(procs, spec) {
      const common = [`--kind=${spec.kind}`, `--size=${spec.size}`];
      const a = [
        Deno.execPath(),
        ...childArgs("peers/pipe_sender.ts", ...common, ...(batched ? ["--batched"] : [])),
      ];
      const b = [Deno.execPath(), ...childArgs("peers/pipe_receiver.ts", ...common)];
      const script = `${a.map(shellQuote).join(" ")} | ${b.map(shellQuote).join(" ")}`;
      procs.spawn("sh", ["-c", script], { driver: true, timer: true });
      await procs.expect("ready", READY_MS);
    },
  };
}

/** Every throughput transport, in table order. */
export const TRANSPORTS: readonly Transport[] = [
  shmq(
    "shmq-get-async",
    "shmq get (async)",
    "get-async",
    "async",
    "`await sender.put(v)` → `await receiver.get()`: encoded into shared memory, decoded (copied) out",
  ),
  shmq(
    "shmq-get-sync",
    "shmq get (sync)",
    "get-sync",
    "sync",
    "`sender.putSync(v)` → `receiver.getSync()`",
  ),
  shmq(
    "shmq-get-reuse",
    "shmq get (reused buffers)",
    "get-reuse",
    "sync",
    "`receiver.getSync({ allocate })` handing out two recycled ArrayBuffers in turn: copied out " +
      "into memory the receiver already owns, so no fresh pages",
  ),
  shmq(
    "shmq-get-pooled-sync",
    "shmq get pooled (sync)",
    "get-pooled-sync",
    "sync",
    "`receiver.getSync({ pooled: true })`: arrays of up to 2 KiB are copied into slices of " +
      "shared 32 KiB buffers, not a fresh ArrayBuffer each (only sizes up to 10 KiB: above " +
      "2 KiB it is `getSync`)",
    10 * 1024,
  ),
  shmq(
    "shmq-get-pooled-async",
    "shmq get pooled (async)",
    "get-pooled-async",
    "async",
    "`await receiver.get({ pooled: true })`, as above",
    10 * 1024,
  ),
  shmq(
    "shmq-putmany-pooled-sync",
    `shmq putMany of ${BATCH} → pooled getSync`,
    "get-pooled-sync",
    "sync-many",
    `\`sender.putManySync(batch)\` of ${BATCH} messages (one lock hold for as many as have ` +
      "room) → `receiver.getSync({ pooled: true })`; compare with the batched pipe (only sizes " +
      "up to 10 KiB)",
    10 * 1024,
  ),
  shmq(
    "shmq-borrow",
    "shmq borrow",
    "borrow",
    "sync",
    "`sender.putSync(v)` → `receiver.borrowSync()` + `release()`: the receiver views the message in place",
  ),
  shmq(
    "shmq-zerocopy",
    "shmq prepare→borrow",
    "borrow",
    "zerocopy",
    "`sender.prepareSync({..reserve()})`, payload written in place with one `set`, `send()` → " +
      "`borrowSync()`: no copy by the transport at either end",
  ),
  pipe(
    "pipe",
    "stdio pipe",
    "two Deno processes joined by a shell pipe (`A | B`), blocking `writeSync`/`readSync` on both " +
      "ends, 8-byte length-prefixed frames (one write per small frame, no batching across " +
      "messages), reads into owned buffers (large frames read straight into their own buffer); " +
      "structured messages `node:v8` serialize/deserialize",
    false,
  ),
  pipe(
    "pipe-batched",
    `stdio pipe, ${BATCH} frames per write`,
    `the stdio pipe with the writer batching as \`putMany\` does: ${BATCH} frames per write ` +
      "call (fewer when they pass 64 KiB); compare with shmq putMany (only sizes up to 10 KiB)",
    true,
    10 * 1024,
  ),
  {
    id: "postmessage-clone",
    label: "postMessage clone",
    description:
      "Worker → main thread `postMessage` (structured clone), one process; batched acks keep " +
      "at most `window` messages in flight",
    library: false,
    madeOnFirstUse: false,
    // One process: 5.05 GiB at 1 GiB, window 1.
    memoryFactor: (_kind, window) => 4 + 2 * window,
    async launch(procs, spec) {
      await launchWorker(procs, spec, "clone");
    },
  },
  {
    id: "postmessage-transfer",
    label: "postMessage transfer",
    description:
      "Worker → main thread `postMessage` transferring the ArrayBuffer, one process; a pool of " +
      "`window` buffers goes back and forth (zero copy, no allocation per message)",
    library: false,
    madeOnFirstUse: false,
    memoryFactor: (_kind, window) => 1 + window,
    async launch(procs, spec) {
      await launchWorker(procs, spec, "transfer");
    },
  },
  {
    id: "segment",
    label: "segment per message",
    description:
      "the py-sharedmemory design in Deno: a fresh shm segment per message (create, map, " +
      "MADV_POPULATE_WRITE, copy in, unmap), metadata as a JSON frame over a stdio pipe, the " +
      "receiver maps, copies out, unmaps and unlinks, acks over a pipe; `window` unacked at most",
    library: false,
    madeOnFirstUse: false,
    memoryFactor: (_kind, window) => 3 + window,
    async launch(procs, spec) {
      procs.spawnDeno("peers/segment_receiver.ts", [
        `--kind=${spec.kind}`,
        `--size=${spec.size}`,
        `--window=${spec.window}`,
      ], { driver: true, timer: true });
      await procs.expect("ready", READY_MS);
    },
  },
  {
    id: "memcpy",
    label: "memcpy",
    description: "one thread, `dst.set(src)` between two already-touched buffers of the size",
    library: false,
    madeOnFirstUse: false,
    memoryFactor: () => 2,
    async launch(procs, spec) {
      procs.spawnDeno("peers/memcpy.ts", [`--size=${spec.size}`], { driver: true, timer: true });
      await procs.expect("ready", READY_MS);
    },
  },
];

async function launchWorker(procs: CaseProcs, spec: CaseSpec, mode: string): Promise<void> {
  procs.spawnDeno("peers/worker_host.ts", [
    `--mode=${mode}`,
    `--kind=${spec.kind}`,
    `--size=${spec.size}`,
    `--window=${spec.window}`,
  ], { driver: true, timer: true });
  await procs.expect("ready", READY_MS);
}

/** The transport with this id. */
export function transport(id: TransportId): Transport {
  const t = TRANSPORTS.find((t) => t.id === id);
  if (!t) throw new RangeError(`unknown transport ${id}`);
  return t;
}
