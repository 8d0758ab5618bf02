/**
 * Making queues and opening their ends.
 *
 * @module
 */

import { parseDescriptor, type QueueDescriptor } from "./descriptor.ts";
import { type QueueOptions, resolveOptions } from "./options.ts";
import { Receiver } from "./receiver.ts";
import { Sender } from "./sender.ts";
import { SharedQueue } from "./shared_queue.ts";
import { sweepStaleQueues } from "./sweep.ts";
import { namingCall } from "./errors.ts";
import { refuseIfStopped } from "./stop.ts";

/** Later ends sweep again at most this often: a long-running process then also removes what
 * its killed children's own queues left, while a loop that makes many small queues pays for a
 * sweep (0.1-0.4 ms measured with 0-50 queues in /dev/shm) at most once a second. */
const SWEEP_INTERVAL_MS = 1000;
let lastSweep = -Infinity;

/** Removes what dead processes left: on the first queue end a process makes or opens, and
 * again on a later one once SWEEP_INTERVAL_MS have passed. An end opened from a descriptor
 * sweeps after it has opened: a queue whose ends all died (its messages still in it) then
 * opens whether or not this process's sweep was due, instead of being removed by it first. */
function sweepNowAndThen(): void {
  const now = performance.now();
  if (now - lastSweep < SWEEP_INTERVAL_MS) return;
  lastSweep = now;
  try {
    sweepStaleQueues();
  } catch {
    // Leftovers of others are no reason to refuse this end; sweepStaleQueues() reports.
  }
}

/**
 * The two ends {@linkcode createSharedMemoryPair} returns. Disposing the pair closes both (a
 * `using` declaration then closes them however the scope ends, an uncaught error included,
 * which skips the exit's own cleanup); closing an end again does nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair } from "../mod.ts";
 * {
 *   using pair = createSharedMemoryPair();
 *   const [sender, receiver] = pair;
 *   await sender.put("hi");
 *   assert.ok(await receiver.get() === "hi");
 * } // both ends are closed here
 * ```
 */
export type SharedMemoryPair = [sender: Sender, receiver: Receiver] & Disposable;

/**
 * Creates a queue in shared memory and returns its two ends (a {@linkcode SharedMemoryPair}:
 * `using pair = createSharedMemoryPair()` closes both on the way out). Pass
 * `sender.descriptor` or `receiver.descriptor` to other processes or Workers and open more
 * ends there with {@linkcode openSender} and {@linkcode openReceiver}: any number of each may
 * share a queue.
 *
 * Making or opening a queue end also removes the entries left in /dev/shm by queues whose
 * processes all died (see `sweepStaleQueues`; at most once a second). Ends still open when
 * the process exits normally are closed then, so the last one out unlinks the queue.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair({ capacity: 5 });
 * await sender.put("your data");
 * assert.ok(await receiver.get() === "your data");
 * sender.close();
 * receiver.close();
 * ```
 */
export function createSharedMemoryPair(options?: QueueOptions): SharedMemoryPair {
  refuseIfStopped("createSharedMemoryPair");
  const geometry = resolveOptions(options);
  sweepNowAndThen();
  try {
    const senderQueue = SharedQueue.create(geometry, "sender");
    try {
      const sender = new Sender(senderQueue);
      const receiver = new Receiver(SharedQueue.open(senderQueue.name, "receiver"));
      const pair = [sender, receiver];
      // Not enumerable: the pair spreads, prints and compares as the two ends alone.
      Object.defineProperty(pair, Symbol.dispose, {
        value: () => {
          sender.close();
          receiver.close();
        },
      });
      return pair as SharedMemoryPair;
    } catch (error) {
      senderQueue.close();
      throw error;
    }
  } catch (error) {
    throw namingCall(error, "createSharedMemoryPair");
  }
}

/**
 * Opens a new sending end of an existing queue, from a descriptor made in this or another
 * process (either end's descriptor works). Accepts the descriptor object or its JSON text,
 * and validates it: a descriptor can only name a queue of this library.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, openSender } from "../mod.ts";
 * const [first, receiver] = createSharedMemoryPair();
 * const second = openSender(JSON.stringify(receiver.descriptor)); // as another process would
 * await second.put(2);
 * assert.ok(await receiver.get() === 2);
 * first.close();
 * second.close();
 * receiver.close();
 * ```
 */
export function openSender(descriptor: QueueDescriptor | string): Sender {
  refuseIfStopped("openSender");
  const { name } = parseDescriptor(descriptor, "openSender");
  try {
    return new Sender(SharedQueue.open(name, "sender"));
  } catch (error) {
    throw namingCall(error, "openSender");
  } finally {
    // After the open: see sweepNowAndThen.
    sweepNowAndThen();
  }
}

/**
 * Opens a new receiving end of an existing queue from a descriptor (object or JSON text).
 * Receivers share the stream: each message goes to exactly one of them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, openReceiver } from "../mod.ts";
 * const [sender, first] = createSharedMemoryPair();
 * const second = openReceiver(sender.descriptor);
 * await sender.put("once");
 * const got = first.getNowait() ?? second.getNowait();
 * assert.ok(got === "once");
 * sender.close();
 * first.close();
 * second.close();
 * ```
 */
export function openReceiver(descriptor: QueueDescriptor | string): Receiver {
  refuseIfStopped("openReceiver");
  const { name } = parseDescriptor(descriptor, "openReceiver");
  try {
    return new Receiver(SharedQueue.open(name, "receiver"));
  } catch (error) {
    throw namingCall(error, "openReceiver");
  } finally {
    // After the open: see sweepNowAndThen.
    sweepNowAndThen();
  }
}
