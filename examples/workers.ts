/**
 * Workers in one process sharing a queue: this thread puts image-like jobs (NdArrays) into
 * one queue; several Workers each open a receiver on it (every job goes to exactly one of
 * them), borrow each job in place, and put a small result into a second queue that this
 * thread reads until every Worker has closed it.
 *
 * ```sh
 * deno run --allow-ffi --allow-read examples/workers.ts [--workers=3] [--jobs=200] [--size=256]
 * ```
 *
 * `--size` is the side of the square float32 RGB images.
 *
 * @module
 */

import { createSharedMemoryPair, NdArray, spawnWorker, type WorkerHandle } from "../mod.ts";
import { exampleFlags, wholeFlag } from "./flags.ts";

const values = exampleFlags(
  `Usage: deno run --allow-ffi --allow-read examples/workers.ts [--workers=3] [--jobs=200]
       [--size=256]

This thread puts --jobs square float32 RGB images of side --size into a queue that --workers
Workers share; each borrows its jobs in place and puts a small result into a second queue.`,
  { workers: "3", jobs: "200", size: "256" },
);
const workers = wholeFlag(values.workers, "workers", 1);
const jobs = wholeFlag(values.jobs, "jobs", 1);
const size = wholeFlag(values.size, "size", 1);

// `using`: closed on the way out whatever happens (an uncaught error skips the exit's own
// cleanup); closing an end again does nothing.
using jobQueue = createSharedMemoryPair({ capacity: 16 });
using resultQueue = createSharedMemoryPair({ capacity: 64 });
const [jobsOut, jobsIn] = jobQueue;
const [resultsOut, resultsIn] = resultQueue;

const handles: WorkerHandle[] = [];
for (let i = 0; i < workers; i++) {
  handles.push(
    await spawnWorker(new URL("./workers_worker.ts", import.meta.url), {
      name: `worker_${i}`,
      queues: { jobs: jobsIn, results: resultsOut },
      args: { name: `worker_${i}` },
    }),
  );
}
// The Workers hold their own ends now.
jobsIn.close();
resultsOut.close();

const start = performance.now();
const expected = new Float64Array(jobs);
const putting = (async () => {
  try {
    const image = NdArray.zeros("float32", [size, size, 3]);
    for (let id = 0; id < jobs; id++) {
      image.data.fill(id % 251); // every pixel of job `id` holds id % 251
      expected[id] = id % 251;
      await jobsOut.put({ id, image }); // copied into shared memory
    }
  } finally {
    jobsOut.close(); // the Workers' loops end once the queue is drained, a failed put's too
  }
})();
// Awaited after the results: a put's error left unhandled until then would end the process
// at once, before `using` closes the queues.
putting.catch(() => {});

const perWorker = new Map<string, number>();
const seen = new Set<number>();
let wrong = 0;
for await (const message of resultsIn) {
  const { id, worker, mean } = message as { id: number; worker: string; mean: number };
  if (seen.has(id) || mean !== expected[id]) wrong++;
  seen.add(id);
  perWorker.set(worker, (perWorker.get(worker) ?? 0) + 1);
}
await putting;
const seconds = (performance.now() - start) / 1000;
resultsIn.close();
for (const handle of handles) await handle.close();

const gb = (jobs * size * size * 3 * 4) / 1e9;
console.log(
  `workers: ${seen.size} of ${jobs} jobs done in ${seconds.toFixed(2)} s ` +
    `(${(gb / seconds).toFixed(2)} GB/s), by ` +
    [...perWorker].sort().map(([w, n]) => `${w}: ${n}`).join(", "),
);
const ok = seen.size === jobs && wrong === 0;
console.log(ok ? "workers: ok" : `workers: FAILED (${wrong} wrong or repeated results)`);
if (!ok) Deno.exitCode = 1;
