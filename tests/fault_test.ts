// Fault tests: participants of a queue killed with SIGKILL at every moment that matters (mid-put,
// mid-get, holding a borrow, holding the queue mutex, blocked in a wait, during creation), and
// every way of leaving (close, plain exit, uncaught error, SIGKILL of any subset). The others
// must learn within about a second (ClosedError) or keep working, complete messages must still
// arrive, half-written ones never, capacity must come back, and /dev/shm must end up empty.
//
// FAULT_REPEAT=n repeats every random-timing case n times (default 3).
import assert from "node:assert/strict";
import {
  ClosedError,
  createSharedMemoryPair,
  EmptyError,
  FullError,
  openReceiver,
  openSender,
  type Receiver,
  type Sender,
} from "../mod.ts";
import { closeFd, shmCreate, shmUnlink } from "../ffi/native.ts";
import * as L from "../queue/layout.ts";
import {
  canIsolate,
  checksum32,
  endedTogether,
  eventually,
  isolated,
  mapSegment,
  prng,
  segmentWord,
  shmEntries,
  Watched,
} from "./helpers.ts";

const REPEAT = Number(Deno.env.get("FAULT_REPEAT") ?? 3);
/** How long a survivor may take to learn that a peer died (the issue asks for about 1 s). */
const NOTICE_MS = 1500;
const random = prng(Number(Deno.env.get("FAULT_SEED") ?? 7));

/** What the fault cases saw, printed at the end. */
const stats = {
  cases: 0,
  midPut: 0,
  midGet: 0,
  heldMutex: 0,
  slowestNoticeMs: 0,
};

function noticed(ms: number, what: string): void {
  stats.slowestNoticeMs = Math.max(stats.slowestNoticeMs, ms);
  assert.ok(ms < NOTICE_MS, `${what}: noticed after ${ms.toFixed(0)} ms`);
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
/** A get or put that finds its message or room at once resolves without ever yielding to
 * timers and I/O: loops that run while a child is watched and killed yield now and then. */
const yieldToEvents = () => sleep(0);

/** A fault_child.ts process whose stdout lines are collected as they come. */
class Child extends Watched {
  constructor(mode: string, args: string[]) {
    super("fault_child.ts", [mode, ...args]);
  }
}

/** Entries of one queue in /dev/shm (main segment and extensions). */
function entriesOf(name: string): string[] {
  return shmEntries().filter((n) => n.startsWith(name.slice(1)));
}

/** Whether the queue's mutex is held right now (by anyone). */
function mutexHeld(name: string): boolean {
  const m = mapSegment(name);
  if (!m) return false;
  try {
    return Atomics.load(m.i32, L.W_LOCK >> 2) !== 0;
  } finally {
    m.unmap();
  }
}

type Message = { seq: number; sum: number; data: Uint8Array };

/** Gets messages until ClosedError (returned) or a message with seq -1 (the live sender's
 * marker). Checks checksums as it goes. */
async function consume(
  r: Receiver,
  seqs: number[],
  yielding = true,
): Promise<{ error?: ClosedError; at: number; lastAt: number }> {
  let lastAt = 0;
  for (;;) {
    let m: Message;
    try {
      m = await r.get<Message>({ timeout: 10_000 });
    } catch (error) {
      if (error instanceof ClosedError) return { error, at: performance.now(), lastAt };
      throw error;
    }
    if (m.seq === -1) return { at: performance.now(), lastAt };
    assert.equal(checksum32(m.data), m.sum, `message ${m.seq} arrived intact`);
    seqs.push(m.seq);
    lastAt = performance.now();
    if (yielding) await yieldToEvents();
  }
}

/** Sends SIGKILL to `pid` after `ms` from a separate process: the test's own thread may be
 * blocked on the queue mutex the victim holds by then. */
function killLater(pid: number, ms: number): Promise<Deno.CommandStatus> {
  return new Deno.Command("sh", {
    args: ["-c", `sleep ${ms / 1000}; kill -KILL ${pid}`],
    stdout: "null",
    stderr: "null",
  }).spawn().status;
}

function assertContiguous(seqs: number[], what: string): void {
  seqs.forEach((seq, i) => assert.equal(seq, i, `${what}: message ${i} in order, once`));
}

// ------------------------------------------------------------------------------- senders

const putVariants: { name: string; min: number; max: number; api: string; delay: number }[] = [
  { name: "8 MiB extension, putSync", min: 8 << 20, max: 8 << 20, api: "sync", delay: 300 },
  { name: "8 MiB extension, put", min: 8 << 20, max: 8 << 20, api: "async", delay: 300 },
  { name: "8 MiB extension, prepare", min: 8 << 20, max: 8 << 20, api: "prepare", delay: 300 },
  { name: "20-200 KiB arena, putSync", min: 20 << 10, max: 200 << 10, api: "sync", delay: 100 },
  { name: "20-200 KiB arena, prepare", min: 20 << 10, max: 200 << 10, api: "prepare", delay: 100 },
  { name: "0-2 KiB under the mutex, putSync", min: 0, max: 2048, api: "sync", delay: 40 },
];

for (const v of putVariants) {
  Deno.test(`sender killed mid-put (${v.name}): complete messages arrive, half-written never`, async () => {
    for (let rep = 0; rep < REPEAT * 2; rep++) {
      // Every other run keeps a live sender in the parent: the receiver must keep working.
      const livePeer = rep % 2 === 1;
      const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20 });
      const name = s.descriptor.name;
      await using child = new Child("put", [
        JSON.stringify(s.descriptor),
        `${v.min}`,
        `${v.max}`,
        `${rep + 1}`,
        v.api,
      ]);
      await child.expect("ready");
      if (!livePeer) s.close();
      const seqs: number[] = [];
      const consuming = consume(r, seqs);
      await child.expect("begin 0");
      await sleep(random() * v.delay);
      await child.stop();
      const diedAt = performance.now();
      stats.cases++;
      const begun = child.last("begin");
      const ended = child.last("end");
      if (begun > ended) stats.midPut++;
      if (livePeer) await s.put({ seq: -1, sum: 0, data: new Uint8Array(0) }, { timeout: 5000 });
      const { error, at, lastAt } = await consuming;
      if (livePeer) {
        assert.equal(error, undefined, "the live sender's marker arrived");
        s.close();
      } else {
        assert.ok(error?.reason === "drained", `ClosedError "drained", got ${error}`);
        assert.match(
          error.message,
          /^Receiver\.get: every sender of the queue is gone, the last one ended without closing \(its process killed or crashed, its Worker ended, or its writable stream cut short\), and the queue is drained$/,
        );
      }
      noticed(at - Math.max(diedAt, lastAt), `${v.name}, receiver after the sender's death`);
      // The stream was cut short, and the receiver can tell: the child's sender died.
      assert.equal(r.sendersDied, 1, "one sender died");
      // Its unfinished message, if any, was given up: nothing in flight, every put received.
      const { waiting, inFlight, put, received, bytesInUse, senders, sendersDied } = r.stats();
      assert.deepEqual(
        { waiting, inFlight, bytesInUse, senders, sendersDied, put: put - received },
        { waiting: 0, inFlight: 0, bytesInUse: 0, senders: 0, sendersDied: 1, put: 0 },
      );
      assert.equal(received, seqs.length + (livePeer ? 1 : 0), "each message received once");
      assertContiguous(seqs, v.name);
      assert.ok(seqs.length - 1 >= ended, `every completed put arrived (${seqs.length}/${ended})`);
      assert.ok(seqs.length - 1 <= begun, "nothing arrived that was never begun");
      r.close();
      assert.deepEqual(entriesOf(name), [], "nothing left in /dev/shm");
    }
  });
}

