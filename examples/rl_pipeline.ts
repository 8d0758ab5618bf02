/**
 * A reinforcement-learning-shaped pipeline: N actor processes put observation batches
 * `{ idx, source, obs: float32 [batch, 84, 84, 3] }` into one queue; a replay-buffer process
 * collects them and serves randomly sampled batches to a learner process through a second
 * queue. Batches are written in place (`prepare` + `reserve`) and read in place (`borrow`).
 * Every process prints its throughput as it runs; this one prints a summary at the end.
 *
 * ```sh
 * deno run --allow-ffi --allow-run examples/rl_pipeline.ts \
 *   [--actors=2] [--batches=100] [--batch=32] [--sample=32] [--buffer=1024]
 * ```
 *
 * `--batches` per actor, `--batch` observations per batch, `--sample` observations per sampled
 * batch, `--buffer` observations held by the replay buffer.
 *
 * @module
 */

import { type ActorHandle, createSharedMemoryPair, spawnActor } from "../mod.ts";
import { OBS_FLOATS, type Report } from "./rl_common.ts";
import { exampleFlags, flagError, wholeFlag } from "./flags.ts";

const values = exampleFlags(
  `Usage: deno run --allow-ffi --allow-run examples/rl_pipeline.ts [--actors=2] [--batches=100]
       [--batch=32] [--sample=32] [--buffer=1024]

Actor processes put observation batches into a replay buffer process, which serves sampled
batches to a learner process. --batches per actor, --batch observations per batch, --sample
observations per sampled batch, --buffer observations held by the replay buffer.`,
  { actors: "2", batches: "100", batch: "32", sample: "32", buffer: "1024" },
);
const actors = wholeFlag(values.actors, "actors", 1);
const batches = wholeFlag(values.batches, "batches", 1);
const batch = wholeFlag(values.batch, "batch", 1);
const sample = wholeFlag(values.sample, "sample", 1);
const buffer = wholeFlag(values.buffer, "buffer", 1);
if (buffer < sample) flagError("--buffer must hold at least --sample observations");
if (actors * batches * batch >= 2 ** 24) {
  flagError("--actors × --batches × --batch must stay below 2^24 (ids exact in float32)");
}

const here = (file: string) => new URL(file, import.meta.url);
const MiB = 1024 * 1024;
/** An arena that holds `slots` messages of `bytes`, and at least 4 (so none goes to an
 * extension segment). */
const arenaFor = (slots: number, bytes: number) =>
  Math.ceil((Math.max(slots, 4) * (bytes + 64 * 1024)) / MiB) * MiB;

const batchBytes = batch * OBS_FLOATS * 4;
const sampleBytes = sample * OBS_FLOATS * 4;
const [obsOut, obsIn] = createSharedMemoryPair({
  capacity: 8,
  arenaBytes: arenaFor(8, batchBytes),
});
const [samplesOut, samplesIn] = createSharedMemoryPair({
  capacity: 4,
  arenaBytes: arenaFor(4, sampleBytes),
});
const [reportsOut, reportsIn] = createSharedMemoryPair({ capacity: 16, arenaBytes: 64 * 1024 });

const start = performance.now();
const processes: ActorHandle[] = [];
try {
  processes.push(
    await spawnActor(here("./rl_learner.ts"), {
      queues: { samples: samplesIn, reports: reportsOut },
    }),
  );
  processes.push(
    await spawnActor(here("./rl_replay.ts"), {
      queues: { obs: obsIn, samples: samplesOut, reports: reportsOut },
      args: { capacity: buffer, sample, seed: 1 },
    }),
  );
  for (let actor = 0; actor < actors; actor++) {
    processes.push(
      await spawnActor(here("./rl_actor.ts"), {
        queues: { obs: obsOut, reports: reportsOut },
        args: { actor, batches, batch },
      }),
    );
  }
  // Every process holds its own ends now: close ours, so that each queue is seen drained
  // once its producers finish.
  for (const end of [obsOut, obsIn, samplesOut, samplesIn, reportsOut]) end.close();

  const reports: Report[] = [];
  for await (const report of reportsIn) reports.push(report as Report);
  const statuses = await Promise.all(processes.map((p) => p.status));
  const seconds = (performance.now() - start) / 1000;

  const produced = reports.filter((r) => r.role === "actor").reduce((n, r) => n + r.batches, 0);
  const replay = reports.find((r) => r.role === "replay");
  const learner = reports.find((r) => r.role === "learner");
  const expectedSamples = Math.max(0, actors * batches - Math.ceil(sample / batch) + 1);
  const gb = (bytes: number) => (bytes / 1e9).toFixed(2);
  console.log(
    `pipeline: ${actors} actors put ${produced} batches (${gb(produced * batchBytes)} GB), ` +
      `the learner got ${learner?.batches} samples (${gb(learner?.bytes ?? 0)} GB) ` +
      `in ${seconds.toFixed(2)} s: ` +
      `${gb(produced * batchBytes / seconds)} GB/s into the replay buffer, ` +
      `${gb((learner?.bytes ?? 0) / seconds)} GB/s to the learner`,
  );
  // What went wrong, if anything: which process, and which count.
  const names = ["learner", "replay", ...Array.from({ length: actors }, (_, i) => `actor ${i}`)];
  const problems = statuses.flatMap((s, i) =>
    s.success ? [] : [`${names[i]} exited with ${s.signal ?? `code ${s.code}`}`]
  );
  const expect = (what: string, got: number | undefined, wanted: number) => {
    if (got !== wanted) problems.push(`${what}: ${got ?? "no report"}, expected ${wanted}`);
  };
  expect("batches put by the actors", produced, actors * batches);
  expect("batches the replay buffer took", replay?.batches, actors * batches);
  expect("samples the replay buffer served", replay?.sampled, expectedSamples);
  expect("samples the learner got", learner?.batches, expectedSamples);
  expect("samples that did not match what was put", learner?.mismatches, 0);
  console.log(problems.length === 0 ? "pipeline: ok" : `pipeline: FAILED: ${problems.join("; ")}`);
  if (problems.length > 0) Deno.exitCode = 1;
} finally {
  for (const end of [obsOut, obsIn, samplesOut, samplesIn, reportsOut, reportsIn]) end.close();
  for (const p of processes) await p[Symbol.asyncDispose]();
}
