// A lone sender's runs: slots it reserves ahead, with their arena space, and fills without the
// queue's lock (see SlotState.Spare). What a user relies on must not change with them: the
// capacity, stats(), hasSpace(), order, acks, the end of a stream, and cleanup after a kill.
import assert from "node:assert/strict";
import {
  ClosedError,
  createSharedMemoryPair,
  FullError,
  openSender,
  type Receiver,
  type Sender,
} from "../mod.ts";
import { delay, mapSegment, payload, slotsInState, Watched, withoutLeaks } from "./helpers.ts";
import * as L from "../queue/layout.ts";
import { RUN_SLOTS } from "../queue/shared_queue.ts";

const spares = (end: Sender | Receiver) => slotsInState(end.descriptor.name, L.SlotState.Spare);

/** Closes `s` and hands its queue to a child process, whose sender is then the only one: returns
 * the child once its put of `bytes` made a run (to kill, for a lone sender dead with spares). */
async function childSenderWithRun(s: Sender, bytes: number): Promise<Watched> {
  const descriptor = JSON.stringify(s.descriptor);
  s.close();
  const child = new Watched("queue_child.ts", ["putone", descriptor, String(bytes)]);
  try {
    await child.expect("sent");
  } catch (error) {
    await child[Symbol.asyncDispose]();
    throw error;
  }
  return child;
}

/** With one message held by a lease: puts messages of `sizeAt(i)` bytes without waiting, each
 * taken at once, until one finds no room (or `most` went); how many the ring then carried, the
 * leased one included. */
function messagesBehindLease(
  s: Sender,
  r: Receiver,
  sizeAt: (i: number) => number,
  most: number,
): number {
  let put = 1;
  for (let i = 0; i < most; i++) {
    try {
      s.putSync(new Uint8Array(sizeAt(i)), { timeout: 0 });
    } catch (error) {
      if (!(error instanceof FullError)) throw error;
      break;
    }
    put++;
    r.getSync();
  }
  return put;
}

Deno.test("a lone sender's small put reserves a run; stats(), hasSpace() and the receiver see only the message", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 64 });
    try {
      s.putSync(new Uint8Array(100).fill(1));
      assert.equal(spares(s), RUN_SLOTS - 1, "the put reserved spares for the next ones");
      for (const end of [s, r]) {
        const stats = end.stats();
        assert.equal(stats.inFlight, 1);
        assert.equal(stats.put, 1);
        assert.equal(stats.waiting, 1);
      }
      assert.ok(s.hasSpace());
      for (let i = 2; i <= RUN_SLOTS; i++) s.putSync(new Uint8Array(100).fill(i));
      assert.equal(spares(s), 0, "the next puts took the spares");
      assert.equal(r.stats().waiting, RUN_SLOTS);
      for (let i = 1; i <= RUN_SLOTS; i++) {
        const got = r.getSync<Uint8Array>();
        assert.ok(got.length === 100 && got.every((b) => b === i), `message ${i} in order`);
      }
      assert.equal(r.getNowait(), undefined);
    } finally {
      s.close();
      r.close();
    }
  }));

Deno.test("with runs the capacity still bounds the messages put and not released", () =>
  withoutLeaks(() => {
    const capacity = 8;
    const [s, r] = createSharedMemoryPair({ capacity });
    try {
      for (let i = 0; i < capacity; i++) {
        assert.ok(s.hasSpace(), `room for message ${i}`);
        s.putSync(i);
      }
      assert.equal(s.hasSpace(), false);
      assert.throws(() => s.putSync(capacity, { timeout: 0 }), FullError);
      assert.equal(r.getSync(), 0);
      s.putSync(capacity, { timeout: 0 });
      for (let i = 1; i <= capacity; i++) assert.equal(r.getSync(), i);
      assert.equal(r.stats().inFlight, 0);
    } finally {
      s.close();
      r.close();
    }
  }));