Deno.test("tight small-put loop killed at random moments, often inside the queue mutex", async () => {
  for (let rep = 0; rep < REPEAT * 6; rep++) {
    // Room for thousands of messages: the child never waits, so it is killed mid-put.
    const [s, r] = createSharedMemoryPair({ capacity: 1 << 16, arenaBytes: 64 << 20 });
    const name = s.descriptor.name;
    await using child = new Child("put", [
      JSON.stringify(s.descriptor),
      "0",
      "256",
      `${rep}`,
      "sync",
    ]);
    await child.expect("ready");
    s.close();
    await child.expect("begin 0");
    await sleep(random() * 30);
    await child.stop();
    stats.cases++;
    // Nobody else touches the mutex meanwhile: a held mutex is the dead child's.
    if (mutexHeld(name)) stats.heldMutex++;
    const diedAt = performance.now();
    const seqs: number[] = [];
    const { error, at, lastAt } = await consume(r, seqs, false);
    assert.ok(error?.reason === "drained", `ClosedError "drained", got ${error}`);
    noticed(at - Math.max(diedAt, lastAt), "receiver after a tight-loop sender's death");
    assertContiguous(seqs, "tight loop");
    assert.ok(seqs.length - 1 >= child.last("end"), "every completed put arrived");
    r.close();
    assert.deepEqual(entriesOf(name), []);
  }
});

// ------------------------------------------------------------------------------- receivers

const getVariants: { name: string; size: number; api: string; delay: number }[] = [
  { name: "8 MiB extension, get", size: 8 << 20, api: "copy", delay: 300 },
  { name: "8 MiB extension, getSync", size: 8 << 20, api: "sync", delay: 300 },
  { name: "8 MiB extension, borrow", size: 8 << 20, api: "borrow", delay: 300 },
  { name: "100 KiB arena, borrow", size: 100 << 10, api: "borrow", delay: 100 },
  { name: "1 KiB under the mutex, getSync", size: 1024, api: "sync", delay: 40 },
];

for (const v of getVariants) {
  Deno.test(`receiver killed mid-get (${v.name}): capacity comes back, the sender learns`, async () => {
    const data = crypto.getRandomValues(new Uint8Array(Math.min(v.size, 65536)));
    const big = new Uint8Array(v.size);
    for (let off = 0; off < v.size; off += data.length) {
      big.set(data.subarray(0, v.size - off), off);
    }
    const sum = checksum32(big);
    for (let rep = 0; rep < REPEAT * 2; rep++) {
      const livePeer = rep % 2 === 1;
      const [s, r] = createSharedMemoryPair({ capacity: 3, arenaBytes: 1 << 20 });
      const name = s.descriptor.name;
      await using child = new Child("get", [JSON.stringify(s.descriptor), v.api]);
      await child.expect("ready");
      if (!livePeer) r.close();
      let stop = false;
      let seq = 0;
      // The parent produces as fast as the child takes; the put pending when the child dies
      // must learn of it.
      const producing = (async () => {
        while (!stop) {
          await s.put({ seq: seq++, sum, data: big }, { timeout: 10_000 });
          await yieldToEvents();
        }
      })().then(() => undefined, (error) => error);
      await child.expect("got 0");
      await sleep(random() * v.delay);
      const got = child.last("got");
      await child.stop();
      const diedAt = performance.now();
      stats.cases++;
      if (child.last("got") === got) stats.midGet++;
      assert.ok(!child.out.some((l) => l.startsWith("bad")), "the child only saw whole messages");
      if (livePeer) {
        // Capacity comes back: the live receiver drains, the acks complete.
        stop = true;
        const drained = (async () => {
          for (;;) {
            const m = await r.get<Message>({ timeout: 5000 });
            assert.equal(m.sum, sum);
            if (m.seq === -1) break;
          }
        })();
        assert.equal(await producing, undefined);
        await s.put({ seq: -1, sum, data: new Uint8Array(0) }, { timeout: 5000 });
        await drained;
        await s.waitForAllAck({ timeout: NOTICE_MS });
        noticed(performance.now() - diedAt, `${v.name}: acks with a live receiver left`);
        assert.equal(s.hasSpace(), true);
        for (let i = 0; i < s.capacity; i++) s.putSync(i, { timeout: 0 });
        r.close();
      } else {
        const error = await producing;
        noticed(performance.now() - diedAt, `${v.name}: the pending put`);
        assert.ok(
          error instanceof ClosedError && error.reason === "no-receivers",
          `put fails with ClosedError "no-receivers", got ${error}`,
        );
        assert.match(
          error.message,
          /^Sender\.put: every receiver of the queue is gone, the last one ended without closing \([^)]*\)$/,
        );
        const ackStart = performance.now();
        await s.waitForAllAck({ timeout: 5000 }).catch((e) => {
          assert.ok(e instanceof ClosedError, `waitForAllAck: ClosedError, got ${e}`);
        });
        noticed(performance.now() - ackStart, `${v.name}: waitForAllAck`);
      }
      s.close();
      assert.deepEqual(entriesOf(name), []);
    }
  });
}

Deno.test("tight small-get loop killed at random moments: at most the message in hand is lost", async () => {
  for (let rep = 0; rep < REPEAT * 6; rep++) {
    const count = 4000;
    const [s, r] = createSharedMemoryPair({ capacity: count, arenaBytes: 16 << 20 });
    const name = s.descriptor.name;
    const data = new Uint8Array(200);
    const sum = checksum32(data);
    for (let seq = 0; seq < count; seq++) s.putSync({ seq, sum, data });
    await using child = new Child("get", [JSON.stringify(s.descriptor), "sync"]);
    await child.expect("got 0");
    await sleep(random() * 30);
    await child.stop();
    stats.cases++;
    if (mutexHeld(name)) stats.heldMutex++;
    const diedAt = performance.now();
    const childGot = child.out.filter((l) => l.startsWith("got ")).map((l) => Number(l.slice(4)));
    const parentGot: number[] = [];
    for (let m; (m = r.getNowait<Message>()) !== undefined;) parentGot.push(m.seq);
    const seen = new Set<number>();
    for (const seq of [...childGot, ...parentGot]) {
      assert.ok(!seen.has(seq), `message ${seq} delivered once`);
      seen.add(seq);
    }
    // The child prints after each get: the one it was killed with may be unprinted.
    assert.ok(count - seen.size <= 1, `lost ${count - seen.size} messages`);
    // Every message was released (the dead child's after its death is noticed): the sender
    // sees all its acks and has its whole capacity back.
    await s.waitForAllAck({ timeout: NOTICE_MS });
    noticed(performance.now() - diedAt, "acks after a tight-loop receiver's death");
    for (let i = 0; i < count; i++) s.putSync(i, { timeout: 0 });
    assert.equal(s.hasSpace(), false);
    s.close();
    r.close();
    assert.deepEqual(entriesOf(name), []);
  }
});

// ------------------------------------------------------------------ holding the queue mutex

Deno.test("a process exiting while a stopped peer holds the lock gives up on it quickly", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 1 });
  const name = s.descriptor.name;
  await using leaving = new Child("join", [JSON.stringify(s.descriptor), "sender"]);
  await leaving.expect("ready");
  await using holder = new Child("lock", [JSON.stringify(s.descriptor), "sender"]);
  await holder.expect("locked"); // alive, and never letting go
  assert.ok(mutexHeld(name));
  // SIGUSR1: Deno.exit(0), whose unload closes its end, which needs the lock.
  const started = performance.now();
  const status = await leaving.stop("SIGUSR1");
  const ms = performance.now() - started;
  assert.equal(status.code, 0);
  // It used to wait the full 10 s a live holder gets before a call gives up.
  assert.ok(ms < 5_000, `exit took ${ms} ms`);
  await holder.stop();
  s.close();
  r.close();
  assert.deepEqual(entriesOf(name), [], "nothing left in /dev/shm");
});

