// Bad input: invalid options and timeouts, values that change or throw while being encoded,
// every method of a closed end, and running out of /dev/shm.
import assert from "node:assert/strict";
import {
  actorContext,
  ActorHandle,
  ClosedError,
  createSharedMemoryPair,
  decode,
  Draft,
  dtype,
  encode,
  Lease,
  openReceiver,
  Receiver,
  reserve,
  Sender,
  spawnActor,
  spawnWorker,
  workerContext,
  WorkerHandle,
} from "../mod.ts";
import { shmFreeBytes } from "../ffi/native.ts";
import { segmentRoom } from "../queue/segment.ts";
import * as L from "../queue/layout.ts";
import { DEFAULT_CAPACITY } from "../queue/options.ts";
import { closeEndsOfThisThread } from "../queue/open_ends.ts";
import {
  canIsolate,
  canLimitMemory,
  isolated,
  leakedSince,
  shmEntries,
  withoutLeaks,
} from "./helpers.ts";

Deno.test("invalid options get a TypeError or RangeError naming the option", () =>
  withoutLeaks(() => {
    const cases: [Record<string, unknown>, string, typeof TypeError | typeof RangeError][] = [];
    for (const v of [NaN, Infinity, -Infinity, -0, 0.5, 1e308, -(2 ** 31)]) {
      cases.push([{ capacity: v }, "capacity", RangeError]);
    }
    for (const v of [NaN, Infinity, 65536.5, -65536, 2 ** 60, 4096]) {
      cases.push([{ arenaBytes: v }, "arenaBytes", RangeError]);
    }
    for (const v of [NaN, Infinity, 2 ** 60, (1 << 20) + 0.5, 1 << 10]) {
      cases.push([{ arenaBytes: 1 << 20, byteBudget: v }, "byteBudget", RangeError]);
    }
    for (const v of ["64", 5n, true, {}, [8]]) {
      cases.push([{ capacity: v }, "capacity", TypeError]);
      cases.push([{ arenaBytes: v }, "arenaBytes", TypeError]);
      cases.push([{ byteBudget: v }, "byteBudget", TypeError]);
    }
    for (const [options, name, type] of cases) {
      assert.throws(() => createSharedMemoryPair(options), (e: Error) => {
        assert.ok(e instanceof type, `${JSON.stringify(options, (_, v) => `${v}`)}: ${e}`);
        assert.match(e.message, new RegExp(name));
        return true;
      });
    }
    for (const options of ["capacity=5", 5, true]) {
      assert.throws(() => createSharedMemoryPair(options as never), TypeError);
    }
  }));

Deno.test("misspelled options of the actor calls are refused before anything starts", async () => {
  const module = new URL("./fixtures/queue_child.ts", import.meta.url);
  await assert.rejects(
    spawnActor(module, { readytimeout: 5 } as never),
    /^TypeError: spawnActor: unknown option `readytimeout` \(did you mean `readyTimeout`\?\)/,
  );
  await assert.rejects(
    spawnWorker(module, { queue: {} } as never),
    /spawnWorker: unknown option `queue` \(did you mean `queues`\?\)/,
  );
  await assert.rejects(
    spawnWorker(module, { readyTimeout: "1s" } as never),
    (e) => e instanceof TypeError && /readyTimeout must be a number/.test(e.message),
  );
  await assert.rejects(actorContext(null as never), /actorContext: options must be an object/);
  await assert.rejects(workerContext(null as never), /workerContext: options must be an object/);
});

Deno.test("actor and Worker options of the wrong type are refused by name before anything starts", () =>
  withoutLeaks(async () => {
    const module = new URL("./fixtures/queue_child.ts", import.meta.url);
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    using _r = r;
    // Before: "false" was taken for true, and closed the caller's own ends once the actor ran.
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ transfer: "false" }, /transfer must be true or false, got the string "false"/],
      [{ clearEnv: "yes" }, /clearEnv must be true or false/],
      [{ env: { X: 1 } }, /env\.X must be a string, got 1/],
      [{ env: ["X=1"] }, /env must be an object of names to strings, got an array/],
      [{ cwd: 5 }, /cwd must be a path or a file: URL, got 5/],
      // Before: Deno's "nul byte found in provided data", naming neither call nor option.
      [{ env: { X: "a\0b" } }, /env\.X holds a NUL character/],
      [{ env: { "A=B": "1" } }, /env has a name the environment cannot hold: the string "A=B"/],
      [{ argv: ["ok", "a\0"] }, /argv\[1\] holds a NUL character/],
      [{ denoArgs: ["--v8-flags=\0"] }, /denoArgs\[0\] holds a NUL character/],
      // Before: a TypeError from deep inside, after the process had started.
      [{ signal: { throwIfAborted() {} } }, /signal must be an AbortSignal/],
      [{ signal: Object.create(AbortSignal.prototype) }, /signal must be an AbortSignal/],
    ];
    for (const [options, why] of bad) {
      await assert.rejects(
        spawnActor(module, { queues: { a: s }, ...options } as never),
        (e: Error) =>
          e instanceof TypeError && e.message.startsWith("spawnActor: ") &&
          why.test(e.message),
      );
    }
    for (const [options, why] of bad.filter(([o]) => "transfer" in o || "signal" in o)) {
      await assert.rejects(
        spawnWorker(module, { queues: { a: s }, ...options } as never),
        (e: Error) =>
          e instanceof TypeError && e.message.startsWith("spawnWorker: ") &&
          why.test(e.message),
      );
    }
    await assert.rejects(spawnWorker(module, { name: 5 } as never), /name must be a string/);
    await assert.rejects(spawnWorker(5 as never), /spawnWorker: moduleUrl must be a URL/);
    await assert.rejects(
      actorContext({ exitWithParent: "no" } as never),
      /actorContext: exitWithParent must be true or false/,
    );
    // Nothing was handed over: the ends are open and work.
    s.putSync(1);
    assert.equal(r.getSync({ timeout: 1000 }), 1);
  }));

