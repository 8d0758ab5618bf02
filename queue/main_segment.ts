/**
 * A queue's main segment as a whole: its name, its header (written once by the creator,
 * validated by every end that opens it) and the "alive" byte that keeps sweeps away.
 *
 * @module
 */

import * as native from "../ffi/native.ts";
import * as L from "./layout.ts";
import { ClosedError } from "./errors.ts";
import type { Mapping } from "./segment.ts";

/** A new queue's name, drawn at random. */
export function randomQueueName(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return `/${L.NAME_PREFIX}${hex}`;
}

/** The error of an open that finds the queue's name removed: its last end has closed. */
export function goneError(name: string): ClosedError {
  return new ClosedError(`queue ${name} no longer exists: every end of it has closed`, {
    reason: "gone",
  });
}

/** A queue's geometry, read from its header once (see validateHeader). */
export interface Header {
  readonly capacity: number;
  readonly ringSize: number;
  readonly arenaOffset: number;
  readonly arenaSize: number;
  readonly byteBudget: number;
  readonly keepIdleMs: number;
}

/** Writes a new queue's header into `main`: the magic last, once the rest is in place. */
export function writeHeader(main: Mapping, header: Header): void {
  const u32 = new Uint32Array(main.buffer);
  const f64 = new Float64Array(main.buffer);
  u32[L.H_VERSION >> 2] = L.LAYOUT_VERSION;
  u32[L.H_CAPACITY >> 2] = header.capacity;
  u32[L.H_RING_SIZE >> 2] = header.ringSize;
  u32[L.H_MAX_PARTICIPANTS >> 2] = L.MAX_PARTICIPANTS;
  u32[L.H_MAX_EXTENSIONS >> 2] = L.MAX_EXTENSIONS;
  f64[L.H_ARENA_OFFSET >> 3] = header.arenaOffset;
  f64[L.H_ARENA_SIZE >> 3] = header.arenaSize;
  f64[L.H_SEGMENT_SIZE >> 3] = header.arenaOffset + header.arenaSize;
  f64[L.H_BYTE_BUDGET >> 3] = header.byteBudget;
  crypto.getRandomValues(u32.subarray(L.C_EXTENSION_SALT >> 2, (L.C_EXTENSION_SALT >> 2) + 2));
  f64[L.C_KEEP_IDLE_MS >> 3] = header.keepIdleMs;
  u32[L.H_STATE >> 2] = L.QueueState.Ready;
  Atomics.store(new Int32Array(main.buffer), L.H_MAGIC >> 2, L.MAGIC);
}

/** Checks a queue's header and returns what it checked: the header may change under the
 * caller (any same-user process can write it), so nothing of it is to be read again. */
export function validateHeader(name: string, main: Mapping, size: number): Header {
  const u32 = new Uint32Array(main.buffer);
  const f64 = new Float64Array(main.buffer);
  const invalid = (what: string): never => {
    throw new ClosedError(`queue ${name} is not a valid queue: ${what}`, { reason: "corrupt" });
  };
  if (Atomics.load(u32, L.H_MAGIC >> 2) !== L.MAGIC) invalid("bad magic");
  const version = u32[L.H_VERSION >> 2];
  if (version !== L.LAYOUT_VERSION) {
    invalid(`layout version ${version}, this library speaks ${L.LAYOUT_VERSION}`);
  }
  const capacity = u32[L.H_CAPACITY >> 2];
  const ringSize = u32[L.H_RING_SIZE >> 2];
  if (!(capacity >= 1 && capacity <= L.MAX_CAPACITY && ringSize === L.ringSizeFor(capacity))) {
    invalid(`capacity ${capacity} with ring size ${ringSize}`);
  }
  if (
    u32[L.H_MAX_PARTICIPANTS >> 2] !== L.MAX_PARTICIPANTS ||
    u32[L.H_MAX_EXTENSIONS >> 2] !== L.MAX_EXTENSIONS
  ) {
    invalid("table sizes differ");
  }
  const arenaOffset = f64[L.H_ARENA_OFFSET >> 3];
  const arenaSize = f64[L.H_ARENA_SIZE >> 3];
  if (
    arenaOffset !== L.arenaOffsetFor(ringSize) || !Number.isInteger(arenaSize) ||
    arenaSize < L.PAGE_SIZE || arenaSize % L.PAGE_SIZE !== 0 ||
    // Exactly the size it was made with: a segment grown since would have this end map and
    // pre-fault memory the queue never uses (a same-user peer could fill /dev/shm so).
    arenaOffset + arenaSize !== f64[L.H_SEGMENT_SIZE >> 3] || arenaOffset + arenaSize !== size
  ) {
    invalid(`arena of ${arenaSize} bytes at ${arenaOffset} in a ${size}-byte segment`);
  }
  const budget = f64[L.H_BYTE_BUDGET >> 3];
  if (!(budget >= arenaSize && budget <= L.MAX_MESSAGE_SIZE)) invalid(`byte budget ${budget}`);
  const keepIdleMs = f64[L.C_KEEP_IDLE_MS >> 3];
  if (!(keepIdleMs >= 0)) invalid(`idle segments kept for ${keepIdleMs} ms`);
  if (u32[L.H_STATE >> 2] !== L.QueueState.Ready) invalid("queue not ready or poisoned");
  return { capacity, ringSize, arenaOffset, arenaSize, byteBudget: budget, keepIdleMs };
}

/** A sweep holds the "alive" byte exclusively while it decides; that takes microseconds, or
 * a tenth of a second for a queue without header. Wait it out rather than go on without the
 * byte, which would leave this end invisible to the next sweep. */
const ALIVE_BYTE_PATIENCE_MS = 2_000;

/** Takes the shared lock on the "alive" byte of queue `name`'s segment (open as `fd`), which
 * tells sweeps that an end uses the queue. */
export function holdAliveByte(fd: number, name: string): void {
  const giveUpAt = performance.now() + ALIVE_BYTE_PATIENCE_MS;
  while (!native.lockByte(fd, L.ANY_ALIVE_LOCK_BYTE, "shared")) {
    if (performance.now() > giveUpAt) {
      throw new ClosedError(
        `queue ${name}: a sweep kept it locked for over ` +
          `${ALIVE_BYTE_PATIENCE_MS / 1000} s`,
        {
          reason: "gone",
        },
      );
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  }
}
