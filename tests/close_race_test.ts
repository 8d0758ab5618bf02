/**
 * Closing an end while its own async calls wait, and exiting with leases or drafts open:
 * the calls fail with ClosedError, the shared waiter counts are taken back, and views into
 * the queue's memory read as detached instead of faulting.
 */

import assert from "node:assert/strict";
import { ClosedError, createSharedMemoryPair, openReceiver, openSender, reserve } from "../mod.ts";
import * as L from "../queue/layout.ts";
import {
  CHILD_PERMISSIONS,
  eventually,
  fixture,
  leakedSince,
  makeTurnDue,
  runDeno,
  segmentWord,
  shmEntries,
  withoutLeaks,
} from "./helpers.ts";

Deno.test("close() during a waiting get, put or waitForAllAck always rejects with ClosedError", async () => {
  await withoutLeaks(async () => {
    const outcomes = new Map<string, number>();
    const note = (error: unknown) => {
      const key = error instanceof ClosedError ? "ClosedError" : String(error);
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    };
    for (let i = 0; i < 80; i++) {
      const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
      const which = i % 4;
      if (which === 0) {
        sender.putSync(1);
        await receiver.get(); // takes a turn if due, so the next get goes straight to its wait
        const get = receiver.get();
        receiver.close();
        note(await get.then(() => "resolved", (e) => e));
      } else if (which === 1) {
        await sender.put(0);
        const put = sender.put(1);
        sender.close();
        note(await put.then(() => "resolved", (e) => e));
      } else if (which === 2) {
        await sender.put(0);
        const ack = sender.waitForAllAck();
        sender.close();
        note(await ack.then(() => "resolved", (e) => e));
      } else {
        // Waiting behind a put of its sender: before, a TypeError about a detached buffer,
        // as it read the unmapped queue once the put was done.
        await sender.put(0);
        const put = sender.put(1).catch(() => {});
        const ack = sender.waitForAllAck();
        sender.close();
        note(await ack.then(() => "resolved", (e) => e));
        await put;
      }
      sender.close();
      receiver.close();
    }
    assert.deepEqual([...outcomes], [["ClosedError", 80]]);
  });
});

Deno.test("close() as a waiting borrow or prepare resumes: ClosedError, or a lease or draft that close revoked", async () => {
  await withoutLeaks(async () => {
    const size = 1 << 16; // past the small-lease copy: a view into shared memory
    /** Closes `end` once `k` promise reactions have run after `after` settles. */
    const closeLater = (after: Promise<unknown>, k: number, end: { close(): void }) => {
      let p = after.then(() => {}, () => {});
      for (let i = 0; i < k; i++) p = p.then(() => {});
      p.then(() => end.close());
    };
    let rejected = 0;
    for (let k = 0; k < 12; k++) {
      // borrow: a get ahead of it in line takes the first message; the close lands somewhere
      // between the borrow taking the second and building its lease.
      {
        const [s, r] = createSharedMemoryPair({ capacity: 2 });
        const other = openReceiver(s.descriptor);
        const first = r.get({ timeout: 5000 });
        const lease = r.borrow<{ a: Uint8Array }>({ timeout: 5000 });
        closeLater(first, k, r);
        await new Promise((resolve) => setTimeout(resolve, 5));
        s.putSync({ a: new Uint8Array(size).fill(1) });
        s.putSync({ a: new Uint8Array(size).fill(2) });
        await first;
        try {
          const l = await lease;
          await new Promise((resolve) => setTimeout(resolve, 0));
          assert.ok(r.closed);
          assert.equal(l.value.a.length, 0, `k=${k}: a lease outliving its end's close is revoked`);
          assert.equal(other.getNowait(), undefined, `k=${k}: lent once`);
        } catch (error) {
          assert.ok(error instanceof ClosedError, `k=${k}: ${error}`);
          rejected++;
          // The message the borrow never lent is another receiver's now (before: lost when the
          // close landed after the borrow had taken it).
          const left = other.getNowait<{ a: Uint8Array }>();
          assert.equal(left?.a[0], 2, `k=${k}: the second message is still in the queue`);
        }
        s.close();
        other.close();
      }
      // prepare: the same with a put ahead of it waiting for room.
      {
        const [s, r] = createSharedMemoryPair({ capacity: 2 });
        s.putSync(1);
        s.putSync(2);
        const first = s.put(3, { timeout: 5000 });
        const draft = s.prepare<{ a: Uint8Array }>({ a: reserve(Uint8Array, size) }, {
          timeout: 5000,
        });
        closeLater(first, k, s);
        await new Promise((resolve) => setTimeout(resolve, 5));
        r.getSync();
        r.getSync();
        await first;
        try {
          const d = await draft;
          await new Promise((resolve) => setTimeout(resolve, 0));
          assert.ok(s.closed);
          assert.equal(d.value.a.length, 0, `k=${k}: a draft outliving its end's close is revoked`);
          assert.throws(
            () => d.send(),
            (e) =>
              e instanceof ClosedError &&
              /^Draft\.send: its sender was closed, which cancelled this draft$/.test(e.message),
          );
        } catch (error) {
          assert.ok(error instanceof ClosedError, `k=${k}: ${error}`);
          rejected++;
        }
        // Whatever the close gave back was not handed to anyone twice.
        assert.equal(r.getNowait(), 3);
        assert.throws(
          () => r.getNowait(),
          (e) => e instanceof ClosedError && e.reason === "drained",
        );
        r.close();
      }
    }
    assert.ok(rejected > 0, "some closes landed while the calls waited");
  });
});

