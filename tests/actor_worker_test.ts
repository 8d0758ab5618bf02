/**
 * Module Workers that receive queue ends: handoff, several Workers on one queue, failures,
 * and closing a Worker's ends from the parent.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ActorError,
  ClosedError,
  createSharedMemoryPair,
  FullError,
  NdArray,
  openReceiver,
  type Receiver,
  type Sender,
  spawnWorker,
  workerContext,
  type WorkerHandle,
} from "../mod.ts";
import { type Echo, FIXTURE, leaksSince, shmSnapshot } from "./actor_fixture_test.ts";
import { CHILD_PERMISSIONS, fixture, leakedSince, mappedFiles, shmEntries } from "./helpers.ts";

function clean(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    const before = shmSnapshot();
    await fn();
    assert.deepEqual(await leaksSince(before), [], "left in /dev/shm");
  };
}

Deno.test(
  "spawnWorker hands named queue ends and codec-encoded args to a Worker",
  clean(async () => {
    const [toWorker, workerIn] = createSharedMemoryPair({ capacity: 4 });
    const [workerOut, fromWorker] = createSharedMemoryPair({ capacity: 4 });
    const args = { big: -(1n << 65n), shape: new NdArray("uint16", [2, 2]) };
    await using worker = await spawnWorker(FIXTURE, {
      name: "echo",
      queues: { in: workerIn, out: workerOut },
      args,
      transfer: true,
    });
    assert.ok(workerIn.closed && workerOut.closed);
    assert.ok(worker.worker instanceof Worker);

    const echoes: Echo[] = [];
    const reading = (async () => {
      for await (const m of fromWorker) echoes.push(m as Echo);
    })();
    for (let i = 0; i < 10; i++) await toWorker.put(i);
    toWorker.close();
    await reading;
    fromWorker.close();
    assert.deepEqual(echoes.map((e) => e.got), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(echoes[0].by, "worker");
    const back = echoes[0].args as typeof args;
    assert.equal(back.big, -(1n << 65n));
    assert.ok(back.shape instanceof NdArray, "NdArray survives (the codec, not structured clone)");
  }),
);

Deno.test(
  "several Workers share one queue: each message reaches exactly one of them",
  clean(async () => {
    const [jobs, jobsIn] = createSharedMemoryPair({ capacity: 8 });
    const [totalsOut, totals] = createSharedMemoryPair({ capacity: 8 });
    const workers: WorkerHandle[] = [];
    for (const name of ["sum", "sum", "sum"]) {
      workers.push(
        await spawnWorker(FIXTURE, {
          name,
          queues: { in: jobsIn, out: totalsOut },
          args: { name: `w${workers.length}` },
        }),
      );
    }
    jobsIn.close();
    totalsOut.close();
    let expected = 0;
    for (let value = 1; value <= 300; value++) {
      await jobs.put({ value });
      expected += value;
    }
    jobs.close();
    let total = 0;
    let count = 0;
    for await (const m of totals) {
      total += (m as { total: number }).total;
      count += (m as { count: number }).count;
    }
    totals.close();
    assert.equal(count, 300);
    assert.equal(total, expected);
    for (const w of workers) await w.close();
  }),
);

Deno.test(
  "actorContext() in a Worker says to call workerContext(), and spawnWorker rejects at once",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
    const started = performance.now();
    // Before: "not started by spawnActor (it may not read SHMQ_ACTOR_PARENT, …)", nothing on
    // workerContext().
    await assert.rejects(
      () => spawnWorker(FIXTURE, { name: "actorContextInWorker", queues: { inbox: receiver } }),
      (e) =>
        e instanceof ActorError &&
        /actorContext: this is a Worker, .* call workerContext\(\)/.test(e.message),
    );
    assert.ok(performance.now() - started < 30_000, "not its readyTimeout");
    sender.close();
    receiver.close();
  }),
);

Deno.test("workerContext() in a Worker made with new Worker() warns that no queues came", async () => {
  const { stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...CHILD_PERMISSIONS, FIXTURE.pathname, "plainWorkerContext"],
    stdout: "null",
    stderr: "piped",
  }).output();
  // Before: nothing, while the Worker waited for good.
  assert.match(
    new TextDecoder().decode(stderr),
    /workerContext: no queues from spawnWorker\(\) after 5 s: a Worker made with new Worker\(\) gets none/,
  );
});

Deno.test(
  "spawnWorker rejects and terminates a Worker that fails to load or expects other queues",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
    await assert.rejects(
      () => spawnWorker(FIXTURE, { name: "throws", queues: { inbox: receiver } }),
      (e) => e instanceof ActorError && /this Worker fails on load/.test(e.message),
    );
    await assert.rejects(
      () => spawnWorker(FIXTURE, { name: "mismatch", queues: { inbox: receiver } }),
      (e) =>
        e instanceof ActorError &&
        /expected "inbox" to be a sender, but the parent handed a receiver/.test(e.message),
    );
    await assert.rejects(
      () => spawnWorker(FIXTURE, { name: "mismatch", queues: { inbox: sender, more: receiver } }),
      (e) =>
        e instanceof ActorError &&
        /the parent handed "more" \(a receiver\), which options\.queues does not name/.test(
          e.message,
        ),
    );
    // Aborted while it starts (this role never calls workerContext()): the reason is kept.
    const stop = new AbortController();
    const starting = spawnWorker(FIXTURE, {
      name: "neverReady",
      queues: { inbox: receiver },
      signal: stop.signal,
      readyTimeout: Infinity,
    });
    const reason = new Error("the user pressed cancel");
    setTimeout(() => stop.abort(reason), 100);
    await assert.rejects(
      () => starting,
      (e) => e instanceof ActorError && /aborted/.test(e.message) && e.cause === reason,
    );
    sender.close();
    receiver.close();
  }),
);

Deno.test(
  "WorkerHandle.close() of a Worker that ended itself returns without waiting out its timeout",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
    const worker = await spawnWorker(FIXTURE, { name: "selfClose", queues: { inbox: receiver } });
    const said = new Promise((resolve) =>
      worker.worker.addEventListener("message", resolve, { once: true })
    );
    worker.worker.postMessage("close yourself");
    await said;
    // Before, close() waited for an answer that could never come, all of its timeout.
    const closed = worker.close({ timeout: 60_000 });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise((resolve) => timer = setTimeout(() => resolve("late"), 10_000));
    assert.equal(await Promise.race([closed.then(() => "closed"), late]), "closed");
    clearTimeout(timer);
    sender.close();
    receiver.close();
  }),
);

Deno.test(
  "WorkerHandle.close() leaves none of the Worker's memory mapped, though its wait returns late",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
    const { name } = sender.descriptor;
    const mapsOf = () => mappedFiles().filter((file) => file.includes(name)).length;
    const own = mapsOf();
    for (let i = 0; i < 3; i++) {
      {
        await using _worker = await spawnWorker(FIXTURE, {
          name: "idleBusy",
          queues: { inbox: openReceiver(sender.descriptor) },
          transfer: true,
        });
        await new Promise((ok) => setTimeout(ok, 50)); // its get asleep
      }
      // The Worker unmapped its end before it told the parent it had closed: nothing here
      // (which would reclaim it at its next open, wait or close) had to.
      assert.equal(mapsOf(), own, `cycle ${i}: only this thread's ends are mapped`);
    }
    sender.close();
    receiver.close();
    assert.equal(mapsOf(), 0);
  }),
);

Deno.test(
  "WorkerHandle.close() closes the Worker's queue ends before terminating it",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
    const worker = await spawnWorker(FIXTURE, {
      name: "idle",
      queues: { inbox: receiver },
      transfer: true,
    });
    await worker.close();
    // The Worker's receiver was the only one: closed, not leaked, so put fails at once.
    await assert.rejects(
      () => sender.put(1),
      (e) => e instanceof ClosedError && e.reason === "no-receivers",
    );
    sender.close();
  }),
);

Deno.test(
  "spawnWorker takes absolute paths with # in them, and timeouts beyond a timer's reach",
  clean(async () => {
    const dir = await Deno.makeTempDir({ prefix: "shmq-worker-" });
    try {
      const path = `${dir}/idle #1?worker.ts`;
      await Deno.writeTextFile(
        path,
        `import { ClosedError, workerContext } from ${
          JSON.stringify(new URL("../mod.ts", import.meta.url).href)
        };
        const { queues } = await workerContext({ queues: { inbox: "receiver" } });
        try { await queues.inbox.get(); } catch (e) { if (!(e instanceof ClosedError)) throw e; }`,
      );
      const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
      // A readyTimeout of 2^31 ms fired at once before (Deno clamps such timers to 1 ms).
      const worker = await spawnWorker(path, {
        queues: { inbox: receiver },
        transfer: true,
        readyTimeout: 2 ** 31,
      });
      await worker.close({ timeout: Infinity });
      await assert.rejects(
        () => sender.put(1),
        (e) => e instanceof ClosedError && e.reason === "no-receivers",
      );
      await assert.rejects(() => worker.close({ timeout: -1 }), RangeError);
      sender.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);

Deno.test(
  "close() of a Worker that already failed returns at once",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
    const worker = await spawnWorker(FIXTURE, {
      name: "throwsLater",
      queues: { inbox: receiver },
      transfer: true,
    });
    // Handled here, the Worker's error does not end this process; the Worker is gone.
    const failed = new Promise<void>((resolve) =>
      worker.worker.addEventListener("error", (event) => {
        event.preventDefault();
        resolve();
      })
    );
    await failed;
    const started = performance.now();
    await worker.close({ timeout: 20_000 }); // it could only time out: nobody answers
    const ms = performance.now() - started;
    assert.ok(ms < 5_000, `close took ${ms} ms`);
    // Its end is dead: a wait notices, and the queue goes with the last end here.
    await sender.put(1);
    await assert.rejects(
      sender.waitForAllAck({ timeout: 10_000 }),
      (e) => e instanceof ClosedError && e.reason === "no-receivers",
    );
    sender.close();
  }),
);

/** A Worker echoing in a loop of getSync/putSync, once it has answered a first job. */
async function syncEchoAnswering(): Promise<{
  jobs: Sender;
  results: Receiver;
  worker: WorkerHandle;
}> {
  const [jobs, inbox] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
  const [outbox, results] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
  const worker = await spawnWorker(FIXTURE, {
    name: "syncEcho",
    queues: { in: inbox, out: outbox },
    transfer: true,
  });
  await jobs.put(1);
  assert.equal(await results.get({ timeout: 5000 }), 1);
  return { jobs, results, worker };
}