Deno.test("invalid timeouts get a RangeError (a TypeError if not a number) naming the method", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 1 });
    using _s = s;
    using _r = r;
    for (const timeout of [-1, NaN, -Infinity]) {
      await assert.rejects(s.put(1, { timeout }), /Sender\.put: timeout/);
      assert.throws(() => s.putSync(1, { timeout }), /Sender\.putSync: timeout/);
      await assert.rejects(r.get({ timeout }), /Receiver\.get: timeout/);
      assert.throws(() => r.getSync({ timeout }), /Receiver\.getSync: timeout/);
      await assert.rejects(r.borrow({ timeout }), RangeError);
      await assert.rejects(s.waitForAllAck({ timeout }), RangeError);
    }
    assert.equal(r.getNowait(), undefined, "nothing was put");
  }));

Deno.test("options that are not an object, or a signal that is not an AbortSignal, are refused", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 1 });
    using _s = s;
    using _r = r;
    // get(50), the py-sharedmemory way, used to be read as no options: a wait without end.
    const fifty = 50 as unknown as { timeout: number };
    await assert.rejects(r.get(fifty), /Receiver\.get: options must be an object .*got 50/);
    assert.throws(() => r.getSync(fifty), /Receiver\.getSync: options must be an object/);
    await assert.rejects(r.borrow(fifty), TypeError);
    assert.throws(() => r.borrowSync(fifty), TypeError);
    await assert.rejects(s.put(1, fifty), /Sender\.put: options must be an object/);
    assert.throws(() => s.putSync(1, null as unknown as { timeout: number }), /got null/);
    await assert.rejects(s.waitForAllAck(fifty), TypeError);
    // Without suggesting a timeout, which getNowait refuses.
    assert.throws(
      () => r.getNowait(50 as never),
      /^TypeError: Receiver\.getNowait: options must be an object, got 50$/,
    );
    await assert.rejects(
      r.get([] as never),
      /Receiver\.get: options must be an object .*got an array/,
    );
    const signal = "x" as unknown as AbortSignal;
    await assert.rejects(
      r.get({ signal }),
      /Receiver\.get: signal must be an AbortSignal, got the string "x"/,
    );
    await assert.rejects(s.put(1, { signal }), TypeError);
    // One made with AbortSignal.prototype passes instanceof, and threw "Illegal invocation".
    await assert.rejects(
      r.get({ signal: Object.create(AbortSignal.prototype) }),
      /^TypeError: Receiver\.get: signal must be an AbortSignal, got /,
    );
    assert.throws(
      () => r.getSync({ timeout: "10" as unknown as number }),
      (e) =>
        e instanceof TypeError &&
        /timeout must be a number of milliseconds, got the string "10"/.test(e.message),
    );
    // Before: "got boolean", where a string is shown with its value.
    assert.throws(
      () => r.getSync({ timeout: true as unknown as number }),
      /^TypeError: Receiver\.getSync: timeout must be a number of milliseconds, got true$/,
    );
    assert.throws(() => r.getSync({ timeout: -1 }), RangeError);
    // Misspelled options used to be ignored: `timout` waited forever.
    const misspelled = { timout: 10 } as unknown as { timeout: number };
    assert.throws(
      () => r.getSync(misspelled),
      /^TypeError: Receiver\.getSync: unknown option `timout` \(did you mean `timeout`\?\); the options it takes: `timeout`, `allocate`, `pooled`$/,
    );
    await assert.rejects(r.get(misspelled), /Receiver\.get: unknown option `timout`/);
    await assert.rejects(s.put(1, misspelled), /Sender\.put: unknown option `timout`/);
    assert.throws(() => s.waitForAllAckSync(misspelled), /waitForAllAckSync: unknown option/);
    assert.throws(() => r.getNowait(misspelled as never), /getNowait: unknown option `timout`/);
    assert.throws(
      () => createSharedMemoryPair({ capcity: 5 } as never),
      /createSharedMemoryPair: unknown option `capcity` \(did you mean `capacity`\?\)/,
    );
    // A blocking call has no signal to offer; one passed used to be ignored.
    assert.throws(
      () => s.putSync(1, { signal: AbortSignal.timeout(10) } as never),
      /Sender\.putSync: takes no signal/,
    );
    // A call that never blocks is not told it blocks: the signal is just not its option.
    assert.throws(
      () => r.getNowait({ signal: AbortSignal.timeout(10) } as never),
      /Receiver\.getNowait: unknown option `signal`; the options it takes: `allocate`, `pooled`$/,
    );
    // An unknown option's getter is not run: the option is refused as it is.
    const getter = {
      timeout: 10,
      get extra(): number {
        throw new Error("read");
      },
    };
    assert.throws(() => s.putSync(1, getter), /Sender\.putSync: unknown option `extra`/);
    // Forwarded options that are undefined change nothing and pass.
    assert.equal(r.getNowait({ timeout: undefined } as never), undefined);
    // Nothing was put or taken by the refused calls.
    assert.equal(r.getNowait(), undefined);
    await s.put("ok", { timeout: 100 });
    assert.equal(await r.get({ timeout: 100 }), "ok");
  }));

/** An object whose `data` is one size when first read and another later: an encoder that
 * walked a value twice (measure, then write) could be made to overrun what it reserved. */
function shapeShifter(first: number, second: number): Record<string, unknown> {
  let reads = 0;
  return {
    get data() {
      return new Uint8Array(reads++ === 0 ? first : second);
    },
  };
}