Deno.test("an end closed during its async wait takes its waiter announcement back", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 1 });
    const other = openReceiver(sender.descriptor);
    const name = sender.descriptor.name;
    const get = receiver.get();
    // Into its futex wait: announced once its spin is done, which a loaded machine may delay
    // well past a fixed pause (three busy loops on two cores once took more than 10 ms).
    assert.ok(await eventually(() => segmentWord(name, L.W_RECEIVERS_WAITING) === 1));
    receiver.close();
    await assert.rejects(get, ClosedError);
    assert.equal(segmentWord(name, L.W_RECEIVERS_WAITING), 0);

    const second = openSender(sender.descriptor);
    sender.putSync("held");
    const ack = sender.waitForAllAck();
    assert.ok(await eventually(() => segmentWord(name, L.W_ACK_WAITING) === 1));
    sender.close();
    await assert.rejects(ack, ClosedError);
    assert.equal(segmentWord(name, L.W_ACK_WAITING), 0);
    assert.equal(other.getSync({ timeout: 1000 }), "held");
    second.close();
    other.close();
  });
});

Deno.test("leases and drafts kept past exit read as detached, and nothing is left", async () => {
  const before = new Set(shmEntries());
  const mod = JSON.stringify(new URL("../mod.ts", import.meta.url).href);
  // The library closes every end from an unload listener; a later listener still holding a
  // lease or a draft must find their views detached, not unmapped memory under them.
  const code = `
    import { createSharedMemoryPair, reserve } from ${mod};
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
    sender.putSync(new Uint8Array(8192).fill(7));
    sender.putSync(new Uint8Array(64 << 20).fill(9)); // too big for the arena: an extension
    const small = receiver.borrowSync({ timeout: 1000 });
    const large = receiver.borrowSync({ timeout: 1000 });
    const draft = sender.prepareSync({ data: reserve(Uint8Array, 8192) });
    console.log("open", small.value[100], large.value[100], draft.value.data.length);
    globalThis.addEventListener("unload", () => {
      console.log("after", small.value.byteLength, large.value.byteLength,
        draft.value.data.byteLength, large.value[100]);
    });
  `;
  assert.deepEqual((await runDeno(["eval", code])).trim().split("\n"), [
    "open 7 9 8192",
    "after 0 0 0 undefined",
  ]);
  assert.deepEqual(leakedSince(before), []);
});

Deno.test("an unload listener added after the first queue end hears why its ends are closed", async () => {
  const before = new Set(shmEntries());
  const mod = JSON.stringify(new URL("../mod.ts", import.meta.url).href);
  // The library's own unload listener, added with the first end, closes every end first: a
  // user's later one that sends a last message must not be told "this sender is closed", as
  // if the program had closed it, but why, and what to do instead.
  const code = `
    import { createSharedMemoryPair } from ${mod};
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
    const closedBefore = createSharedMemoryPair({ capacity: 4 })[0];
    closedBefore.close();
    globalThis.addEventListener("beforeunload", () => {
      sender.putSync("last");
      console.log("beforeunload", receiver.getNowait());
    });
    globalThis.addEventListener("unload", () => {
      for (const call of [() => sender.putSync(1), () => receiver.getNowait(),
        () => closedBefore.putSync(1)]) {
        try {
          call();
        } catch (error) {
          console.log(error.name, error.reason, error.message);
        }
      }
    });
  `;
  const lines = (await runDeno(["eval", code])).trim().split("\n");
  assert.equal(lines[0], "beforeunload last");
  const why = "was closed as the process exits: the library closes every end still open from " +
    "an unload listener of its own, which runs before those added after the first queue end " +
    "was made (send a last message before the program ends, or from a beforeunload listener)";
  assert.deepEqual(lines.slice(1), [
    `ClosedError closed Sender.putSync: this sender ${why}`,
    `ClosedError closed Receiver.getNowait: this receiver ${why}`,
    "ClosedError closed Sender.putSync: this sender is closed", // closed by the program
  ]);
  assert.deepEqual(leakedSince(before), []);
});

Deno.test("a Worker's unload listener is told to send before the Worker exits, not from beforeunload", async () => {
  const before = new Set(shmEntries());
  // A Worker dispatches no beforeunload: the process's advice would send it nowhere.
  const lines = (await runDeno(["run", ...CHILD_PERMISSIONS, fixture("worker_exit.ts")])).trim()
    .split("\n");
  assert.deepEqual(lines, [
    "ClosedError Sender.putSync: this sender was closed as this Worker exits: the library " +
    "closes every end still open from an unload listener of its own, which runs before those " +
    "added after the first queue end was made (send a last message before this Worker exits)",
    "received undefined",
  ]);
  assert.deepEqual(leakedSince(before), []);
});

Deno.test("closing a receiver ends a for-await loop over it quietly", async () => {
  await withoutLeaks(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
    const loop = (async () => {
      const got: unknown[] = [];
      for await (const value of receiver) got.push(value);
      return got;
    })();
    sender.putSync("first");
    await makeTurnDue(); // the loop took it and waits for the next one
    receiver.close();
    assert.deepEqual(await loop, ["first"]);
    sender.close();
  });
});