Deno.test(
  "close() stops a Worker blocked in sync calls: its ends close and it takes nothing more",
  clean(async () => {
    const { jobs, results, worker } = await syncEchoAnswering();
    await worker.close({ timeout: 5000 });
    // Before, the Worker ran on in getSync and answered this one after close().
    await assert.rejects(
      jobs.put(2, { timeout: 1000 }),
      (e) => e instanceof ClosedError && e.reason === "no-receivers",
    );
    assert.equal(jobs.receiversDied, 0, "closed, not died");
    jobs.close();
    assert.throws(() => results.getNowait(), (e) => e instanceof ClosedError);
    results.close();
  }),
);

Deno.test(
  "terminate() stops a Worker blocked in sync calls too: it takes nothing more",
  clean(async () => {
    const { jobs, results, worker } = await syncEchoAnswering();
    worker.terminate();
    const noReceivers = (e: unknown) => e instanceof ClosedError && e.reason === "no-receivers";
    // Before, Deno left the Worker running in getSync: it took and answered this one. The
    // Worker's ends die as its thread winds down, each noticed on its own: this put may find
    // its receiver gone already.
    let put = true;
    await jobs.put(2, { timeout: 5000 }).catch((e) => {
      assert.ok(noReceivers(e), String(e));
      put = false;
    });
    if (put) await assert.rejects(jobs.waitForAllAck({ timeout: 5000 }), noReceivers);
    // Its ends left as dead ones do: cut short, not finished; and no answer came.
    assert.equal(jobs.receiversDied, 1);
    jobs.close();
    await assert.rejects(
      results.get({ timeout: 5000 }),
      (e) => e instanceof ClosedError && e.reason === "drained",
    );
    assert.equal(results.sendersDied, 1);
    results.close();
  }),
);

