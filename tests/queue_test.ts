import assert from "node:assert/strict";
import {
  ClosedError,
  createSharedMemoryPair,
  DecodeError,
  EmptyError,
  FullError,
  NdArray,
  openReceiver,
  openSender,
  QueueError,
  type Receiver,
  reserve,
  type Sender,
} from "../mod.ts";
import {
  budgetQueue,
  delay,
  eventually,
  mappedFiles,
  mapSegment,
  segmentQueue,
  segmentWord,
  shmEntries,
  slotsInState,
  slotsInStateOf,
  withoutLeaks,
} from "./helpers.ts";
import {
  closeFd,
  fdSize,
  prefaultJoin,
  prefaultStart,
  shmCreate,
  shmList,
  shmOpen,
  shmUnlink,
} from "../ffi/native.ts";
import * as L from "../queue/layout.ts";
import { startFreshSlab } from "./codec_helpers.ts";
import { SharedQueue } from "../queue/shared_queue.ts";

Deno.test("put and get round-trip values of the data model", () =>
  withoutLeaks(async () => {
    const [s, first] = createSharedMemoryPair({ capacity: 8 });
    using _s = s;
    first.close(); // another receiver keeps the queue alive
    using r = openReceiver(s.descriptor);
    const values: unknown[] = [
      "your data",
      12345,
      -0,
      2n ** 100n,
      null,
      undefined,
      { idx: 12345, source: "actor_3", data: new Float32Array([1.5, 2.5]) },
      new Map<unknown, unknown>([[1, "a"], ["b", new Set([1, 2])]]),
      [1, [2, [3]]],
    ];
    for (const v of values) {
      await s.put(v);
      assert.deepEqual(await r.get(), v);
    }
  }));

Deno.test("a pair disposed with using closes both ends, however its scope ends", () =>
  withoutLeaks(() => {
    let ends: [Sender, Receiver] | undefined;
    assert.throws(() => {
      using pair = createSharedMemoryPair({ capacity: 2, arenaBytes: 64 * 1024 });
      ends = [...pair] as [Sender, Receiver];
      // The pair is the two ends alone (the dispose is not an element or an own key).
      assert.equal(pair.length, 2);
      assert.deepEqual(Object.keys(pair), ["0", "1"]);
      pair[0].putSync("x");
      throw new Error("the scope fails");
    }, /the scope fails/);
    const [s, r] = ends!;
    assert.throws(() => s.putSync("y"), (e: unknown) => e instanceof ClosedError);
    assert.throws(() => r.getNowait(), (e: unknown) => e instanceof ClosedError);
    // Closing again, by hand, does nothing.
    s.close();
    r.close();
  }));

Deno.test("a message larger than the arena goes through an extension segment, reused", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 256 * 1024 });
    using _s = s;
    using _r = r;
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i * 7);
    for (let round = 0; round < 3; round++) {
      big[0] = round;
      await s.put(big);
      const got = await r.get<Uint8Array>();
      assert.equal(got.length, big.length);
      assert.equal(got[0], round);
      assert.deepEqual(got.subarray(0, 4096), big.subarray(0, 4096));
      assert.equal(got[big.length - 1], big[big.length - 1]);
    }
    const extensions = shmEntries().filter((n) => n.startsWith(r.descriptor.name.slice(1) + "-x"));
    assert.equal(extensions.length, 1, `one extension reused, found ${extensions}`);
  }));

Deno.test("idle extension segments are dropped after keepIdleSegmentsMs, by ends that make no call", () =>
  withoutLeaks(async () => {
    using q = segmentQueue(500);
    const { s, r } = q;
    // Another queue that keeps them for good, loaded alike, as the control. Loaded first, so
    // that nothing runs between the get below and the check that follows it (the delay).
    using kept = segmentQueue(Infinity);
    const big = new Uint8Array(3 << 20).map((_, i) => i * 13);
    kept.s.putSync(big);
    kept.r.getSync();
    s.putSync(big);
    assert.deepEqual(r.getSync<Uint8Array>().subarray(0, 64), big.subarray(0, 64));
    // Kept for the next such message at first: the delay counts from the last use.
    assert.equal(q.segments().length, 1, "the segment is kept right after its message");
    assert.ok(
      await eventually(() => q.segments().length === 0 && q.mapped().length === 0),
      `dropped and unmapped by both ends while neither calls: ${q.segments()} ${q.mapped()}`,
    );
    assert.equal(kept.segments().length, 1, "Infinity keeps the segment");
    assert.ok(kept.mapped().length >= 1, "and its mappings");
    // The queue goes on: the next such message makes a new segment.
    big[0] = 99;
    s.putSync(big);
    const again = r.getSync<Uint8Array>();
    assert.equal(again[0], 99);
    assert.deepEqual(again.subarray(1, 4096), big.subarray(1, 4096));
    assert.equal(again[big.length - 1], big[big.length - 1]);
  }));

Deno.test("an idle segment that no open end has mapped is dropped while the ends make no call", () =>
  withoutLeaks(async () => {
    using q = segmentQueue(200);
    // Two more ends carry a large message and close: the queue's first two never mapped it.
    const sender = openSender(q.s.descriptor);
    const receiver = openReceiver(q.s.descriptor);
    sender.putSync(new Uint8Array(1 << 20));
    receiver.getSync();
    sender.waitForAllAckSync(); // settles the release: the segment is idle now
    sender.close();
    receiver.close();
    assert.equal(q.segments().length, 1, "kept for reuse at first");
    // Before: only an end that had the segment mapped watched it, so it stayed until a call.
    assert.ok(
      await eventually(() => q.segments().length === 0),
      `still there: ${q.segments()}`,
    );
  }));

Deno.test("a message over the budget leaves no segment behind once puts that fit come, with the arena taking the whole budget", () =>
  withoutLeaks(() => {
    // arenaBytes is the budget here: no room beside it for extensions.
    const [s, r] = createSharedMemoryPair({
      arenaBytes: 1 << 20,
      byteBudget: 1 << 20,
      keepIdleSegmentsMs: Infinity,
    });
    using _s = s;
    using _r = r;
    const prefix = s.descriptor.name.slice(1) + "-x";
    const segments = () => shmEntries().filter((n) => n.startsWith(prefix));
    s.putSync(new Uint8Array(4 << 20)); // goes alone, in a segment of its own
    r.getSync();
    s.waitForAllAckSync();
    assert.equal(segments().length, 1);
    s.putSync(new Uint8Array(100)); // fits the budget (in the arena)
    r.getSync();
    // Before: an arena message never counted as one that fits, when the room beside the arena
    // was 0, so the segment stayed for good.
    assert.deepEqual(segments(), []);
    assert.ok(s.stats().sharedBytes < 2 << 20, "back within the budget, and the ring");
  }));

Deno.test("each idle segment is timed on its own: smaller large messages do not keep a huge one", () =>
  withoutLeaks(async () => {
    using q = segmentQueue(200, { capacity: 8 });
    const { s, r, segments } = q;
    const small = new Uint8Array(1 << 20);
    s.putSync(small); // segment x0, 1 MiB
    r.getSync();
    s.putSync(new Uint8Array(32 << 20)); // x1, 32 MiB: x0 is too small for it
    r.getSync();
    const huge = segments().find((n) => n.includes("-x1-"));
    assert.ok(huge !== undefined, `a second segment: ${segments()}`);
    // 1 MiB messages keep coming (each reuses x0, the smallest idle fit) for 4x the delay.
    for (let i = 0; i < 8; i++) {
      s.putSync(small);
      r.getSync();
      await delay(100);
    }
    assert.ok(!segments().includes(huge), `idle for 4x the delay, still there: ${segments()}`);
    assert.equal(segments().length, 1, "the one in use stays");
  }));

Deno.test("an idle time in the future (the clock stepped back) or not a time delays a drop by keepIdleSegmentsMs only", () =>
  withoutLeaks(async () => {
    for (const forged of [Date.now() + 3600_000, NaN]) {
      using q = segmentQueue(200);
      const { s, r } = q;
      s.putSync(new Uint8Array(1 << 20));
      r.getSync();
      s.waitForAllAckSync(); // settles the release: the segment is idle now
      const m = mapSegment(s.descriptor.name)!;
      try {
        const at = (L.extensionOffset(0) + L.E_IDLE_SINCE) >> 3;
        assert.ok(m.f64[at] > 0, "the segment went idle");
        m.f64[at] = forged;
      } finally {
        m.unmap();
      }
      assert.ok(
        await eventually(() => q.segments().length === 0),
        `idle since ${forged}: still there`,
      );
    }
  }));

Deno.test("a lease held on one large message keeps only its own segment: the others are reused and dropped", () =>
  withoutLeaks(async () => {
    // Room for 7 segments of 2 MiB, not 11.
    using q = segmentQueue(200, { capacity: 16, arenaBytes: 1 << 20, byteBudget: 16 << 20 });
    const { s, r, segments } = q;
    s.putSync(new Uint8Array(2 << 20).fill(1));
    const lease = r.borrowSync();
    for (let i = 0; i < 10; i++) {
      s.putSync(new Uint8Array(2 << 20).fill(2), { timeout: 1000 });
      assert.equal(r.getSync<Uint8Array>()[0], 2);
    }
    assert.equal(segments().length, 2, `the leased one and one reused: ${segments()}`);
    assert.ok(
      await eventually(() => segments().length === 1),
      `the idle one dropped while the lease is held: ${segments()}`,
    );
    assert.equal((lease.value as Uint8Array)[0], 1, "the leased message is intact");
    lease.release();
    assert.ok(await eventually(() => segments().length === 0), "then the leased one too");
  }));

Deno.test("with keepIdleSegmentsMs Infinity, a segment dropped for the budget leaves an end that makes no call", () =>
  withoutLeaks(async () => {
    using q = segmentQueue(Infinity, { arenaBytes: 1 << 20, byteBudget: 41 << 20 });
    const { s, r, mapped } = q;
    using other = openReceiver(s.descriptor);
    s.putSync(new Uint8Array(30 << 20));
    r.getSync(); // r maps the 30 MiB segment, then makes no call
    // 36 MiB do not fit beside the idle 30 MiB in the budget: that segment is dropped.
    s.putSync(new Uint8Array(36 << 20));
    assert.equal(other.getSync<Uint8Array>().length, 36 << 20);
    assert.ok(
      await eventually(() => !mapped().some((file) => file.endsWith("(deleted)"))),
      `a dropped segment is still mapped: ${mapped()}`,
    );
  }));

Deno.test("keepIdleSegmentsMs must be a number of milliseconds >= 0", () => {
  for (const bad of [-1, NaN, -Infinity]) {
    assert.throws(
      () => createSharedMemoryPair({ keepIdleSegmentsMs: bad }),
      (e: unknown) => e instanceof RangeError && /keepIdleSegmentsMs/.test(e.message),
      String(bad),
    );
  }
  for (const bad of ["100", null, 10n]) {
    assert.throws(
      () => createSharedMemoryPair({ keepIdleSegmentsMs: bad as unknown as number }),
      (e: unknown) => e instanceof TypeError && /keepIdleSegmentsMs/.test(e.message),
      String(bad),
    );
  }
  for (const good of [0, 1.5, Infinity]) {
    const [s, r] = createSharedMemoryPair({ keepIdleSegmentsMs: good, arenaBytes: 1 << 16 });
    s.close();
    r.close();
  }
});

Deno.test("capacity bounds outstanding messages: hasSpace, put timeout, FullError", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 3 });
    assert.deepEqual([s.capacity, r.capacity], [3, 3]);
    using _s = s;
    using _r = r;
    for (let i = 0; i < 3; i++) await s.put(i);
    assert.equal(s.hasSpace(), false);
    const started = performance.now();
    await assert.rejects(s.put(3, { timeout: 50 }), FullError);
    assert.ok(performance.now() - started >= 45);
    assert.throws(() => s.putSync(3, { timeout: 0 }), /3 of capacity 3 messages are unreleased/);
    assert.equal(await r.get(), 0);
    assert.equal(s.hasSpace(), true);
    await s.put(3, { timeout: 50 });
    for (const want of [1, 2, 3]) assert.equal(r.getSync({ timeout: 100 }), want);
  }));

Deno.test("a full arena: FullError says the arena has no room, and the queue goes on", () =>
  withoutLeaks(async () => {
    // 64 KiB of arena, room for many messages by count, four of 12 KiB by bytes.
    const [s, r] = createSharedMemoryPair({ capacity: 64, arenaBytes: 64 * 1024 });
    using _s = s;
    using _r = r;
    const block = new Uint8Array(12 * 1024).fill(7);
    let put = 0;
    for (; put < 64; put++) {
      try {
        s.putSync(block, { timeout: 0 });
      } catch (error) {
        assert.ok(error instanceof FullError);
        assert.match(error.message, /the arena has no room for this \d+-byte message/);
        assert.match(error.message, /: \d+ of its 65536 bytes are held, reclaimed in order/);
        break;
      }
    }
    assert.ok(put >= 3 && put < 64, `${put} messages fit`);
    assert.equal(s.hasSpace(), true, "counts messages, not bytes");
    await assert.rejects(s.put(block, { timeout: 10 }), /the arena has no room/);
    for (let i = 0; i < put; i++) assert.equal((r.getSync({ timeout: 100 }) as Uint8Array)[9], 7);
    s.putSync(block, { timeout: 100 });
    assert.equal((r.getSync({ timeout: 100 }) as Uint8Array).length, block.length);
  }));

Deno.test("hasSpace is true on a full queue whose receivers are gone, so a polling put learns why", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    s.putSync(1);
    s.putSync(2);
    assert.equal(s.hasSpace(), false, "full, a receiver is there");
    r.close(); // the two messages stay in flight
    assert.equal(s.hasSpace(), true);
    assert.throws(() => s.putSync(3, { timeout: 0 }), (e) => e instanceof ClosedError);
  }));

Deno.test("a held lease or unsent draft stops puts once the slot ring fills: hasSpace says so", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 4 }); // a ring of 16 slots
    using _s = s;
    using _r = r;
    s.putSync("held");
    const lease = r.borrowSync({ timeout: 100 });
    // The ring's other 15 slots pass the held message...
    for (let i = 0; i < 15; i++) {
      assert.equal(s.hasSpace(), true, `message ${i}`);
      s.putSync(i, { timeout: 100 });
      assert.equal(r.getSync({ timeout: 100 }), i);
    }
    // ...then the slots behind it are all used, with capacity to spare.
    assert.equal(s.hasSpace(), false);
    await assert.rejects(s.put("next", { timeout: 10 }), /holds back the queue's 16 slots/);
    lease.release();
    assert.equal(s.hasSpace(), true);
    s.putSync("next", { timeout: 100 });
    assert.equal(r.getSync({ timeout: 100 }), "next");
    // An unsent draft does the same, for every sender.
    const draft = s.prepareSync({ data: reserve(Uint8Array, 8) });
    const other = openSender(s.descriptor);
    using _other = other;
    for (let i = 0; i < 15; i++) {
      assert.equal(other.hasSpace(), true, `message ${i}`);
      other.putSync(i, { timeout: 100 });
      assert.equal(r.getSync({ timeout: 100 }), i);
    }
    assert.equal(other.hasSpace(), false);
    assert.throws(() => other.putSync("next", { timeout: 0 }), /send or cancel the draft/);
    draft.send();
    assert.deepEqual((r.getSync({ timeout: 100 }) as { data: Uint8Array }).data.length, 8);
    assert.equal(other.hasSpace(), true);
    // A message the draft's sender puts after it waits behind it, and an ack wait says why.
    const again = s.prepareSync({ data: reserve(Uint8Array, 8) });
    s.putSync("after the draft", { timeout: 100 });
    assert.throws(
      () => s.waitForAllAckSync({ timeout: 5 }),
      /^FullError: Sender\.waitForAllAckSync: .* 1 unsent draft\(s\)/,
    );
    again.send();
    assert.deepEqual((r.getSync({ timeout: 100 }) as { data: Uint8Array }).data.length, 8);
    assert.equal(r.getSync({ timeout: 100 }), "after the draft");
    s.waitForAllAckSync({ timeout: 1000 });
  }));

