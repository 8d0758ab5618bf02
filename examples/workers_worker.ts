/**
 * A Worker of `workers.ts`: takes jobs from the shared queue, reads each image in place
 * (`borrow`), and puts the image's mean into the results queue.
 *
 * @module
 */

import { ClosedError, type NdArray, workerContext } from "../mod.ts";

using context = await workerContext<
  { jobs: "receiver"; results: "sender" },
  { name: string }
>({ queues: { jobs: "receiver", results: "sender" } });
const { queues: { jobs, results }, args } = context;

for (;;) {
  let lease;
  try {
    lease = await jobs.borrow<{ id: number; image: NdArray<Float32Array> }>();
  } catch (error) {
    if (error instanceof ClosedError) break; // drained: no more jobs (or closed by the parent)
    throw error;
  }
  const { id, image } = lease.value;
  let sum = 0;
  for (let i = 0; i < image.data.length; i++) sum += image.data[i];
  const mean = sum / image.data.length;
  lease.release();
  await results.put({ id, worker: args.name, mean });
}
// Leaving the scope closes both ends (`using`): the parent's loop ends once every Worker has.
