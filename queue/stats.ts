/**
 * What `Sender.stats()` and `Receiver.stats()` report.
 *
 * @module
 */

/**
 * A snapshot of a queue, the same from every end, for monitoring: how far behind the
 * receivers are, how much shared memory messages hold, who is still there. Taken under the
 * queue's lock, so its figures agree with each other, and the totals (`put`, `received`) never
 * go down from one snapshot to the next, whichever end takes them. A participant killed
 * inside the lock may leave them one short. While a peer keeps the lock for more than 2 ms
 * (stopped, hung, or descheduled on a loaded machine), the snapshot is read without it rather
 * than wait: releases not yet settled still count in flight, and a holder that is only slow
 * may move a figure while it is read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, type QueueStats } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair({ capacity: 8 });
 * sender.putManySync(["a", "b", "c"]);
 * receiver.getSync();
 * const stats: QueueStats = sender.stats();
 * assert.equal(stats.waiting, 2);
 * assert.equal(stats.put - stats.received, 2);
 * sender.close();
 * receiver.close();
 * ```
 */
export interface QueueStats {
  /** Messages put and not yet taken by a receiver. */
  waiting: number;
  /**
   * Messages put (or being written) and not yet released by a receiver: what `capacity`
   * bounds. A message a receiver holds, as a `Lease`, counts until it is released.
   */
  inFlight: number;
  /** The most messages in flight at once (the queue's `capacity` option). */
  capacity: number;
  /** Messages put since the queue was made and visible to receivers: not one still being
   * written (a `Draft` before `send()`), nor one given up (cancelled, or its sender died). */
  put: number;
  /** Messages receivers took and released since the queue was made (one taken by a receiver
   * that died counts too). */
  received: number;
  /** Bytes of shared memory the messages in flight hold: their arena space (in 64-byte
   * blocks) and the extension segments of those too large for the arena. */
  bytesInUse: number;
  /** The queue's `byteBudget` option: the most bytes the arena and extension segments may
   * take (one message may pass it). */
  byteBudget: number;
  /** Bytes of shared memory the queue has in /dev/shm now: its main segment (arena
   * included) and its extension segments, idle ones kept for reuse included. */
  sharedBytes: number;
  /** Senders open now. One whose process died counts until an end notices: within about a
   * second of a call of any end that waits or polls (`stats()` looks, too, every 0.2 s). */
  senders: number;
  /** Receivers open now, the same way. */
  receivers: number;
  /** Senders that ended without closing (killed, crashed, their Worker ended) since the
   * queue was made. */
  sendersDied: number;
  /** Receivers that ended without closing since the queue was made. */
  receiversDied: number;
}