for (const kind of ["sender", "receiver"] as const) {
  for (const livePeer of [false, true]) {
    Deno.test(`a ${kind} killed while holding the queue mutex (${livePeer ? "live peer left" : "last of its kind"})`, async () => {
      const [s, r] = createSharedMemoryPair({ capacity: 1 });
      const name = s.descriptor.name;
      if (kind === "receiver") await s.put("taken by the dying receiver");
      // Closing takes the mutex too: the parent's end of the victim's kind goes first.
      if (!livePeer) (kind === "sender" ? s : r).close();
      await using child = new Child("lock", [JSON.stringify(s.descriptor), kind]);
      await child.expect("locked");
      assert.ok(mutexHeld(name));
      // The next call blocks this thread on the mutex until the holder is dead and its death
      // noticed: the kill has to come from elsewhere.
      const killDelay = 200;
      const killed = killLater(child.proc.pid, killDelay);
      const started = performance.now();
      let outcome: { v?: unknown; e?: unknown };
      try {
        outcome = {
          v: kind === "receiver"
            ? await s.put("second", { timeout: 10_000 })
            : livePeer
            ? await s.put("after", { timeout: 10_000 })
            : await r.get({ timeout: 10_000 }),
        };
      } catch (e) {
        outcome = { e };
      }
      const ms = performance.now() - started - killDelay;
      // The killer first: a failed check must not leave it to kill a pid after the test.
      await killed;
      noticed(ms, `${kind} holding the mutex`);
      await child.stop();
      stats.cases++;
      stats.heldMutex++;
      if (!livePeer) {
        assert.ok(outcome.e instanceof ClosedError, `ClosedError, got ${outcome.e}`);
        assert.equal(outcome.e.reason, kind === "sender" ? "drained" : "no-receivers");
      } else if (kind === "sender") {
        // The dead sender's half-written message is dropped; the live sender goes on.
        assert.deepEqual(outcome, { v: undefined });
        assert.equal(await r.get({ timeout: 2000 }), "after");
        assert.equal(r.getNowait(), undefined, "the half-written message never came");
      } else {
        // The message the dead receiver held is released: its slot is free for "second".
        assert.deepEqual(outcome, { v: undefined });
        assert.equal(await r.get({ timeout: 1000 }), "second");
        await s.waitForAllAck({ timeout: 1000 });
      }
      assert.equal(mutexHeld(name), false, "the mutex was taken over and released");
      s.close();
      r.close();
      assert.deepEqual(entriesOf(name), []);
    });
  }
}

Deno.test("a draft whose cancel met a stuck lock can be cancelled again, and holds back nothing after", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 8 });
  const draft = s.prepareSync({ n: 1 });
  {
    await using holder = new Child("lock", [JSON.stringify(s.descriptor), "sender"]);
    await holder.expect("locked"); // alive, and never letting go: the cancel gives up in 10 s
    assert.throws(() => draft.cancel(), (e) => e instanceof ClosedError && e.reason === "stuck");
    assert.equal(draft.settled, false, "still unsent, and still to cancel");
    await holder.stop();
  }
  draft.cancel(); // the dead holder's lock is taken over
  assert.equal(draft.settled, true);
  s.putSync("after");
  // Before: EmptyError, "wait behind an earlier message of their sender that is not ready": the
  // first cancel had settled the draft, and its slot stayed reserved for good.
  assert.equal(r.getSync({ timeout: 2_000 }), "after");
  assert.equal(s.stats().inFlight, 0);
  s.close();
  r.close();
});

Deno.test("hasSpace() answers at once while a live peer keeps the lock, and takes a dead one's over", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 3 });
  for (const n of [1, 2, 3]) s.putSync(n);
  const leases = [r.borrowSync(), r.borrowSync()];
  {
    // It takes message 3 and keeps the lock.
    await using holder = new Child("lock", [JSON.stringify(s.descriptor), "receiver"]);
    await holder.expect("locked");
    // Released without the lock: room, once settled under it.
    for (const lease of leases) lease.release();
    const started = performance.now();
    assert.equal(s.hasSpace(), false, "a put would wait for the lock: no room to promise");
    const ms = performance.now() - started;
    // Before: 10 s, the time a put gives a live holder. Generous for a loaded machine; the
    // call takes about 3 ms.
    assert.ok(ms < 1_000, `hasSpace() took ${ms.toFixed(1)} ms`);
    assert.equal(s.hasSpace(), false, "and again");
    await holder.stop();
  }
  assert.equal(s.hasSpace(), true, "the dead holder's lock taken over, the releases settled");
  assert.equal(mutexHeld(s.descriptor.name), false);
  s.putSync("after");
  // Message 3 went with the receiver that took it, as a killed receiver's message does.
  assert.equal(r.getSync({ timeout: 1_000 }), "after");
  s.close();
  r.close();
});

/** A child keeping the queue's lock (fault_child.ts "lock"), then stopped with SIGSTOP: as
 * a process stopped by Ctrl-Z or a debugger inside a call. Given `ms`, it lets go of the lock
 * once resumed (SIGCONT) that long after it took it, and exits. */
async function stoppedHolder(
  descriptor: unknown,
  kind: "sender" | "receiver",
  ms?: number,
): Promise<Child> {
  const holder = new Child("lock", [JSON.stringify(descriptor), kind, ...ms ? [String(ms)] : []]);
  await holder.expect("locked");
  await stopped(holder);
  return holder;
}

/** Stops `child` with SIGSTOP, once /proc says it is. */
async function stopped(child: Child): Promise<void> {
  child.proc.kill("SIGSTOP");
  await untilStopped(child);
}

/** Waits until /proc says `child` is stopped. */
async function untilStopped(child: Child): Promise<void> {
  // Read by a child: Deno asks for --allow-all to read /proc/<pid>.
  const cat = new Deno.Command("cat", { args: [`/proc/${child.proc.pid}/stat`] });
  const state = () => new TextDecoder().decode(cat.outputSync().stdout);
  assert.ok(await eventually(() => /\) [Tt] /.test(state())), "the child stopped");
}

/** Options whose `allocate` fails: the receiver keeps the message for its next call, taken and
 * never handed out, as its close then finds it. */
const refuseBuffers = {
  allocate: (): ArrayBuffer => {
    throw new Error("out of buffers");
  },
};

/** Runs `call`, checking that it took under 1 s; returns its outcome. */
async function within1s<T>(
  what: string,
  call: () => T,
): Promise<{ value?: Awaited<T>; error?: unknown }> {
  const started = performance.now();
  const outcome = await (async () => ({ value: await call() }))().catch((error) => ({ error }));
  const ms = performance.now() - started;
  // Generous for a loaded machine.
  assert.ok(ms < 1_000, `${what} took ${ms.toFixed(1)} ms`);
  return outcome;
}

Deno.test("getNowait() and stats() answer at once while a stopped peer keeps the lock, and take a dead one's over", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  for (const n of [1, 2, 3]) s.putSync(n);
  {
    // It takes message 1, keeps the lock, and is stopped.
    await using _holder = await stoppedHolder(s.descriptor, "receiver");
    // Before: 10 s each, the time a call gives a live holder, then ClosedError "stuck". Each
    // takes about 3 ms.
    const got = await within1s("getNowait()", () => r.getNowait());
    assert.deepEqual(got, { value: undefined }, "nothing could be looked at");
    for (const [what, end] of [["receiver", r], ["sender", s]] as const) {
      const { value: stats } = await within1s(`${what} stats()`, () => end.stats());
      assert.deepEqual(
        [stats!.waiting, stats!.inFlight, stats!.put, stats!.received, stats!.receivers],
        [2, 3, 3, 0, 2],
        `${what} stats() read without the lock`,
      );
    }
  }
  // Message 1 went with the receiver that took it, as a killed receiver's message does.
  assert.deepEqual([r.getNowait(), r.getNowait(), r.getNowait()], [2, 3, undefined]);
  assert.equal(s.stats().receiversDied, 1);
  assert.equal(mutexHeld(s.descriptor.name), false);
  s.close();
  r.close();
});

Deno.test("close() does not wait for a stopped peer that keeps the lock, and counts as a close", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  const s2 = openSender(s.descriptor);
  const r2 = openReceiver(s.descriptor);
  s2.putSync("from s2");
  s.putSync(1);
  // A draft s2 never sends: its slot must come back once s2 is gone.
  s2.prepareSync("never sent");
  {
    // It takes "from s2", keeps the lock, and is stopped; once resumed it lets go and exits.
    await using holder = await stoppedHolder(s.descriptor, "receiver", 500);
    // Before: 10 s each, the time a call gives a live holder (then the end was left for a
    // reap, which counted it dead). Each takes about 5 ms.
    await within1s("a sender's close()", () => s2.close());
    await within1s("a receiver's close()", () => r2.close());
    assert.equal(s2.closed, true);
    holder.proc.kill("SIGCONT");
    assert.equal((await holder.exit()).code, 0);
  }
  // The reap of s2 and r2, once the lock is free, counts them closed, not dead: the stream is
  // whole. s2's draft went with it.
  const stats = s.stats();
  assert.deepEqual(
    [stats.senders, stats.receivers, stats.sendersDied, stats.receiversDied, stats.inFlight],
    [1, 1, 0, 0, 1],
  );
  for (const n of [2, 3, 4]) s.putSync(n, { timeout: 1_000 });
  s.close();
  assert.deepEqual(r.getManySync(5, { timeout: 1_000 }), [1, 2, 3, 4]);
  assert.throws(
    () => r.getSync({ timeout: 1_000 }),
    (e) =>
      e instanceof ClosedError && e.reason === "drained" &&
      /every sender of the queue has closed/.test(e.message),
  );
  assert.equal(r.sendersDied, 0);
  const { name } = r.descriptor;
  r.close();
  assert.deepEqual(entriesOf(name), [], "the last close removed the queue");
});