Deno.test("a second sender joining cancels the first one's spares; each sender's order holds", () =>
  withoutLeaks(() => {
    const [a, r] = createSharedMemoryPair({ capacity: 64 });
    let b: Sender | undefined;
    try {
      a.putSync({ from: "a", seq: 0 });
      assert.ok(spares(a) > 0);
      b = openSender(a.descriptor);
      assert.equal(spares(a), 0, "runs are for a lone sender");
      a.putSync({ from: "a", seq: 1 });
      b.putSync({ from: "b", seq: 0 });
      a.putSync({ from: "a", seq: 2 });
      b.putSync({ from: "b", seq: 1 });
      assert.equal(spares(a), 0, "two senders make no runs");
      const seen: Record<string, number[]> = { a: [], b: [] };
      for (let i = 0; i < 5; i++) {
        const m = r.getSync<{ from: string; seq: number }>();
        seen[m.from].push(m.seq);
      }
      assert.deepEqual(seen, { a: [0, 1, 2], b: [0, 1] });
      assert.equal(r.getNowait(), undefined);
      b.close();
      a.putSync({ from: "a", seq: 3 });
      assert.ok(spares(a) > 0, "alone again, it makes runs again");
      assert.deepEqual(r.getSync(), { from: "a", seq: 3 });
    } finally {
      a.close();
      b?.close();
      r.close();
    }
  }));

Deno.test("spares hold back neither acks nor the end of a stream", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 64 });
    try {
      for (let i = 0; i < 3; i++) s.putSync(i);
      assert.ok(spares(s) > 0);
      for (let i = 0; i < 3; i++) assert.equal(r.getSync(), i);
      await s.waitForAllAck({ timeout: 5_000 });
      s.waitForAllAckSync({ timeout: 5_000 });
      s.close();
      assert.equal(spares(r), 0, "the close gave the spares back");
      assert.throws(() => r.getSync({ timeout: 5_000 }), ClosedError);
      assert.equal(r.stats().inFlight, 0);
    } finally {
      s.close();
      r.close();
    }
  }));

Deno.test("messages that outgrow the run's chunk go through the lock, in order, whatever their size", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 64, arenaBytes: 1 << 20 });
    try {
      const sizes = [100, 100, 3000, 10, 100, 300_000, 64, 100, 4096, 100, 100];
      for (let i = 0; i < sizes.length; i++) s.putSync(payload(0, i, sizes[i]));
      for (let i = 0; i < sizes.length; i++) {
        assert.deepEqual(r.getSync<Uint8Array>(), payload(0, i, sizes[i]), `message ${i}`);
      }
    } finally {
      s.close();
      r.close();
    }
  }));

Deno.test("a long stream of mixed small sizes through a small arena: runs wrap, reclaim and reuse it intact", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 48, arenaBytes: 64 << 10 });
    try {
      let seed = 7;
      const next = () => (seed = (seed * 1103515245 + 12345) >>> 0);
      const sizes = Array.from({ length: 20_000 }, () => next() % 1500);
      let got = 0;
      // Takes up to n of the messages put so far.
      const take = (n: number, put: number) => {
        for (; n > 0 && got < put; n--, got++) {
          assert.deepEqual(r.getSync<Uint8Array>(), payload(1, got, sizes[got]), `message ${got}`);
        }
      };
      for (let i = 0; i < sizes.length; i++) {
        // A put that finds no room (messages or arena bytes) lets the receiver catch up by a
        // random amount, then tries again.
        for (;;) {
          try {
            if (i % 2 === 0) s.putSync(payload(1, i, sizes[i]), { timeout: 0 });
            else await s.put(payload(1, i, sizes[i]), { timeout: 0 });
            break;
          } catch (error) {
            if (!(error instanceof FullError)) throw error;
            take(1 + (next() % 40), i);
          }
        }
      }
      take(sizes.length, sizes.length);
      assert.equal(r.getNowait(), undefined);
      const stats = r.stats();
      assert.equal(stats.put, sizes.length);
      assert.equal(stats.received, sizes.length);
    } finally {
      s.close();
      r.close();
    }
  }));