Deno.test("waitForAllAck: an unsent draft is not waited for; receivers gone, it says how many were lost", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 4 });
    using _s = s;
    const draft = s.prepareSync({ a: reserve(Uint8Array, 4) });
    await s.waitForAllAck({ timeout: 1000 }); // not put until sent
    draft.send();
    await assert.rejects(s.waitForAllAck({ timeout: 10 }), FullError);
    assert.deepEqual((r.getSync() as { a: Uint8Array }).a, new Uint8Array(4));
    await s.waitForAllAck({ timeout: 1000 });
    s.putSync(1);
    s.putSync(2);
    r.close();
    await assert.rejects(s.waitForAllAck({ timeout: 1000 }), {
      name: "ClosedError",
      // Before: "… has closed with 2 message(s) …", which read as if the receivers held them.
      message: "Sender.waitForAllAck: every receiver of the queue has closed and 2 message(s) " +
        "of this sender were not received",
    });
  }));

Deno.test("waitForAllAck waits for the messages put before it, not those put since, whatever order they are released in", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    using _s = s;
    using _r = r;
    s.putSync(1);
    s.putSync(2);
    const acked = s.waitForAllAck({ timeout: 5_000 });
    s.putSync(3); // put after the call: not waited for
    const [one, two, three] = [r.borrowSync(), r.borrowSync(), r.borrowSync()];
    three.release();
    one.release();
    // As many released as were put before the call, but not those: 2 is still out.
    assert.throws(() => s.waitForAllAckSync({ timeout: 20 }), {
      name: "FullError",
      message:
        /^Sender\.waitForAllAckSync: 1 message\(s\) still not received and released after 20 ms$/,
    });
    two.release();
    // Before: it waited for 3 too, so a producer that kept the queue busy kept it waiting.
    s.putSync(4);
    const held = r.borrowSync();
    await acked;
    // A call made now waits for 4.
    assert.throws(() => s.waitForAllAckSync({ timeout: 20 }), FullError);
    held.release();
    s.waitForAllAckSync({ timeout: 1_000 });
  }));

Deno.test("get timeouts and getNowait on an empty queue", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair();
    using _s = s;
    using _r = r;
    assert.equal(r.getNowait(), undefined);
    const started = performance.now();
    await assert.rejects(r.get({ timeout: 40 }), EmptyError);
    const waited = performance.now() - started;
    assert.ok(waited >= 35 && waited < 2000, `waited ${waited} ms`);
    assert.throws(() => r.getSync({ timeout: 10 }), EmptyError);
    await assert.rejects(r.borrow({ timeout: 10 }), EmptyError);
    assert.throws(() => r.borrowSync({ timeout: 0 }), EmptyError);
    await assert.rejects(r.get({ timeout: -1 }), RangeError);
  }));

Deno.test("a blocked get is woken by a put from another end", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair();
    using _s = s;
    using _r = r;
    const pending = r.get({ timeout: 5000 });
    await new Promise((ok) => setTimeout(ok, 30));
    await s.put("late");
    assert.equal(await pending, "late");
  }));

Deno.test("waitForAllAck waits for every message to be released", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 4 });
    using _s = s;
    using _r = r;
    await s.waitForAllAck({ timeout: 10 });
    await s.put(1);
    await s.put(2);
    await assert.rejects(s.waitForAllAck({ timeout: 20 }), FullError);
    const acked = s.waitForAllAck({ timeout: 2000 });
    await r.get();
    using lease = await r.borrow();
    assert.equal(lease.value, 2);
    assert.throws(() => s.waitForAllAckSync({ timeout: 0 }), FullError);
    lease.release();
    await acked;
    s.waitForAllAckSync({ timeout: 0 });

    // Its own put still waiting for room (another sender filled the queue) is what it waits
    // for: the timeout says so, rather than "0 message(s) still not received".
    const other = openSender(r.descriptor);
    for (let i = 0; i < 4; i++) other.putSync(i);
    const waiting = s.put("waits");
    await assert.rejects(s.waitForAllAck({ timeout: 20 }), {
      name: "FullError",
      message: "Sender.waitForAllAck: 0 message(s) still not received and released after 20 ms; " +
        "1 call(s) " +
        "of this sender (put, putMany, prepare) still wait to send their messages",
    });
    for (let i = 0; i < 4; i++) assert.equal(r.getSync({ timeout: 1000 }), i);
    assert.equal(await r.get({ timeout: 1000 }), "waits"); // the put waits in the event loop
    await waiting;
    await s.waitForAllAck({ timeout: 1000 });
    other.close();
  }));

Deno.test("borrow lends arrays in place and detaches them on release", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair();
    using _s = s;
    using _r = r;
    const obs = new NdArray("float32", [2, 3], new Float32Array([1, 2, 3, 4, 5, 6]));
    await s.put({ step: 7, obs, raw: new Uint16Array([9, 8]) });
    const lease = await r.borrow<{ step: number; obs: NdArray<Float32Array>; raw: Uint16Array }>();
    assert.equal(lease.value.step, 7);
    assert.deepEqual([...lease.value.obs.shape], [2, 3]);
    assert.deepEqual([...lease.value.obs.data], [1, 2, 3, 4, 5, 6]);
    // The views share one buffer over the message, not a copy per array.
    assert.equal(lease.value.obs.data.buffer, lease.value.raw.buffer);
    assert.equal(s.hasSpace(), true);
    lease.release();
    assert.equal(lease.value.obs.data.length, 0, "views are detached after release");
    assert.equal(lease.value.raw.length, 0);
    lease.release(); // idempotent
    await s.waitForAllAck({ timeout: 1000 });
  }));

Deno.test("a get that times out behind an unsent draft says what holds the waiting messages back", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 4 });
    const draft = s.prepareSync<{ data: Uint8Array }>({ data: reserve(Uint8Array, 4) });
    s.putSync("behind");
    // Before: only "no message arrived within 50 ms", though stats() counted one waiting.
    assert.throws(
      () => r.getSync({ timeout: 50 }),
      (e) =>
        e instanceof EmptyError &&
        /within 50 ms: 1 message\(s\) in the queue wait behind an earlier message of their sender that is not ready: one still being written \(an unsent draft/
          .test(e.message),
    );
    draft.value.data.fill(1);
    draft.send();
    assert.deepEqual(
      r.getSync<{ data: Uint8Array }>({ timeout: 100 }).data,
      new Uint8Array(4).fill(1),
    );
    assert.equal(r.getSync({ timeout: 100 }), "behind");
    // Nothing waiting: nothing said.
    assert.throws(
      () => r.getSync({ timeout: 10 }),
      (e) => e instanceof EmptyError && /within 10 ms$/.test(e.message),
    );
    s.close();
    r.close();
  }));

Deno.test("a sender closed with drafts unsent gives their room back to the queue's other senders", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 3, arenaBytes: 1 << 20 });
    const s2 = openSender(s.descriptor);
    // One in the arena, one in a segment of its own.
    const drafts = [
      s2.prepareSync({ a: reserve(Uint8Array, 100) }),
      s2.prepareSync({ a: reserve(Uint8Array, 4 << 20) }),
    ];
    s2.putSync("sent");
    // Its leave drops the drafts' slots with its own (no cancel each, which would take the
    // lock again).
    s2.close();
    assert.deepEqual(drafts.map((d) => d.settled), [true, true]);
    assert.throws(() => drafts[0].send(), /its sender was closed, which cancelled this draft/);
    const stats = s.stats();
    assert.deepEqual([stats.inFlight, stats.bytesInUse, stats.sendersDied], [1, 64, 0]);
    s.putSync(1, { timeout: 100 });
    s.putSync(2, { timeout: 100 });
    assert.deepEqual(r.getManySync(3, { timeout: 100 }), ["sent", 1, 2]);
    s.close();
    r.close();
  }));

Deno.test("a draft sent after every receiver closed throws ClosedError, as a put does, and is cancelled", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    const draft = s.prepareSync({ data: reserve(Uint8Array, 1 << 20) });
    r.close();
    // Before: sent, into a queue no receiver was left to take it from.
    assert.throws(
      () => draft.send(),
      (e) =>
        e instanceof ClosedError && e.reason === "no-receivers" &&
        /^Draft\.send: every receiver of the queue has closed.*; the draft was cancelled$/.test(
          e.message,
        ),
    );
    assert.equal(draft.settled, true);
    assert.equal(s.stats().inFlight, 0);
    assert.throws(() => s.putSync("x"), ClosedError);
    // A receiver that opens again gets what is put from then on, and nothing of the draft.
    using again = openReceiver(s.descriptor);
    s.putSync("after");
    assert.equal(again.getNowait(), "after");
    assert.equal(again.getNowait(), undefined);
    s.close();
  }));

Deno.test("zero-copy write: prepare, fill in place, send", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    using _r = r;
    const draft = await s.prepare<{ idx: number; obs: NdArray<Float32Array>; raw: Uint8Array }>({
      idx: 1,
      obs: reserve("float32", [4, 2]),
      raw: reserve(Uint8Array, 5),
    });
    draft.value.obs.data.set([0, 1, 2, 3, 4, 5, 6, 7]);
    draft.value.raw.fill(9);
    const obsView = draft.value.obs.data;
    draft.send();
    assert.equal(obsView.length, 0, "a sent draft's views are detached");
    assert.throws(() => draft.send(), TypeError);
    const got = await r.get<{ idx: number; obs: NdArray<Float32Array>; raw: Uint8Array }>();
    assert.equal(got.idx, 1);
    assert.deepEqual([...got.obs.data], [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual([...got.raw], [9, 9, 9, 9, 9]);

    // Every array of a draft is live, the template's own too; the rest is written already.
    const carried = s.prepareSync<{ n: number; own: Uint8Array; filled: Uint8Array }>({
      n: 1,
      own: new Uint8Array([1, 2, 3]),
      filled: reserve(Uint8Array, 2),
    });
    carried.value.own[0] = 99;
    carried.value.filled.set([7, 8]);
    carried.value.n = 2;
    carried.send();
    assert.deepEqual(
      await r.get<{ n: number; own: Uint8Array; filled: Uint8Array }>(),
      { n: 1, own: new Uint8Array([99, 2, 3]), filled: new Uint8Array([7, 8]) },
    );

    // Drafts go in the order they were prepared, whatever the order of their sends.
    const first = s.prepareSync({ order: 1, a: reserve(Uint8Array, 1) });
    const second = s.prepareSync({ order: 2, a: reserve(Uint8Array, 1) });
    second.send();
    assert.equal(r.getNowait(), undefined, "the second waits for the first");
    first.send();
    assert.deepEqual(
      [await r.get<{ order: number }>(), await r.get<{ order: number }>()].map((m) => m.order),
      [1, 2],
    );

    // A draft disposed unsent is cancelled: nothing is delivered, its capacity comes back.
    {
      using cancelled = s.prepareSync({ data: reserve(Float64Array, 3) });
      assert.equal(cancelled.settled, false);
    }
    await s.put("after");
    assert.equal(await r.get({ timeout: 1000 }), "after");
    assert.equal(r.getNowait(), undefined);
    await s.waitForAllAck({ timeout: 1000 });
  }));

Deno.test("a rejected value throws before anything is written; the queue stays usable", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    using _r = r;
    await assert.rejects(s.put({ ok: 1, fn: () => 1 }), (e: Error) => {
      assert.ok(e instanceof TypeError);
      assert.equal(
        e.message,
        "Sender.put: value.fn: functions are not supported; nothing was sent",
      );
      return true;
    });
    assert.throws(() => s.putSync(Symbol("x")), {
      name: "TypeError",
      message: "Sender.putSync: value: symbols are not supported; nothing was sent",
    });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await assert.rejects(s.put(cyclic), /^TypeError: Sender\.put: value\.self: cyclic reference/);
    assert.equal(s.hasSpace(), true);
    await s.put("fine");
    assert.equal(await r.get(), "fine");
    assert.equal(r.getNowait(), undefined);
    await s.waitForAllAck({ timeout: 100 });
  }));

Deno.test("closing: drained receivers get ClosedError, senders without receivers too", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair();
    await s.put(1);
    await s.put(2);
    s.close();
    const seen: unknown[] = [];
    for await (const v of r) seen.push(v);
    assert.deepEqual(seen, [1, 2]);
    await assert.rejects(
      r.get(),
      (e: unknown) => e instanceof ClosedError && e.reason === "drained",
    );
    assert.throws(() => r.getNowait(), ClosedError);
    r.close();

    const [s2, r2] = createSharedMemoryPair();
    r2.close();
    await assert.rejects(
      s2.put(1),
      (e: unknown) => e instanceof ClosedError && e.reason === "no-receivers",
    );
    s2.close();
    await assert.rejects(
      s2.put(1),
      (e: unknown) => e instanceof ClosedError && e.reason === "closed",
    );
    assert.equal(s2.hasSpace(), false);
    assert.throws(() => r2.getNowait(), ClosedError);
    s2.close(); // idempotent
  }));

Deno.test("an end closed while a get waits makes it reject with ClosedError", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair();
    const pending = r.get({ timeout: 5000 });
    await new Promise((ok) => setTimeout(ok, 20));
    r.close();
    await assert.rejects(pending, ClosedError);
    s.close();
  }));

Deno.test("AbortSignal cancels waiting put, get and waitForAllAck", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 1 });
    using _s = s;
    using _r = r;
    const started = performance.now();
    await assert.rejects(r.get({ signal: AbortSignal.timeout(30) }), (e: Error) => {
      assert.equal(e.name, "TimeoutError");
      return true;
    });
    assert.ok(performance.now() - started < 1000);
    await s.put(1);
    const controller = new AbortController();
    const blocked = s.put(2, { signal: controller.signal });
    const acking = s.waitForAllAck({ signal: controller.signal });
    controller.abort(new Error("stop"));
    await assert.rejects(blocked, /stop/);
    await assert.rejects(acking, /stop/);
    await assert.rejects(r.get({ signal: controller.signal }), /stop/);
    assert.equal(await r.get(), 1);
    assert.equal(r.getNowait(), undefined, "the aborted put wrote nothing");
  }));

Deno.test("several senders and receivers in one process: each message exactly once", () =>
  withoutLeaks(async () => {
    const [s0, r0] = createSharedMemoryPair({ capacity: 16 });
    const senders = [s0, openSender(s0.descriptor), openSender(r0.descriptor)];
    const receivers = [r0, openReceiver(s0.descriptor)];
    const seen: string[] = [];
    for (let i = 0; i < 30; i++) {
      await senders[i % 3].put(`${i % 3}:${i}`);
      const got = receivers[i % 2].getNowait() ?? receivers[(i + 1) % 2].getNowait();
      seen.push(got as string);
    }
    assert.equal(new Set(seen).size, 30);
    for (const s of senders) s.close();
    for (const r of receivers) await assert.rejects(r.get(), ClosedError);
    for (const r of receivers) r.close();
  }));

