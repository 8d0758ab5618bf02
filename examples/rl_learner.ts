/**
 * The learner of `rl_pipeline.ts`: borrows sampled batches in place (no copy), checks that
 * every observation holds its id, and "trains" on it (a mean over the batch).
 *
 * @module
 */

import { actorContext } from "../mod.ts";
import { borrowOrEnd, meter, OBS_FLOATS, type Report, type SampleBatch } from "./rl_common.ts";

const { queues } = await actorContext({ queues: { samples: "receiver", reports: "sender" } });
const show = meter("learner", "samples");

const start = performance.now();
let steps = 0;
let bytes = 0;
let mismatches = 0;
let loss = 0;
for (;;) {
  using lease = await borrowOrEnd<SampleBatch>(queues.samples);
  if (lease === undefined) break; // the replay buffer has finished
  const { ids, obs } = lease.value;
  const data = obs.data;
  let sum = 0;
  for (let row = 0; row < ids.data.length; row++) {
    const first = row * OBS_FLOATS;
    const id = ids.data[row];
    if (data[first] !== id || data[first + OBS_FLOATS - 1] !== id) mismatches++;
    for (let i = first; i < first + OBS_FLOATS; i += 64) sum += data[i];
  }
  loss = sum / data.length;
  steps++;
  bytes += data.byteLength;
  show(steps, bytes);
}
const seconds = (performance.now() - start) / 1000;
console.log(`learner: ${steps} samples, ${mismatches} mismatches, last loss ${loss.toFixed(1)}`);
const report: Report = {
  role: "learner",
  name: "learner",
  batches: steps,
  bytes,
  seconds,
  mismatches,
};
await queues.reports.put(report);
queues.reports.close();
if (mismatches > 0) Deno.exitCode = 1;
