/**
 * Async waits of one process share their sleeping threads (queue/wait_hub.ts): many idle
 * async gets must not take Deno's blocking pool from each other or from Deno's own async
 * operations. Run in a child process, whose pool no other test has grown.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runDeno } from "./helpers.ts";

Deno.test("300 async gets sleeping in one process hold a few threads, and each gets its message", async () => {
  const mod = JSON.stringify(new URL("../mod.ts", import.meta.url).href);
  const code = `
    import { createSharedMemoryPair } from ${mod};
    const threads = () => [...Deno.readDirSync("/proc/self/task")].length;
    const queues = Array.from({ length: 150 }, () =>
      createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 }));
    const before = threads();
    const gets = queues.flatMap(([, r]) => [r.get(), r.get()]);
    await new Promise((resolve) => setTimeout(resolve, 500)); // all asleep
    const asleep = threads();
    await Deno.readTextFile("/proc/self/stat"); // an op of Deno's blocking pool
    queues.forEach(([s], i) => { s.putSync(2 * i); s.putSync(2 * i + 1); });
    const got = await Promise.all(gets);
    for (const [s, r] of queues) { s.close(); r.close(); }
    console.log(JSON.stringify({ added: asleep - before, got }));
  `;
  const out = await runDeno(["eval", code]);
  const { added, got } = JSON.parse(out) as { added: number; got: number[] };
  // Before: a pool thread per sleeping get, up to the pool's ~32.
  assert.ok(added <= 8, `${added} threads added for 300 sleeping gets`);
  assert.deepEqual(got, [...Array(300).keys()]);
});