Deno.test("the arena wraps around under mixed sizes without corrupting messages", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 6, arenaBytes: 64 * 1024 });
    using _s = s;
    using _r = r;
    const sizes = [10, 5000, 15000, 100, 16000, 3, 9000, 40000, 12000, 1];
    const pending: Uint8Array[] = [];
    for (let i = 0; i < 200; i++) {
      const data = new Uint8Array(sizes[i % sizes.length]).fill(i & 255);
      if (!s.hasSpace()) {
        const got = await r.get<Uint8Array>();
        assert.deepEqual(got, pending.shift());
      }
      await s.put(data, { timeout: 1000 });
      pending.push(data);
    }
    while (pending.length) assert.deepEqual(await r.get({ timeout: 1000 }), pending.shift());
  }));

Deno.test("invalid options and descriptors get errors naming what was wrong", () =>
  withoutLeaks(async () => {
    for (const capacity of [0, -1, 1.5, 2 ** 30]) {
      assert.throws(() => createSharedMemoryPair({ capacity }), (e: Error) => {
        assert.ok(e instanceof RangeError);
        assert.match(e.message, /capacity/);
        return true;
      });
    }
    assert.throws(
      () => createSharedMemoryPair({ capacity: "5" as unknown as number }),
      /capacity must be a number, got the string "5"/,
    );
    assert.throws(
      () => createSharedMemoryPair(64 as never),
      /createSharedMemoryPair: options must be an object, got 64/,
    );
    // Only a missing option takes the default, not null.
    for (const option of ["capacity", "arenaBytes", "byteBudget"]) {
      assert.throws(
        () => createSharedMemoryPair({ [option]: null }),
        new RegExp(`${option} must be a number, got null`),
      );
    }
    for (const arenaBytes of [0, 1024, 2 ** 50, NaN]) {
      assert.throws(() => createSharedMemoryPair({ arenaBytes }), /arenaBytes/);
    }
    const bad = [
      null,
      "not json",
      { shmq: 2, end: "sender", name: "/shmq-00000000000000000000000000000000" },
      { shmq: 1, end: "both", name: "/shmq-00000000000000000000000000000000" },
      { shmq: 1, end: "sender", name: "/../../etc/passwd" },
      { shmq: 1, end: "sender", name: "/shmq-0000000000000000000000000000000g" },
    ];
    for (const d of bad) {
      assert.throws(() => openSender(d as never), /invalid queue descriptor/);
    }
    // Common slips get told what they passed.
    assert.throws(
      () => openSender([] as never),
      /invalid queue descriptor: expected an object, got an array$/,
    );
    const [s, r] = createSharedMemoryPair();
    assert.throws(
      () => openSender(r as never),
      /^TypeError: openSender: invalid queue descriptor: got a queue end: pass its \.descriptor$/,
    );
    s.close();
    r.close();
    assert.throws(
      () =>
        openReceiver({ shmq: 1, end: "sender", name: "/shmq-0123456789abcdef0123456789abcdef" }),
      (e: unknown) =>
        e instanceof ClosedError && e.reason === "gone" &&
        // A name never made here is not said to have closed: both causes are named.
        /^openReceiver: queue \/shmq-0123456789abcdef0123456789abcdef does not exist: every end of it has closed \(or died\), or its descriptor was made on another machine or container/
          .test(e.message),
    );
    // A file open to other users (or theirs) is refused, not mapped: they could truncate it.
    const id = crypto.randomUUID().replaceAll("-", "");
    closeFd(shmCreate(`/shmq-${id}`, 1 << 20));
    try {
      const chmod = new Deno.Command("chmod", { args: ["0666", `/dev/shm/shmq-${id}`] });
      assert.ok((await chmod.output()).success);
      assert.throws(
        () => openSender({ shmq: 1, end: "sender", name: `/shmq-${id}` }),
        (e: unknown) =>
          e instanceof ClosedError && e.reason === "corrupt" &&
          /is not this user's own segment \(a symlink, a directory, another user's file, or one open to other users\): refused$/
            .test(e.message),
      );
    } finally {
      shmUnlink(`/shmq-${id}`);
    }
    // Nor a directory of this user's by that name. Before, it was said to be another user's.
    // (A command: Deno asks for --allow-all to make or remove anything under /dev.)
    const dir = (command: string, ...args: string[]) =>
      new Deno.Command(command, { args: [...args, `/dev/shm/shmq-${id}`] }).output();
    assert.ok((await dir("mkdir", "-m", "0700")).success);
    try {
      assert.throws(
        () => openSender({ shmq: 1, end: "sender", name: `/shmq-${id}` }),
        (e: unknown) =>
          e instanceof ClosedError && e.reason === "corrupt" &&
          /is not this user's own segment \(a symlink, a directory, /.test(e.message),
      );
    } finally {
      assert.ok((await dir("rmdir")).success);
    }
    assert.ok(new EmptyError("x") instanceof QueueError);
  }));

Deno.test("the byte budget bounds extension memory; one larger message still goes alone", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({
      capacity: 8,
      arenaBytes: 256 * 1024,
      byteBudget: 1024 * 1024,
    });
    using _s = s;
    using _r = r;
    const big = new Uint8Array(1536 * 1024).fill(1); // over the whole budget
    await s.put(big);
    const prefix = s.descriptor.name.slice(1) + "-x";
    const extensions = () => shmEntries().filter((n) => n.startsWith(prefix));
    const first = extensions();
    assert.equal(s.hasSpace(), true, "capacity is not the limit here");
    await assert.rejects(s.put(big, { timeout: 50 }), FullError);
    const pending = s.put(big.fill(2), { timeout: 5000 });
    assert.equal((await r.get<Uint8Array>())[0], 1);
    await pending;
    assert.equal((await r.get<Uint8Array>())[0], 2);
    assert.deepEqual(extensions(), first, "a stream of such messages reuses one segment");
    // Past the budget only while such messages come: the next put that fits drops it.
    await s.put("small");
    assert.equal(await r.get(), "small");
    assert.deepEqual(extensions(), [], "none kept");
    // Also when a receiver (looking for more) was the end that found it idle.
    s.putSync(big);
    r.getSync();
    assert.equal(r.getNowait(), undefined);
    s.putSync("small");
    assert.equal(r.getSync(), "small");
    assert.deepEqual(extensions(), [], "none kept after a receiver's reclaim");
    // Nor mapped: neither end holds its memory until it next waits.
    const mapped = mappedFiles().filter((file) => file.includes(prefix));
    assert.deepEqual(mapped, [], "the dropped segment is unmapped by both ends");
    // Smaller extension messages then stay within the budget again.
    const ext = new Uint8Array(100 * 1024).fill(3);
    for (let i = 0; i < 3; i++) {
      await s.put(ext);
      assert.deepEqual(await r.get(), ext);
    }
    const held = extensions().map((n) => {
      const fd = shmOpen(`/${n}`);
      try {
        return fdSize(fd);
      } finally {
        closeFd(fd);
      }
    });
    assert.equal(held.length, 1, "one reused");
    assert.ok(held[0] < 1024 * 1024, `extension of ${held[0]} bytes within the budget`);
    // Two messages that fit the budget together travel side by side.
    const half = new Uint8Array(300 * 1024);
    const [s2, r2] = createSharedMemoryPair({ arenaBytes: 256 * 1024, byteBudget: 1024 * 1024 });
    using _s2 = s2;
    using _r2 = r2;
    await s2.put(half);
    await s2.put(half, { timeout: 50 });
    assert.equal((await r2.get<Uint8Array>()).length, half.length);
    assert.equal((await r2.get<Uint8Array>()).length, half.length);
    assert.throws(
      () => createSharedMemoryPair({ arenaBytes: 1 << 20, byteBudget: 1 << 19 }),
      /byteBudget/,
    );
    // A budget below the default arena, with no arena given, bounds the arena too.
    const [s3, r3] = createSharedMemoryPair({ byteBudget: 8 << 20 });
    using _s3 = s3;
    using _r3 = r3;
    assert.ok(s3.stats().sharedBytes < (9 << 20), `${s3.stats().sharedBytes} bytes`);
    assert.equal(s3.stats().byteBudget, 8 << 20);
    assert.throws(() => createSharedMemoryPair({ byteBudget: NaN }), /byteBudget must be/);
  }));

Deno.test("large messages are bounded by capacity and the byte budget only, not by a count of segments", () =>
  withoutLeaks(async () => {
    // 300 KiB messages travel in extension segments (over a quarter of the 1 MiB arena).
    const [s, r] = createSharedMemoryPair({ capacity: 8, arenaBytes: 1 << 20 });
    using _s = s;
    using _r = r;
    const big = (i: number) => new Uint8Array(300 << 10).fill(i);
    // Drafts held by their sender: none waits on another.
    const drafts = [];
    for (let i = 0; i < 6; i++) {
      const d = await s.prepare<{ a: Uint8Array }>({ a: reserve(Uint8Array, 300 << 10) }, {
        timeout: 0,
      });
      d.value.a.fill(i);
      drafts.push(d);
    }
    for (const d of drafts) d.send();
    // Puts while nobody takes: a call with no time to spare never waits for a segment.
    for (let i = 6; i < 8; i++) s.putSync({ a: big(i) }, { timeout: 0 });
    for (let i = 0; i < 8; i++) assert.equal(r.getSync<{ a: Uint8Array }>().a[0], i);
    // Leases held by a receiver (a replay buffer): puts still go through.
    for (let i = 0; i < 4; i++) s.putSync(big(i), { timeout: 0 });
    const leases = [];
    for (let i = 0; i < 4; i++) leases.push(r.borrowSync<Uint8Array>());
    for (let i = 0; i < 4; i++) s.putSync(big(8 + i), { timeout: 0 });
    assert.equal(s.hasSpace(), false, "capacity is the limit");
    for (const [i, l] of leases.entries()) {
      assert.equal(l.value[0], i);
      l.release();
    }
    for (let i = 8; i < 12; i++) assert.equal(r.getSync<Uint8Array>()[0], i);
  }));

Deno.test("as many extension messages as there are extension segments may be in flight, and the put after them says why it waits", () =>
  withoutLeaks(() => {
    // 20 KiB messages travel in extension segments (over a quarter of the 64 KiB arena). Before,
    // 16 could be in flight, and the 17th put waited though capacity and budget had room,
    // with a FullError that blamed the byte budget.
    const [s, r] = createSharedMemoryPair({
      capacity: L.MAX_EXTENSIONS + 16,
      arenaBytes: 64 << 10,
    });
    using _s = s;
    using _r = r;
    const big = (i: number) => new Uint8Array(20 << 10).fill(i);
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) s.putSync(big(i), { timeout: 0 });
    assert.ok(L.MAX_EXTENSIONS >= 64);
    assert.equal(s.hasSpace(), true, "capacity is not the limit");
    assert.throws(
      () => s.putSync(big(99), { timeout: 20 }),
      (e: Error) =>
        e instanceof FullError &&
        e.message.includes(
          `all ${L.MAX_EXTENSIONS} extension segments carry messages in flight (each message ` +
            `of over 16384 bytes, a quarter of the arena, holds one until it is released)`,
        ),
    );
    // Messages for the arena still go.
    s.putSync(new Uint8Array(100).fill(7), { timeout: 0 });
    // One released, one more goes.
    assert.equal(r.getSync<Uint8Array>()[0], 0);
    s.putSync(big(L.MAX_EXTENSIONS), { timeout: 1000 });
    for (let i = 1; i < L.MAX_EXTENSIONS; i++) assert.equal(r.getSync<Uint8Array>()[0], i);
    assert.equal(r.getSync<Uint8Array>()[0], 7);
    const last = r.getSync<Uint8Array>();
    assert.deepEqual([last.length, last[0], last[last.length - 1]], [
      20 << 10,
      L.MAX_EXTENSIONS,
      L.MAX_EXTENSIONS,
    ]);
  }));

Deno.test("a put waiting for the byte budget is not overtaken by smaller extension messages", () =>
  withoutLeaks(async () => {
    using q = budgetQueue();
    const { a, b, r } = q;
    const small = (n: number) => new Uint8Array(4 << 20).fill(n);
    b.putSync(small(1));
    b.putSync(small(2));
    // ~10 MiB in flight: 30 MiB more does not fit, another 4 MiB would.
    const big = a.put(new Uint8Array(30 << 20).fill(9), { timeout: 10_000 });
    await delay(50);
    await assert.rejects(
      b.put(small(3), { timeout: 200 }),
      FullError,
      "the waiting put goes first",
    );
    assert.throws(() => b.putSync(small(3), { timeout: 0 }), FullError);
    assert.equal(b.hasSpace(), true, "capacity is not what holds it back");
    // Arena messages are not held back.
    b.putSync("small");
    assert.equal((r.getSync() as Uint8Array)[0], 1);
    assert.equal((r.getSync() as Uint8Array)[0], 2);
    await big;
    assert.equal(r.getSync(), "small");
    assert.equal((r.getSync() as Uint8Array)[0], 9);
    b.putSync(small(4), { timeout: 1000 });
    assert.equal((r.getSync() as Uint8Array)[0], 4);
  }));

Deno.test("a FullError for the byte budget counts the arena and another put's claim", () =>
  withoutLeaks(async () => {
    using q = budgetQueue(); // a 1 MiB arena in a 41 MiB budget
    const { a, b, r } = q;
    b.putSync(new Uint8Array(24 << 20));
    // 24 MiB in flight and 16 more fit 41 MiB, but not beside the arena: the error says so.
    assert.throws(
      () => b.putSync(new Uint8Array(16 << 20), { timeout: 0 }),
      (e) =>
        e instanceof FullError &&
        /the byte budget of 42991616 bytes has no room for this \d+-byte message: the arena takes 1048576 bytes of it and messages in flight hold 2\d{7} bytes of extension segments$/
          .test(e.message),
    );
    r.getSync();
    b.putSync(new Uint8Array(8 << 20));
    const big = a.put(new Uint8Array(34 << 20), { timeout: 10_000 });
    await delay(50);
    // 8 MiB in flight and 8 more would fit; a waiting put's claim holds it back.
    assert.throws(
      () => b.putSync(new Uint8Array(8 << 20), { timeout: 0 }),
      (e) =>
        e instanceof FullError &&
        /, and another sender's waiting put has claimed 3\d{7} bytes$/
          .test(e.message),
    );
    r.getSync();
    await big;
    r.getSync();
    // This sender's own unsent draft holds the room: the error says whose it is.
    const draft = b.prepareSync({ data: reserve(Uint8Array, 24 << 20) });
    assert.throws(
      () => b.putSync(new Uint8Array(16 << 20), { timeout: 0 }),
      (e) =>
        e instanceof FullError &&
        /bytes of extension segments, 1 of them this sender's own unsent draft\(s\): send or cancel them, as no other end can free their room$/
          .test(e.message),
    );
    draft.cancel();
    b.putSync(new Uint8Array(16 << 20), { timeout: 0 });
    r.getSync();
  }));