Deno.test("values that change or throw while encoded leave the queue intact", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 2, arenaBytes: 256 << 10 });
    using _s = s;
    using _r = r;
    // Each with the error it gets, if any: where in the value, and what the value's code threw.
    const hostile: [string, () => unknown, RegExp?][] = [
      ["grows (small)", () => shapeShifter(10, 1 << 20)],
      ["grows (arena)", () => shapeShifter(30 << 10, 1 << 20)],
      ["grows (extension)", () => shapeShifter(100 << 10, 4 << 20)],
      ["shrinks (extension)", () => shapeShifter(4 << 20, 10)],
      [
        "throwing getter",
        () => ({
          list: [1, {
            get data(): never {
              throw new Error("hostile getter");
            },
          }],
        }),
        /^Sender\.put(Sync)?: value\.list\[1\]\.data: reading it threw Error: hostile getter; nothing was sent$/,
      ],
      ["revoked proxy", () => {
        const { proxy, revoke } = Proxy.revocable({}, {});
        revoke();
        return { proxy };
      }, /^Sender\.put(Sync)?: value\.proxy: reading it threw TypeError: .*revoked/],
    ];
    for (const [what, make, expected] of hostile) {
      let failed = false;
      const check = (error: unknown) => {
        failed = true;
        assert.ok(error instanceof TypeError, `${what}: ${error}`);
        if (expected) assert.match(error.message, expected);
        assert.ok(error.cause instanceof Error, `${what}: the value's own error is the cause`);
      };
      try {
        await s.put(make(), { timeout: 1000 });
      } catch (error) {
        check(error);
      }
      try {
        s.putSync(make(), { timeout: 1000 });
      } catch (error) {
        check(error);
      }
      // The encoder reads each value once (the plan keeps what it measured), so a value that
      // changes in between goes through as measured; one that throws is rejected. Whatever
      // went through is a whole, valid message.
      for (let m; (m = r.getNowait<Record<string, unknown>>()) !== undefined;) {
        assert.ok(m.data instanceof Uint8Array, `${what}: ${m}`);
      }
      assert.equal(failed, !what.startsWith("grows") && !what.startsWith("shrinks"), what);
      assert.equal(s.hasSpace(), true, `${what}: capacity intact`);
      await s.put({ ok: what }, { timeout: 1000 });
      assert.deepEqual(await r.get({ timeout: 1000 }), { ok: what }, `${what}: still works`);
      await s.waitForAllAck({ timeout: 1000 });
    }
    // The zero-copy path: a template that is not a valid value.
    await assert.rejects(s.prepare({ f: () => 1, a: reserve(Uint8Array, 10) }), {
      name: "TypeError",
      message: "Sender.prepare: value.f: functions are not supported; nothing was sent",
    });
    assert.equal(s.hasSpace(), true);
  }));

Deno.test("the exported classes refuse new, naming what makes them", () => {
  const made: [new (...args: never[]) => unknown, RegExp][] = [
    [Sender, /^a Sender is made by createSharedMemoryPair\(\) or openSender\(\), not new$/],
    [Receiver, /^a Receiver is made by createSharedMemoryPair\(\) or openReceiver\(\)/],
    [Lease, /^a Lease is made by Receiver\.borrow\(\) or borrowSync\(\), not new$/],
    [Draft, /^a Draft is made by Sender\.prepare\(\) or prepareSync\(\), not new$/],
    [ActorHandle, /^an ActorHandle is made by spawnActor\(\), not new$/],
    [WorkerHandle, /^a WorkerHandle is made by spawnWorker\(\), not new$/],
  ];
  for (const [Class, message] of made) {
    // Before: made, then every method failed on the library's internals.
    assert.throws(
      () => new Class(),
      (e: Error) => e instanceof TypeError && message.test(e.message),
    );
    assert.throws(() => new Class({} as never), TypeError);
  }
});

Deno.test("every method of a closed end throws ClosedError (reason closed)", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair();
    s.close();
    r.close();
    const closed = (e: unknown) => e instanceof ClosedError && e.reason === "closed";
    await assert.rejects(s.put(1), closed);
    assert.throws(() => s.putSync(1), /^ClosedError: Sender\.putSync: this sender is closed$/);
    await assert.rejects(r.get(), /^ClosedError: Receiver\.get: this receiver is closed$/);
    await assert.rejects(s.prepare({ a: reserve(Uint8Array, 4) }), closed);
    assert.throws(() => s.prepareSync({ a: reserve(Uint8Array, 4) }), closed);
    await assert.rejects(s.waitForAllAck(), closed);
    assert.throws(() => s.waitForAllAckSync(), closed);
    assert.equal(s.hasSpace(), false);
    await assert.rejects(r.get(), closed);
    assert.throws(() => r.getSync(), closed);
    assert.throws(() => r.getNowait(), closed);
    await assert.rejects(r.borrow(), closed);
    assert.throws(() => r.borrowSync(), closed);
    await assert.rejects(
      (async () => {
        for await (const _ of r) { /* nothing */ }
      })(),
      closed,
    );
    assert.ok(s.closed && r.closed);
    s.close(); // idempotent
    r.close();
  }));

Deno.test("a receiver closed by its own allocate callback: ClosedError, not a detached-buffer error", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    s.putSync(new Uint8Array(100).fill(1));
    const allocate = (n: number) => {
      r.close();
      return new ArrayBuffer(n);
    };
    assert.throws(
      () => r.getSync({ allocate }),
      (e) =>
        e instanceof ClosedError && e.reason === "closed" && /while it decoded/.test(e.message),
    );
    assert.throws(() => r.getSync(), ClosedError);
  }));

