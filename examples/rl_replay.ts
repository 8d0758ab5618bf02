/**
 * The replay buffer of `rl_pipeline.ts`: collects observation batches from the actors (borrowed
 * in place and copied once, into its own storage), and after each one serves a batch of
 * randomly sampled observations to the learner, written straight into shared memory.
 *
 * @module
 */

import { actorContext, reserve } from "../mod.ts";
import {
  borrowOrEnd,
  meter,
  OBS_FLOATS,
  type ObservationBatch,
  prng,
  type Report,
  type SampleBatch,
} from "./rl_common.ts";

const { queues, args } = await actorContext<
  { obs: "receiver"; samples: "sender"; reports: "sender" },
  { capacity: number; sample: number; seed: number }
>({ queues: { obs: "receiver", samples: "sender", reports: "sender" } });
const { capacity, sample } = args;

const store = new Float32Array(capacity * OBS_FLOATS);
const ids = new Int32Array(capacity);
let size = 0;
let next = 0;
const random = prng(args.seed);
const show = meter("replay", "batches in");

const start = performance.now();
let ingested = 0;
let ingestedBytes = 0;
let served = 0;
for (;;) {
  {
    using lease = await borrowOrEnd<ObservationBatch>(queues.obs);
    if (lease === undefined) break; // every actor has finished
    const data = lease.value.obs.data; // a view into shared memory, valid until released
    const rows = lease.value.obs.shape[0];
    for (let row = 0; row < rows; row++) {
      const frame = data.subarray(row * OBS_FLOATS, (row + 1) * OBS_FLOATS);
      store.set(frame, next * OBS_FLOATS);
      ids[next] = frame[0];
      next = (next + 1) % capacity;
      size = Math.min(size + 1, capacity);
    }
    ingested++;
    ingestedBytes += data.byteLength;
  } // released here: the actor's space is free again
  show(ingested, ingestedBytes);

  if (size < sample) continue;
  using draft = await queues.samples.prepare<SampleBatch>({
    step: served,
    ids: reserve("int32", [sample]),
    obs: reserve("float32", [sample, 84, 84, 3]),
  });
  const out = draft.value.obs.data;
  for (let row = 0; row < sample; row++) {
    const pick = Math.floor(random() * size);
    draft.value.ids.data[row] = ids[pick];
    out.set(store.subarray(pick * OBS_FLOATS, (pick + 1) * OBS_FLOATS), row * OBS_FLOATS);
  }
  draft.send();
  served++;
}
queues.samples.close(); // the learner stops once it has drained what was served
const seconds = (performance.now() - start) / 1000;
console.log(`replay: took in ${ingested} batches, served ${served} samples`);
const report: Report = {
  role: "replay",
  name: "replay",
  batches: ingested,
  bytes: ingestedBytes,
  seconds,
  sampled: served,
};
await queues.reports.put(report);
queues.reports.close();
