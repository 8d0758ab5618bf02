/**
 * The usage example of the Python reference (py-sharedmemory), translated: a producer process
 * and a consumer process share one queue of capacity 5.
 *
 * ```sh
 * deno run --allow-ffi --allow-run examples/usage.ts [--count=20] [--size=1048576]
 * ```
 *
 * `--count` messages of `--size` bytes each; the producer is `usage_producer.ts`, the consumer
 * `usage_consumer.ts`.
 *
 * @module
 */

import { createSharedMemoryPair, spawnActor } from "../mod.ts";
import { exampleFlags, flagError, wholeFlag } from "./flags.ts";

const values = exampleFlags(
  `Usage: deno run --allow-ffi --allow-run examples/usage.ts [--count=20] [--size=1048576]

A producer process puts --count messages of --size bytes into a queue of capacity 5; a
consumer process takes them.`,
  { count: "20", size: "1048576" },
);
const count = wholeFlag(values.count, "count", 1);
const size = wholeFlag(values.size, "size", 4);
if (size % 4 !== 0) {
  flagError(`--size must be a multiple of 4 (Float32 data), got ${size}`);
}

// `using`: both ends are closed on the way out whatever happens. An actor that cannot start
// (no --allow-run) throws, and an uncaught error ends the process without the exit's own
// cleanup. Closing an end again, once an actor holds its own, does nothing.
using pair = createSharedMemoryPair({ capacity: 5 });
const [sender, receiver] = pair;

// mp.Process(target=producer_sm, args=(sender,)).start(), and the same for the consumer.
// `transfer: true` closes this process's ends once each actor holds its own, so the consumer
// sees the queue drained when the producer closes its sender.
await using producer = await spawnActor(new URL("./usage_producer.ts", import.meta.url), {
  queues: { sender },
  args: { count, size },
  transfer: true,
});
await using consumer = await spawnActor(new URL("./usage_consumer.ts", import.meta.url), {
  queues: { receiver },
  args: { count },
  transfer: true,
});

const [p, c] = await Promise.all([producer.status, consumer.status]);
console.log(`producer exited with ${p.code}, consumer with ${c.code}`);
if (!p.success || !c.success) Deno.exitCode = 1;
