/**
 * An actor of `rl_pipeline.ts`: "plays" and puts observation batches
 * `{ idx, source, obs: float32 [batch, 84, 84, 3] }` into the observation queue, writing each
 * batch straight into shared memory (`prepare` + `reserve`: no copy).
 *
 * Every observation is filled with its id, a number unique in the whole run, so that the
 * learner can check that what arrives is what was written.
 *
 * @module
 */

import { actorContext, reserve } from "../mod.ts";
import { OBS_FLOATS, type ObservationBatch, type Report } from "./rl_common.ts";

const { queues, args } = await actorContext<
  { obs: "sender"; reports: "sender" },
  { actor: number; batches: number; batch: number }
>({ queues: { obs: "sender", reports: "sender" } });
const { actor, batches, batch } = args;
const source = `actor_${actor}`;

const start = performance.now();
for (let idx = 0; idx < batches; idx++) {
  using draft = await queues.obs.prepare<ObservationBatch>({
    idx,
    source,
    obs: reserve("float32", [batch, 84, 84, 3]),
  });
  const data = draft.value.obs.data; // a view into shared memory
  for (let row = 0; row < batch; row++) {
    const id = (actor * batches + idx) * batch + row + 1;
    data.fill(id, row * OBS_FLOATS, (row + 1) * OBS_FLOATS); // "render" the frame in place
  }
  draft.send();
}
const seconds = (performance.now() - start) / 1000;
const bytes = batches * batch * OBS_FLOATS * 4;
console.log(
  `${source}: put ${batches} batches in ${seconds.toFixed(2)} s ` +
    `(${(bytes / seconds / 1e9).toFixed(2)} GB/s)`,
);
queues.obs.close();
await queues.reports.put({ role: "actor", name: source, batches, bytes, seconds } as Report);
queues.reports.close();