Deno.test("a receiver's close gives back a message its caller never got without waiting for a stopped peer", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  const r2 = openReceiver(s.descriptor);
  s.putSync(new Uint8Array(100).fill(7));
  // Kept for r2's next call, as a failed allocate leaves it: taken, never handed out.
  assert.throws(() => r2.getSync(refuseBuffers), /out of buffers/);
  s.putSync("taken by the holder");
  {
    await using holder = await stoppedHolder(s.descriptor, "receiver", 500);
    // Before: 10 s, the time a call gives a live holder, and then the message was lost,
    // counted received.
    await within1s("the receiver's close()", () => r2.close());
    holder.proc.kill("SIGCONT");
    assert.equal((await holder.exit()).code, 0);
  }
  // The reap of r2's entry, once the lock is free, puts its message back in line, though the
  // read cursor had passed it.
  assert.deepEqual(r.getSync({ timeout: 2_000 }), new Uint8Array(100).fill(7));
  const stats = s.stats();
  assert.deepEqual(
    [stats.receivers, stats.receiversDied, stats.inFlight, stats.received],
    [1, 0, 0, 2],
  );
  s.close();
  r.close();
  assert.deepEqual(entriesOf(s.descriptor.name), [], "nothing left in /dev/shm");
});

Deno.test("a message given back without the lock goes before the later messages of its sender", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 64 });
  const r2 = openReceiver(s.descriptor);
  const message = (n: number) => new Uint8Array(100).fill(n);
  s.putSync(message(1));
  assert.throws(() => r2.getSync(refuseBuffers), /out of buffers/);
  {
    // It lets go after 300 ms once resumed, and stays, its end open: no close of its reaps.
    await using holder = new Child("lock", [JSON.stringify(s.descriptor), "sender", "300", "stay"]);
    await holder.expect("locked");
    await stopped(holder);
    await within1s("the receiver's close()", () => r2.close());
    holder.proc.kill("SIGCONT");
    await holder.expect("released");
    const got: number[] = [];
    const next = () => (r.getSync({ timeout: 2_000 }) as Uint8Array)[0];
    for (let n = 2; n <= 20; n++) {
      s.putSync(message(n));
      got.push(next());
    }
    got.push(next());
    // Before: 2, 3, ..., 20, 1: a take with senders open looked behind the cursor only at a
    // reap, and a receiver that keeps finding messages never reaps.
    assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => i + 1));
  }
  s.close();
  r.close();
});

Deno.test("a message given back without the lock behind the read cursor comes back at the next look, and poisons nothing", () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  /** What a close that found the lock kept from it leaves: the message it kept for its next
   * call (a failed allocate), Returned and still its own, behind the read cursor. */
  const givenBack = (slot: number) => {
    const taker = openReceiver(s.descriptor);
    assert.throws(() => taker.getSync(refuseBuffers), /out of buffers/);
    const m = mapSegment(s.descriptor.name)!;
    try {
      const at = (L.slotOffset(slot) + L.S_STATE) >> 2;
      assert.equal(m.i32[at], L.SlotState.Taken);
      assert.equal(m.u32[L.C_READ >> 2], slot + 1);
      m.i32[at] = L.SlotState.Returned;
    } finally {
      m.unmap();
    }
    return taker; // open: a close with the lock would put the message back itself
  };
  s.putSync(new Uint8Array(100).fill(1));
  const r2 = givenBack(0);
  // A wait that finds nothing reaps and audits: it puts the message back, and takes the slot
  // for no corruption. Before: poisoned ("not yet taken (state 6), lies behind the read
  // cursor"), then EmptyError until r2 closed.
  assert.deepEqual(r.getSync({ timeout: 1_000 }), new Uint8Array(100).fill(1));
  s.putSync(new Uint8Array(100).fill(2));
  const r3 = givenBack(1);
  s.close();
  // Every sender is gone: a take that finds nothing ahead puts it back at once. Before: the
  // queue was drained (undefined, then ClosedError) or, once that was fixed, waited for r3 to
  // close, and a for-await in r3 itself never ended.
  assert.deepEqual(r.getNowait(), new Uint8Array(100).fill(2));
  assert.throws(
    () => r.getSync({ timeout: 1_000 }),
    (e) => e instanceof ClosedError && e.reason === "drained",
  );
  assert.deepEqual([r.stats().inFlight, r.stats().received], [0, 2]);
  r2.close();
  r3.close();
  r.close();
});

Deno.test("a draft's cancel does not wait for a stopped peer that keeps the lock, and holds back nothing after", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
  // One in the arena, one in an extension segment of its own.
  const small = s.prepareSync({ n: new Float64Array(4) });
  const large = s.prepareSync({ n: new Float64Array(64 * 1024) });
  const sharedBefore = s.stats().sharedBytes;
  {
    await using holder = await stoppedHolder(s.descriptor, "sender", 500);
    // Before: 10 s each, the time a call gives a live holder, then ClosedError "stuck".
    await within1s("an arena draft's cancel()", () => small.cancel());
    await within1s("an extension draft's cancel()", () => large.cancel());
    assert.deepEqual([small.settled, large.settled], [true, true]);
    // Read without the lock: the holder's own reservation is in flight, and nothing was put.
    const { value: during } = await within1s("stats()", () => s.stats());
    assert.deepEqual([during!.inFlight, during!.put, during!.waiting], [1, 0, 0]);
    holder.proc.kill("SIGCONT");
    assert.equal((await holder.exit()).code, 0);
  }
  // Any end's next critical section settles the cancels: their room comes back, and this
  // sender's later messages are not held back behind them.
  s.putSync("after");
  assert.equal(r.getSync({ timeout: 2_000 }), "after");
  s.waitForAllAckSync({ timeout: 2_000 });
  const stats = s.stats();
  assert.deepEqual(
    [stats.inFlight, stats.put, stats.received, stats.waiting],
    [0, 1, 1, 0],
  );
  assert.ok(stats.sharedBytes <= sharedBefore, "the extension went idle, to be reused or dropped");
  const again = s.prepareSync({ n: new Float64Array(64 * 1024) }, { timeout: 2_000 });
  again.send();
  assert.equal((r.getSync({ timeout: 2_000 }) as { n: Float64Array }).n.length, 64 * 1024);
  s.close();
  r.close();
  assert.deepEqual(entriesOf(s.descriptor.name), [], "nothing left in /dev/shm");
});

Deno.test("an end opened on the entry of one that closed behind a stopped peer counts that one closed", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  const s2 = openSender(s.descriptor);
  s2.putSync("taken by the holder");
  {
    await using holder = await stoppedHolder(s.descriptor, "receiver");
    await within1s("close()", () => s2.close());
    // Killed with the lock: it reaps nothing.
    await holder.stop("SIGKILL");
  }
  // The lowest entry free to claim is s2's, left for a reap: the new end removes it first.
  const s3 = openSender(s.descriptor);
  const stats = s3.stats();
  assert.deepEqual([stats.senders, stats.sendersDied, stats.receiversDied], [2, 0, 1]);
  s3.close();
  s.close();
  assert.throws(
    () => r.getSync({ timeout: 1_000 }),
    (e) => e instanceof ClosedError && /every sender of the queue has closed/.test(e.message),
  );
  assert.equal(r.sendersDied, 0);
  const { name } = r.descriptor;
  r.close();
  assert.deepEqual(entriesOf(name), []);
});

/** The participant index of process `pid`'s end in queue `name`, once it has claimed one. */
async function entryOf(name: string, pid: number): Promise<number> {
  const m = mapSegment(name)!;
  try {
    let index = -1;
    const find = () =>
      (index = Array.from({ length: L.MAX_PARTICIPANTS }, (_, i) => i)
        .findIndex((i) => m.i32[(L.participantOffset(i) + L.P_PID) >> 2] === pid)) >= 0;
    assert.ok(await eventually(find), `process ${pid} claimed an entry`);
    return index;
  } finally {
    m.unmap();
  }
}

