/**
 * Async calls of one queue end that overlap (not awaited one by one) are served in the order
 * they were made, and read their value when called; sync calls never overtake a waiting put.
 */

import assert from "node:assert/strict";
import { createSharedMemoryPair, FullError, openSender, reserve } from "../mod.ts";
import { makeTurnDue, withoutLeaks } from "./helpers.ts";

Deno.test("overlapping puts of one sender arrive in call order, also when they must wait", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    const count = 200;
    const puts: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      if (i % 50 === 0) await makeTurnDue();
      puts.push(sender.put(i));
    }
    const got: number[] = [];
    while (got.length < count) got.push(await receiver.get<number>({ timeout: 5000 }));
    await Promise.all(puts);
    assert.deepEqual(got, [...Array(count).keys()]);
    sender.close();
    receiver.close();
  });
});

Deno.test("overlapping puts of one sender settle in call order, also around a fairness turn", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
    using _s = sender;
    using _r = receiver;
    await makeTurnDue();
    // put(0) finds room and then takes the turn that was due; put(1) finds room too; put(2)
    // and put(3) wait for it. Before: put(1) settled first, while put(0) took its turn.
    const settled: number[] = [];
    const puts = [0, 1, 2, 3].map((i) => sender.put(i).then(() => settled.push(i)));
    const got: number[] = [];
    while (got.length < 4) got.push(await receiver.get<number>({ timeout: 5000 }));
    await Promise.all(puts);
    assert.deepEqual(got, [0, 1, 2, 3]);
    assert.deepEqual(settled, [0, 1, 2, 3]);
    // A sync put right after an async one that is taking its turn is not held back by it.
    await makeTurnDue();
    const first = sender.put("async");
    sender.putSync("sync");
    await first;
    assert.deepEqual([receiver.getSync(), receiver.getSync()], ["async", "sync"]);
  });
});

Deno.test("put reads its value when called, not when room comes", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    sender.putSync("fills the queue");
    await makeTurnDue();
    const message = { idx: 1, source: "actor_1" };
    const put = sender.put(message);
    message.idx = 2;
    message.source = "changed";
    assert.equal(receiver.getSync({ timeout: 1000 }), "fills the queue");
    await put;
    assert.deepEqual(receiver.getSync({ timeout: 1000 }), { idx: 1, source: "actor_1" });
    sender.close();
    receiver.close();
  });
});

Deno.test("an abort cancels a put only while it waits; one that found room is out", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    await makeTurnDue();
    const abort = new AbortController();
    // Room now: written during the call, even with a fairness turn due (taken afterwards).
    const sent = sender.put("sent", { signal: abort.signal });
    abort.abort();
    await sent;
    // No room: it waits, and the abort cancels it.
    const again = new AbortController();
    const waiting = sender.put("never", { signal: again.signal });
    again.abort();
    await assert.rejects(waiting, { name: "AbortError" });
    assert.equal(receiver.getSync({ timeout: 1000 }), "sent");
    assert.equal(receiver.getNowait(), undefined, "an aborted put was sent");
    sender.close();
    receiver.close();
  });
});

Deno.test("overlapping gets of one receiver get messages in call order", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 8 });
    for (let round = 0; round < 4; round++) {
      // Messages already there, or still to come: either way the first call gets the first.
      const early = round % 2 === 0;
      if (early) { for (let i = 0; i < 3; i++) sender.putSync(round * 3 + i); }
      await makeTurnDue();
      const gets = [receiver.get<number>(), receiver.get<number>()] as const;
      const borrowed = receiver.borrow<number>();
      if (!early) { for (let i = 0; i < 3; i++) sender.putSync(round * 3 + i); }
      const [a, b, lease] = await Promise.all([...gets, borrowed]);
      assert.deepEqual([a, b, lease.value], [round * 3, round * 3 + 1, round * 3 + 2]);
      lease.release();
    }
    sender.close();
    receiver.close();
  });
});

Deno.test("a get aborted while it awaits its turn rejects and leaves the message queued", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
    sender.putSync("kept");
    await makeTurnDue();
    const abort = new AbortController();
    const get = receiver.get({ signal: abort.signal });
    abort.abort();
    await assert.rejects(get, { name: "AbortError" });
    assert.equal(receiver.getNowait(), "kept");
    sender.close();
    receiver.close();
  });
});

Deno.test("sync puts and acks refuse to overtake a waiting put; the queue stays usable", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    sender.putSync(0);
    const waiting = sender.put(1);
    // (Timeouts, so that code without the check fails instead of blocking for good.)
    assert.throws(() => sender.putSync(2, { timeout: 50 }), {
      name: "TypeError",
      message: /still waiting/,
    });
    assert.throws(
      () => sender.prepareSync(reserve(Uint8Array, 4), { timeout: 50 }),
      /still waiting/,
    );
    assert.throws(() => sender.waitForAllAckSync({ timeout: 10 }), /still waiting/);
    assert.equal(receiver.getSync({ timeout: 1000 }), 0);
    await waiting;
    assert.equal(receiver.getSync({ timeout: 1000 }), 1);
    sender.putSync(2, { timeout: 1000 });
    assert.equal(receiver.getSync({ timeout: 1000 }), 2);
    sender.close();
    receiver.close();
  });
});