Deno.test("closed by its own allocate while an async get waits: ClosedError, not the message", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    using _s = s;
    // The waiting get keeps the mapping past close, so the decode could read on.
    const waiting = r.get().then(() => "resolved", (e) => e.constructor.name);
    await new Promise((ok) => setTimeout(ok, 20));
    s.putSync({ data: new Float64Array([1, 2, 3]) });
    const allocate = (n: number) => {
      r.close();
      return new ArrayBuffer(n);
    };
    assert.throws(() => r.getSync({ allocate }), ClosedError);
    assert.equal(await waiting, "ClosedError");
  }));

Deno.test("a draft sent or a lease released after its end closed: no crash, no effect", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 2 });
    await s.put(new Uint8Array(4096));
    const draft = await s.prepare<{ a: Uint8Array }>({ a: reserve(Uint8Array, 4096) });
    const lease = await r.borrow<Uint8Array>({ timeout: 1000 });
    s.close(); // cancels the draft
    r.close(); // releases the lease
    assert.equal(draft.settled, true);
    assert.throws(() => draft.send(), /ClosedError: Draft\.send: its sender was closed/);
    // One the user cancelled says so, closed sender or not.
    const [s2, r2] = createSharedMemoryPair({ capacity: 2 });
    const mine = s2.prepareSync<{ a: Uint8Array }>({ a: reserve(Uint8Array, 8) });
    mine.cancel();
    s2.close();
    assert.throws(() => mine.send(), /^TypeError: Draft\.send: this draft was cancelled$/);
    r2.close();
    // Closed under it without a cancel, as a Worker's stop closes the ends it opened itself:
    // before, send() published into unmapped memory and threw a detached-buffer TypeError.
    const [s3, r3] = createSharedMemoryPair({ capacity: 2 });
    const orphan = s3.prepareSync<{ a: Uint8Array }>({ a: reserve(Uint8Array, 8) });
    closeEndsOfThisThread();
    assert.throws(() => orphan.send(), /^ClosedError: Draft\.send: its sender was closed/);
    assert.ok(s3.closed && r3.closed);
    assert.equal(draft.value.a.length, 0, "the draft's view is detached");
    assert.equal(lease.released, true);
    assert.equal(lease.value.length, 0, "the lease's view is detached");
    lease.release();
  }));

Deno.test("an arena /dev/shm (or the memory behind it) cannot hold is refused before anything is made", () =>
  withoutLeaks(() => {
    const free = shmFreeBytes();
    const arenaBytes = Math.min(2 ** 40, Math.ceil((free + (1 << 30)) / 4096) * 4096);
    // Where /dev/shm is larger than the memory left (this VM: 24 GiB of tmpfs, 23.5 GiB of
    // memory), the memory is what is short.
    const short = segmentRoom().setBy === "shm"
      ? /^createSharedMemoryPair: \/dev\/shm has no room for a queue of \d+ bytes \(\d+ bytes free\).*arenaBytes$/
      : /^createSharedMemoryPair: not enough memory for a queue of \d+ bytes: (the machine has \d+ bytes of memory left|this process's memory cgroup \(or one it is in\) has \d+ bytes left below its limit) .*: (free memory|raise the cgroup's memory limit) or lower the queue's arenaBytes$/;
    assert.throws(
      () => createSharedMemoryPair({ arenaBytes }),
      (e: Error) => e instanceof RangeError && short.test(e.message),
    );
  }));

Deno.test("a message whose segment cannot be made leaves the queue's shared bytes as they were", () =>
  withoutLeaks(() => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2, arenaBytes: 1 << 20 });
    try {
      const held = sender.stats().sharedBytes;
      // References to one untouched array: a message of more than /dev/shm and the memory hold,
      // measured without a byte of it being written.
      const chunk = new Uint8Array(256 << 20);
      const tooLarge = new Array(Math.ceil((shmFreeBytes() + (4 << 30)) / chunk.length))
        .fill(chunk);
      for (const attempt of [() => sender.putSync(tooLarge), () => sender.prepareSync(tooLarge)]) {
        assert.throws(attempt, RangeError);
        // Before: both ends counted the segment never made, until a later put chose its entry.
        assert.equal(sender.stats().sharedBytes, held);
        assert.equal(receiver.stats().sharedBytes, held);
      }
      sender.putSync(new Uint8Array(3 << 20).fill(7));
      const got = receiver.getSync() as Uint8Array;
      assert.deepEqual([got.length, got[got.length - 1]], [3 << 20, 7]);
    } finally {
      sender.close();
      receiver.close();
    }
  }));