Deno.test("a put that stops waiting for the byte budget holds nobody back", () =>
  withoutLeaks(async () => {
    using q = budgetQueue();
    const { a, b, r } = q;
    b.putSync(new Uint8Array(4 << 20));
    b.putSync(new Uint8Array(4 << 20));
    const big = new Uint8Array(30 << 20);
    assert.throws(() => a.putSync(big, { timeout: 30 }), FullError);
    b.putSync(new Uint8Array(4 << 20), { timeout: 0 }); // at once: the claim went with the put
    const aborted = new AbortController();
    const pending = a.put(big, { signal: aborted.signal });
    await delay(30);
    aborted.abort();
    await assert.rejects(pending);
    b.putSync(new Uint8Array(4 << 20), { timeout: 0 });
    // And a sender that closes while it waits.
    const closing = a.put(big);
    await delay(30);
    a.close();
    await assert.rejects(closing, ClosedError);
    b.putSync(new Uint8Array(4 << 20), { timeout: 0 });
    for (let i = 0; i < 5; i++) r.getSync();
  }));

Deno.test("a put aborted before it first waits holds nobody back", () =>
  withoutLeaks(async () => {
    using q = budgetQueue();
    const { a, b, r } = q;
    b.putSync(new Uint8Array(4 << 20));
    b.putSync(new Uint8Array(4 << 20));
    // The call's first attempt claims; the abort comes before it reaches its room wait.
    const aborted = new AbortController();
    const pending = a.put(new Uint8Array(30 << 20), { signal: aborted.signal });
    aborted.abort();
    await assert.rejects(pending);
    b.putSync(new Uint8Array(4 << 20), { timeout: 0 });
    for (let i = 0; i < 3; i++) r.getSync();
  }));

Deno.test("a sender holding a draft is not held back by a put waiting for that draft", () =>
  withoutLeaks(async () => {
    using q = budgetQueue();
    const { a, b, r } = q;
    const first = b.prepareSync({ x: reserve(Uint8Array, 12 << 20) });
    // 30 MiB do not fit beside the draft: A waits for it, and claims.
    const big = a.put(new Uint8Array(30 << 20).fill(9), { timeout: 10_000 });
    await delay(50);
    // B's next 4 MiB fit beside its draft: were it held back, neither could go on.
    const second = await b.prepare({ x: reserve(Uint8Array, 4 << 20) }, { timeout: 1000 });
    first.send();
    second.send();
    assert.equal((await r.get<{ x: Uint8Array }>()).x.length, 12 << 20);
    assert.equal((await r.get<{ x: Uint8Array }>()).x.length, 4 << 20);
    await big;
    assert.equal((r.getSync() as Uint8Array)[0], 9);
  }));

Deno.test("a sender waits for a busy extension only behind messages in line, and only with time to spare", () =>
  withoutLeaks(() => {
    // 24 MiB messages: extensions (the arena is 1 MiB), each worth waiting ~25 ms for.
    const length = 24 << 20;
    const s = SharedQueue.create(
      { capacity: 16, arenaBytes: 1 << 20, byteBudget: 1 << 30, keepIdleSegmentsMs: 10_000 },
      "sender",
    );
    const r = SharedQueue.open(s.name, "receiver");
    try {
      const reserve = (deadline = Infinity) => {
        const got = s.reserve(length, deadline);
        if (got?.createExtension) s.reservedBytes(got); // makes the segment
        return got;
      };
      // Three being written (unsent drafts) do not count: a fourth goes at once.
      const first = [reserve(), reserve(), reserve(), reserve()];
      assert.ok(first.every((w) => w !== undefined), "drafts held");
      for (const w of first) s.publish(w!);
      // Four taken and held (leases) do not count either.
      const taken = [r.take(), r.take(), r.take(), r.take()];
      assert.ok(taken.every((t) => t !== undefined));
      const fifth = reserve();
      assert.ok(fifth !== undefined, "leases held");
      s.publish(fifth);
      for (const t of taken) r.release(t!.slot);
      // Five in line, not yet taken (four of them reuse the segments given back): the next
      // waits for one to come back instead of making a sixth...
      for (let i = 0; i < 4; i++) s.publish(reserve()!);
      assert.equal(s.inFlight, 5);
      assert.equal(reserve(), undefined, "waits behind messages in line");
      // ...unless its deadline is too near for that: then it makes one.
      const late = reserve(performance.now() + 5);
      assert.ok(late !== undefined, "no time to wait");
      s.cancel(late);
    } finally {
      r.close();
      s.close();
    }
  }));

Deno.test("a for-await loop over a queue that never runs dry still lets timers and I/O run", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 64 });
    using _s = s;
    using _r = r;
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let read = false;
    const io = Deno.readFile(new URL(import.meta.url)).then(() => read = true);
    const started = performance.now();
    // Producer and consumer in one loop: every put and get completes at once.
    await s.put(0);
    for await (const v of r) {
      if (performance.now() - started > 300) break;
      await s.put((v as number) + 1);
    }
    clearInterval(timer);
    const readInLoop = read;
    await io;
    assert.ok(ticks >= 5, `the interval ran ${ticks} times in 300 ms`);
    assert.ok(readInLoop, "a file read completed while the loop ran");
  }));

Deno.test("get copies arrays into buffers from allocate, in every get flavor", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    using _s = s;
    using _r = r;
    const pool = [new ArrayBuffer(64), new ArrayBuffer(64), new ArrayBuffer(64)];
    const asked: number[] = [];
    const allocate = (n: number) => {
      asked.push(n);
      return pool[asked.length - 1];
    };
    for (let i = 0; i < 3; i++) s.putSync({ i, data: new Float64Array(8).fill(i + 0.5) });
    const a = await r.get<{ data: Float64Array }>({ allocate });
    const b = r.getSync<{ data: Float64Array }>({ allocate });
    const c = r.getNowait<{ data: Float64Array }>({ allocate })!;
    assert.deepEqual(asked, [64, 64, 64]);
    assert.ok(a.data.buffer === pool[0] && b.data.buffer === pool[1] && c.data.buffer === pool[2]);
    assert.deepEqual([a.data[7], b.data[7], c.data[7]], [0.5, 1.5, 2.5]);
    assert.throws(
      // deno-lint-ignore no-explicit-any
      () => r.getSync({ allocate: 5 as any }),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === "Receiver.getSync: allocate must be a function, got 5",
    );
  }));

Deno.test("pooled gets share slabs between messages, in every get flavor", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    using _s = s;
    using _r = r;
    for (let i = 0; i < 4; i++) s.putSync({ i, data: new Float64Array(2).fill(i + 0.5) });
    startFreshSlab();
    const a = await r.get<{ data: Float64Array }>({ pooled: true });
    const b = r.getSync<{ data: Float64Array }>({ pooled: true });
    const c = r.getNowait<{ data: Float64Array }>({ pooled: true })!;
    assert.ok(a.data.buffer === b.data.buffer && b.data.buffer === c.data.buffer);
    assert.deepEqual([a.data[1], b.data[1], c.data[1]], [0.5, 1.5, 2.5]);
    const d = r.getSync<{ data: Float64Array }>({ pooled: false });
    assert.equal(d.data.buffer.byteLength, 16, "pooled: false copies into a buffer of its own");
    // A wrong option takes no message: the next one is still first in line.
    s.putSync("next");
    assert.throws(
      () => r.getSync({ pooled: 1 as unknown as boolean }),
      (e: Error) =>
        e instanceof TypeError && e.message === "Receiver.getSync: pooled must be a boolean, got 1",
    );
    assert.equal(r.getNowait({ pooled: true }), "next");
  }));

Deno.test("a pooled get of a large message pools its small arrays only, and combines with allocate", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    using _s = s;
    using _r = r;
    // 1 MiB: past the size where gets ready their copy targets (huge pages, a helper thread).
    const message = () => ({
      small: new Int32Array([1, 2, 3]),
      big: new Float64Array(131_072).fill(0.25),
      bytes: new ArrayBuffer(4),
    });
    s.putSync(message());
    s.putSync(message());
    startFreshSlab();
    const plain = r.getSync<ReturnType<typeof message>>({ pooled: true });
    assert.equal(plain.small.buffer.byteLength, 32 * 1024, "the small array went to a slab");
    assert.deepEqual([...plain.small], [1, 2, 3]);
    assert.equal(plain.big.buffer.byteLength, 1 << 20, "the large one has a buffer of its own");
    assert.ok(plain.big[0] === 0.25 && plain.big[131_071] === 0.25);
    assert.equal(plain.bytes.byteLength, 4);
    const asked: number[] = [];
    const mine = await r.get<ReturnType<typeof message>>({
      pooled: true,
      allocate: (n) => {
        asked.push(n);
        return new ArrayBuffer(n);
      },
    });
    assert.deepEqual(asked, [1 << 20, 4], "allocate is asked for what no slab takes");
    assert.equal(mine.small.buffer, plain.small.buffer);
    assert.equal(mine.big[131_071], 0.25);
  }));

Deno.test("messages() loops like for await, copying as get does with its options", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    using _r = r;
    for (let i = 0; i < 3; i++) s.putSync(new Float32Array([i, i]));
    s.close();
    const got: Float32Array[] = [];
    startFreshSlab();
    for await (const m of r.messages<Float32Array>({ pooled: true })) got.push(m);
    assert.deepEqual(got.map((m) => m[1]), [0, 1, 2]);
    assert.ok(got[0].buffer === got[2].buffer, "pooled: one slab");
    assert.throws(
      () => r.messages({ pooled: "yes" as unknown as boolean }),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === 'Receiver.messages: pooled must be a boolean, got the string "yes"',
    );
    assert.throws(
      () => r.messages({ timout: 5 } as never),
      /^TypeError: Receiver\.messages: unknown option `timout` \(did you mean `timeout`\?\)/,
    );
    // A wrong buffer from allocate reaches the loop, named by it, and loses no message.
    const [s2, r2] = createSharedMemoryPair({ capacity: 8 });
    using _s2 = s2;
    using _r2 = r2;
    s2.putSync(new Uint8Array(4));
    const loop = r2.messages({ allocate: () => new ArrayBuffer(1) });
    await assert.rejects(
      loop.next(),
      (e: Error) => e instanceof TypeError && /^Receiver\.messages: allocate\(4\)/.test(e.message),
    );
    assert.equal(r2.getNowait<Uint8Array>()?.length, 4);
  }));

Deno.test("messages({ timeout, signal }): each message waits at most so long, and an abort ends the loop", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    using _s = s;
    using _r = r;
    s.putManySync(["a", "b"]);
    const seen: unknown[] = [];
    await assert.rejects(
      async () => {
        for await (const m of r.messages({ timeout: 20 })) seen.push(m);
      },
      (e: Error) =>
        e instanceof EmptyError &&
        e.message === "Receiver.messages: no message arrived within 20 ms",
    );
    assert.deepEqual(seen, ["a", "b"]);
    // Aborted while it waits: the loop throws the reason, and takes nothing for it.
    const stop = new AbortController();
    const reason = new Error("shutting down");
    const loop = (async () => {
      for await (const m of r.messages<string>({ signal: stop.signal })) seen.push(m);
    })();
    await delay(20);
    stop.abort(reason);
    await assert.rejects(loop, (e: unknown) => e === reason);
    s.putSync("c");
    assert.equal(r.getNowait(), "c");
    // Aborted before: the first step rejects.
    await assert.rejects(r.messages({ signal: stop.signal }).next(), (e: unknown) => e === reason);
    assert.throws(() => r.messages({ signal: "no" as never }), TypeError);
  }));

Deno.test("a failing allocate loses no message: it stays first in line for that end", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    using _s = s;
    using _r = r;
    for (let i = 0; i < 3; i++) await s.put(new Int32Array([i]));
    assert.throws(() =>
      r.getSync({
        allocate: () => {
          throw new Error("pool exhausted");
        },
      }), /pool exhausted/);
    await assert.rejects(
      r.get({ allocate: () => new ArrayBuffer(3) }),
      (e: Error) =>
        e instanceof TypeError && /must return an ArrayBuffer of 4 bytes/.test(e.message),
    );
    // Even when what the callback throws is one of this library's own errors.
    assert.throws(() =>
      r.getSync({
        allocate: () => {
          throw new EmptyError("the pool's own queue is empty");
        },
      }), EmptyError);
    // Buffers that pass for ArrayBuffers of the right length but are none. Before, the copy
    // into them failed afterwards, and the message was consumed.
    const fake = Object.create(ArrayBuffer.prototype, { byteLength: { value: 4 } });
    const proxy = new Proxy(new ArrayBuffer(4), {});
    const detached = new ArrayBuffer(4);
    detached.transfer();
    // A detached one that says otherwise, for an empty array below.
    const disguised = Object.defineProperty(new ArrayBuffer(0), "detached", { value: false });
    disguised.transfer();
    const odd: [unknown, RegExp][] = [
      [fake, /got an object that is no real ArrayBuffer/],
      [proxy, /got an object that is no real ArrayBuffer/],
      [detached, /got a detached ArrayBuffer/],
      [new SharedArrayBuffer(4), /got a SharedArrayBuffer/],
      [undefined, /got undefined/],
      [new Uint8Array(4), /got a Uint8Array \(return its ArrayBuffer\)/],
      [new DataView(new ArrayBuffer(4)), /got a DataView \(return its ArrayBuffer\)/],
    ];
    for (const [buffer, why] of odd) {
      assert.throws(
        () => r.getSync({ allocate: () => buffer as ArrayBuffer }),
        (e: Error) =>
          e instanceof TypeError && why.test(e.message) &&
          e.message.startsWith("Receiver.getSync: allocate(4) must return an ArrayBuffer of 4"),
        String(why),
      );
    }
    assert.deepEqual(await r.get(), new Int32Array([0]));
    const lease = r.borrowSync<Int32Array>();
    assert.equal(lease.value[0], 1);
    lease.release();
    assert.deepEqual(r.getSync(), new Int32Array([2]));
    // An empty array's detached buffer: before, V8's "Cannot perform Construct on a detached
    // ArrayBuffer", and the message was consumed.
    await s.put(new Int32Array(0));
    assert.throws(() => r.getSync({ allocate: () => detached }), /got a detached ArrayBuffer/);
    assert.throws(() => r.getSync({ allocate: () => disguised }), /got a detached ArrayBuffer/);
    assert.deepEqual(r.getSync(), new Int32Array(0));
    await s.waitForAllAck({ timeout: 3000 });
    // An end closed with its message still first in line gives it back to the queue (before:
    // consumed, and counted as received).
    await s.put(new Int32Array([3]));
    using other = openReceiver(s.descriptor);
    assert.throws(() => r.getSync({ allocate: () => new ArrayBuffer(1) }), /of 4 bytes/);
    r.close();
    assert.deepEqual(other.getSync({ timeout: 1000 }), new Int32Array([3]));
    await s.waitForAllAck({ timeout: 3000 });
  }));

