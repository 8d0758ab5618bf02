/**
 * Batches against single calls for small messages, two Deno processes: this process
 * receives, a child it spawns sends 1M messages, one `putSync` at a time or `putManySync`
 * batches. Receivers: `getSync`, plain and pooled; async `get` and `getMany`, pooled. Not part
 * of `deno task bench`, which measures one message per call throughout (but for its putMany
 * case).
 *
 * Run: `deno run -A bench/put_many.ts [size in bytes, default 100]`
 *
 * @module
 */

import { createSharedMemoryPair, openSender, type Receiver } from "../mod.ts";

const MESSAGES = 1_000_000;
const BATCHES = [1, 16];
const CAPACITY = 256;
/** Messages per `getMany`. */
const TAKE = 16;

const RECEIVERS: [string, (r: Receiver, left: number) => Promise<number> | number][] = [
  ["getSync()", (r) => (r.getSync(), 1)],
  ["getSync({ pooled: true })", (r) => (r.getSync({ pooled: true }), 1)],
  ["await get({ pooled: true })", async (r) => (await r.get({ pooled: true }), 1)],
  [
    `await getMany(${TAKE}, { pooled: true })`,
    async (r, left) => (await r.getMany(Math.min(TAKE, left), { pooled: true })).length,
  ],
];

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
    for (const [gets, take] of RECEIVERS) {
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
      const started = performance.now();
      for (let n = 1; n < MESSAGES;) n += await take(receiver, MESSAGES - n);
      const ms = performance.now() - started;
      await child.status;
      receiver.close();
      const sends = batchSize === 1 ? "putSync" : `putManySync of ${batchSize}`;
      console.log(`${size} B, ${sends} → ${gets}: ${(MESSAGES / ms / 1000).toFixed(2)}M msg/s`);
    }
  }
}
