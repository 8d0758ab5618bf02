// Workers ended with terminate(): their process, and so the fd locks that tell a live end from
// a dead one, live on, but their thread does not. The queue must count their ends as dead
// (their messages come back, their room is freed, a lock they held is taken over) and close
// the fds they left open.
import assert from "node:assert/strict";
import {
  ClosedError,
  createSharedMemoryPair,
  openReceiver,
  type QueueDescriptor,
  type Receiver,
  type Sender,
} from "../mod.ts";
import {
  finish,
  fixture,
  mappedFiles,
  mapSegment,
  type SegmentMapping,
  shmEntries,
  spawnFixture,
  withoutLeaks,
} from "./helpers.ts";
import * as L from "../queue/layout.ts";
import { queuesLeftToThisProcess } from "../queue/open_ends.ts";
import {
  closeFd,
  lockProbe,
  prefaultJoin,
  prefaultStart,
  shmOpen,
  threadAlive,
  type ThreadIdentity,
} from "../ffi/native.ts";

const delay = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

async function startWorker(): Promise<Worker> {
  const worker = new Worker(new URL(`file://${fixture("ended_worker.ts")}`), { type: "module" });
  assert.equal(await nextMessage(worker), "loaded");
  return worker;
}

function nextMessage<T>(worker: Worker): Promise<T> {
  return new Promise((ok, fail) => {
    worker.onmessage = (e) => ok(e.data as T);
    worker.onerror = (e) => fail(new Error(e.message));
  });
}

/** Has the Worker open a sender of the queue (it takes entry 2 of a fresh pair's queue) and
 * returns the thread that entry names. */
async function openSenderIn(
  worker: Worker,
  descriptor: QueueDescriptor,
  m: SegmentMapping,
): Promise<ThreadIdentity> {
  const opened = nextMessage<string>(worker);
  worker.postMessage({ mode: "open", descriptor });
  assert.equal(await opened, "opened");
  const at = L.participantOffset(2);
  assert.equal(m.u32[(at + L.P_KIND) >> 2], L.ParticipantKind.Sender);
  return {
    tid: m.i32[(at + L.P_TID) >> 2],
    start: m.f64[(at + L.P_THREAD_START) >> 3],
    pidNamespace: m.f64[(at + L.P_PID_NAMESPACE) >> 3],
    timeNamespace: m.f64[(at + L.P_TIME_NAMESPACE) >> 3],
  };
}

/** Terminates the Worker and waits (up to 5 s) until its thread has ended. */
async function terminateAndWait(worker: Worker, thread: ThreadIdentity): Promise<void> {
  worker.terminate();
  for (let i = 0; i < 250 && threadAlive(Deno.pid, thread); i++) await delay(20);
  assert.ok(!threadAlive(Deno.pid, thread), "the Worker's thread ended");
}

/** What a test of a Worker's sender works on: a fresh pair's queue, mapped here, and a
 * Worker that opened a sender of it (entry 2) on its thread `thread`. */
interface WorkerSender {
  sender: Sender;
  receiver: Receiver;
  name: string;
  m: SegmentMapping;
  worker: Worker;
  thread: ThreadIdentity;
}

/** Runs `body` on a {@linkcode WorkerSender}, then ends the Worker and closes everything,
 * whatever `body` did. */
function withWorkerSender(body: (w: WorkerSender) => Promise<void>): Promise<void> {
  return withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
    const { name } = sender.descriptor;
    const worker = await startWorker();
    const m = mapSegment(name)!;
    try {
      const thread = await openSenderIn(worker, sender.descriptor, m);
      await body({ sender, receiver, name, m, worker, thread });
    } finally {
      m.unmap();
      worker.terminate();
      sender.close();
      receiver.close();
    }
  });
}

/** Whether any open file description holds participant `index`'s lock byte of queue `name`:
 * a Worker's end that ended holds it through the fd it left open, until that fd is closed. */
function entryLockHeld(name: string, index: number): boolean {
  const fd = shmOpen(name);
  try {
    return lockProbe(fd, L.participantLockByte(index));
  } finally {
    closeFd(fd);
  }
}