Deno.test({
  name: "a large message that fits once the queue's own segments are freed waits for them",
  ignore: !(await canIsolate()),
  async fn() {
    // Before: RangeError "/dev/shm has no room" at once, for the third message and the larger.
    const out = await isolated("fault_child.ts", ["shm-wait"], 30 << 20);
    const report = JSON.parse(out.trim().split("\n").pop()!);
    assert.equal(report.third, "sent");
    assert.deepEqual(report.got, [1, 2, 3]);
    assert.equal(report.larger, 4);
    assert.equal(report.largerPut, "sent");
    assert.match(
      report.never,
      /^RangeError: Sender\.putSync: \/dev\/shm has no room for an extension segment of 44040192 /,
    );
    assert.match(
      report.held,
      /^FullError: .*no room for 500 ms: \/dev\/shm has \d+ bytes free for a 18874368-byte segment/,
    );
    assert.match(report.shmFirst, /^FullError: .*no room for 100 ms: \/dev\/shm has/);
    assert.match(report.capacity, /^FullError: .*2 of capacity 2 messages are unreleased$/);
    assert.match(report.ownDraft, /^RangeError: Sender\.putSync: \/dev\/shm has no room/);
    assert.equal(report.ownDraftFast, true, "refused at once, not after waiting for its own draft");
    assert.match(report.afterFailed, /^RangeError: Sender\.putSync: \/dev\/shm has no room/);
    assert.equal(report.afterFailedFast, true);
    assert.deepEqual([report.overBudget, report.overBudgetPut], [2, "sent"]);
    assert.match(report.budgetFailed, /^RangeError: Sender\.putSync: \/dev\/shm has no room/);
    assert.match(report.budgetAgain, /^RangeError: Sender\.putSync: \/dev\/shm has no room/);
    assert.equal(report.budgetAgainFast, true);
    assert.deepEqual(report.bothPuts, ["sent", "sent"]);
    assert.deepEqual(report.both, [2, 3]);
    assert.deepEqual(report.racedPuts, ["sent", "sent"]);
    assert.deepEqual(report.raced, [10, 11]);
    assert.match(report.leftoverFailed, /^RangeError: Sender\.putSync: \/dev\/shm has no room/);
    assert.equal(report.leftoverNext, "no error");
    assert.equal(report.leftoverNextFast, true);
    assert.equal(report.leftoverGot, 2);
    assert.deepEqual(report.renewedPuts, ["sent", "sent"]);
    assert.deepEqual(report.renewed, [3, 4]);
    assert.deepEqual(report.left, []);
  },
});

Deno.test({
  name: "out of /dev/shm (a private 8 MiB tmpfs): RangeError naming /dev/shm and the sizes",
  ignore: !(await canIsolate()),
  async fn() {
    const out = await isolated("fault_child.ts", ["oom"], 8 << 20);
    const report = JSON.parse(out.trim().split("\n").pop()!);
    // A queue whose arena does not fit: the size named is the whole main segment.
    const queueBytes = L.arenaOffsetFor(L.ringSizeFor(DEFAULT_CAPACITY)) + (64 << 20);
    assert.match(
      report.create,
      new RegExp(
        `^RangeError: createSharedMemoryPair: /dev/shm has no room .*${queueBytes} bytes.*lower the queue's arenaBytes`,
      ),
    );
    assert.deepEqual(report.leftAfterCreate, [], "nothing left of the queue that failed");
    // A message whose extension segment does not fit.
    assert.match(
      report.put,
      /^RangeError: Sender\.putSync: \/dev\/shm has no room .*69206016.*smaller messages/,
    );
    assert.equal(report.leftAfterPut.length, 1, "the segment that failed is gone");
    // The queue goes on: small messages, and extension messages that fit.
    assert.equal(report.small, "no error");
    assert.equal(report.smallGot, "no error");
    assert.equal(report.fits, "no error");
    assert.equal(report.fitsGot, "no error");
    // A batch cut short there says how many of it went (before: nothing, and no `sent`: a
    // caller who sent it again sent those twice).
    for (const name of ["batchSync", "batchAsync"]) {
      assert.equal(report[name].sent, 2, name);
      assert.match(
        report[name].error,
        /^RangeError: Sender\.putMany(Sync)?: .*\/dev\/shm has no room .*; 2 of the 4 values were put, in order, and the rest were not$/,
      );
      assert.deepEqual(report[`${name}Got`], ["a", "b"]);
    }
    assert.deepEqual(report.left, []);
  },
});

Deno.test({
  name: "in a memory cgroup smaller than /dev/shm, segments past its memory are refused, not " +
    "left to the OOM killer",
  ignore: !(await canLimitMemory()),
  async fn() {
    // Before: making the queues pre-faulted past the cgroup's limit, and the kernel killed the
    // process (exit 137), leaving its segments; on a machine whose /dev/shm is as large as its
    // memory, 1000 default queues were killed at the 370th.
    const writable = Deno.makeTempDirSync({ prefix: "shmq-page-cache-" });
    let out: string;
    try {
      out = await isolated("fault_child.ts", ["memory-limit", writable], 2 * 1024 ** 3, {
        memoryBytes: 256 << 20,
        writable,
      });
    } finally {
      Deno.removeSync(writable, { recursive: true });
    }
    const report = JSON.parse(out.trim().split("\n").pop()!);
    const cgroupShort =
      "this process's memory cgroup \\(or one it is in\\) has \\d+ bytes left below its limit";
    assert.match(
      report.create,
      new RegExp(
        `^RangeError: createSharedMemoryPair: not enough memory for a queue of \\d+ bytes: ` +
          `${cgroupShort} .*: raise the cgroup's memory limit or lower the queue's arenaBytes$`,
      ),
    );
    assert.deepEqual(report.leftAfterCreate, []);
    assert.match(
      report.many,
      new RegExp(`^RangeError: .*not enough memory for a queue .*${cgroupShort}`),
    );
    const arena = report.defaultShared - (report.defaultShared % (1 << 20));
    assert.equal(arena, 32 << 20, `a default queue holds ${report.defaultShared} bytes`);
    assert.ok(report.made >= 2 && report.made <= 6, `${report.made} queues of 32 MiB made`);
    // 160 MiB of a file in the page cache, read three times, leave room for a second 64 MiB
    // arena beside one held open: the kernel gives the cache back (before: refused, the cache
    // counted as memory in use; then, the held arena's mapped pages hid as much cache).
    if (report.cache !== "tmpfs") assert.equal(report.cache, "no error");
    assert.match(
      report.put,
      new RegExp(
        `^RangeError: Sender\\.putSync: not enough memory for an extension segment of \\d+ bytes: ${cgroupShort}`,
      ),
    );
    assert.equal(report.small, "no error");
    assert.equal(report.smallGot, "still works");
    assert.equal(report.fits, "no error");
    assert.equal(report.fitsGot, 8 << 20);
    // An eighth of the cgroup's limit at most (nothing at all when malloc is left alone), and a
    // 40 MiB copy, which the heap could not keep, mapped alone.
    const kept = report.mallocTuned ? 32 << 20 : null;
    assert.deepEqual(report.heapKeeps, [kept, kept]);
    assert.equal(report.copyMappedAlone, "no error");
    // Copies dropped but not collected yet do not have the next one refused.
    assert.equal(report.dropped, "no error");
    assert.equal(report.pastGarbage, "no error");
    // Copies kept: the one that would pass the limit is refused (before: killed).
    assert.match(
      report.keptError,
      new RegExp(`^RangeError: Receiver\\.getSync: not enough memory to copy this \\d+-byte`),
    );
    assert.ok(report.kept >= 1 && report.kept < 6, `${report.kept} copies of 40 MiB kept`);
    // Its copy out would not fit beside it: refused, before: the copy had the process killed.
    assert.match(
      report.copy,
      new RegExp(
        `^RangeError: Receiver\\.getSync: not enough memory to copy this \\d+-byte message ` +
          `out: ${cgroupShort} .*; the message stays first in line: borrow\\(\\) views its arrays in place`,
      ),
    );
    assert.equal(report.borrowed, 112 << 20);
    assert.equal(report.afterCopy, "no error");
    assert.equal(report.afterCopyGot, "still works");
    assert.deepEqual(report.left, []);
  },
});