Deno.test(
  "close() stops a Worker polling with getNowait, or looping on a queue it opened itself",
  clean(async () => {
    // Polling: a loop of getNowait that never yields.
    {
      const [jobs, inbox] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
      const worker = await spawnWorker(FIXTURE, {
        name: "pollLoop",
        queues: { in: inbox },
        transfer: true,
      });
      await worker.close({ timeout: 5000 });
      await assert.rejects(
        jobs.put(1, { timeout: 1000 }),
        (e) => e instanceof ClosedError && e.reason === "no-receivers",
      );
      jobs.close();
    }
    // Its own queue: every end of the Worker closes, not only those of workerContext().
    {
      const [jobs, inbox] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
      const [ownSender, ownReceiver] = createSharedMemoryPair({
        capacity: 4,
        arenaBytes: 64 * 1024,
      });
      const worker = await spawnWorker(FIXTURE, {
        name: "ownLoop",
        queues: { in: inbox },
        args: { own: ownReceiver.descriptor },
        transfer: true,
      });
      ownReceiver.close(); // the Worker's is the only receiver now
      await worker.close({ timeout: 5000 });
      await assert.rejects(
        ownSender.put(1, { timeout: 1000 }),
        (e) => e instanceof ClosedError && e.reason === "no-receivers",
      );
      ownSender.close();
      jobs.close();
    }
  }),
);