Deno.test("a terminated Worker's receiver counts as closed: its messages go on, nothing hangs", () =>
  withoutLeaks(async () => {
    // Message 0 is too large for the 1 MiB arena: it travels in an extension segment, which
    // the Worker maps to lend it.
    const [sender, creator] = createSharedMemoryPair({ capacity: 32, arenaBytes: 1 << 20 });
    const { descriptor } = creator;
    sender.putSync(new Uint8Array(512 << 10));
    for (let i = 1; i < 20; i++) sender.putSync(i);
    const worker = await startWorker();
    try {
      let reply = nextMessage<string>(worker);
      worker.postMessage({ mode: "hold", descriptor });
      assert.equal(await reply, "opened");
      // The Worker's receiver is now the only one, so its take prefetches what follows.
      creator.close();
      const held = nextMessage<{ held: string; got: number }>(worker);
      worker.postMessage("go");
      assert.deepEqual(await held, { held: `${512 << 10} bytes`, got: 1 });
      // Entries: the sender 0, the creator's receiver 1 (closed now), the Worker's receiver 2.
      assert.ok(entryLockHeld(descriptor.name, 2));
      reply = new Promise(() => {});
      worker.terminate();

      using receiver = openReceiver(descriptor);
      const rest: unknown[] = [];
      for (let i = 2; i < 20; i++) rest.push(await receiver.get({ timeout: 5000 }));
      assert.deepEqual(rest, Array.from({ length: 18 }, (_, i) => i + 2));
      // Message 0 went with the Worker (lent and never released): it no longer pins the queue.
      await sender.waitForAllAck({ timeout: 5000 });
      // The sender found the Worker's end dead and closed the fd it left open.
      assert.ok(!entryLockHeld(descriptor.name, 2), "the Worker's fd was closed");
      // Extension segments serve the next large message as before.
      sender.putSync(new Uint8Array(512 << 10).fill(7));
      const large = await receiver.get<Uint8Array>({ timeout: 5000 });
      assert.ok(large.length === 512 << 10 && large.every((b) => b === 7));
      receiver.close();
      await assert.rejects(
        () => sender.put("nobody left", { timeout: 5000 }),
        (e: unknown) => e instanceof ClosedError,
      );
    } finally {
      worker.terminate();
      sender.close();
    }
  }));

Deno.test("a segment a terminated Worker mapped is dropped and unmapped with no call of any end", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({
      capacity: 4,
      arenaBytes: 1 << 20,
      keepIdleSegmentsMs: 200,
    });
    using _s = sender;
    using _r = receiver;
    const prefix = sender.descriptor.name.slice(1) + "-x";
    sender.putSync(new Uint8Array(512 << 10)); // an extension message
    sender.putSync(1);
    const worker = await startWorker();
    try {
      const opened = nextMessage<string>(worker);
      worker.postMessage({ mode: "hold", descriptor: receiver.descriptor });
      assert.equal(await opened, "opened");
      const held = nextMessage(worker);
      worker.postMessage("go");
      assert.deepEqual(await held, { held: `${512 << 10} bytes`, got: 1 });
      worker.terminate();
      // From here no end calls anything: the sender's idle timer reaps the Worker's end (its
      // lease comes back), drops the segment once idle, and unmaps it, the Worker's mapping too.
      const left = () => [
        ...shmEntries().filter((n) => n.startsWith(prefix)),
        ...mappedFiles().filter((file) => file.includes(prefix)),
      ];
      for (let i = 0; i < 50 && left().length > 0; i++) await delay(100);
      assert.deepEqual(left(), [], "neither in /dev/shm nor mapped");
    } finally {
      worker.terminate();
    }
  }));

Deno.test("a lock left by a Worker that ended is taken over at once", () =>
  withWorkerSender(async ({ sender, receiver, name, m, worker, thread }) => {
    // The pair took entries 0 and 1; the Worker's sender took entry 2.
    assert.ok(thread.tid > 0 && thread.tid !== Deno.pid, "a Worker runs on a thread of its own");
    assert.ok(threadAlive(Deno.pid, thread));
    await terminateAndWait(worker, thread);
    // As if it had ended inside a critical section (Deno 2.9 stops an idle Worker, not one
    // busy in sync code, so this stands for a holder whose thread ended with the lock
    // taken). Its process (ours) lives on, and so does the fd lock of its entry.
    Atomics.store(m.i32, L.W_LOCK >> 2, 2 + 1);
    // Before: "held for over 10000 ms by live participant 2", then ClosedError.
    await sender.put("after", { timeout: 3000 });
    assert.equal(await receiver.get({ timeout: 3000 }), "after");
    assert.ok(!entryLockHeld(name, 2), "the Worker's fd was closed in the takeover");
  }));

Deno.test("closing an end frees what a terminated Worker left, even with no hint left", () =>
  withWorkerSender(async ({ sender, name, m, worker, thread }) => {
    const at = L.participantOffset(2);
    await terminateAndWait(worker, thread);
    // As if another process had reaped the entry and a peer had scribbled the hint away.
    m.i32[(at + L.P_FD) >> 2] = 0;
    assert.ok(entryLockHeld(name, 2));
    sender.close();
    assert.ok(!entryLockHeld(name, 2), "closing the sender closed the Worker's fd");
  }));

