/**
 * The producer of `usage.ts`: `put`, `hasSpace`, `waitForAllAck`.
 *
 * @module
 */

import { actorContext } from "../mod.ts";

const { queues: { sender }, args } = await actorContext<
  { sender: "sender" },
  { count: number; size: number }
>({ queues: { sender: "sender" } });

function yourData(idx: number) {
  return { idx, source: "producer", data: new Float32Array(args.size / 4).fill(idx) };
}

await sender.put(yourData(0)); // waits until there is space

// or
let full = 0;
for (let idx = 1; idx < args.count; idx++) {
  if (!sender.hasSpace()) full++; // here one could do other work instead of waiting
  await sender.put(yourData(idx));
}

await sender.waitForAllAck(); // wait for all data to be received before closing the sender
console.log(
  `producer: put ${args.count} messages of ${args.size} bytes ` +
    `(the queue was full ${full} times); all of them received`,
);

// Stay a moment, so that the consumer's get({ timeout }) finds the queue empty but open.
await new Promise((resolve) => setTimeout(resolve, 1000));
sender.close(); // the consumer's `for await` ends once the queue is drained