Deno.test("an end killed before it removed the entry of one closed behind a stopped peer leaves that one counted closed", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  const s2 = openSender(s.descriptor);
  s.putSync("taken by the holder");
  {
    await using holder = await stoppedHolder(s.descriptor, "receiver");
    await within1s("close()", () => s2.close());
    // Another process's end claims the lowest entry free, s2's, then waits for the lock, and
    // is killed there: it never removed s2's entry.
    await using opener = new Child("join", [JSON.stringify(s.descriptor), "sender"]);
    await entryOf(s.descriptor.name, opener.proc.pid);
    await opener.stop("SIGKILL");
    await holder.stop("SIGKILL");
  }
  const stats = s.stats();
  // Before: 1. The claim wrote over s2's mark, and the reap took s2 for dead.
  assert.deepEqual([stats.senders, stats.sendersDied, stats.receiversDied], [1, 0, 1]);
  s.close();
  r.close();
});

Deno.test("a getMany closed without the lock returns no message a reap gave back to the queue", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 8 });
  for (let i = 0; i < 3; i++) s.putSync(new Uint8Array([i]));
  const name = s.descriptor.name;
  // A stopped peer, named as the lock's holder below: the close leaves without the lock.
  await using peer = new Child("join", [JSON.stringify(s.descriptor), "sender"]);
  await peer.expect("ready");
  const peerIndex = await entryOf(name, peer.proc.pid);
  await stopped(peer);
  const m = mapSegment(name)!;
  let copies = 0;
  let outcome: unknown;
  try {
    outcome = r.getManySync<Uint8Array>(Infinity, {
      allocate: (n) => {
        if (++copies === 2) {
          // Message 0 is Held for the batch; a reap that took this end for dead gives it back,
          // as #removeParticipantLocked does: Ready again, the read cursor back to it.
          const slot = Array.from({ length: 8 }, (_, k) => k).find((k) =>
            m.u32[(L.slotOffset(k) + L.S_STATE) >> 2] === L.SlotState.Held
          )!;
          Atomics.store(m.i32, (L.slotOffset(slot) + L.S_STATE) >> 2, L.SlotState.Ready);
          m.u32[L.C_READ >> 2] = m.u32[L.C_TAIL >> 2];
          Atomics.store(m.i32, L.W_LOCK >> 2, peerIndex + 1);
          r.close();
          Atomics.store(m.i32, L.W_LOCK >> 2, 0);
        }
        return new ArrayBuffer(n);
      },
    }).map((a) => a[0]);
  } catch (error) {
    outcome = error;
  } finally {
    m.unmap();
  }
  // Before: [0], while message 0 was in the queue again: delivered twice.
  assert.ok(outcome instanceof ClosedError, `the batch returned ${outcome}`);
  await peer.stop("SIGKILL");
  const r2 = openReceiver(s.descriptor);
  // Message 1, being copied at the close, went with it.
  assert.deepEqual(r2.getManySync<Uint8Array>(8, { timeout: 1_000 }).map((a) => a[0]), [0, 2]);
  s.close();
  r2.close();
});

Deno.test("ends that close while the last but them is stopped inside its own close still leave no queue behind", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  const { name } = s.descriptor;
  {
    // It reaps, removes its entry and stops itself, the lock still its own.
    await using child = new Child("close-stops", [JSON.stringify(s.descriptor)]);
    await child.expect("stopping");
    await untilStopped(child);
    await within1s("the sender's close()", () => s.close());
    await within1s("the receiver's close()", () => r.close());
    child.proc.kill("SIGCONT");
    assert.equal((await child.exit()).code, 0);
    assert.ok(child.out.includes("closed"));
  }
  // Before: the queue stayed. Resumed, the child found the two entries still taken, took
  // itself for not the last, and no live end was left to reap them.
  assert.deepEqual(entriesOf(name), []);
});

Deno.test("an end whose entry's mark was cleared before it took the lock counts as died when killed", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  {
    // As a reap's orphan check, under the lock, may clear it on an entry still free while a
    // new end records itself there without the lock.
    await using child = new Child("claim-cleared", [JSON.stringify(s.descriptor)]);
    await child.expect("open");
  }
  // Before: 0. The entry said "left by a close", and the reap of the killed end went by it.
  assert.equal(r.stats().sendersDied, 1);
  s.close();
  r.close();
});

Deno.test("a sender whose stream was aborted, killed as its close marks its entry, counts as died", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  {
    await using child = new Child("abort-killed", [JSON.stringify(s.descriptor)]);
    const status = await child.exit();
    assert.equal(status.signal, "SIGKILL", `killed as it marked its entry; said ${child.out}`);
  }
  assert.equal(r.getSync({ timeout: 1_000 }), "a");
  // Before: 0. Its close marked the entry as left by a close before removing it (as dead), and
  // the reap of the killed end went by the mark.
  assert.equal(s.stats().sendersDied, 1);
  s.close();
  assert.throws(() => r.getSync({ timeout: 1_000 }), ClosedError);
  assert.equal(r.sendersDied, 1, "the stream was cut short");
  r.close();
});

Deno.test("calls with a timeout keep it while a stopped peer keeps the lock, and blame the lock", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  for (const n of [1, 2, 3]) s.putSync(n);
  {
    // It takes message 1, keeps the lock, and is stopped: messages 2 and 3 wait, and there is
    // room.
    await using _holder = await stoppedHolder(s.descriptor, "receiver");
    const timeout = { timeout: 100 };
    const calls: [string, () => unknown, typeof EmptyError | typeof FullError][] = [
      ["getSync", () => r.getSync(timeout), EmptyError],
      ["getSync, timeout 0", () => r.getSync({ timeout: 0 }), EmptyError],
      ["get", () => r.get(timeout), EmptyError],
      ["getManySync", () => r.getManySync(2, timeout), EmptyError],
      ["getMany", () => r.getMany(2, timeout), EmptyError],
      ["borrowSync", () => r.borrowSync(timeout), EmptyError],
      ["borrow", () => r.borrow(timeout), EmptyError],
      ["putSync", () => s.putSync("lost", timeout), FullError],
      ["put", () => s.put("lost", timeout), FullError],
      ["putManySync", () => s.putManySync(["lost"], timeout), FullError],
      ["putMany", () => s.putMany(["lost"], timeout), FullError],
      ["prepareSync", () => s.prepareSync("lost", timeout), FullError],
      ["prepare", () => s.prepare("lost", timeout), FullError],
      ["waitForAllAckSync", () => s.waitForAllAckSync(timeout), FullError],
      ["waitForAllAck", () => s.waitForAllAck(timeout), FullError],
      // A call given up on the holder before does not cut the wait short with ClosedError.
      ["getSync, again", () => r.getSync(timeout), EmptyError],
    ];
    for (const [what, call, type] of calls) {
      // Before: 10 s, the time a call gives a live holder, then ClosedError "stuck" (and about
      // 0.2 s for each call after). Each takes about 105 ms.
      const { error } = await within1s(what, call);
      assert.ok(error instanceof type, `${what}: ${type.name}, got ${error}`);
      assert.match(
        error.message,
        /lock was kept past this call's deadline by participant \d+, which is stopped/,
      );
    }
    _holder.proc.kill("SIGKILL");
    await _holder.proc.status;
  }
  // The dead holder's lock is taken over; nothing the timed-out puts tried went in.
  assert.deepEqual(r.getManySync(4, { timeout: 1_000 }), [2, 3]);
  // Empty now, with the lock free: the last give-up, a few ms ago, is not blamed.
  assert.throws(
    () => r.getSync({ timeout: 0 }),
    (e) => e instanceof EmptyError && !/lock/.test(e.message),
  );
  s.putSync("after", { timeout: 1_000 });
  assert.equal(r.getSync({ timeout: 1_000 }), "after");
  s.waitForAllAckSync({ timeout: 1_000 });
  assert.equal(mutexHeld(s.descriptor.name), false);
  s.close();
  r.close();
});

