/**
 * `putMany` against `putSync` for small messages, two Deno processes: this process receives
 * (`getSync`, plain and pooled), a child it spawns sends 1M messages one at a time or in
 * batches. Not part of `deno task bench`, which measures one message per call throughout.
 *
 * Run: `deno run -A bench/put_many.ts [size in bytes, default 100]`
 *
 * @module
 */

import { createSharedMemoryPair, openSender } from "../mod.ts";

const MESSAGES = 1_000_000;
const BATCHES = [1, 16, 64];
const CAPACITY = 256;

const [first, batchArg, descriptor] = Deno.args;
const size = Number(first ?? 100);

if (descriptor !== undefined) {
  // The sending child: `put_many.ts <size> <batch> <descriptor>`.
  using sender = openSender(descriptor);
  const payload = new Uint8Array(size);
  const batchSize = Number(batchArg);
  const batch = Array.from({ length: batchSize }, () => payload);
  for (let n = 0; n < MESSAGES; n += batchSize) {
    if (batchSize === 1) sender.putSync(payload);
    else sender.putManySync(batch);
  }
} else {
  for (const batchSize of BATCHES) {
    for (const pooled of [false, true]) {
      const [sender, receiver] = createSharedMemoryPair({ capacity: CAPACITY });
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          import.meta.filename!,
          String(size),
          String(batchSize),
          JSON.stringify(sender.descriptor),
        ],
      }).spawn();
      receiver.getSync(); // the child's first message: it is running
      sender.close(); // the child's end keeps the queue open
      const options = pooled ? { pooled: true } : undefined;
      const started = performance.now();
      for (let n = 1; n < MESSAGES; n++) receiver.getSync(options);
      const ms = performance.now() - started;
      await child.status;
      receiver.close();
      const sends = batchSize === 1 ? "putSync" : `putManySync of ${batchSize}`;
      const gets = pooled ? "getSync({ pooled: true })" : "getSync()";
      console.log(`${size} B, ${sends} → ${gets}: ${(MESSAGES / ms / 1000).toFixed(2)}M msg/s`);
    }
  }
}