Deno.test("allocate misuse (a get from inside it, one buffer twice) is refused, nothing lost", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 4 });
    using _s = s;
    using _r = r;
    for (let i = 0; i < 3; i++) await s.put(new Int32Array([i]));
    const inner: unknown[] = [];
    const reentrant = (byteLength: number): ArrayBuffer => {
      const calls = [
        () => r.getSync({ timeout: 100 }),
        () => r.getNowait(),
        () => r.borrowSync({ timeout: 100 }),
      ];
      for (const call of calls) {
        try {
          call();
        } catch (error) {
          inner.push(error);
        }
      }
      inner.push(r.get({ timeout: 100 }).catch((e) => e));
      // Once a fairness turn is due (5 ms without one), an async call takes after it, when
      // this allocate has returned: refused all the same, as it is made (under load, a get
      // made here took message 0 now and then).
      const until = Date.now() + 7;
      while (Date.now() < until) { /* a receiver busy for a while */ }
      inner.push(r.get({ timeout: 100 }).catch((e) => e));
      inner.push(r.getMany(2, { timeout: 100 }).catch((e) => e));
      inner.push(r.borrow({ timeout: 100 }).catch((e) => e));
      // Failing, the outer get keeps its message; before the refusal, an inner get that
      // failed the same way had its kept message pushed out by this one's, for good.
      throw new Error(`no buffer of ${byteLength} bytes`);
    };
    assert.throws(() => r.getSync({ allocate: reentrant }), /no buffer of 4 bytes/);
    const refusals = await Promise.all(inner);
    assert.equal(refusals.length, 7);
    for (const e of refusals) {
      assert.ok(
        e instanceof TypeError && /inside this receiver's own allocate/.test(e.message),
        `${e}`,
      );
    }
    for (let i = 0; i < 3; i++) assert.deepEqual(r.getSync({ timeout: 1000 }), new Int32Array([i]));
    await s.waitForAllAck({ timeout: 3000 });

    // One buffer for two arrays of a message would hold only the later: refused, and the
    // message stays first in line.
    await s.put({ a: new Int32Array([1]), b: new Int32Array([2]) });
    const one = new ArrayBuffer(4);
    assert.throws(() => r.getSync({ allocate: () => one }), {
      name: "TypeError",
      message: "Receiver.getSync: allocate returned one ArrayBuffer for two arrays of a message",
    });
    assert.deepEqual(r.getSync({ timeout: 1000 }), {
      a: new Int32Array([1]),
      b: new Int32Array([2]),
    });
    // An empty buffer holds nothing to overwrite: one for every empty array is fine.
    await s.put({ a: new Int32Array(0), b: new Uint8Array(0) });
    const empty = new ArrayBuffer(0);
    const got = r.getSync<{ a: Int32Array; b: Uint8Array }>({ allocate: () => empty });
    assert.ok(got.a.buffer === empty && got.b.buffer === empty);
  }));

Deno.test("a message kept after a failed allocate goes back on close, not leaked", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    await s.put(new Uint8Array(16));
    assert.throws(() => r.getSync({ allocate: () => new ArrayBuffer(1) }), TypeError);
    assert.equal(s.hasSpace(), true); // one of two still out
    r.close();
    await assert.rejects(s.put(1), ClosedError);
  }));

Deno.test("close() of a receiver holding a message on a queue found corrupt still closes", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    await s.put(new Uint8Array(16));
    assert.throws(() => r.getSync({ allocate: () => new ArrayBuffer(1) }), TypeError);
    const m = mapSegment(s.descriptor.name)!;
    m.u32[L.H_STATE >> 2] = L.QueueState.Poisoned;
    m.unmap();
    // Before: close() threw ClosedError("corrupt") at giving the message back, again at every
    // call, and the end stayed open (its entry, fd and mapping leaked).
    r.close();
    assert.equal(r.closed, true);
  }));

Deno.test("an unsent draft holds back only its own sender's later messages", () =>
  withoutLeaks(async () => {
    const [slow, r] = createSharedMemoryPair({ capacity: 8 });
    using _slow = slow;
    using _r = r;
    using fast = openSender(slow.descriptor);
    const draft = slow.prepareSync<{ from: string; data: Uint8Array }>({
      from: "slow",
      data: reserve(Uint8Array, 1024),
    });
    await slow.put({ from: "slow", n: 2 }); // behind its own draft
    await fast.put({ from: "fast", n: 1 });
    await fast.put({ from: "fast", n: 2 });
    assert.deepEqual(await r.get({ timeout: 1000 }), { from: "fast", n: 1 });
    using lease = r.borrowSync<{ from: string; n: number }>({ timeout: 1000 });
    assert.deepEqual(lease.value, { from: "fast", n: 2 });
    assert.equal(r.getNowait(), undefined, "the slow sender's later message waits for its draft");
    await fast.waitForAllAck({ timeout: 1000 }).then(
      () => assert.fail("a held lease is not acked"),
      (e) => assert.ok(e instanceof FullError),
    );
    lease.release();
    await fast.waitForAllAck({ timeout: 1000 }); // released out of turn, acked all the same
    draft.value.data.fill(3);
    draft.send();
    const first = await r.get<{ from: string; data: Uint8Array }>({ timeout: 1000 });
    assert.equal(first.from, "slow");
    assert.equal(first.data[1023], 3);
    assert.deepEqual(await r.get({ timeout: 1000 }), { from: "slow", n: 2 });
    await slow.waitForAllAck({ timeout: 1000 });
    // Messages taken out of turn were reclaimed too: the whole capacity is free again.
    for (let i = 0; i < 8; i++) assert.ok(fast.hasSpace() && (await fast.put(i), true));
    for (let i = 0; i < 8; i++) assert.equal(await r.get({ timeout: 1000 }), i);
  }));

Deno.test("a put blocked on a full queue goes on after a get, with no further gets", () =>
  withoutLeaks(async () => {
    // A receiver that releases as it goes may leave waking the senders for later (to batch
    // wake-ups); a receiver that then stops taking must not leave a sender blocked.
    const [s, r] = createSharedMemoryPair({ capacity: 16 });
    using _s = s;
    using _r = r;
    for (let i = 0; i < 16; i++) await s.put(i);
    const blocked = s.put("after", { timeout: 2000 });
    await new Promise((ok) => setTimeout(ok, 30)); // the put is asleep by now
    assert.equal(r.getSync(), 0);
    await blocked;
    for (let i = 1; i < 16; i++) assert.equal(r.getSync(), i);
    assert.equal(r.getSync(), "after");
  }));

Deno.test("a release settled by whatever holds the lock next leaves no count behind", () =>
  withoutLeaks(() => {
    // Receivers release without the lock and count each release; any lock holder may settle
    // it. A settle the count does not hear of leaves it ahead, and the next settle then scans
    // the whole ring for a release that is not there (a full queue's lock holds were mostly
    // such scans). A cancel settles the release at the tail here, as it reclaims.
    const [s, r] = createSharedMemoryPair({ capacity: 4 });
    using _s = s;
    using _r = r;
    const m = mapSegment(s.descriptor.name)!;
    try {
      for (let round = 0; round < 3; round++) {
        s.putSync("a");
        const draft = s.prepareSync(reserve(Uint8Array, 8));
        assert.equal(r.getNowait(), "a");
        assert.equal(slotsInState(s.descriptor.name, L.SlotState.Released), 1);
        assert.equal(Atomics.load(m.i32, L.W_UNSETTLED >> 2), 1);
        draft.cancel();
        assert.equal(slotsInState(s.descriptor.name, L.SlotState.Released), 0);
        assert.equal(Atomics.load(m.i32, L.W_UNSETTLED >> 2), 0, `round ${round}`);
      }
      assert.deepEqual(s.stats(), r.stats());
      assert.equal(s.stats().inFlight, 0);
      s.putSync("b");
      assert.equal(r.getNowait(), "b");
    } finally {
      m.unmap();
    }
  }));

Deno.test("a sender opened while a release waits to be settled leaves the count true", () =>
  withoutLeaks(() => {
    // Opening a sender settles what it meets at the ring's tail, under the lock. Those settles
    // must come off the count as that hold ends: taken off later, in another hold, they would
    // take the unit of a release made since, whose room then stays hidden from every put.
    const [s, r] = createSharedMemoryPair({ capacity: 1 });
    using _s = s;
    using _r = r;
    s.putSync("a");
    assert.equal(r.getNowait(), "a"); // released, not settled yet
    using s2 = openSender(s.descriptor);
    assert.equal(segmentWord(s.descriptor.name, L.W_UNSETTLED), 0);
    assert.equal(r.getNowait(), undefined);
    s.putSync("b");
    assert.equal(r.getNowait(), "b");
    assert.equal(s2.hasSpace(), true);
    s2.putSync("c", { timeout: 0 }); // the room "b" left, found at once
    assert.equal(r.getNowait(), "c");
    assert.deepEqual(s.stats(), r.stats());
  }));

Deno.test("releases the unsettled count missed are still settled: acks exact, room found", () =>
  withoutLeaks(async () => {
    // A receiver killed between releasing a message and counting the release leaves it
    // uncounted; the count is forged to zero here to stand for that.
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    using _r = r;
    const m = mapSegment(s.descriptor.name)!;
    try {
      await s.put("a");
      assert.equal(await r.get(), "a");
      Atomics.store(m.i32, L.W_UNSETTLED >> 2, 0);
      await s.waitForAllAck({ timeout: 2000 }); // found by a scan of the ring, not the count
      await s.put("b");
      // "a" must not be credited a second time, which would ack "b" unreceived.
      await assert.rejects(s.waitForAllAck({ timeout: 400 }), FullError);
      assert.equal(await r.get(), "b");
      Atomics.store(m.i32, L.W_UNSETTLED >> 2, 0);
      // A full queue whose room is only in uncounted releases: put still finds it.
      await s.put("c", { timeout: 1000 });
      assert.equal(await r.get(), "c");
      Atomics.store(m.i32, L.W_UNSETTLED >> 2, 0);
      await s.put("d", { timeout: 1000 });
      await s.put("e", { timeout: 1000 });
      assert.deepEqual([await r.get(), await r.get()], ["d", "e"]);
      // A negative count can only be forged: the queue is declared corrupt, not stalled, by
      // the next call that settles (a take always does; a put, once the queue fills), and
      // then for every call.
      Atomics.store(m.i32, L.W_UNSETTLED >> 2, -5);
      const corrupt = (e: Error) => e instanceof ClosedError && e.reason === "corrupt";
      await assert.rejects(r.get({ timeout: 1000 }), corrupt);
      await assert.rejects(s.put("f", { timeout: 1000 }), corrupt);
    } finally {
      m.unmap();
    }
  }));

Deno.test("a lone receiver prefetches; a receiver that joins later takes those messages over", () =>
  withoutLeaks(async () => {
    const [s, r1] = createSharedMemoryPair({ capacity: 32 });
    using _s = s;
    using _r1 = r1;
    for (let i = 0; i < 20; i++) await s.put(i);
    assert.equal(r1.getSync(), 0);
    const ahead = slotsInState(s.descriptor.name, L.SlotState.Prefetched);
    assert.ok(ahead >= 2, `the lone receiver took messages ahead (${ahead})`);
    // A second receiver gets work at once: nothing waits for the first to hand it out.
    using r2 = openReceiver(r1.descriptor);
    const got1: number[] = [0];
    const got2: number[] = [];
    got2.push(r2.getSync({ timeout: 1000 }));
    assert.equal(got2[0], 1, "the earliest message goes first, whoever prefetched it");
    for (let turn = 0; got1.length + got2.length < 20; turn++) {
      const v = (turn % 2 ? r1 : r2).getNowait<number>();
      if (v !== undefined) (turn % 2 ? got1 : got2).push(v);
    }
    assert.equal(r1.getNowait(), undefined);
    assert.equal(r2.getNowait(), undefined);
    for (const got of [got1, got2]) {
      assert.deepEqual(got, [...got].sort((a, b) => a - b), "each receiver sees put order");
    }
    assert.deepEqual([...got1, ...got2].sort((a, b) => a - b), [...Array(20).keys()]);
    await s.waitForAllAck({ timeout: 1000 });
    assert.equal(slotsInState(s.descriptor.name, L.SlotState.Prefetched), 0);
  }));

Deno.test("closing a receiver gives its prefetched messages back, in order", () =>
  withoutLeaks(async () => {
    const [s, r1] = createSharedMemoryPair({ capacity: 32 });
    using _s = s;
    for (let i = 0; i < 10; i++) await s.put({ i });
    assert.deepEqual(await r1.get(), { i: 0 });
    assert.ok(slotsInState(s.descriptor.name, L.SlotState.Prefetched) > 0);
    using r2 = openReceiver(r1.descriptor);
    r1.close();
    assert.equal(slotsInState(s.descriptor.name, L.SlotState.Prefetched), 0);
    for (let i = 1; i < 10; i++) assert.deepEqual(await r2.get({ timeout: 1000 }), { i });
    assert.equal(r2.getNowait(), undefined);
    await s.waitForAllAck({ timeout: 1000 });
    // Room and arena space all came back.
    for (let i = 0; i < 32; i++) assert.ok(s.hasSpace() && (await s.put(i), true));
    for (let i = 0; i < 32; i++) assert.equal(r2.getSync(), i);
  }));

Deno.test("leases of small messages (copies recycled) and large ones (in place) never alias", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 8 });
    using _s = s;
    using _r = r;
    // A large message is lent in place: one buffer over exactly its bytes in shared memory.
    await s.put(new Float64Array(1024).fill(2.5));
    const big = r.borrowSync<Float64Array>();
    assert.equal(big.value.buffer.byteLength, big.byteLength);
    assert.equal(big.value[1023], 2.5);
    big.release();
    assert.equal(big.value.length, 0);
    // Small ones: each lease held at once has its own memory; a released one is detached,
    // and its memory, reused by a later lease, shows only that lease's message.
    for (let i = 0; i < 4; i++) await s.put(new Int32Array([i, i, i]));
    const held = [0, 1, 2].map(() => r.borrowSync<Int32Array>());
    assert.deepEqual(held.map((l) => [...l.value]), [[0, 0, 0], [1, 1, 1], [2, 2, 2]]);
    const old = held[0].value;
    held[0].release();
    assert.equal(old.length, 0, "detached on release");
    const next = r.borrowSync<Int32Array>();
    assert.deepEqual([...next.value], [3, 3, 3]);
    assert.deepEqual([...held[1].value], [1, 1, 1], "an older lease still reads its own message");
    assert.equal(old.length, 0);
    for (const l of [...held, next]) l.release();
    await s.waitForAllAck({ timeout: 1000 });
  }));