Deno.test("calls with a short timeout wait for a lock holder that runs, rather than report an empty or full queue", async () => {
  // A peer descheduled inside its critical section keeps the lock for tens of milliseconds
  // on a loaded machine; this one keeps it for 1.5 s, running.
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  s.putSync(1);
  const held = async <T>(what: string, call: () => T): Promise<T> => {
    await using holder = new Child("lock", [JSON.stringify(s.descriptor), "sender", "1500"]);
    await holder.expect("locked");
    const started = performance.now();
    const value = call();
    const ms = performance.now() - started;
    // It did meet the lock held.
    assert.ok(ms > 500, `${what} took ${ms.toFixed(1)} ms`);
    await holder.exit();
    return value;
  };
  // Before (8d98200): EmptyError after 2 ms, blaming a live holder, with the message there.
  assert.equal(await held("getSync({ timeout: 0 })", () => r.getSync({ timeout: 0 })), 1);
  await held("putSync(…, { timeout: 0 })", () => s.putSync(2, { timeout: 0 }));
  assert.equal(await held("getNowait()", () => r.getNowait()), 2);
  assert.equal(r.getNowait(), undefined);
  s.close();
  r.close();
});

Deno.test("a put that claimed byte budget keeps its timeout while a stopped peer keeps the lock", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20, byteBudget: 8 << 20 });
  s.putSync(new Uint8Array(6 << 20));
  // No budget left for a second 6 MiB segment: the put claims it and waits for room.
  const started = performance.now();
  const put = s.put(new Uint8Array(6 << 20), { timeout: 3_000 }).then(() => undefined, (e) => e);
  {
    // It takes the first message, keeps the lock, and with it the budget, and is stopped.
    await using _holder = await stoppedHolder(s.descriptor, "receiver");
    const error = await put;
    const ms = performance.now() - started;
    assert.ok(error instanceof FullError, `FullError, got ${error}`);
    assert.match(error.message, /lock was kept past this call's deadline/);
    // Before: dropping the claim as the put gave up waited the 10 s a call gives a live holder.
    assert.ok(ms < 4_500, `the put took ${ms.toFixed(0)} ms`);
  }
  s.putSync("after", { timeout: 1_000 });
  assert.equal(r.getSync({ timeout: 1_000 }), "after");
  s.close();
  r.close();
});

Deno.test("a send whose wake-up finds only a killed waiter does not wait on a stopped lock holder", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 4 });
  const name = s.descriptor.name;
  const announced = () => segmentWord(name, L.W_RECEIVERS_WAITING);
  await using waiter = new Child("blocked", [JSON.stringify(s.descriptor), "get"]);
  await waiter.expect("blocked");
  assert.ok(await eventually(() => announced() > 0), "the waiter announced itself");
  const draft = s.prepareSync("sent");
  {
    await using _holder = await stoppedHolder(s.descriptor, "sender");
    // Killed in its wait: its announcement stays until its entry is reaped (no end can while
    // the holder keeps the lock), and a wake-up that finds nobody to wake reaps.
    await waiter.stop();
    assert.ok(announced() > 0, "the killed waiter's announcement is still there");
    // Before: that reap waited the 10 s a call gives a live holder, inside send().
    const { error } = await within1s("send()", () => draft.send());
    assert.equal(error, undefined);
  }
  assert.equal(r.getSync({ timeout: 1_000 }), "sent");
  assert.equal(announced(), 0, "the dead waiter's announcement went with its reap");
  s.close();
  r.close();
});

Deno.test("a lock holder that died holds up a call with a short timeout by a few ms, not a liveness slice", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 2 });
  const name = s.descriptor.name;
  await using child = new Child("lock", [JSON.stringify(s.descriptor), "sender"]);
  await child.expect("locked");
  await child.stop();
  stats.cases++;
  stats.heldMutex++;
  assert.ok(mutexHeld(name), "the dead holder's word is still there");
  const started = performance.now();
  assert.throws(() => r.getSync({ timeout: 5 }), EmptyError);
  const ms = performance.now() - started;
  // A waiter used to sleep a whole 100 ms slice before it first asked whether the holder
  // lived. The bound leaves room for a loaded machine; the call itself takes about 6-9 ms.
  assert.ok(ms < 80, `getSync({ timeout: 5 }) took ${ms.toFixed(1)} ms`);
  assert.equal(mutexHeld(name), false, "the mutex was taken over and released");
  s.putSync("after");
  assert.equal(r.getSync({ timeout: 1000 }), "after");
  s.close();
  r.close();
  assert.deepEqual(entriesOf(name), []);
});

// ------------------------------------------------------------------ blocked in a wait

/** Waits until a participant of queue `name` announces a wait in the word at `offset` (it
 * is asleep in it); fails after 10 s. */
async function asleepIn(name: string, offset: number): Promise<void> {
  const until = performance.now() + 10_000;
  while (segmentWord(name, offset) === 0) {
    assert.ok(performance.now() < until, `no waiter announced at ${offset}`);
    await sleep(5);
  }
}

Deno.test("participants killed while blocked in putSync, getSync and waitForAllAckSync", async () => {
  {
    // A sender blocked on a full queue: its complete messages still arrive.
    const [s, r] = createSharedMemoryPair({ capacity: 4 });
    s.close();
    await using child = new Child("blocked", [JSON.stringify(r.descriptor), "put"]);
    const n = Number((await child.expect("blocked")).split(" ")[1]);
    // Asleep in its wait, not still on the way there (before: a 100 ms sleep, a guess).
    await asleepIn(r.descriptor.name, L.W_SENDERS_WAITING);
    await child.stop();
    stats.cases++;
    const diedAt = performance.now();
    const got: unknown[] = [];
    for await (const m of r) got.push((m as { seq: number }).seq);
    noticed(performance.now() - diedAt, "receiver after a blocked sender's death");
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
    r.close();
  }
  {
    // A receiver blocked in getSync, the only one: the parent's put fails, its ack wait too.
    const [s, r] = createSharedMemoryPair({ capacity: 1 });
    r.close();
    await using child = new Child("blocked", [JSON.stringify(s.descriptor), "get"]);
    await child.expect("blocked");
    await asleepIn(s.descriptor.name, L.W_RECEIVERS_WAITING);
    await child.stop();
    stats.cases++;
    const diedAt = performance.now();
    await s.put(1); // room left: accepted
    await assert.rejects(s.put(2, { timeout: 10_000 }), ClosedError);
    await assert.rejects(s.waitForAllAck({ timeout: 10_000 }), ClosedError);
    noticed(performance.now() - diedAt, "sender after a blocked receiver's death");
    s.close();
  }
  {
    // A sender blocked in waitForAllAckSync: its message still arrives, then "drained".
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    s.close();
    await using child = new Child("blocked", [JSON.stringify(r.descriptor), "ack"]);
    await child.expect("blocked");
    await asleepIn(r.descriptor.name, L.W_ACK_WAITING);
    await child.stop();
    stats.cases++;
    const diedAt = performance.now();
    assert.deepEqual(await r.get({ timeout: 1000 }), { seq: 0 });
    await assert.rejects(
      r.get({ timeout: 10_000 }),
      (e: unknown) => e instanceof ClosedError && e.reason === "drained",
    );
    noticed(performance.now() - diedAt, "receiver after an acking sender's death");
    r.close();
  }
});

Deno.test("a waiter killed in its wait leaves no announcement behind once a peer wakes for it", async () => {
  // Before: the count stayed for the queue's life, and every put (or release) of every peer
  // paid a futex wake syscall for it: 100-byte messages ran ~40% slower.
  const cases = [
    ["get", L.W_RECEIVERS_WAITING],
    ["put", L.W_SENDERS_WAITING],
    ["ack", L.W_ACK_WAITING],
  ] as const;
  for (const [what, count] of cases) {
    const [s, r] = createSharedMemoryPair({ capacity: 4 });
    const name = s.descriptor.name;
    await using child = new Child("blocked", [JSON.stringify(s.descriptor), what]);
    await child.expect("blocked");
    while (segmentWord(name, count) === 0) await sleep(5); // asleep in its wait
    await child.stop();
    stats.cases++;
    // The first wake that finds nobody reaps the dead waiter.
    if (what === "get") s.putSync(1);
    else r.getSync({ timeout: 1000 });
    assert.equal(segmentWord(name, count), 0, `${what}: its announcement was taken back`);
    s.close();
    r.close();
  }
});