Deno.test({
  name: "out of file descriptors, a put needing a new extension fails with EMFILE, not waiting",
  ignore: !(await canIsolate()),
  async fn() {
    const out = await isolated("fault_child.ts", ["fd-short"], 24 << 20, { fdLimit: 128 });
    const report = JSON.parse(out.trim().split("\n").pop()!);
    const MiB = 1 << 20;
    // Before: the draft's segment, made and backed, but not to be opened now, counted as one
    // still to be made: the put waited out its timeout, then said /dev/shm had no room,
    // naming more bytes free than the segment needed.
    assert.equal(report.put.name, "NativeError", report.put.message);
    assert.equal(report.put.code, "EMFILE");
    assert.match(report.put.message, /^Sender\.putSync: shm_open.*raise the limit, `ulimit -n`/);
    assert.ok(report.ms < 500, `failed after ${report.ms} ms`);
    assert.deepEqual([report.draft, report.after], [8 * MiB, 9 * MiB]);
    assert.deepEqual(report.left, []);
  },
});

Deno.test({
  name:
    "in a container's 64 MiB /dev/shm, a queue made with the defaults fits and carries any size",
  ignore: !(await canIsolate()),
  async fn() {
    // Before: the default 64 MiB arena (and its header) did not fit: every queue failed.
    const out = await isolated("fault_child.ts", ["small-shm"], 64 << 20);
    const report = JSON.parse(out.trim().split("\n").pop()!);
    // A quarter of what was free, 16 MiB, holds the whole queue, its slots too, so four fit
    // (before: the slots came on top, and the fourth queue did not).
    assert.ok(report.arena > 15.75 * 2 ** 20 && report.arena <= 16 << 20, `arena ${report.arena}`);
    assert.equal(report.fourMade, "no error");
    assert.equal(report.small, "small");
    assert.equal(report.largeOk, true, "a 24 MiB message went through an extension segment");
    assert.deepEqual(report.left, []);
  },
});

Deno.test("put refuses reserve() placeholders, prepare refuses reserve(ArrayBuffer)", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
    await assert.rejects(sender.put({ a: reserve(Uint8Array, 64) }), {
      name: "TypeError",
      message: /^Sender\.put: value\.a: a reserve\(\) placeholder, which only prepare\(\)/,
    });
    assert.throws(() => sender.putSync([0, [reserve(Float32Array, 4)]]), {
      name: "TypeError",
      message: /^Sender\.putSync: value\[1\]\[0\]: a reserve\(\) placeholder/,
    });
    await assert.rejects(sender.prepare({ raw: reserve(ArrayBuffer, 8) }), {
      name: "TypeError",
      message: /^Sender\.prepare: value\.raw: reserve\(ArrayBuffer, n\) .*reserve\(Uint8Array, n\)/,
    });
    // encode() has no way to hand out the placeholder's space: it refuses one too.
    assert.throws(() => encode({ deep: { r: reserve(Uint8Array, 4) } }), {
      name: "TypeError",
      message: /^value\.deep\.r: a reserve\(\) placeholder, which only Sender\.prepare\(\)/,
    });
    assert.throws(() => sender.prepareSync(reserve(ArrayBuffer, 8)), TypeError);
    // Nothing was reserved or sent by the refused calls.
    const draft = sender.prepareSync<{ raw: Uint8Array }>({ raw: reserve(Uint8Array, 4) });
    draft.value.raw.set([1, 2, 3, 4]);
    draft.send();
    assert.deepEqual(receiver.getSync({ timeout: 1000 }), { raw: new Uint8Array([1, 2, 3, 4]) });
    assert.equal(receiver.getNowait(), undefined);
    sender.close();
    receiver.close();
  });
});