Deno.test(
  "close() and terminate() stop a Worker for good: one that catches the ClosedError and opens its receiver again takes nothing more",
  clean(async () => {
    for (const how of ["close", "terminate"] as const) {
      const [jobs, inbox] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
      const worker = await spawnWorker(FIXTURE, {
        name: "reopenLoop",
        queues: { in: inbox },
        transfer: true,
      });
      for (let i = 0; i < 8; i++) await jobs.put(i, { timeout: 5000 });
      await jobs.waitForAllAck({ timeout: 5000 });
      if (how === "close") await worker.close({ timeout: 5000 });
      else worker.terminate();
      // Before: the stop held for one call; the Worker's new receiver took all 20.
      let put = 0;
      try {
        for (; put < 20; put++) await jobs.put(put, { timeout: 300 });
      } catch (error) {
        assert.ok(
          error instanceof ClosedError || error instanceof FullError,
          `${how}: ${error}`,
        );
      }
      assert.ok(put <= 4, `${how}: ${put} messages put after the stop`);
      jobs.close();
    }
  }),
);

Deno.test("close() stops a Worker polling hasSpace on a full queue: its process can exit", async () => {
  // In a process of its own: before, the Worker's thread spun on for good after close()
  // (hasSpace returned false on the closed end), and kept the process from exiting.
  const mod = JSON.stringify(new URL("../mod.ts", import.meta.url).href);
  const code = `
    import { createSharedMemoryPair, spawnWorker } from ${mod};
    const [out, results] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
    const worker = await spawnWorker(${JSON.stringify(FIXTURE.href)}, {
      name: "pollHasSpace",
      queues: { out },
      transfer: true,
    });
    for (let i = 0; i < 4; i++) await results.get({ timeout: 5000 }); // it puts as room comes
    await new Promise((ok) => setTimeout(ok, 300)); // full again: it polls hasSpace
    await worker.close({ timeout: 5000 });
    results.close();
    console.log("closed");
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const { code: status, signal, stdout } = await child.output();
  clearTimeout(timer);
  assert.deepEqual([new TextDecoder().decode(stdout), status, signal], ["closed\n", 0, null]);
});

Deno.test("the ClosedError a Worker's close() causes in its calls is not reported as uncaught", async () => {
  const mod = JSON.stringify(new URL("../mod.ts", import.meta.url).href);
  const code = `
    import { createSharedMemoryPair, spawnWorker } from ${mod};
    const [jobs, inbox] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
    for (const name of ["idleUncaught", "pollLoop"]) { // an await, then a polling loop
      const key = name === "pollLoop" ? "in" : "inbox";
      const worker = await spawnWorker(${JSON.stringify(FIXTURE.href)}, {
        name,
        queues: { [key]: inbox },
      });
      await new Promise((ok) => setTimeout(ok, 200));
      await worker.close({ timeout: 5000 });
    }
    jobs.close();
    inbox.close();
    console.log("closed");
  `;
  const { code: status, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const errors = new TextDecoder().decode(stderr);
  // Before: "Uncaught (in worker "…") (in promise) ClosedError: …" for each.
  assert.doesNotMatch(errors, /Uncaught/, errors);
  assert.deepEqual([new TextDecoder().decode(stdout), status], ["closed\n", 0]);
});

Deno.test("a Worker handed nothing that handles its own workerContext() error does not fail its parent", async () => {
  // spawnWorker returns at once: there is nothing to wait for the Worker to open.
  await using worker = await spawnWorker(FIXTURE, { name: "caughtMismatch" });
  const said = await new Promise<string>((resolve) =>
    worker.worker.addEventListener("message", (e) => resolve(String(e.data)), { once: true })
  );
  assert.match(said, /^caught: .*inbox/);
  // Before: the Worker's report of that error rejected a promise nobody awaited, an uncaught
  // error that ends the parent's process (here, fails this test).
  await new Promise((resolve) => setTimeout(resolve, 50));
});

Deno.test("workerContext outside a Worker says so", async () => {
  await assert.rejects(() => workerContext(), /not in a Worker/);
});

Deno.test("a process exiting with Workers waiting on its ends prints no error of theirs", async () => {
  const before = new Set(shmEntries());
  for (const mode of ["put-sync", "put-async", "get-sync"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...CHILD_PERMISSIONS, fixture("worker_parent_exit.ts"), mode],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `${mode}: ${stderr}`);
    // Before: 'error: Uncaught (in worker "waits:put-sync") (in promise) ClosedError:
    // Sender.putSync: every receiver of the queue has closed', in a process exiting with 0.
    assert.equal(stderr, "", mode);
  }
  assert.deepEqual(leakedSince(before), []);
});