Deno.test("a put that found room never makes the next putSync throw, turn due or not", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 64 });
    const puts: Promise<void>[] = [];
    const got: number[] = [];
    for (let i = 0; i < 120; i += 2) {
      if (i % 20 === 0) await makeTurnDue();
      puts.push(sender.put(i)); // not awaited: written at once, its turn taken afterwards
      sender.putSync(i + 1, { timeout: 1000 });
      while (got.length < i + 2) got.push(receiver.getSync<number>({ timeout: 1000 }));
    }
    await Promise.all(puts);
    assert.deepEqual(got, [...Array(120).keys()]);
    sender.close();
    receiver.close();
  });
});

Deno.test("waitForAllAck covers puts still waiting", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    sender.putSync("a");
    assert.equal(receiver.getSync({ timeout: 1000 }), "a");
    await sender.waitForAllAck({ timeout: 1000 });
    // "b" waits for room, and later "c" for its fairness turn: neither is put yet when the
    // ack wait starts, and the ack must still cover it.
    sender.putSync("full");
    const b = sender.put("b");
    let acked = false;
    const ack = sender.waitForAllAck({ timeout: 5000 }).then(() => (acked = true));
    assert.equal(receiver.getSync({ timeout: 1000 }), "full");
    await b;
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(acked, false, "acked before the waiting put's message was received");
    assert.equal(receiver.getSync({ timeout: 1000 }), "b");
    await ack;
    await makeTurnDue();
    const c = sender.put("c");
    let ackedC = false;
    const ackC = sender.waitForAllAck({ timeout: 5000 }).then(() => (ackedC = true));
    await c;
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(ackedC, false, "acked before a put waiting for its turn was received");
    assert.equal(receiver.getSync({ timeout: 1000 }), "c");
    await ackC;
    sender.close();
    receiver.close();
  });
});

Deno.test("a later put times out on time behind an earlier one that waits", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    sender.putSync(0);
    const abort = new AbortController();
    const first = sender.put(1, { signal: abort.signal });
    const started = performance.now();
    await assert.rejects(sender.put(2, { timeout: 50 }), FullError);
    const waited = performance.now() - started;
    assert.ok(waited >= 45 && waited < 2000, `timed out after ${waited} ms`);
    abort.abort();
    await assert.rejects(first, { name: "AbortError" });
    assert.equal(receiver.getSync({ timeout: 1000 }), 0);
    assert.equal(receiver.getNowait(), undefined, "an abandoned put was sent");
    sender.close();
    receiver.close();
  });
});

Deno.test("a call timed out behind an earlier one of its end says so, not what its own try would", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    sender.putSync(0);
    const abort = new AbortController();
    const first = sender.put(1, { signal: abort.signal });
    // Before: "no room for 50 ms: 1 of capacity 1 messages are unreleased", or for a small
    // message behind a large one waiting for /dev/shm, the arena's state, neither of which the
    // call ever met.
    const behind = { name: "FullError", message: /behind an earlier put\(\), putMany\(\)/ };
    await assert.rejects(sender.put(2, { timeout: 50 }), behind);
    await assert.rejects(sender.putMany([2, 3], { timeout: 50 }), { ...behind, sent: 0 });
    await assert.rejects(sender.prepare(reserve(Uint8Array, 4), { timeout: 50 }), behind);
    abort.abort();
    await assert.rejects(first, { name: "AbortError" });
    assert.equal(receiver.getSync({ timeout: 1000 }), 0);

    const get = receiver.get();
    const waited = { name: "EmptyError", message: /behind an earlier get\(\), getMany\(\)/ };
    await assert.rejects(receiver.get({ timeout: 50 }), waited);
    await assert.rejects(receiver.getMany(2, { timeout: 50 }), waited);
    await assert.rejects(receiver.borrow({ timeout: 50 }), waited);
    // The queue and both ends go on: the earlier get takes the next message.
    sender.putSync("next", { timeout: 1000 });
    assert.equal(await get, "next");
    sender.close();
    receiver.close();
  });
});

Deno.test("a put from inside the value of a put of the same sender is refused: it would overtake", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 8 });
    using _s = sender;
    using _r = receiver;
    const reentrant =
      /called while this sender reads the value of an earlier call .*, which it would overtake/;
    const value = {
      id: "outer",
      get g() {
        sender.putSync("inner");
        return 1;
      },
    };
    await assert.rejects(
      sender.put(value),
      (e: Error) =>
        e instanceof TypeError && e.message.startsWith("Sender.put: value.g: reading it threw") &&
        reentrant.test(e.message),
    );
    assert.throws(
      () =>
        sender.putManySync(
          (function* () {
            yield 1;
            sender.putSync("inner"); // throws, and the batch with it
            yield 2;
          })(),
        ),
      reentrant,
    );
    // An async one rejects; the batch goes on.
    let inner: Promise<void> | undefined;
    sender.putManySync(
      (function* () {
        yield 1;
        inner = sender.put("inner");
        yield 2;
      })(),
    );
    await assert.rejects(inner!, reentrant);
    assert.deepEqual([receiver.getNowait(), receiver.getNowait()], [1, 2]);
    // Another sender may put from in there: it has no call of its own to overtake.
    const other = openSender(sender.descriptor);
    sender.putSync({
      get g() {
        other.putSync("other");
        return 1;
      },
    });
    other.close();
    sender.putSync("after");
    assert.deepEqual([receiver.getNowait(), receiver.getNowait(), receiver.getNowait()], [
      "other",
      { g: 1 },
      "after",
    ]);
    assert.equal(receiver.getNowait(), undefined, "nothing else was sent");
  });
});