Deno.test("recovery after a lock holder died mid-reclaim or mid-takeover: nothing lost, nothing stuck", () =>
  withoutLeaks(async () => {
    // A holder's death is staged by writing what it would have left in shared memory, and a
    // lock word naming an entry nobody holds: the next end to lock takes over and recovers.
    const deadHolder = L.MAX_PARTICIPANTS - 1 + 1; // owner index 255, never registered here
    {
      // Killed inside a reclaim that had freed slots past the read cursor (messages handed
      // out ahead of it) before it stored the cursors.
      const [s, r] = createSharedMemoryPair({ capacity: 8 });
      using _s = s;
      using _r = r;
      for (let i = 0; i < 3; i++) await s.put(i);
      assert.deepEqual([r.getSync(), r.getSync(), r.getSync()], [0, 1, 2]); // 1, 2 prefetched
      const m = mapSegment(s.descriptor.name)!;
      try {
        r.getNowait(); // settles the releases: slots 0-2 are Done, the read cursor is at 1
        for (let k = 0; k < 3; k++) {
          Atomics.store(m.i32, (L.slotOffset(k) + L.S_STATE) >> 2, L.SlotState.Free);
        }
        m.u32[L.C_TAIL >> 2] = 0;
        m.u32[L.C_READ >> 2] = 1;
        Atomics.store(m.i32, L.W_LOCK >> 2, deadHolder);
      } finally {
        m.unmap();
      }
      await s.put(3, { timeout: 2000 });
      assert.equal(r.getSync({ timeout: 1000 }), 3);
      await s.waitForAllAck({ timeout: 1000 });
      for (let i = 0; i < 8; i++) await s.put(i, { timeout: 1000 }); // all room came back
      for (let i = 0; i < 8; i++) assert.equal(r.getSync({ timeout: 1000 }), i);
    }
    {
      // A receiver killed taking over another's prefetched message, between its CAS and its
      // record of itself: the message goes back to the queue and is delivered once.
      const [s, r] = createSharedMemoryPair({ capacity: 4 });
      using _s = s;
      using _r = r;
      for (let i = 0; i < 3; i++) await s.put(i);
      assert.equal(r.getSync(), 0); // 1 and 2 prefetched
      const m = mapSegment(s.descriptor.name)!;
      try {
        const at = (L.slotOffset(1) + L.S_STATE) >> 2;
        assert.equal(Atomics.load(m.i32, at), L.SlotState.Prefetched);
        Atomics.store(m.i32, at, L.SlotState.Claimed);
        m.u32[(L.slotOffset(1) + L.S_TAKEN_BY) >> 2] = deadHolder - 1;
        Atomics.store(m.i32, L.W_LOCK >> 2, deadHolder);
      } finally {
        m.unmap();
      }
      await s.put(3, { timeout: 2000 }); // takes the lock over: recovery
      const rest = [1, 2, 3].map(() => r.getSync({ timeout: 1000 }));
      assert.deepEqual(rest, [1, 2, 3]);
      assert.equal(r.getNowait(), undefined);
      await s.waitForAllAck({ timeout: 1000 });
      for (let i = 0; i < 4; i++) await s.put(i, { timeout: 1000 });
      for (let i = 0; i < 4; i++) assert.equal(r.getSync({ timeout: 1000 }), i);
    }
    {
      // Killed inside a rebase of the arena's offsets (after about 2^50 bytes), with the
      // cursors shifted down by whole laps and the slots' ends not yet. Before: the next audit
      // took that for corruption and made the queue unusable.
      const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20 });
      using _s = s;
      using _r = r;
      for (let i = 0; i < 3; i++) s.putSync(new Uint8Array(1000).fill(i));
      const m = mapSegment(s.descriptor.name)!;
      try {
        // The cursors as the dead holder left them, shifted; the slots' ends a lap of 2^50 up.
        for (let k = 0; k < 3; k++) m.f64[(L.slotOffset(k) + L.S_ARENA_END) >> 3] += 2 ** 50;
        Atomics.store(m.i32, L.W_LOCK >> 2, deadHolder);
      } finally {
        m.unmap();
      }
      s.putSync(new Uint8Array(1000).fill(3), { timeout: 2000 }); // recovery
      // The queue is full: this put waits past a reap, and so an audit, before it gives up.
      assert.throws(() => s.putSync(4, { timeout: 300 }), FullError);
      const got = [0, 1, 2, 3].map(() => r.getSync<Uint8Array>({ timeout: 1000 })[0]);
      assert.deepEqual(got, [0, 1, 2, 3]);
    }
    {
      // Killed as a reclaim that emptied the ring put the arena cursors back to 0: the tail
      // stored, the head not yet. Before: takeover called the queue corrupt.
      const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20 });
      using _s = s;
      using _r = r;
      const m = mapSegment(s.descriptor.name)!;
      try {
        m.f64[L.C_ARENA_HEAD >> 3] = 5 * (1 << 20);
        Atomics.store(m.i32, L.W_LOCK >> 2, deadHolder);
      } finally {
        m.unmap();
      }
      s.putSync(new Uint8Array(1000).fill(7), { timeout: 2000 }); // recovery
      assert.equal(r.getSync<Uint8Array>({ timeout: 1000 })[0], 7);
    }
  }));

Deno.test("large arrays copied out while a helper pre-faults their targets arrive intact", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2, arenaBytes: 1 << 20 });
    try {
      // Several large arrays in one message: each copy's helper is joined before the next.
      // Targets from 32 MiB are readied and get a helper; smaller ones the codec copies.
      const filled = <T extends Uint8Array | Float64Array>(array: T, f: (i: number) => number) => {
        for (let i = 0; i < array.length; i++) array[i] = f(i);
        return array;
      };
      const message = () => ({
        more: filled(new Uint8Array(40 << 20), (i) => i ^ 0x5a),
        bytes: filled(new Uint8Array(6 << 20), (i) => (i * 7 + 3) & 255),
        doubles: filled(new Float64Array(33 << 17), (i) => i / 3),
      });
      const want = message();
      for (let round = 0; round < 3; round++) {
        await sender.put(want);
        const got = round % 2 === 0
          ? await receiver.get<typeof want>()
          : receiver.getSync<typeof want>();
        assert.deepEqual(got.bytes, want.bytes);
        assert.deepEqual(got.doubles, want.doubles);
        assert.deepEqual(got.more, want.more);
      }
      // Every helper was joined: all 8 can be started again.
      const helpers = Array.from({ length: 8 }, () => prefaultStart(new ArrayBuffer(4 << 20)));
      for (const id of helpers) if (id !== undefined) prefaultJoin(id);
      assert.ok(helpers.every((id) => id !== undefined), "a helper was left unjoined");
    } finally {
      sender.close();
      receiver.close();
    }
  }));

Deno.test("a receiver whose own leases take the capacity is told so when its wait expires", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    using _r = r;
    s.putSync(1);
    s.putSync(2);
    const leases = [r.borrowSync(), r.borrowSync()];
    assert.equal(s.hasSpace(), false);
    assert.throws(
      () => r.borrowSync({ timeout: 0 }),
      (e: Error) =>
        e instanceof EmptyError &&
        /this receiver holds 2 unreleased lease\(s\), and the queue's capacity of 2 messages is taken/
          .test(e.message),
    );
    for (const lease of leases) lease.release();
    // Without leases the plain message.
    assert.throws(() => r.getSync({ timeout: 0 }), /no message arrived within 0 ms$/);
    // One lease kept while the rest stream past it: slots are reused in order, so the ring
    // fills behind it with capacity to spare.
    const kept = (s.putSync("kept"), r.borrowSync());
    while (s.hasSpace()) {
      s.putSync(0);
      r.getSync();
    }
    assert.throws(
      () => r.getSync({ timeout: 0 }),
      (e: Error) =>
        e instanceof EmptyError &&
        /holds 1 unreleased lease\(s\), and the queue's 16 slots, reused in order, are all taken/
          .test(e.message),
    );
    kept.release();
    s.putSync("after");
    assert.equal(r.getSync({ timeout: 1000 }), "after");
  }));

Deno.test("a lease that holds the arena back is named by the sender's FullError and the receiver's EmptyError", () =>
  withoutLeaks(() => {
    // Before: the sender's error said unreleased messages held the arena (one small message
    // was unreleased), and the receiver's said nothing of its lease.
    const [s, r] = createSharedMemoryPair({ capacity: 64, arenaBytes: 64 * 1024 });
    using _s = s;
    using _r = r;
    s.putSync("kept");
    const kept = r.borrowSync();
    let full: Error | undefined;
    for (let i = 0; i < 64 && full === undefined; i++) {
      try {
        s.putSync(new Uint8Array(8000), { timeout: 0 });
        r.getSync();
      } catch (error) {
        full = error as Error;
      }
    }
    assert.ok(full instanceof FullError, String(full));
    assert.match(full.message, /are held, reclaimed in order behind the oldest unreleased message/);
    assert.throws(
      () => r.getSync({ timeout: 0 }),
      (e: Error) =>
        e instanceof EmptyError &&
        /this receiver holds 1 unreleased lease\(s\), and the arena's space, reclaimed in order/
          .test(e.message),
    );
    kept.release();
    s.putSync(new Uint8Array(8000), { timeout: 1000 });
    assert.equal(r.getSync<Uint8Array>().length, 8000);
  }));

Deno.test("a drained queue whose senders all closed says so, not that one died", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair();
    s.close();
    assert.throws(
      () => r.getNowait(),
      (e: Error) =>
        e instanceof ClosedError &&
        e.message ===
          "Receiver.getNowait: every sender of the queue has closed and the queue is drained",
    );
    assert.equal(r.sendersDied, 0);
    r.close();
  }));

Deno.test("putMany and putManySync deliver every value once, in order, waiting for room part way", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20 });
    // One value too large for the arena (an extension segment) among small ones.
    const big = new Uint8Array(600_000).fill(7);
    const values = (base: number) =>
      Array.from({ length: 10 }, (_, i) => i === 5 ? big : { n: base + i, tag: "x".repeat(i) });
    const got: unknown[] = [];
    const draining = (async () => {
      for (let i = 0; i < 10; i++) got.push(await receiver.get({ timeout: 10_000 }));
    })();
    await sender.putMany(values(0)); // 10 values, capacity 4: waits for the receiver
    await draining;
    const expected = [...values(0), ...values(100)];
    // The second batch goes from a thread-blocking call while nobody drains: room for 4.
    assert.throws(
      () => sender.putManySync(values(100), { timeout: 20 }),
      (e: unknown) =>
        e instanceof FullError && e.sent === 4 &&
        /^Sender\.putManySync: no room for 20 ms: 4 of capacity 4 messages are unreleased; 4 of the 10 values were put, in order, and the rest were not$/
          .test(e.message),
    );
    const take = (n: number) => {
      for (let i = 0; i < n; i++) got.push(receiver.getSync({ timeout: 1000 }));
    };
    take(4);
    sender.putManySync(values(100).slice(4, 8)); // room for all four
    take(4);
    sender.putManySync(values(100).slice(8));
    take(2);
    assert.equal(got.length, 20);
    for (let i = 0; i < 20; i++) {
      if (i % 10 === 5) {
        const bytes = got[i] as Uint8Array;
        assert.ok(bytes.length === 600_000 && bytes.every((b) => b === 7), `value ${i}`);
      } else {
        assert.deepEqual(got[i], expected[i], `value ${i}`);
      }
    }
    await sender.waitForAllAck({ timeout: 10_000 });
    assert.equal(receiver.getNowait(), undefined);
    sender.close();
    receiver.close();
  }));

Deno.test("putMany checks every value before it writes any: a rejected one names its index", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
    assert.throws(
      () => sender.putManySync(["a", { f: () => 1 }, "c"]),
      (e: Error) =>
        e instanceof TypeError &&
        e.message ===
          "Sender.putManySync: values[1].f: functions are not supported; nothing was sent",
    );
    await assert.rejects(
      sender.putMany(["a", "b", Symbol("s")]),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === "Sender.putMany: values[2]: symbols are not supported; nothing was sent",
    );
    assert.throws(
      // deno-lint-ignore no-explicit-any
      () => sender.putManySync("abc" as any),
      (e: Error) =>
        e instanceof TypeError &&
        e.message ===
          'Sender.putManySync: values must be an iterable (an array) of values, got the string "abc"',
    );
    // Iterable, but one message surely meant, not one per element.
    await assert.rejects(
      sender.putMany(new Float32Array(3)),
      (e: Error) =>
        e instanceof TypeError &&
        e.message ===
          "Sender.putMany: values must be an iterable (an array) of values, got a Float32Array: " +
            "put it with put(), or wrap it: [array]",
    );
    assert.throws(
      () => sender.putManySync([reserve(Uint8Array, 4)]),
      (e: Error) =>
        e instanceof TypeError &&
        /^Sender\.putManySync: values\[0\]: a reserve\(\)/.test(e.message),
    );
    assert.equal(receiver.getNowait(), undefined); // nothing of the refused batches
    assert.ok(sender.hasSpace());
    sender.putManySync([]); // an empty batch is no batch
    await sender.putMany(new Set(["x", "y"])); // any iterable
    assert.deepEqual([receiver.getNowait(), receiver.getNowait()], ["x", "y"]);
    sender.close();
    receiver.close();
  }));

Deno.test("putMany: a timeout or an abort leaves the values put before it, in order", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
    await assert.rejects(
      sender.putMany(["a", "b", "c"], { timeout: 20 }),
      (e: unknown) =>
        e instanceof FullError && e.sent === 2 && /2 of the 3 values were put/.test(e.message),
    );
    await assert.rejects(
      sender.putMany(["x", "y"], { timeout: 5 }),
      (e: unknown) =>
        e instanceof FullError && e.sent === 0 &&
        e.message.endsWith("are unreleased; none of the 2 values was put"),
    );
    // The caller's own abort reason is left as it is, even a ClosedError from elsewhere.
    const upstream = new ClosedError("upstream: every sender has closed", { reason: "drained" });
    const aborter = new AbortController();
    const aborted = sender.putMany(["p", "q"], { signal: aborter.signal });
    setTimeout(() => aborter.abort(upstream), 10);
    await assert.rejects(aborted, (e: unknown) => e === upstream);
    assert.equal(upstream.message, "upstream: every sender has closed");
    const controller = new AbortController();
    const waiting = sender.putMany(["d"], { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("stop")), 20);
    await assert.rejects(waiting, { message: "stop" });
    assert.deepEqual([receiver.getNowait(), receiver.getNowait()], ["a", "b"]);
    assert.equal(receiver.getNowait(), undefined);
    // A put made meanwhile keeps its place; the queue works on.
    await sender.putMany(["e", "f"]);
    assert.deepEqual([receiver.getNowait(), receiver.getNowait()], ["e", "f"]);
    // Every receiver gone while a batch waits: the error tells how many went before.
    const cut = sender.putMany(["g", "h", "i"]);
    await delay(20);
    receiver.close();
    await assert.rejects(cut, (e: unknown) =>
      e instanceof ClosedError && e.sent === 2 &&
      e.message ===
        "Sender.putMany: every receiver of the queue has closed; 2 of the 3 values were put " +
          "before it, in order");
    assert.throws(
      () => sender.putManySync(["j"]),
      (e: unknown) => e instanceof ClosedError && e.reason === "no-receivers" && e.sent === 0,
    );
    sender.close();
  }));

Deno.test("putMany: an abort with the platform's reason tells how many values were put", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
    const sent = (e: unknown) => (e as { sent?: unknown }).sent;
    // abort() with no reason: a DOMException "AbortError" of this call's own, the count on it.
    // Before: the signal's shared reason, which cannot say how many went.
    const controller = new AbortController();
    const { signal } = controller;
    const calls = Promise.allSettled([
      sender.putMany(["a", "b", "c", "d"], { signal }),
      sender.putMany(["e"], { signal }), // waits behind it
    ]);
    setTimeout(() => controller.abort(), 20);
    const [first, second] = (await calls).map((r) => r.status === "rejected" ? r.reason : r);
    assert.ok(first instanceof DOMException && first.name === "AbortError", `${first}`);
    assert.notEqual(first, signal.reason);
    assert.equal(first.cause, signal.reason);
    assert.equal(sent(first), 2);
    assert.equal(
      first.message,
      "Sender.putMany: The signal has been aborted; 2 of the 4 values were put, in order, and " +
        "the rest were not",
    );
    // Another call the same signal aborted: its own error, its own count.
    assert.ok(second instanceof DOMException && second !== first && sent(second) === 0);
    assert.deepEqual([receiver.getNowait(), receiver.getNowait()], ["a", "b"]);
    assert.equal(receiver.getNowait(), undefined);
    // AbortSignal.timeout(): a "TimeoutError" likewise; a signal aborted already: none went.
    await assert.rejects(
      sender.putMany(["f", "g", "h"], { signal: AbortSignal.timeout(20) }),
      (e: unknown) =>
        e instanceof DOMException && e.name === "TimeoutError" && sent(e) === 2 &&
        e.cause instanceof DOMException && e.cause.name === "TimeoutError",
    );
    assert.deepEqual([receiver.getNowait(), receiver.getNowait()], ["f", "g"]);
    await assert.rejects(
      sender.putMany(["i"], { signal: AbortSignal.abort() }),
      (e: unknown) =>
        e instanceof DOMException && e.name === "AbortError" && sent(e) === 0 &&
        e.message === "Sender.putMany: The signal has been aborted; none of the values was put",
    );
    // A reason of the caller's own is rejected as it is, and left as it is: no count.
    const mine = new Error("stop");
    const stop = new AbortController();
    await sender.putMany(["j", "k"]);
    const held = sender.putMany(["l"], { signal: stop.signal });
    setTimeout(() => stop.abort(mine), 10);
    await assert.rejects(held, (e: unknown) => e === mine && !("sent" in mine));
    sender.close();
    receiver.close();
  }));