Deno.test("an array that shrinks while put or prepare waits for room: TypeError naming the call, nothing sent", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 1 });
    using _s = s;
    using _r = r;
    for (const method of ["put", "prepare"] as const) {
      s.putSync("first");
      const buffer = new ArrayBuffer(64, { maxByteLength: 128 });
      const value = { a: new Uint8Array(buffer), b: reserve(Uint8Array, 8) };
      const waiting = method === "put"
        ? s.put({ a: value.a }, { timeout: 5000 })
        : s.prepare(value, { timeout: 5000 });
      buffer.resize(32); // the 64 bytes measured are no longer there
      assert.equal(await r.get(), "first");
      await assert.rejects(waiting, (e: Error) => {
        assert.ok(e instanceof TypeError);
        assert.equal(
          e.message,
          `Sender.${method}: an array of the value (64 bytes when the value was measured) was ` +
            "detached, or its resizable buffer shrank below it, before it was written; nothing " +
            "was sent",
        );
        return true;
      });
      assert.equal(r.getNowait(), undefined, `${method}: nothing was sent`);
      assert.equal(s.hasSpace(), true, `${method}: its room is back`);
    }
    // A view of fixed length measures again as refused where it is: named by its path.
    s.putSync("first");
    const buffer = new ArrayBuffer(64, { maxByteLength: 128 });
    const waiting = s.put({ meta: 1, frames: [new Uint8Array(buffer, 0, 48)] }, { timeout: 5000 });
    buffer.resize(32);
    assert.equal(await r.get(), "first");
    await assert.rejects(waiting, {
      name: "TypeError",
      message:
        "Sender.put: value.frames[0]: its ArrayBuffer shrank below it (since the value was " +
        "measured: while the call waited for room, or by a getter of the value); nothing was sent",
    });
    assert.equal(r.getNowait(), undefined, "nothing was sent");
    await s.put("after");
    assert.equal(await r.get(), "after");
    await s.waitForAllAck({ timeout: 1000 });
  }));

Deno.test("an array detached while put, putMany or prepare waits for room is named by its path", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 1 });
    using _s = s;
    using _r = r;
    s.putSync("first");
    const data = new Float64Array(4);
    const waiting = s.put({ meta: { id: 1 }, frames: [new Uint8Array(2), data] });
    data.buffer.transfer();
    assert.equal(await r.get(), "first");
    await assert.rejects(waiting, {
      name: "TypeError",
      message: "Sender.put: value.frames[1]: its ArrayBuffer is detached (since the value was " +
        "measured: while the call waited for room, or by a getter of the value); nothing was sent",
    });
    s.putSync("second");
    const more = new Uint8Array(3);
    const batch = s.putMany(["third", { more }]);
    more.buffer.transfer();
    assert.equal(await r.get(), "second");
    assert.equal(await r.get(), "third");
    await assert.rejects(batch, {
      name: "TypeError",
      message: "Sender.putMany: values[1].more: its ArrayBuffer is detached (since the value " +
        "was measured: while the call waited for room, or by a getter of the value); the value " +
        "before it was put, in order, and the rest were not",
    });
    assert.equal(r.getNowait(), undefined);
    // Detached by a later getter of the value itself, while it was measured.
    const early = new Float64Array(2);
    assert.throws(
      () =>
        s.putSync({
          early,
          get g() {
            early.buffer.transfer();
            return 1;
          },
        }),
      {
        name: "TypeError",
        message: "Sender.putSync: value.early: its ArrayBuffer is detached (since the value was " +
          "measured: while the call waited for room, or by a getter of the value); nothing was " +
          "sent",
      },
    );
    assert.equal(r.getNowait(), undefined);
    // Changed elsewhere meanwhile: the detached array is still the one named, not the change.
    s.putSync("fourth");
    const late = new Uint8Array(2);
    const value: Record<string, unknown> = { first: 0, late };
    const changed = s.put(value);
    late.buffer.transfer();
    value.first = () => 1; // read before `late` when the value is read again
    assert.equal(await r.get(), "fourth");
    await assert.rejects(changed, {
      name: "TypeError",
      message:
        /^Sender\.put: an array of the value \(2 bytes when the value was measured\) was detached/,
    });
    // A prepare's template: before, its error named no path.
    s.putSync("fifth");
    const labels = new Int32Array(4);
    const drafting = s.prepare({ obs: reserve("float32", [2]), labels });
    labels.buffer.transfer();
    assert.equal(await r.get(), "fifth");
    await assert.rejects(drafting, {
      name: "TypeError",
      message: "Sender.prepare: value.labels: its ArrayBuffer is detached (since the value was " +
        "measured: while the call waited for room, or by a getter of the value); nothing was sent",
    });
    assert.equal(r.getNowait(), undefined);
    await s.put("after");
    assert.equal(await r.get(), "after");
    await s.waitForAllAck({ timeout: 1000 });
  }));

