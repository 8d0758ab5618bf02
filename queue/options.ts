/**
 * Options of a new queue, with their defaults and checks.
 *
 * @module
 */

import { shmTotalBytes } from "../ffi/native.ts";
import { cgroupLimit } from "./segment.ts";
import {
  arenaOffsetFor,
  MAX_ARENA_SIZE,
  MAX_CAPACITY,
  MAX_MESSAGE_SIZE,
  MIN_ARENA_SIZE,
  ringSizeFor,
} from "./layout.ts";
import type { Geometry } from "./shared_queue.ts";
import { refuseUnknownOptions } from "./option_names.ts";
import { shown } from "./shown.ts";
import { timeoutOption } from "./timer.ts";

/**
 * Options of `createSharedMemoryPair`.
 *
 * @example
 * ```ts
 * import { createSharedMemoryPair, type QueueOptions } from "../mod.ts";
 * const options: QueueOptions = { capacity: 5, arenaBytes: 16 << 20, byteBudget: 256 << 20 };
 * const [sender, receiver] = createSharedMemoryPair(options);
 * sender.close();
 * receiver.close();
 * ```
 */
export interface QueueOptions {
  /**
   * How many messages may be put and not yet released by a receiver; `put` waits while
   * that many are outstanding. Default 64; from 1 to 1,048,576. Each unit also takes 128
   * bytes of shared memory beside the arena, for the slot ring (twice `capacity` slots of 64
   * bytes, rounded up to a power of two, at least 16): 8 KiB at 64, 128 MiB at the largest.
   */
  capacity?: number;
  /**
   * Bytes of shared memory for messages (the arena), made and pre-faulted once when the
   * queue is created. Messages above a quarter of it travel in extension segments that are
   * made on demand and reused, so any size goes through. Default 64 MiB, or a quarter of
   * /dev/shm's size when that is less (a container's is often 64 MiB in all), or an eighth of
   * the memory limit of the process's cgroup (a container's) when that is less, or
   * `byteBudget` when that is less, at least 64 KiB; from 64 KiB to 1 TiB. An arena that
   * /dev/shm, or the memory left (the machine's, or the memory cgroup's), cannot hold is a
   * `RangeError`.
   */
  arenaBytes?: number;
  /**
   * Bound on the shared memory the queue's messages take: the arena plus extension segments
   * (the slot ring, 128 bytes per unit of `capacity`, comes beside it).
   * Senders wait while more would be needed, the first to wait served first (later large
   * messages leave it room); idle extensions are dropped to make room. One
   * message larger than the budget still goes through, alone, as long as /dev/shm has
   * room for it; its segment is reused by the next such message, and dropped by the next
   * put that fits the budget. Default 4 GiB (two messages of the reference's 1.7 GB travel
   * side by side), or `arenaBytes` if that is larger; a budget below `arenaBytes` is a
   * `RangeError`. Memory is only taken as messages need it.
   */
  byteBudget?: number;
  /**
   * How long, in milliseconds, an extension segment (they carry the messages above a quarter
   * of the arena) is kept for reuse once no message is in it. Past it, the segment is dropped
   * and every end unmaps it, so a queue that carried one 1.7 GB message gives that memory back
   * instead of holding it until it closes; the next such message makes (and pre-faults) a
   * new segment. Ends notice within about a second while their
   * event loop runs, or at their next call or wait. Default 10,000; 0 drops them as soon as
   * an end notices; `Infinity` keeps them while the queue lives (within `byteBudget`).
   */
  keepIdleSegmentsMs?: number;
}

const QUEUE_OPTIONS = [
  "capacity",
  "arenaBytes",
  "byteBudget",
  "keepIdleSegmentsMs",
] as const satisfies (
  keyof QueueOptions
)[];

/** Default capacity. */
export const DEFAULT_CAPACITY = 64;
/** Default arena size, where /dev/shm has room for it (see defaultArenaBytes). */
export const DEFAULT_ARENA_BYTES = 64 * 1024 * 1024;
/** Default byte budget. */
export const DEFAULT_BYTE_BUDGET = 4 * 1024 * 1024 * 1024;
/** Default time idle extension segments are kept. */
export const DEFAULT_KEEP_IDLE_SEGMENTS_MS = 10_000;