Deno.test("an end a Worker closed with an async wait out is unmapped though the Worker was terminated first", () =>
  withoutLeaks(async () => {
    const mapsOf = (name: string) => mappedFiles().filter((f) => f.includes(name)).length;
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
    const { name } = sender.descriptor;
    const own = mapsOf(name);
    const [keptSender, keptReceiver] = createSharedMemoryPair({ capacity: 2 });
    const worker = await startWorker();
    const closed = nextMessage<{ thread: ThreadIdentity }>(worker);
    worker.postMessage({ mode: "close-waiting", descriptor: sender.descriptor });
    const { thread } = await closed;
    // Its wait never returned to its event loop, which alone used to unmap: for good.
    await terminateAndWait(worker, thread);
    assert.equal(mapsOf(name), own + 1, "still mapped once its thread has ended");
    // Any end of this process that opens or closes frees it, of any queue.
    keptReceiver.close();
    assert.equal(mapsOf(name), own, "freed by the close of an end of another queue");
    sender.close();
    receiver.close();
    keptSender.close();
    assert.equal(mapsOf(name), 0);
  }));

Deno.test("another process reaps a terminated Worker's end; this one then frees what it left", () =>
  withWorkerSender(async ({ receiver, name, m, worker, thread }) => {
    const at = L.participantOffset(2);
    await terminateAndWait(worker, thread);
    // A receiver in another process opens and closes; its close reaps the Worker's end,
    // which it finds dead through /proc alone: the fd lock of that end lives on here.
    const child = spawnFixture("queue_child.ts", [
      "nibble",
      JSON.stringify(receiver.descriptor),
      "0",
    ]);
    assert.equal((await finish(child)).code, 0);
    assert.equal(m.u32[(at + L.P_KIND) >> 2], L.ParticipantKind.Free, "reaped by the child");
    assert.ok(entryLockHeld(name, 2), "the child cannot close this process's fd");
    // Any reap here finds the hint the child left: a poll that finds nothing reaps.
    assert.equal(receiver.getNowait(), undefined);
    assert.ok(!entryLockHeld(name, 2), "this process closed the Worker's fd");
  }));

/** Runs fault_child.ts `mode`, which prints a queue's name and exits normally: nothing of
 * that queue may be left in /dev/shm afterwards. */
async function assertRemovedAtExit(mode: string): Promise<void> {
  const { code, text } = await finish(spawnFixture("fault_child.ts", [mode]));
  assert.equal(code, 0);
  const name = text.trim().slice(1);
  assert.match(name, /^shmq-[0-9a-f]{32}$/);
  assert.deepEqual(shmEntries().filter((n) => n.startsWith(name)), []);
}

Deno.test("a queue whose last end was a just-terminated Worker's is removed when its process exits", () =>
  assertRemovedAtExit("worker-left"));

Deno.test("a queue whose ends were only ever in a Worker is removed when its process exits", () =>
  assertRemovedAtExit("worker-only"));

Deno.test("queues closed by the main thread alone are not kept for the exit check", () => {
  const [sender, receiver] = createSharedMemoryPair({ capacity: 2, arenaBytes: 64 * 1024 });
  sender.close(); // the receiver, this thread's own, remains
  receiver.close();
  assert.deepEqual(queuesLeftToThisProcess(), []);
});

Deno.test("copy helpers a terminated Worker left unjoined are reclaimed when needed", async () => {
  const worker = await startWorker();
  const posted = nextMessage<{ started: number; thread: ThreadIdentity }>(worker);
  worker.postMessage({ mode: "helpers" });
  const { started, thread } = await posted;
  assert.equal(started, 8, "the Worker should have taken every helper slot");
  // While the Worker lives, its helpers are its own: none to be had here.
  const target = new ArrayBuffer(8 << 20);
  assert.equal(prefaultStart(target), undefined);
  await terminateAndWait(worker, thread);
  // Its thread ended without joining them (V8 skips finally blocks on terminate): the next
  // start joins them and takes a slot, instead of running without helpers for good.
  const id = prefaultStart(target);
  assert.notEqual(id, undefined, "the ended Worker's helpers were not reclaimed");
  assert.ok(prefaultJoin(id!) >= 0);
  for (let i = 0; i < 8; i++) {
    const more = prefaultStart(new ArrayBuffer(4 << 20));
    assert.notEqual(more, undefined, `slot ${i} still taken`);
    prefaultJoin(more!);
  }
});