Deno.test("a sender process killed with spares: the receiver gets its message, then the end of the stream, and no spare is left", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 64 });
    await using child = await childSenderWithRun(s, 100);
    try {
      assert.equal(spares(r), RUN_SLOTS - 1);
      await child.stop("SIGKILL");
      assert.deepEqual(r.getSync<Uint8Array>({ timeout: 5_000 }), new Uint8Array(100).fill(7));
      assert.throws(
        () => r.getSync({ timeout: 5_000 }),
        (e) => e instanceof ClosedError && e.reason === "drained",
      );
      assert.equal(spares(r), 0, "the reap cancelled them");
      assert.equal(r.stats().inFlight, 0);
      assert.equal(r.stats().sendersDied, 1);
    } finally {
      r.close();
    }
  }));

Deno.test("a sender whose spares a second sender's arrival took back does not count them as room", () =>
  withoutLeaks(() => {
    const [a, r] = createSharedMemoryPair({ capacity: 64 });
    const c = openSender(a.descriptor);
    try {
      c.close(); // a is alone again
      a.putSync(0); // a run
      assert.ok(spares(a) > 0);
      const b = openSender(a.descriptor); // takes a's spares back
      let n = 1;
      while (b.hasSpace()) b.putSync(n++);
      assert.equal(n, 64, "the spares' room came back for b");
      assert.equal(a.hasSpace(), false, "the queue is full for a too");
      assert.throws(() => a.putSync(64, { timeout: 0 }), FullError);
      b.close();
    } finally {
      a.close();
      r.close();
    }
  }));

Deno.test("a receiver's EmptyError counts spares as room, not as messages", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    try {
      s.putSync(1); // one message and 7 spares: the capacity's 8
      using _lease = r.borrowSync();
      assert.throws(
        () => r.getSync({ timeout: 20 }),
        (e) => e instanceof Error && e.name === "EmptyError" && !/capacity/.test(e.message),
      );
      assert.ok(s.hasSpace());
    } finally {
      s.close();
      r.close();
    }
  }));

Deno.test("spares given back leave the ring and the arena: a lease on a run's message holds no more than before", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 64 });
    try {
      s.putSync(new Uint8Array(100));
      const lease = r.borrowSync();
      // Each 5000 B message goes through the lock and gives the run of the 100 B one before it
      // back. The ring's slots are reused in order behind the held message: all but it serve.
      const put = messagesBehindLease(s, r, (i) => i % 2 === 0 ? 5000 : 100, 1000);
      assert.equal(put, s.stats().capacity * 2, "every slot of the ring took a message");
      lease.release();
    } finally {
      s.close();
      r.close();
    }
  }));

Deno.test("in a small arena, a borrowed run message leaves room for putMany and prepare", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 64, arenaBytes: 64 << 10 });
    try {
      s.putSync(new Uint8Array(4000)); // its run's chunk would take the whole arena
      using _lease = r.borrowSync();
      s.putManySync([new Uint8Array(100)], { timeout: 0 });
      assert.equal(r.getSync<Uint8Array>().length, 100);
      s.prepareSync(new Uint8Array(100), { timeout: 0 }).send();
      assert.equal(r.getSync<Uint8Array>().length, 100);
    } finally {
      s.close();
      r.close();
    }
  }));

for (const how of ["stays", "closes", "is killed"] as const) {
  Deno.test(`in a small arena, a borrowed run message leaves room for a second sender, the first one ${how}`, () =>
    withoutLeaks(async () => {
      const [s, r] = createSharedMemoryPair({ capacity: 64, arenaBytes: 64 << 10 });
      let first: Sender | undefined = s;
      if (how === "is killed") {
        await using child = await childSenderWithRun(s, 4000);
        await child.stop("SIGKILL");
        first = undefined;
      } else s.putSync(new Uint8Array(4000));
      const second = openSender(r.descriptor);
      try {
        using _lease = r.borrowSync({ timeout: 5_000 });
        if (how === "closes") first!.close();
        // Before: FullError, "65536 of its 65536 bytes are held": the run's chunk had taken the
        // whole arena, and only the release of its first message gave it back.
        second.putSync(new Uint8Array(100), { timeout: 1_000 });
        assert.equal(r.getSync<Uint8Array>({ timeout: 1_000 }).length, 100);
      } finally {
        first?.close();
        second.close();
        r.close();
      }
    }));
}