/**
 * The arena a queue gets by default: DEFAULT_ARENA_BYTES, or a quarter of /dev/shm's size
 * (less the queue's slots, so that four whole queues fit) when that is less, or an eighth of
 * the memory limit of this process's cgroup when that is less, in whole 64 KiB, at least
 * 64 KiB; and no more than a `byteBudget` given (which bounds the arena too). A container's /dev/shm of 64 MiB could not hold the full default
 * at all; a quarter leaves room for the extension segments of larger messages and for
 * other queues. A container's /dev/shm may also be larger than its memory (a Kubernetes
 * memory-backed volume is sized by the node's): there a few default queues would take most
 * of a small limit before any message, so a queue takes an eighth of it at most. By the
 * sizes, not what is free: a queue made while /dev/shm or the memory is nearly full gets
 * the arena it would get otherwise, or the clear error that there is no room, rather than a
 * small arena for good.
 */
export function defaultArenaBytes(byteBudget?: number, capacity = DEFAULT_CAPACITY): number {
  let total: number;
  try {
    total = shmTotalBytes();
  } catch {
    total = Infinity; // Making the queue reports what is wrong with /dev/shm.
  }
  const limit = cgroupLimit();
  // The quarter holds the whole main segment, its slots too: four such queues fit.
  const slots = Number.isInteger(capacity) && capacity >= 1 && capacity <= MAX_CAPACITY
    ? arenaOffsetFor(ringSizeFor(capacity))
    : 0;
  const bound = Math.min(
    DEFAULT_ARENA_BYTES,
    total / 4 - slots,
    limit / 8,
    byteBudget ?? Infinity,
  );
  return Math.max(MIN_ARENA_SIZE, Math.floor(bound / MIN_ARENA_SIZE) * MIN_ARENA_SIZE);
}

/** Checks options and fills in defaults. */
export function resolveOptions(options: QueueOptions | undefined): Geometry {
  if (options !== undefined && (typeof options !== "object" || options === null)) {
    throw new TypeError(`createSharedMemoryPair: options must be an object, got ${shown(options)}`);
  }
  if (options !== undefined) refuseUnknownOptions(options, QUEUE_OPTIONS, "createSharedMemoryPair");
  // Only a missing option takes the default: null is refused like any other non-number.
  const capacity = options?.capacity === undefined ? DEFAULT_CAPACITY : options.capacity;
  const budget = options?.byteBudget;
  const givenBudget = typeof budget === "number" && budget > 0 && Number.isFinite(budget)
    ? budget
    : undefined; // (a wrong one is refused below, as a byteBudget)
  const arenaBytes = options?.arenaBytes === undefined
    ? defaultArenaBytes(givenBudget, capacity)
    : options.arenaBytes;
  checkInteger("capacity", capacity, 1, MAX_CAPACITY);
  checkInteger("arenaBytes", arenaBytes, MIN_ARENA_SIZE, MAX_ARENA_SIZE);
  const byteBudget = options?.byteBudget === undefined
    ? Math.max(DEFAULT_BYTE_BUDGET, arenaBytes)
    : options.byteBudget;
  checkInteger(
    "byteBudget",
    byteBudget,
    arenaBytes,
    MAX_MESSAGE_SIZE,
    " (arenaBytes: it bounds the arena too)",
  );
  const keep = options?.keepIdleSegmentsMs;
  const what = "createSharedMemoryPair: keepIdleSegmentsMs";
  // timeoutOption takes null for the default; here it is refused like the other options.
  if (keep === null) throw new TypeError(`${what} must be a number of milliseconds, got null`);
  const keepIdleSegmentsMs = timeoutOption(keep, DEFAULT_KEEP_IDLE_SEGMENTS_MS, what);
  return { capacity, arenaBytes, byteBudget, keepIdleSegmentsMs };
}

function checkInteger(name: string, value: unknown, min: number, max: number, why = ""): void {
  if (typeof value !== "number") {
    throw new TypeError(`createSharedMemoryPair: ${name} must be a number, got ${shown(value)}`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `createSharedMemoryPair: ${name} must be an integer from ${min}${why} to ${max}, got ${value}`,
    );
  }
}