Deno.test("an end that exits with an async wait still out takes its announcement back", async () => {
  // Before: the close took nothing back, and the wait it left never resumed to do it.
  const [s, r] = createSharedMemoryPair({ capacity: 2 });
  await using child = new Child("get-then-exit", [JSON.stringify(s.descriptor)]);
  await child.expect("waiting");
  assert.equal((await child.exit()).code, 0);
  stats.cases++;
  assert.equal(segmentWord(s.descriptor.name, L.W_RECEIVERS_WAITING), 0);
  s.close();
  r.close();
});

Deno.test("an end that takes over a dead end's entry takes back its own waits", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 2 });
  const name = s.descriptor.name;
  await using child = new Child("join", [JSON.stringify(s.descriptor), "receiver"]);
  await child.expect("ready");
  await child.stop(); // its entry stays until reaped, or taken over by the next end
  stats.cases++;
  const late = openReceiver(s.descriptor); // the dead end's entry, the first free lock byte
  assert.throws(() => late.getSync({ timeout: 300 }), EmptyError);
  // Before: reaping the entry it took over made the end skip taking back its own waits.
  assert.equal(segmentWord(name, L.W_RECEIVERS_WAITING), 0);
  late.close();
  s.close();
  r.close();
});

Deno.test("a receiver killed holding a borrow: waitForAllAck learns, with and without a live receiver", async () => {
  for (const livePeer of [false, true]) {
    const [s, r] = createSharedMemoryPair({ capacity: 2, arenaBytes: 1 << 20 });
    const name = s.descriptor.name;
    await using child = new Child("get", [JSON.stringify(s.descriptor), "hold"]);
    await child.expect("ready");
    if (!livePeer) r.close();
    // 8 MiB: the borrow holds an extension segment.
    await s.put({
      seq: 0,
      sum: checksum32(new Uint8Array(8 << 20)),
      data: new Uint8Array(8 << 20),
    });
    await child.expect("got 0");
    const acking = s.waitForAllAck({ timeout: 10_000 }).then(() => undefined, (e) => e);
    await child.stop();
    stats.cases++;
    const diedAt = performance.now();
    const error = await acking;
    noticed(performance.now() - diedAt, "waitForAllAck after a borrowing receiver's death");
    assert.equal(error, undefined, "the borrowed message counts as received");
    await s.put("next", { timeout: 1000 }).catch((e) => {
      assert.ok(!livePeer && e instanceof ClosedError, `${e}`);
    });
    if (livePeer) assert.equal(await r.get({ timeout: 1000 }), "next");
    s.close();
    r.close();
    assert.deepEqual(entriesOf(name), []);
  }
});

/**
 * A fresh pair whose queue another process joined as a receiver, borrowed the one message put
 * and was killed holding it; `beforeKill` looks at the queue just before the kill.
 */
async function receiverKilledHoldingOne(
  capacity: number,
  beforeKill?: (s: Sender) => void,
): Promise<[Sender, Receiver]> {
  const [s, r] = createSharedMemoryPair({ capacity });
  await using child = new Child("get", [JSON.stringify(r.descriptor), "hold"]);
  await child.expect("ready");
  await s.put({ seq: 0, sum: checksum32(new Uint8Array(8)), data: new Uint8Array(8) });
  await child.expect("got 0");
  beforeKill?.(s);
  await child.stop();
  stats.cases++;
  return [s, r];
}

Deno.test("callers that only poll (getNowait, hasSpace) get past dead peers too", async () => {
  {
    // A dead sender's unfinished message at the head of the queue, a whole one behind it.
    const [s, r] = createSharedMemoryPair({ capacity: 4 });
    await using child = new Watched("queue_child.ts", ["draft", JSON.stringify(s.descriptor)]);
    await child.expect("drafting");
    await s.put("behind the draft");
    await child.stop();
    stats.cases++;
    const diedAt = performance.now();
    let got;
    while ((got = r.getNowait()) === undefined && performance.now() - diedAt < 5000) {
      await sleep(10);
    }
    noticed(performance.now() - diedAt, "a getNowait loop behind a dead sender's draft");
    assert.equal(got, "behind the draft");
    s.close();
    r.close();
  }
  {
    // A dead receiver holding the only slot.
    const [s, r] = await receiverKilledHoldingOne(1, (s) => assert.equal(s.hasSpace(), false));
    const diedAt = performance.now();
    while (!s.hasSpace() && performance.now() - diedAt < 5000) await sleep(10);
    noticed(performance.now() - diedAt, "a hasSpace loop behind a dead receiver's borrow");
    assert.equal(s.hasSpace(), true);
    s.close();
    r.close();
  }
});

Deno.test("callers that wait with timeouts shorter than a wait slice get past dead peers too", async () => {
  /** Calls `call` until it stops throwing EmptyError or FullError; returns what it ended with. */
  const poll = async (call: () => unknown): Promise<{ v?: unknown; e?: unknown }> => {
    const started = performance.now();
    for (;;) {
      try {
        return { v: await call() };
      } catch (e) {
        if (!(e instanceof EmptyError || e instanceof FullError)) return { e };
        if (performance.now() - started > 5_000) return { e };
      }
      await yieldToEvents();
    }
  };
  for (const sync of [false, true]) {
    // The only sender killed: gets of 10 ms at a time must end with "drained"; so must gets
    // of no time at all, which never sleep a slice (they look at their deadline).
    for (const timeout of [10, 0]) {
      const [s, r] = createSharedMemoryPair({ capacity: 2 });
      s.close();
      await using child = new Child("join", [JSON.stringify(r.descriptor), "sender"]);
      await child.expect("ready");
      await child.stop();
      stats.cases++;
      const diedAt = performance.now();
      const got = await poll(() => sync ? r.getSync({ timeout }) : r.get({ timeout }));
      noticed(
        performance.now() - diedAt,
        `get${sync ? "Sync" : ""} of ${timeout} ms after a sender died`,
      );
      assert.ok(got.e instanceof ClosedError && got.e.reason === "drained", `${got.e}`);
      r.close();
    }
    {
      // The only receiver killed before it took the message: acks of 10 ms at a time must
      // end with "no-receivers".
      const [s, r] = createSharedMemoryPair({ capacity: 2 });
      await using child = new Child("join", [JSON.stringify(r.descriptor), "receiver"]);
      await child.expect("ready");
      r.close();
      await s.put("never taken");
      await child.stop();
      stats.cases++;
      const diedAt = performance.now();
      const acked = await poll(() =>
        sync ? s.waitForAllAckSync({ timeout: 10 }) : s.waitForAllAck({ timeout: 10 })
      );
      noticed(performance.now() - diedAt, "waitForAllAck of 10 ms after a receiver died");
      assert.ok(
        acked.e instanceof ClosedError && acked.e.reason === "no-receivers",
        `${acked.e}`,
      );
      s.close();
    }
  }
  {
    // A receiver killed holding a borrow, another receiver left: the message counts as
    // received, and acks of 10 ms at a time see it so.
    const [s, r] = await receiverKilledHoldingOne(2);
    const diedAt = performance.now();
    const acked = await poll(() => s.waitForAllAck({ timeout: 10 }));
    noticed(performance.now() - diedAt, "a lease of a dead receiver, polled for with 10 ms calls");
    assert.deepEqual(acked, { v: undefined });
    s.close();
    r.close();
  }
});

Deno.test("an ack lost to a receiver killed mid-release is found by acks of 10 ms at a time", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 2 });
  const name = s.descriptor.name;
  s.putSync("released, its ack lost");
  assert.equal(r.getSync(), "released, its ack lost");
  s.waitForAllAckSync({ timeout: 1000 }); // the release settled, the ack credited
  // What a receiver killed between releasing the message and crediting its sender leaves:
  // the slot done, the sender's ack count one short.
  const m = mapSegment(name)!;
  try {
    let sender = -1;
    for (let i = 0; i < L.MAX_PARTICIPANTS && sender < 0; i++) {
      const kind = m.u32[(L.participantOffset(i) + L.P_KIND) >> 2];
      if (kind === L.ParticipantKind.Sender) sender = i;
    }
    const acked = (L.participantOffset(sender) + L.P_ACKED) >> 2;
    assert.equal(m.u32[acked], 1);
    m.u32[acked] = 0;
  } finally {
    m.unmap();
  }
  // waitForAllAck reads the slots, not the count: a caller polling with short calls sees the
  // message received at once.
  const started = performance.now();
  let done = false;
  while (!done && performance.now() - started < 5_000) {
    done = await s.waitForAllAck({ timeout: 10 }).then(() => true, (e) => {
      if (!(e instanceof FullError)) throw e;
      return false;
    });
  }
  assert.ok(done, "waitForAllAck saw the message received");
  noticed(performance.now() - started, "a lost ack, polled for with 10 ms calls");
  s.close();
  r.close();
});

