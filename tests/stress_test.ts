// Load: 8 sender processes put messages of random sizes (0-256 KiB) with random pauses into
// one queue; 2 receiver processes take them. Every message must arrive exactly once, intact
// (checksum), and each sender's messages in the order it put them.
//
// STRESS_MESSAGES sets the messages per sender (default 20000: about 20 GiB through the queue,
// some 25 s on a 2-vCPU machine); set it lower for a quick run.
import assert from "node:assert/strict";
import { ClosedError, createSharedMemoryPair } from "../mod.ts";
import { endedTogether, shmEntries, Watched } from "./helpers.ts";

const SENDERS = 8;
const RECEIVERS = 2;
const MESSAGES = Number(Deno.env.get("STRESS_MESSAGES") ?? 20000);
const MAX_SIZE = 256 << 10;

/** Merges sorted, disjoint [first, last] runs; throws on an overlap (a duplicate). */
function addRun(runs: [number, number][], first: number, last: number, what: string): void {
  runs.push([first, last]);
  runs.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < runs.length; i++) {
    assert.ok(runs[i][0] > runs[i - 1][1], `${what}: messages ${runs[i]} delivered twice`);
    if (runs[i][0] === runs[i - 1][1] + 1) {
      runs[i - 1][1] = runs[i][1];
      runs.splice(i--, 1);
    }
  }
}

Deno.test(`stress: ${SENDERS} senders x ${MESSAGES} messages of 0-256 KiB into ${RECEIVERS} receivers`, async () => {
  const [sender, receiver] = createSharedMemoryPair({ capacity: 64 });
  const name = sender.descriptor.name;
  const d = JSON.stringify(sender.descriptor);
  await using consumers = endedTogether(Array.from(
    { length: RECEIVERS },
    () => new Watched("fault_load_child.ts", ["consume", d]),
  ));
  await using producers = endedTogether(
    Array.from({ length: SENDERS }, (_, i) =>
      new Watched("fault_load_child.ts", [
        "produce",
        d,
        `${i}`,
        `${MESSAGES}`,
        `${i + 1}`,
        "0",
        `${MAX_SIZE}`,
        "0.01",
        "5",
      ])),
  );
  for (const c of [...consumers, ...producers]) await c.expect("ready");
  const started = performance.now();
  // Every child opened its end: the parent's go (the receivers end once the senders close).
  sender.close();
  receiver.close();
  const timeout = 60_000 + MESSAGES * SENDERS * 2;
  for (const p of producers) assert.equal(await p.expect("done", timeout), `done ${MESSAGES}`);
  const reports = [];
  for (const c of consumers) reports.push(JSON.parse((await c.expect("done", timeout)).slice(5)));
  const seconds = (performance.now() - started) / 1000;
  for (const c of [...consumers, ...producers]) {
    const status = await c.exit();
    assert.equal(status.code, 0);
    const errors = c.out.filter((l) => l.startsWith("error"));
    assert.deepEqual(errors, []);
  }
  const runs = new Map<number, [number, number][]>();
  for (const c of consumers) {
    for (const line of c.out.filter((l) => l.startsWith("runs "))) {
      for (const [s, first, last] of JSON.parse(line.slice(5))) {
        if (!runs.has(s)) runs.set(s, []);
        addRun(runs.get(s)!, first, last, `sender ${s}`);
      }
    }
  }
  for (let s = 0; s < SENDERS; s++) {
    assert.deepEqual(runs.get(s), [[0, MESSAGES - 1]], `sender ${s}: every message, once`);
  }
  const total = reports.reduce((n, r) => n + r.messages, 0);
  const bytes = reports.reduce((n, r) => n + r.bytes, 0);
  assert.equal(total, SENDERS * MESSAGES);
  for (const r of reports) {
    assert.equal(r.bad, 0, "checksums");
    assert.equal(r.outOfOrder, 0, "per-sender order");
  }
  console.log(
    `stress: ${total} messages, ${(bytes / 2 ** 30).toFixed(2)} GiB in ${seconds.toFixed(1)} s ` +
      `(${Math.round(total / seconds)} msg/s, ${(bytes / 2 ** 30 / seconds).toFixed(2)} GiB/s); ` +
      `per receiver ${reports.map((r) => r.messages).join(" + ")}`,
  );
  assert.deepEqual(shmEntries().filter((n) => n.startsWith(name.slice(1))), []);
});

Deno.test("stress: receivers that join and leave while the lone one takes ahead: exactly once, in order", async () => {
  // Before: within seconds, "corrupt shared state (slot N in state 0 between the read and
  // write cursors)" for every end: a take reclaimed slots the lone receiver released (without
  // the lock) meanwhile, then went on from its stale read cursor.
  const [sender, receiver] = createSharedMemoryPair({ capacity: 64, arenaBytes: 1 << 20 });
  const name = sender.descriptor.name;
  const d = JSON.stringify(sender.descriptor);
  const flood = new Watched("queue_child.ts", ["flood", d, "4000"]);
  const churn = new Watched("queue_child.ts", ["churn", d]);
  try {
    await flood.expect("ready");
    await churn.expect("ready");
    sender.close();
    const got: number[] = [];
    try {
      for (;;) got.push(receiver.getSync<number>({ timeout: 30_000 }));
    } catch (error) {
      if (!(error instanceof ClosedError) || error.reason !== "drained") throw error;
    }
    receiver.close();
    const sent = Number((await flood.expect("done", 30_000)).slice(5));
    const taken: number[] = JSON.parse((await churn.expect("taken", 30_000)).slice(6));
    for (const [who, list] of [["lone receiver", got], ["joining receivers", taken]] as const) {
      for (let i = 1; i < list.length; i++) {
        assert.ok(list[i] > list[i - 1], `${who}: ${list[i]} after ${list[i - 1]}`);
      }
    }
    const all = [...got, ...taken].sort((a, b) => a - b);
    assert.equal(all.length, sent, "every message once");
    assert.ok(all.every((v, i) => v === i), "every message once");
    assert.ok(taken.length > 0, "the joining receivers took some");
    for (const child of [flood, churn]) assert.equal((await child.exit()).code, 0);
  } finally {
    sender.close();
    receiver.close();
    await flood.stop();
    await churn.stop();
  }
  assert.deepEqual(shmEntries().filter((n) => n.startsWith(name.slice(1))), []);
});