Deno.test("a resizable buffer that grows while put waits for room goes at its measured size", () =>
  withoutLeaks(async () => {
    // Before: refused as if it had shrunk ("was detached, or its resizable buffer shrank").
    const [s, r] = createSharedMemoryPair({ capacity: 1 });
    using _s = s;
    using _r = r;
    s.putSync("first");
    const buffer = new ArrayBuffer(8, { maxByteLength: 64 });
    new Uint8Array(buffer).set([1, 2, 3, 4, 5, 6, 7, 8]);
    const waiting = s.put({ buffer, view: new Uint8Array(buffer, 0, 8) }, { timeout: 5000 });
    buffer.resize(16);
    assert.equal(await r.get(), "first");
    await waiting;
    const got = await r.get() as { buffer: ArrayBuffer; view: Uint8Array };
    assert.deepEqual(new Uint8Array(got.buffer), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    assert.deepEqual(got.view, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  }));

Deno.test("decode refuses options it does not know or of the wrong type, naming them", () => {
  const bytes = encode({ a: new Uint8Array(4) });
  const cases: [unknown, RegExp][] = [
    [{ veiw: true }, /^decode: unknown option `veiw` \(did you mean `view`\?\)/],
    [{ view: 1 }, /^decode: options\.view must be a boolean, got 1$/],
    [{ allocate: 5 }, /^decode: options\.allocate must be a function, got 5$/],
    [null, /^decode: options must be an object, got null$/],
    ["x", /^decode: options must be an object/],
  ];
  for (const [options, message] of cases) {
    assert.throws(() => decode(bytes, options as never), { name: "TypeError", message });
  }
  // Known ones, and an unknown one left undefined (forwarded options), still work.
  const allocate = (n: number) => new ArrayBuffer(n);
  const view = decode(bytes, { view: true, allocate, other: undefined } as never) as {
    a: Uint8Array;
  };
  assert.equal(view.a.buffer, bytes.buffer);
});

Deno.test("errors raised while a call waited name the call; common mistakes are named", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 1 });
    const pendingGet = r.get();
    r.close();
    await assert.rejects(
      pendingGet,
      (e: Error) =>
        e instanceof ClosedError && e.message === "Receiver.get: this receiver is closed",
    );
    assert.throws(
      () => s.putSync(1),
      (e: Error) => e.message === "Sender.putSync: every receiver of the queue has closed",
    );
    const [s2, r2] = createSharedMemoryPair({ capacity: 1 });
    s2.putSync(1);
    const pendingPut = s2.put(2);
    r2.close();
    await assert.rejects(pendingPut, (e: Error) =>
      e instanceof ClosedError &&
      e.message === "Sender.put: every receiver of the queue has closed");
    // A for await loop names itself, not a get it never called.
    await assert.rejects(
      async () => {
        for await (const _ of r) { /* closed already */ }
      },
      (e: Error) => e.message === "Receiver (for await): this receiver is closed",
    );
    // An end through JSON is {}: the message says to pass its descriptor.
    assert.throws(
      () => openReceiver(JSON.parse(JSON.stringify(s))),
      /invalid queue descriptor: got an empty object \(JSON\.stringify of a queue end gives \{\}\): pass its \.descriptor/,
    );
    // A TypedArray constructor where a dtype name belongs shows by its name, not its source.
    assert.throws(
      () => dtype(Float32Array as never),
      (e: Error) =>
        e instanceof TypeError && e.message.startsWith("unknown dtype Float32Array (") &&
        !e.message.includes("native code"),
    );
    // A near miss gets the list to pick from.
    assert.throws(
      () => dtype("float" as never),
      (e: Error) =>
        e instanceof TypeError &&
        /^unknown dtype "float"; the names are bool, int8, .*float32, float64/.test(e.message),
    );
    // numpy's other spellings (the reference's example uses np.dtype("bool_")) say which name.
    for (const [alias, name] of [["bool_", "bool"], ["f4", "float32"], ["int_", "int64"]]) {
      assert.throws(
        () => dtype(alias as never),
        (e: Error) =>
          e instanceof TypeError &&
          e.message.startsWith(`unknown dtype "${alias}" (numpy's other name for "${name}")`),
      );
    }
    assert.throws(() => dtype("toString" as never), /^TypeError: unknown dtype "toString";/);
    s.close();
    s2.close();
    // The caller's own errors are left as they are: an abort reason rejecting two calls, and
    // what an allocate callback throws.
    const [s3, r3] = createSharedMemoryPair({ capacity: 1 });
    const stop = new AbortController();
    const reason = new ClosedError("shutting down");
    const calls = [r3.get({ signal: stop.signal }), r3.borrow({ signal: stop.signal })];
    stop.abort(reason);
    for (const call of calls) await assert.rejects(call, (e) => e === reason);
    assert.equal(reason.message, "shutting down");
    const exhausted = new ClosedError("buffer pool exhausted");
    s3.putSync(new Uint8Array(1 << 20));
    const allocate = () => {
      throw exhausted;
    };
    assert.throws(() => r3.getSync({ allocate }), (e) => e === exhausted);
    assert.throws(() => r3.getNowait({ allocate }), (e) => e === exhausted);
    assert.equal(exhausted.message, "buffer pool exhausted");
    s3.close();
    r3.close();
  }));

/** Runs a fixture under `ulimit -n 96`; returns what it printed, parsed. */
async function underFdLimit(name: string): Promise<Record<string, unknown>> {
  const fixture = new URL(`./fixtures/${name}`, import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command("sh", {
    args: ["-c", `ulimit -n 96 && exec "$0" run -A "$1"`, Deno.execPath(), fixture],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  assert.equal(code, 0, text.decode(stderr));
  return JSON.parse(text.decode(stdout));
}

Deno.test("out of file descriptors: a NativeError naming the call, the limit and the remedy; nothing leaks", async () => {
  const before = new Set(shmEntries());
  const { made, failures, got } = await underFdLimit("fd_limit.ts") as {
    made: number;
    failures: { name: string; code?: string; message: string }[];
    got: unknown;
  };
  assert.ok(made >= 1, `made ${made} queues first`);
  assert.equal(got, "still fine");
  assert.equal(failures.length, 2);
  const [create, open] = failures;
  for (
    const [failed, call] of [[create, "createSharedMemoryPair"], [open, "openReceiver"]] as const
  ) {
    assert.equal(failed.name, "NativeError");
    assert.equal(failed.code, "EMFILE");
    assert.ok(failed.message.startsWith(`${call}: `), failed.message);
    assert.match(failed.message, /every queue end keeps one open: raise the limit, `ulimit -n`/);
  }
  assert.deepEqual(leakedSince(before), [], "nothing left in /dev/shm");
});

Deno.test("out of file descriptors, a get that cannot map its message keeps it first in line", async () => {
  const before = new Set(shmEntries());
  // Before: the message was consumed with the error, and the next get returned the one after.
  assert.deepEqual(await underFdLimit("fd_limit_get.ts"), {
    failed: { name: "NativeError", code: "EMFILE" },
    first: [2 << 20, 7],
    second: "after",
  });
  assert.deepEqual(leakedSince(before), [], "nothing left in /dev/shm");
});