// ------------------------------------------------------------------ extension segments

Deno.test("a sender killed after reserving a new extension, before making its segment", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 2, arenaBytes: 1 << 20 });
  const name = s.descriptor.name;
  await using child = new Child("reserve-ext", [JSON.stringify(s.descriptor), `${3 << 20}`]);
  assert.equal(await child.expect("reserved"), "reserved segment=1 create=true");
  await child.stop();
  stats.cases++;
  // The entry is reclaimed with no segment behind it; a message of that size class must still
  // go through (it reuses the entry, so the segment has to be made then).
  const data = new Uint8Array(3 << 20).fill(7);
  await s.put(data, { timeout: 2000 });
  assert.deepEqual(await r.get({ timeout: 2000 }), data);
  await s.put(data.subarray(0, 2 << 20), { timeout: 2000 });
  assert.equal((await r.get<Uint8Array>({ timeout: 2000 })).length, 2 << 20);
  s.close();
  r.close();
  assert.deepEqual(entriesOf(name), []);
});

Deno.test("a sender killed after making an extension segment, before sizing it", () => {
  const [s, r] = createSharedMemoryPair({ capacity: 2, arenaBytes: 1 << 20 });
  const name = s.descriptor.name;
  const data = new Uint8Array(2 << 20).fill(9);
  s.putSync(data);
  assert.deepEqual(r.getSync({ timeout: 2000 }), data);
  // What such a sender leaves once it is reaped: an idle entry whose segment, at the current
  // generation, is empty (shm_open made it; the ftruncate never ran).
  const [extension] = entriesOf(name).filter((n) => n !== name.slice(1));
  assert.match(extension, /-x0-/);
  shmUnlink(`/${extension}`);
  closeFd(shmCreate(`/${extension}`, 0));
  stats.cases++;
  // A sender with no mapping of its own must make the segment anew, not fail on it forever.
  const later = openSender(s.descriptor);
  s.close();
  for (let i = 0; i < 3; i++) {
    later.putSync(data, { timeout: 2000 });
    assert.deepEqual(r.getSync({ timeout: 2000 }), data);
  }
  later.close();
  r.close();
  assert.deepEqual(entriesOf(name), []);
});

// ------------------------------------------------------------------ liveness without pids

Deno.test("liveness does not trust pids: a dead participant recorded with a live pid is reaped", async () => {
  const [s, r] = createSharedMemoryPair({ capacity: 2 });
  const name = s.descriptor.name;
  await using child = new Child("join", [JSON.stringify(s.descriptor), "receiver"]);
  await child.expect("ready");
  r.close();
  const pid = child.proc.pid;
  await child.stop();
  stats.cases++;
  // As if the dead receiver's pid had been reused by a live process: this one.
  const m = mapSegment(name)!;
  let patched = 0;
  for (let i = 0; i < L.MAX_PARTICIPANTS; i++) {
    const at = (L.participantOffset(i) + L.P_PID) >> 2;
    if (m.i32[at] === pid) {
      m.i32[at] = Deno.pid;
      patched++;
    }
  }
  m.unmap();
  assert.equal(patched, 1);
  const diedAt = performance.now();
  await s.put("unread");
  await assert.rejects(
    s.waitForAllAck({ timeout: 10_000 }),
    (e: unknown) => e instanceof ClosedError && e.reason === "no-receivers",
  );
  noticed(performance.now() - diedAt, "a dead receiver carrying a live pid");
  s.close();
  assert.deepEqual(entriesOf(name), []);
});

// ------------------------------------------------------------------ nothing leaks

async function laterProcessSweeps(): Promise<void> {
  await using sweeper = new Child("sweep", []);
  await sweeper.expect("swept");
  assert.equal((await sweeper.exit()).code, 0);
}

Deno.test("every way of leaving: close, plain exit, uncaught error, end of program", async () => {
  for (const how of ["close", "exit", "throw", "return"]) {
    await using child = new Child("exit", [how]);
    const name = (await child.expect("created")).split(" ")[1];
    const status = await child.exit();
    stats.cases++;
    assert.equal(status.code, how === "throw" ? 1 : 0);
    if (how !== "throw") {
      // close(), Deno.exit() and the end of the program all close the ends.
      assert.deepEqual(entriesOf(name), [], `after ${how}, at once`);
    }
    // An uncaught error skips the unload event: the next process's sweep removes the rest.
    await laterProcessSweeps();
    assert.deepEqual(entriesOf(name), [], `after ${how}, after the next process's sweep`);
  }
});

Deno.test("SIGKILL of any subset (with the rest closing or exiting): nothing left in /dev/shm", async () => {
  const fates = ["close", "exit", "kill"] as const;
  const kinds = ["sender", "receiver", "receiver"];
  for (let combo = 0; combo < 27; combo++) {
    const fate = [combo % 3, Math.floor(combo / 3) % 3, Math.floor(combo / 9)].map((i) => fates[i]);
    const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20 });
    const name = s.descriptor.name;
    await s.put(new Uint8Array(600 << 10)); // an extension segment
    await using children = endedTogether(
      kinds.map((k) => new Child("join", [JSON.stringify(s.descriptor), k])),
    );
    for (const c of children) await c.expect("ready");
    s.close();
    r.close();
    // The killed go first: the last one to leave normally then knows it is the last. (The
    // other order, a kill after everyone else left, is the all-killed case below.)
    for (let i = 0; i < 3; i++) if (fate[i] === "kill") await children[i].stop("SIGKILL");
    for (let i = 0; i < 3; i++) {
      if (fate[i] === "exit") assert.equal((await children[i].stop("SIGUSR1")).code, 0);
      if (fate[i] === "close") assert.equal((await children[i].stop("SIGTERM")).code, 0);
    }
    stats.cases++;
    if (fate.some((f) => f !== "kill")) {
      // A plain exit closes the ends still open, like close().
      assert.deepEqual(entriesOf(name), [], `${fate}: the last one out unlinks`);
    } else {
      // No sweep: the last one killed has its exit sweeper remove the queue.
      assert.ok(
        await eventually(() => entriesOf(name).length === 0),
        `${fate}: removed by the exit sweeper of the last one killed`,
      );
    }
  }
});

Deno.test("a process killed at random moments while making and dropping queues leaves nothing after a sweep", async () => {
  const names = new Set<string>();
  for (let rep = 0; rep < REPEAT * 3; rep++) {
    await using child = new Child("create-loop", [`${rep}`]);
    await child.expect("ready");
    await sleep(random() * 400);
    await child.stop();
    for (const line of child.out) if (line.startsWith("q ")) names.add(line.slice(2));
    stats.cases++;
  }
  await laterProcessSweeps();
  for (const name of names) assert.deepEqual(entriesOf(name), [], `${name} swept`);
  // Killed between making a segment and printing its name is the case the sweep has to
  // wait out (no header yet); other processes on this machine make queues too, so only a
  // private /dev/shm shows that nothing at all is left: see the next test.
});

Deno.test({
  name: "in a private /dev/shm: random kills while making queues, then a sweep: /dev/shm is empty",
  ignore: !(await canIsolate()),
  async fn() {
    const out = await isolated(
      "fault_child.ts",
      ["create-kills", `${REPEAT * 4}`, "11"],
      512 << 20,
    );
    const { beforeSweep, left } = JSON.parse(out.trim().split("\n").pop()!);
    stats.cases += REPEAT * 4;
    assert.ok(beforeSweep.some((n: number) => n > 0), `kills left entries: ${beforeSweep}`);
    assert.deepEqual(left, [], "nothing at all left in /dev/shm");
  },
});

// A report, not a test: where the random kills landed varies from run to run.
globalThis.addEventListener("unload", () => {
  console.log(
    `fault cases: ${stats.cases} kills/exits checked; ${stats.midPut} landed mid-put, ` +
      `${stats.midGet} mid-get, ${stats.heldMutex} while holding the queue mutex; ` +
      `slowest notice ${stats.slowestNoticeMs.toFixed(0)} ms`,
  );
});