Deno.test("putMany: an array detached while the batch waits stops it there; the values before it go", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    sender.putSync("first");
    const doomed = new Uint8Array([1, 2, 3]);
    const waiting = sender.putMany(["second", doomed, "third"]);
    doomed.buffer.transfer();
    // Async gets: the batch waits for room in this thread's event loop.
    assert.equal(await receiver.get({ timeout: 1000 }), "first");
    assert.equal(await receiver.get({ timeout: 1000 }), "second");
    await assert.rejects(
      waiting,
      (e: Error & { sent?: number }) =>
        e instanceof TypeError && e.sent === 1 &&
        /^Sender\.putMany: values\[1\]: .*detached.*; the value before it was put, in order, and the rest were not$/
          .test(e.message),
    );
    assert.equal(receiver.getNowait(), undefined);
    await sender.putMany(["after"]);
    assert.equal(receiver.getNowait(), "after");
    await sender.waitForAllAck({ timeout: 1000 });
    sender.close();
    receiver.close();
  }));

Deno.test("getMany and getManySync: waiting for the first only, up to max, in order, with get's options", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 16 });
    // Nothing waiting: both wait for the first message only, then time out as get does.
    await assert.rejects(receiver.getMany(4, { timeout: 5 }), EmptyError);
    assert.throws(() => receiver.getManySync(4, { timeout: 5 }), EmptyError);
    const later = receiver.getMany(4);
    setTimeout(() => sender.putSync("late"), 10);
    assert.deepEqual(await later, ["late"]); // one there: it does not wait for more
    sender.putManySync([1, 2, 3, 4, 5, new Uint8Array([6])]);
    assert.deepEqual(receiver.getManySync(2), [1, 2]);
    assert.deepEqual(await receiver.getMany(3, { pooled: true }), [3, 4, 5]);
    const buffers: ArrayBuffer[] = [];
    const got = receiver.getManySync<Uint8Array>(9, {
      allocate: (n) => {
        buffers.push(new ArrayBuffer(n));
        return buffers.at(-1)!;
      },
    });
    assert.equal(got.length, 1);
    assert.ok(got[0].buffer === buffers[0] && got[0][0] === 6);
    assert.throws(
      // deno-lint-ignore no-explicit-any
      () => receiver.getManySync("2" as any),
      (e: Error) =>
        e instanceof TypeError &&
        e.message === 'Receiver.getManySync: max must be a number, got the string "2"',
    );
    for (const max of [0, 1.5, -1, -Infinity, NaN]) {
      assert.throws(
        // deno-lint-ignore no-explicit-any
        () => receiver.getManySync(max as any),
        (e: Error) =>
          e instanceof RangeError &&
          /^Receiver\.getManySync: max must be a whole number of messages >= 1 \(or Infinity\), got /
            .test(e.message),
      );
    }
    // Infinity: every message waiting (up to the capacity), and no waiting for more. Any whole
    // max is taken, however large: every message waiting, up to it.
    sender.putManySync(["i1", "i2", "i3"]);
    assert.deepEqual(receiver.getManySync(Infinity), ["i1", "i2", "i3"]);
    sender.putManySync(["j1", "j2"]);
    assert.deepEqual(receiver.getManySync(1e300), ["j1", "j2"]);
    sender.putSync("i4");
    assert.deepEqual(await receiver.getMany(Infinity, { pooled: true }), ["i4"]);
    await assert.rejects(receiver.getMany(0), RangeError);
    // Calls of one end keep their order: a getMany waiting, then a get.
    const first = receiver.getMany(8);
    const second = receiver.get();
    sender.putManySync(["x", "y"]);
    assert.deepEqual(await first, ["x", "y"]);
    sender.putSync("z");
    assert.equal(await second, "z");
    // Drained after every sender closed: what is left, then ClosedError.
    sender.putManySync(["p", "q"]);
    sender.close();
    assert.deepEqual(await receiver.getMany(8), ["p", "q"]);
    await assert.rejects(
      receiver.getMany(8),
      (e: unknown) => e instanceof ClosedError && e.reason === "drained",
    );
    receiver.close();
  }));

Deno.test("getMany(Infinity) takes at most the capacity; a lone receiver frees it as the batch returns", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
    for (let i = 0; i < 4; i++) sender.putSync(new Uint8Array([i]));
    // Its messages are held until the batch returns (a receiver killed inside it gives them
    // back), so a sender that keeps up finds no room meanwhile, and the batch cannot grow
    // past the capacity. (Before, each one released as it went made room.)
    let roomDuringBatch = false;
    const marks: number[] = [];
    const name = sender.descriptor.name;
    const got = receiver.getManySync<Uint8Array>(Infinity, {
      allocate: (n) => {
        roomDuringBatch ||= sender.hasSpace();
        marks.push(segmentWord(name, L.W_HOLDER));
        return new ArrayBuffer(n);
      },
    });
    assert.deepEqual(got.map((a) => a[0]), [0, 1, 2, 3]);
    assert.equal(roomDuringBatch, false);
    assert.equal(sender.hasSpace(), true);
    // The holder's mark, which lets other receivers' takes skip a scan while it is 0: set at
    // the first hold, kept through the batch, cleared as it returns.
    assert.equal(marks[0], 0);
    assert.ok(marks[1] > 0 && marks.slice(1).every((m) => m === marks[1]), `${marks}`);
    assert.equal(segmentWord(name, L.W_HOLDER), 0);
    sender.putSync(new Uint8Array([4]));
    assert.deepEqual(receiver.getManySync<Uint8Array>(Infinity).map((a) => a[0]), [4]);
    // With another receiver open, each is released as it is copied (held, it would hold back
    // its sender's later messages from the other): a sender that keeps up fills the room, and
    // the batch stops at the capacity.
    const other = openReceiver(receiver.descriptor);
    for (let i = 0; i < 4; i++) sender.putSync(new Uint8Array([i]));
    let extra = 4;
    const more = receiver.getManySync<Uint8Array>(Infinity, {
      allocate: (n) => {
        if (extra < 100 && sender.hasSpace()) sender.putSync(new Uint8Array([extra++]));
        return new ArrayBuffer(n);
      },
    });
    assert.deepEqual(more.map((a) => a[0]), [0, 1, 2, 3]);
    assert.ok(extra > 4, "room came back during the batch");
    assert.equal(other.getManySync(Infinity).length, extra - 4);
    other.close();
    sender.close();
    receiver.close();
  }));

Deno.test("a receiver takes none of a sender's later messages while the receiver marked as getMany holder has that sender's message taken", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 8 });
    const other = openReceiver(receiver.descriptor);
    sender.putManySync(["x0", "x1"]);
    const lease = receiver.borrowSync();
    assert.equal(lease.value, "x0");
    // As a lone receiver leaves it between its mark and its hold of x0, when `other` joined
    // just after its second read of the count: killed there, x0 would count received, but
    // held and then given back, it would come after x1. (Before, `other` took x1 at once.)
    const m = mapSegment(sender.descriptor.name)!;
    try {
      const ring = m.u32[L.H_RING_SIZE >> 2];
      const taken = Array.from({ length: ring }, (_, i) => L.slotOffset(i))
        .find((at) => m.u32[(at + L.S_STATE) >> 2] === L.SlotState.Taken)!;
      Atomics.store(m.i32, L.W_HOLDER >> 2, m.u32[(taken + L.S_TAKEN_BY) >> 2] + 1);
      assert.equal(other.getNowait(), undefined);
      lease.release();
      assert.equal(other.getNowait(), "x1");
      Atomics.store(m.i32, L.W_HOLDER >> 2, 0);
    } finally {
      m.unmap();
    }
    other.close();
    sender.close();
    receiver.close();
  }));

Deno.test("a receiver that asks after every sender closed, while a lone one copies a getMany batch, is told 'drained' only once the batch returned", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 8 });
    for (let i = 0; i < 3; i++) sender.putSync(new Uint8Array([i]));
    let other: Receiver | undefined;
    let duringBatch: unknown = "not asked";
    let copies = 0;
    const got = receiver.getManySync<Uint8Array>(Infinity, {
      allocate: (n) => {
        if (++copies === 3) {
          // Copying the last: 0 and 1 are held, and would come back should this end die.
          sender.close();
          other = openReceiver(receiver.descriptor);
          try {
            duringBatch = other.getNowait();
          } catch (error) {
            duringBatch = error;
          }
        }
        return new ArrayBuffer(n);
      },
    });
    // Before: ClosedError "every sender of the queue has closed and the queue is drained".
    assert.equal(duringBatch, undefined);
    assert.deepEqual(got.map((a) => a[0]), [0, 1, 2]);
    assert.throws(
      () => other!.getNowait(),
      (e) => e instanceof ClosedError && e.reason === "drained",
    );
    other!.close();
    receiver.close();
  }));

Deno.test("a getMany holder mark naming no receiver (forged, or left by a wrongfully reaped end) is cleared: the drained queue says so", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 8 });
    sender.putSync("last");
    sender.close();
    const m = mapSegment(receiver.descriptor.name)!;
    try {
      Atomics.store(m.i32, L.W_HOLDER >> 2, 41); // participant 40: a free entry
      assert.equal(receiver.getSync({ timeout: 100 }), "last");
      // Before: EmptyError after the whole wait, and a for await waited for good.
      assert.throws(
        () => receiver.getSync({ timeout: 600 }),
        (e) => e instanceof ClosedError && e.reason === "drained",
      );
      assert.equal(Atomics.load(m.i32, L.W_HOLDER >> 2), 0);
    } finally {
      m.unmap();
    }
    receiver.close();
  }));

Deno.test("a lone receiver's getMany holds what it copied, past a stale holder mark", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 16 });
    for (let n = 0; n < 6; n++) sender.putSync({ n, data: new Uint8Array(64).fill(n) });
    const name = receiver.descriptor.name;
    const m = mapSegment(name)!;
    try {
      Atomics.store(m.i32, L.W_HOLDER >> 2, 41); // participant 40: a free entry
      let copies = 0;
      let held = -1;
      receiver.getManySync(Infinity, {
        allocate(n) {
          if (++copies === 4) held = slotsInState(name, L.SlotState.Held);
          return new ArrayBuffer(n);
        },
      });
      // Before: 0, so a kill there lost the 3 copied; and the mark stayed.
      assert.equal(held, 3);
      assert.equal(Atomics.load(m.i32, L.W_HOLDER >> 2), 0);
    } finally {
      m.unmap();
    }
    sender.close();
    receiver.close();
  }));

Deno.test("a lone receiver's getMany still holds what it copied when a process's exit check looks at the queue meanwhile", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 16 });
    for (let n = 0; n < 6; n++) sender.putSync(new Uint8Array(64).fill(n));
    const name = receiver.descriptor.name;
    // Mapped first: the check finds every end of the queue in this process, and unlinks it.
    const m = mapSegment(name)!;
    try {
      const receiversBefore = m.u32[L.C_LIVE_RECEIVERS >> 2];
      let copies = 0;
      let heldAfterCheck = -1;
      receiver.getManySync(Infinity, {
        allocate(n) {
          // As another process's main thread exits: its check opens every queue it may be the
          // last in, this one included while it holds ends of it only in Workers.
          if (++copies === 1) SharedQueue.removeAtExit(name);
          if (copies === 4) heldAfterCheck = slotsInStateOf(m, L.SlotState.Held);
          return new ArrayBuffer(n);
        },
      });
      // Before: 0. The check joined as a receiver, which moved the receiver epoch, so the lone
      // receiver held nothing taken before it: killed there, it lost the 3 it had copied.
      assert.equal(heldAfterCheck, 3);
      assert.equal(m.u32[L.C_LIVE_RECEIVERS >> 2], receiversBefore);
    } finally {
      m.unmap();
    }
    sender.close();
    receiver.close();
  }));

Deno.test("a lone receiver's getMany holds the messages it took ahead, after a receiver came and went", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 16 });
    for (let n = 0; n < 6; n++) sender.putSync(new Uint8Array(64).fill(n));
    const name = receiver.descriptor.name;
    // Takes 0, and 1 to 5 ahead.
    assert.deepEqual(receiver.getManySync<Uint8Array>(1).map((a) => a[0]), [0]);
    openReceiver(receiver.descriptor).close(); // takes nothing, and moves the receiver epoch
    let copies = 0;
    let held = -1;
    const got = receiver.getManySync<Uint8Array>(Infinity, {
      allocate(n) {
        if (++copies === 4) held = slotsInState(name, L.SlotState.Held);
        return new ArrayBuffer(n);
      },
    });
    assert.deepEqual(got.map((a) => a[0]), [1, 2, 3, 4, 5]);
    // Before: 0. Each kept the epoch of when it was taken ahead, so none was held, and a kill
    // inside the batch lost every message copied.
    assert.equal(held, 3);
    sender.close();
    receiver.close();
  }));

Deno.test("getMany: closed from inside its allocate while a live end holds the lock, it returns what it copied, as with the lock", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 8 });
    for (let i = 0; i < 3; i++) sender.putSync(new Uint8Array([i]));
    const m = mapSegment(receiver.descriptor.name)!;
    const senderIndex = Array.from({ length: L.MAX_PARTICIPANTS }, (_, i) => i)
      .find((i) => m.u32[(L.participantOffset(i) + L.P_KIND) >> 2] === L.ParticipantKind.Sender)!;
    let copies = 0;
    let got: Uint8Array[];
    try {
      got = receiver.getManySync<Uint8Array>(Infinity, {
        allocate: (n) => {
          if (++copies === 2) {
            // The close gives up on the lock after 10 s, and leaves its entry, marked closed,
            // for a reap. Before: a TypeError, from Atomics on the unmapped queue as the batch
            // ended; then ClosedError, its held message back in the queue (its entry reaped
            // as a dead one's).
            Atomics.store(m.i32, L.W_LOCK >> 2, senderIndex + 1);
            receiver.close();
            Atomics.store(m.i32, L.W_LOCK >> 2, 0);
          }
          return new ArrayBuffer(n);
        },
      });
    } finally {
      m.unmap();
    }
    // As a close with the lock does: the batch returns the message copied before it, the one
    // being copied is dropped with the end, and the one after goes to the next receiver.
    assert.deepEqual(got.map((a) => a[0]), [0]);
    // An end that takes the closed receiver's entry removes that first, as a close. Before, it
    // kept that end's "held messages counted received at close" as its own, for good: a batch
    // of its own would keep a copy a wrongful reap had given back to the queue.
    const fresh = SharedQueue.open(sender.descriptor.name, "receiver");
    assert.equal(fresh.heldReceivedAtClose, false);
    fresh.close();
    const other = openReceiver(sender.descriptor);
    const stats = sender.stats();
    assert.deepEqual([stats.received, stats.receiversDied, stats.receivers], [2, 0, 1]);
    sender.close();
    assert.deepEqual(other.getManySync(3, { timeout: 1_000 }).map((a) => (a as Uint8Array)[0]), [
      2,
    ]);
    other.close();
  }));