Deno.test("a lone sender killed with spares: its reap takes them out of the ring, before any sender joins", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    await using child = await childSenderWithRun(s, 100);
    const lease = r.borrowSync({ timeout: 5_000 });
    await child.stop("SIGKILL");
    await delay(300); // past this end's last look for the dead: its next one is due
    r.stats(); // reaps the dead sender (a join would take the spares back itself)
    const next = openSender(r.descriptor);
    try {
      // Before: 9, the dead sender's spares cancelled in place behind the lease.
      const put = messagesBehindLease(next, r, () => 100, 100);
      assert.equal(put, next.stats().capacity * 2, "every slot of the ring took a message");
    } finally {
      lease.release();
      next.close();
      r.close();
    }
  }));

Deno.test("a lone sender that closes with spares gives its run's arena room back at once", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 64, arenaBytes: 64 << 10 });
    s.putSync(new Uint8Array(100));
    const lease = r.borrowSync();
    const m = mapSegment(r.descriptor.name)!;
    const head = () => m.f64[L.C_ARENA_HEAD >> 3];
    const before = head();
    s.close();
    try {
      // Before: the same head, the chunk's room held until the leased message's release.
      assert.ok(head() < before, `arena head ${head()}, before the close ${before}`);
      assert.equal(r.stats().inFlight, 1);
    } finally {
      m.unmap();
      lease.release();
      r.close();
    }
  }));

Deno.test("a lone sender that closes with spares gives their ring slots back at once: a lease on its message holds no more than before", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    s.putSync(new Uint8Array(100));
    const lease = r.borrowSync();
    s.close();
    const next = openSender(r.descriptor);
    try {
      const put = messagesBehindLease(next, r, () => 100, 100);
      // Before: 9, the spares of the closed sender's run Done in place behind the lease.
      assert.equal(put, next.stats().capacity * 2, "every slot of the ring took a message");
      lease.release();
    } finally {
      next.close();
      r.close();
    }
  }));

Deno.test("an arena tail forged past a run's messages is found: the queue is poisoned, not overwritten", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 64, arenaBytes: 64 << 10 });
    try {
      // Small enough that one run (a quarter of the arena at most) holds all of them.
      for (let i = 0; i < RUN_SLOTS; i++) s.putSync(payload(0, i, 200));
      for (let i = 0; i < RUN_SLOTS - 1; i++) r.getSync();
      r.stats(); // settles: the run's last message is the oldest
      const m = mapSegment(s.descriptor.name)!;
      try {
        m.f64[L.C_ARENA_TAIL >> 3] = m.f64[L.C_ARENA_HEAD >> 3];
      } finally {
        m.unmap();
      }
      assert.throws(
        () => s.putSync(payload(0, RUN_SLOTS, 200), { timeout: 0 }),
        (e) => e instanceof ClosedError && /arena tail .* past a message/.test(e.message),
      );
    } finally {
      s.close();
      r.close();
    }
  }));

Deno.test("a lone sender process killed mid-stream, five times: the receiver gets an unbroken prefix of its messages, then the end, and no spare is left", () =>
  withoutLeaks(async () => {
    for (const killAfterMs of [5, 20, 40, 70, 110]) {
      const [s, r] = createSharedMemoryPair({ capacity: 64 });
      const descriptor = JSON.stringify(s.descriptor);
      await using child = new Watched("queue_child.ts", ["flood", descriptor, "20000"]);
      try {
        await child.expect("ready");
        s.close(); // the child's sender is alone: it puts in runs
        let next = 0;
        const until = performance.now() + killAfterMs;
        while (performance.now() < until) {
          const got = r.getSync<number>({ timeout: 5_000 });
          assert.equal(got, next++, "in order, none lost");
        }
        await child.stop("SIGKILL");
        for (;;) {
          let got: number;
          try {
            got = r.getSync<number>({ timeout: 5_000 });
          } catch (error) {
            assert.ok(error instanceof ClosedError && error.reason === "drained", String(error));
            break;
          }
          assert.equal(got, next++, "in order, none lost, after the kill too");
        }
        assert.ok(next > 0, "the stream ran");
        assert.equal(spares(r), 0, `killed after ${killAfterMs} ms: no spare left`);
        const stats = r.stats();
        assert.equal(stats.inFlight, 0);
        assert.equal(stats.received, next);
      } finally {
        s.close();
        r.close();
      }
    }
  }));