Deno.test("getMany: closed from inside its allocate after another receiver joined, it returns what it copied; the other gets the rest", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 16 });
    for (let i = 0; i < 5; i++) sender.putSync({ i, data: new Float64Array(4) });
    let calls = 0;
    let other: Receiver | undefined;
    const got = receiver.getManySync<{ i: number }>(5, {
      allocate: (n) => {
        calls++;
        if (calls === 2) other = openReceiver(receiver.descriptor); // 0 held, 1 released as copied
        if (calls === 3) receiver.close(); // while 2 is copied: it counts as received
        return new ArrayBuffer(n);
      },
    });
    // Before (a review of 9b89bf6): [1], the held 0 given back by the close and taken by the
    // other receiver after it.
    assert.deepEqual(got.map((m) => m.i), [0, 1]);
    assert.deepEqual(other!.getManySync<{ i: number }>(5).map((m) => m.i), [3, 4]);
    other!.close();
    sender.close();
  }));

Deno.test("getManySync from inside its own allocate is refused, and the batch it interrupts goes on", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 16 });
    for (let i = 0; i < 5; i++) sender.putSync({ i, data: new Float64Array(4) });
    let refusal: unknown;
    let calls = 0;
    const got = receiver.getManySync<{ i: number }>(5, {
      allocate: (n) => {
        if (++calls === 2) {
          try {
            receiver.getManySync(1, { timeout: 0 });
          } catch (error) {
            refusal = error;
          }
        }
        return new ArrayBuffer(n);
      },
    });
    assert.ok(
      refusal instanceof TypeError && /inside this receiver's own allocate/.test(refusal.message),
    );
    // Before (a review of 9b89bf6): the refused call ended the batch's record, and the outer
    // call threw, all five messages counted received and lost.
    assert.deepEqual(got.map((m) => m.i), [0, 1, 2, 3, 4]);
    assert.equal(receiver.stats().inFlight, 0);
    sender.close();
    receiver.close();
  }));

Deno.test("getMany returns the messages before one that cannot be decoded; the next call reports it", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 8 });
    sender.putManySync(["a", "b", "c", "d"]);
    // Garbage over the third message's encoding, as a hostile or broken writer would leave it.
    const m = mapSegment(sender.descriptor.name)!;
    const at = m.f64[L.H_ARENA_OFFSET >> 3] + m.f64[(L.slotOffset(2) + L.S_OFFSET) >> 3];
    m.bytes.fill(0xff, at, at + 16);
    m.unmap();
    assert.deepEqual(receiver.getManySync(8), ["a", "b"]);
    // Thrown by a call that never saw the message: it says which call consumed it.
    assert.throws(
      () => receiver.getNowait(),
      (e: unknown) =>
        e instanceof DecodeError &&
        e.message.startsWith(
          "Receiver.getNowait: a message Receiver.getManySync consumed after the 2 it " +
            "returned could not be read: ",
        ),
    );
    assert.deepEqual(receiver.getManySync(8), ["d"]);
    // A failed allocate after the first ends the batch and keeps its message first in line:
    // the next call tries it again (and would throw, should it fail again).
    sender.putManySync([new Uint8Array(1), new Uint8Array([9]), "after"]);
    let calls = 0;
    const picky = (n: number) => {
      if (++calls === 2) throw new Error("no buffer now");
      return new ArrayBuffer(n);
    };
    assert.deepEqual(receiver.getManySync(8, { allocate: picky }), [new Uint8Array(1)]);
    assert.deepEqual(receiver.getManySync(8, { allocate: picky }), [
      new Uint8Array([9]),
      "after",
    ]);
    assert.equal(calls, 3);
    // A buffer allocate handed out for an earlier message of the batch ends the batch there,
    // keeping the message for the next call: it would overwrite the earlier one's array.
    const frame = new ArrayBuffer(8);
    sender.putManySync([new Float64Array([1]), new Float64Array([2])]);
    const reused = { allocate: () => frame };
    assert.deepEqual([...receiver.getManySync<Float64Array>(8, reused)].map((a) => a[0]), [1]);
    assert.deepEqual([...receiver.getManySync<Float64Array>(8, reused)].map((a) => a[0]), [2]);
    sender.close();
    receiver.close();
  }));

Deno.test("getMany: a message consumed with an error after the first is reported by the next call, unless this end closes first", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({
      capacity: 4,
      arenaBytes: 1 << 20,
      byteBudget: 8 << 20,
    });
    // A message whose extension segment went missing: consumed with a ClosedError ("corrupt")
    // that does not stop the queue. It must not vanish unreported behind the batch.
    sender.putSync("first");
    sender.putSync(new Uint8Array(2 << 20));
    sender.putSync("third");
    const name = sender.descriptor.name;
    for (const n of shmList(name.slice(1) + "-x")) shmUnlink(`/${n}`);
    assert.deepEqual(receiver.getManySync(8), ["first"]);
    assert.throws(
      () => receiver.getNowait(),
      (e: unknown) => e instanceof ClosedError && e.reason === "corrupt",
    );
    assert.deepEqual(receiver.getManySync(8), ["third"]);
    // Held when this end closes: the calls still waiting get the close's ClosedError. They
    // wait on an empty queue; nothing below yields to them until the close.
    const waiting = receiver.get();
    const loop = (async () => {
      const seen = [];
      for await (const v of receiver) seen.push(v);
      return seen;
    })();
    sender.putManySync(["a", "b", "c"]);
    const m = mapSegment(name)!;
    const slot = (Atomics.load(m.u32, L.C_WRITE >> 2) - 1) & (m.u32[L.H_RING_SIZE >> 2] - 1);
    const at = m.f64[L.H_ARENA_OFFSET >> 3] + m.f64[(L.slotOffset(slot) + L.S_OFFSET) >> 3];
    m.bytes.fill(0xff, at, at + 16); // "c"
    m.unmap();
    assert.deepEqual(receiver.getManySync(8), ["a", "b"]);
    receiver.close();
    await assert.rejects(
      waiting,
      (e: unknown) => e instanceof ClosedError && e.reason === "closed",
    );
    assert.deepEqual(await loop, []);
    sender.close();
  }));

Deno.test("stats: messages waiting and in flight, totals, shared memory held, ends open and dead", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({
      capacity: 8,
      arenaBytes: 1 << 20,
      byteBudget: 16 << 20,
    });
    const empty = {
      waiting: 0,
      inFlight: 0,
      capacity: 8,
      put: 0,
      received: 0,
      bytesInUse: 0,
      byteBudget: 16 << 20,
      senders: 1,
      receivers: 1,
      sendersDied: 0,
      receiversDied: 0,
    };
    const { sharedBytes, ...rest } = sender.stats();
    assert.deepEqual(rest, empty);
    assert.ok(sharedBytes > 1 << 20, `the main segment, arena included: ${sharedBytes} bytes`);
    sender.putManySync(["a", "b", "c"]);
    const three = sender.stats();
    assert.deepEqual([three.waiting, three.inFlight, three.put, three.received], [3, 3, 3, 0]);
    assert.ok(three.bytesInUse >= 3 * L.MESSAGE_ALIGN, `${three.bytesInUse} bytes held`);
    // A lone receiver takes the other two ahead with the first: they still wait, for it.
    assert.equal(receiver.getSync(), "a");
    assert.deepEqual(pick(receiver.stats()), [2, 2, 3, 1]);
    // A lease counts in flight, not waiting, until released.
    const lease = receiver.borrowSync();
    assert.deepEqual(pick(sender.stats()), [1, 2, 3, 1]);
    lease.release();
    assert.deepEqual(pick(sender.stats()), [1, 1, 3, 2]);
    // A draft is in flight while written, not put until sent; a cancelled one never was.
    const draft = await sender.prepare(new Uint8Array(16));
    assert.deepEqual(pick(sender.stats()), [1, 2, 3, 2]);
    draft.cancel();
    assert.deepEqual(pick(sender.stats()), [1, 1, 3, 2]);
    // A message too large for the arena holds its extension segment.
    sender.putSync(new Uint8Array(4 << 20));
    const large = sender.stats();
    assert.ok(large.bytesInUse >= 4 << 20, "the extension counts");
    assert.ok(large.sharedBytes >= sharedBytes + (4 << 20), "so does its segment");
    const other = openSender(receiver.descriptor);
    assert.equal(receiver.stats().senders, 2);
    other.close();
    assert.equal(receiver.stats().senders, 1);
    assert.equal(receiver.getSync(), "c");
    assert.equal((receiver.getSync() as Uint8Array).length, 4 << 20);
    // Taken and released: none held, and the idle segment kept for the next large one.
    assert.deepEqual(receiver.stats(), {
      ...empty,
      put: 4,
      received: 4,
      sharedBytes: large.sharedBytes,
    });
    sender.close();
    assert.throws(
      () => sender.stats(),
      (e: unknown) =>
        e instanceof ClosedError && e.message === "Sender.stats: this sender is closed",
    );
    assert.equal(receiver.stats().senders, 0);
    receiver.close();
    assert.throws(() => receiver.stats(), ClosedError);

    function pick(s: { waiting: number; inFlight: number; put: number; received: number }) {
      return [s.waiting, s.inFlight, s.put, s.received];
    }
  }));

Deno.test("streams: receiver.readable takes a message per read, ends when drained, and closes the receiver", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
    assert.equal(receiver.readable, receiver.readable, "one stream per receiver");
    const reader = receiver.readable.getReader();
    // Nothing is taken ahead of the reader: a message waits in the queue until it reads.
    sender.putManySync(["a", "b"]);
    await delay(20);
    assert.equal(sender.stats().waiting, 2);
    assert.deepEqual(await reader.read(), { value: "a", done: false });
    assert.equal(sender.stats().waiting, 1);
    assert.deepEqual(await reader.read(), { value: "b", done: false });
    sender.close();
    assert.deepEqual(await reader.read(), { value: undefined, done: true });
    assert.equal(receiver.closed, true);
  }));

Deno.test("streams: cancelling receiver.readable while a read waits takes nothing, and closes the receiver", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
    const other = openReceiver(receiver.descriptor);
    const reader = receiver.readable.getReader();
    const waiting = reader.read();
    await delay(20);
    await reader.cancel();
    assert.deepEqual(await waiting, { value: undefined, done: true });
    assert.equal(receiver.closed, true);
    sender.putSync("x");
    assert.equal(other.getSync({ timeout: 1000 }), "x", "not taken by the cancelled read");
    // A receiver closed from elsewhere ends its stream, as it ends a for await.
    const pending = other.readable.getReader().read();
    await delay(20);
    other.close();
    assert.deepEqual(await pending, { value: undefined, done: true });
    sender.close();
  }));

Deno.test("streams: sender.writable puts each chunk, and closing or aborting it closes the sender", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
    assert.equal(sender.writable, sender.writable, "one stream per sender");
    // More chunks than the capacity: the pipe waits for room as a put does.
    const piped = ReadableStream.from([0, 1, 2, 3, 4]).pipeTo(sender.writable);
    const got: unknown[] = [];
    for await (const m of receiver) got.push(m);
    await piped;
    assert.deepEqual(got, [0, 1, 2, 3, 4]);
    assert.equal(sender.closed, true);
    assert.equal(receiver.sendersDied, 0, "a stream that finished");
    receiver.close();

    const [s2, r2] = createSharedMemoryPair();
    const writer = s2.writable.getWriter();
    await writer.write(new Float32Array([1.5]));
    await writer.abort(new Error("upstream failed"));
    assert.equal(s2.closed, true);
    assert.deepEqual(r2.getSync({ timeout: 1000 }), new Float32Array([1.5]));
    // Cut short, told from a stream that finished (before: 0, and "has closed").
    assert.throws(
      () => r2.getSync({ timeout: 1000 }),
      (e) => e instanceof ClosedError && /its writable stream cut short/.test(e.message),
    );
    assert.equal(r2.sendersDied, 1);
    r2.close();
  }));

Deno.test("streams: a chunk sender.writable refuses errors the stream, names it, and closes the sender; the chunks before it went", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    await assert.rejects(
      ReadableStream.from<unknown>(["a", () => 1, "c"]).pipeTo(sender.writable),
      (e: unknown) => e instanceof TypeError && /^Sender\.writable: .*function/.test(e.message),
    );
    assert.equal(sender.closed, true);
    assert.deepEqual(await Array.fromAsync(receiver), ["a"]);
    assert.equal(receiver.sendersDied, 1, "cut short, told from a stream that finished");
    receiver.close();
  }));

Deno.test("streams: receiver.readable errors on a corrupt queue, and closes the receiver", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    const m = mapSegment(sender.descriptor.name)!;
    m.u32[L.H_STATE >> 2] = L.QueueState.Poisoned;
    m.unmap();
    await assert.rejects(
      receiver.readable.getReader().read(),
      (e: unknown) => e instanceof ClosedError && e.reason === "corrupt",
    );
    assert.equal(receiver.closed, true);
    sender.close();
  }));

Deno.test("streams: aborting sender.writable while a chunk waits for room stops it, unsent, and closes the sender", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    const writer = sender.writable.getWriter();
    await writer.write(1); // the queue is full now, and nobody reads
    const blocked = writer.write(2);
    await delay(20);
    // Before: the abort waited for the blocked write, for good.
    await writer.abort(new Error("upstream failed"));
    await assert.rejects(blocked);
    assert.equal(sender.closed, true);
    assert.deepEqual(await Array.fromAsync(receiver), [1], "the chunk that waited was not sent");
    receiver.close();

    // A pipe stopped by its signal first waits for the chunk being written (streams finish a
    // write before they abort): closing the sender ends that wait.
    const [s2, r2] = createSharedMemoryPair({ capacity: 1 });
    const stop = new AbortController();
    const endless = new ReadableStream({ pull: (c) => c.enqueue("x") });
    const piped = endless.pipeTo(s2.writable, { signal: stop.signal });
    await delay(20);
    stop.abort(new Error("enough"));
    s2.close();
    await assert.rejects(piped);
    r2.close();
  }));

Deno.test("streams: the stream of an end closed already errors at once", () =>
  withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    sender.close();
    receiver.close();
    await assert.rejects(
      receiver.readable.getReader().read(),
      (e: unknown) => e instanceof ClosedError && /^Receiver\.readable: /.test(e.message),
    );
    await assert.rejects(
      sender.writable.getWriter().write(1),
      (e: unknown) => e instanceof ClosedError && /^Sender\.writable: /.test(e.message),
    );
  }));

Deno.test("console.log shows an end's queue and whether it is closed, and a dtype by its name", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
    const name = sender.descriptor.name;
    // Before: `Sender {}`, and a DType's six fields inside every NdArray shown.
    assert.equal(Deno.inspect(sender), `Sender { queue: "${name}", closed: false }`);
    sender.close();
    assert.equal(Deno.inspect(sender), `Sender { queue: "${name}", closed: true }`);
    assert.equal(Deno.inspect(receiver), `Receiver { queue: "${name}", closed: false }`);
    receiver.close();
    assert.match(Deno.inspect(new NdArray("float32", [2])), /dtype: DType\(float32\),\s+shape/);
  }));
