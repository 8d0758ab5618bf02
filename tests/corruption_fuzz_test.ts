// Hostile or corrupt shared memory: any process of the same user can write a queue's
// segments. Whatever it writes, the ends must get ClosedError or DecodeError (or correct
// values), never a crash, an out-of-bounds access, an endless wait or loop, or an allocation
// sized by a forged length. Victims run in child processes, so a crash shows as an abnormal
// exit; each must exit normally, in bounded time, with a bounded peak of memory.
//
// FUZZ_ROUNDS (queue lifetimes per victim, default 40), FUZZ_VICTIMS (default 2),
// FUZZ_ROUND_MS (default 400) and FUZZ_SCRIBBLES (most corruptions per queue lifetime,
// default 3) scale the random part; FUZZ_SEED picks its randomness;
// FUZZ_LIVE_LOCK=1 also lets it forge lock words naming live ends (each costs the victim the
// 10 s stuck-holder limit).
import assert from "node:assert/strict";
import {
  ClosedError,
  createSharedMemoryPair,
  openReceiver,
  openSender,
  sweepStaleQueues,
} from "../mod.ts";
import * as L from "../queue/layout.ts";
import {
  CHILD_PERMISSIONS,
  fixture,
  mapSegment,
  prng,
  type SegmentMapping,
  shmEntries,
  Watched,
  withoutLeaks,
} from "./helpers.ts";

const ROUNDS = Number(Deno.env.get("FUZZ_ROUNDS") ?? 40);
const VICTIMS = Number(Deno.env.get("FUZZ_VICTIMS") ?? 2);
const ROUND_MS = Number(Deno.env.get("FUZZ_ROUND_MS") ?? 400);
const SCRIBBLES = Number(Deno.env.get("FUZZ_SCRIBBLES") ?? 3);
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 1);
const LIVE_LOCK = Deno.env.get("FUZZ_LIVE_LOCK") === "1";
/** The mutex gives up on a live holder after 10 s: a round may take that once (a bit flip
 * in the lock word), or, when lock words naming live ends are forged on purpose, once per
 * call and per end closed at the end of the round. */
const ROUND_LIMIT_MS = ROUND_MS + (LIVE_LOCK ? 180_000 : 25_000);
/** A victim moves messages of up to 600 KiB through queues of a 4 MiB budget. */
const PEAK_LIMIT_KIB = 640 * 1024;

type Outcome = { ok?: unknown; error?: string; reason?: string; message?: string; ms: number };

/** Runs fixtures/fault_forge.ts; it must exit normally. Returns its report. */
async function forge(...args: string[]): Promise<Record<string, Outcome>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...CHILD_PERMISSIONS, fixture("fault_forge.ts"), ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.signal, null, `fault_forge ${args}: killed by ${out.signal} ${stderr}`);
  assert.equal(out.code, 0, `fault_forge ${args}: exit ${out.code} ${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

function assertCorrupt(outcome: Outcome, what: string): void {
  assert.equal(outcome.error, "ClosedError", `${what}: ${JSON.stringify(outcome)}`);
  assert.equal(outcome.reason, "corrupt", `${what}: ${JSON.stringify(outcome)}`);
}

Deno.test("a forged arena cursor never sends a sender outside the arena", async () => {
  // Before the sender checked them: -300000 wrote 100 KiB before the mapping (SIGSEGV),
  // NaN threw RangeError, 100 wrote a message every receiver rejected, 1e300 and -1e12 left
  // every put waiting for room forever.
  const forged: [string, string][] = [
    ["head", "-300000"],
    ["head", "-70000"],
    ["head", "NaN"],
    ["head", "100"],
    ["head", "0.5"],
    ["head", "1e300"],
    ["head", "9007199254740992"],
    ["tail", "-1e12"],
    ["tail", "1e15"],
  ];
  for (const [field, value] of forged) {
    const report = await forge(field, value);
    for (const call of ["small", "arena", "prepare"]) {
      assertCorrupt(report[call], `${field}=${value}, ${call}`);
    }
  }
  // A consistent one is fine.
  const report = await forge("head", "2048");
  assert.deepEqual(report.get.ok, "1000 bytes of 1");
});

Deno.test("a forged extension size never makes a sender create a huge segment", async () => {
  for (const value of [`${256 << 20}`, "1e300", "NaN", "-1"]) {
    const report = await forge("ext-size", value);
    assertCorrupt(report.write, `size ${value}`);
    const sizes = report.segmentSizes as unknown as number[];
    assert.ok(sizes.every((n) => n < 4 << 20), `segments made: ${sizes}`);
  }
});

Deno.test("a header changed between its check and its use never widens an end's arena", async () => {
  // Before: the end read its geometry again after checking it. One that opened while
  // another thread flipped the arena size kept 2^40, took a message placed far past its
  // 64 MiB arena for a valid one, and a borrow made a raw view there: SIGSEGV, within a few
  // attempts.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...CHILD_PERMISSIONS, fixture("header_race.ts"), "20"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.signal, null, `header_race: killed by ${out.signal} ${stderr}`);
  assert.equal(out.code, 0, `header_race: exit ${out.code} ${stderr}`);
  const report = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
  assert.equal(report.refused + report.opened, 20, JSON.stringify(report));
  assert.deepEqual(Object.keys(report.outcomes), report.opened ? ["ClosedError corrupt"] : []);
});

Deno.test("a forged extension generation naming an existing segment: ClosedError", async () => {
  const report = await forge("ext-gen");
  assertCorrupt(report.put, "put");
  assert.match(report.put.message!, /exists already/);
});

Deno.test("a missing extension segment gives the receiver ClosedError, the queue goes on", async () => {
  const report = await forge("ext-missing");
  assertCorrupt(report.get, "get");
  assert.match(report.get.message!, /extension segment .* is missing/);
  assert.equal(report.after.ok, "next");
});

Deno.test("a lock word naming a live participant: ClosedError after the stuck limit, no hang", async () => {
  const report = await forge("live-lock");
  assert.equal(report.put.error, "ClosedError", JSON.stringify(report.put));
  assert.match(report.put.message!, /lock held for over 10000 ms by live participant 1/);
  assert.equal(report.put.reason, "stuck");
  assert.ok(report.put.ms < 12_000, `gave up after ${report.put.ms} ms`);
  // The next call finds the same holder still there: it gives up after one liveness slice.
  assert.equal(report["put again"].error, "ClosedError", JSON.stringify(report["put again"]));
  assert.match(report["put again"].message!, /still held by live participant 1/);
  assert.ok(report["put again"].ms < 2000, `gave up after ${report["put again"].ms} ms`);
  // The end the word names takes the lock back at once: it never waits on itself.
  assert.ok(report.get.ms < 1000 && report.get.error === "EmptyError", JSON.stringify(report));
});

Deno.test("a live holder whose waiters are woken all along: still ClosedError after the limit", async () => {
  // Before, every wake-up counted as progress: the put stayed blocked as long as the wakes
  // went on, its 300 ms timeout and the 10 s limit notwithstanding.
  const report = await forge("live-lock-wakes");
  assert.equal(report.put.error, "ClosedError", JSON.stringify(report.put));
  assert.equal(report.put.reason, "stuck");
  assert.ok(report.put.ms < 12_000, `gave up after ${report.put.ms} ms`);
  assert.ok(report.get.ms < 1000 && report.get.error === "EmptyError", JSON.stringify(report));
});

Deno.test("a lock word naming live ends in turn, never free: still ClosedError after the limit", async () => {
  // Before: every change of the word counted as the lock moving, so a word that names two
  // live ends in turn, each for less than 10 s, kept the put (timeout 300 ms) blocked as long
  // as it went on (here 30 s; for good, were it to go on).
  const report = await forge("live-lock-turns");
  assert.equal(report.put.error, "ClosedError", JSON.stringify(report.put));
  assert.equal(report.put.reason, "stuck");
  assert.match(report.put.message!, /never free/);
  assert.ok(report.put.ms < 12_000, `gave up after ${report.put.ms} ms`);
});

Deno.test("a takeover that finds the queue beyond repair lets go of the lock: all fail at once", async () => {
  const report = await forge("poison-takeover");
  assertCorrupt(report.put, "put (takes the lock over, poisons)");
  // Before: the poisoning end kept the lock, so the others waited 10 s for a "live holder".
  assertCorrupt(report.get, "get");
  assert.ok(report.get.ms < 1000, `get failed after ${report.get.ms} ms`);
  assertCorrupt(report["put again"], "put again");
  assert.equal(report.lockWord as unknown, 0, "the lock is free");
});

Deno.test("a forged header: new ends get ClosedError, open ends carry on", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20 });
    const m = mapSegment(s.descriptor.name)!;
    const fields: [string, number, "u32" | "f64", number[]][] = [
      ["magic", L.H_MAGIC, "u32", [0, 0x514d4854]],
      ["version", L.H_VERSION, "u32", [0, L.LAYOUT_VERSION + 1, 0xffffffff]],
      ["capacity", L.H_CAPACITY, "u32", [0, 9, L.MAX_CAPACITY + 1, 0xffffffff]],
      ["ring size", L.H_RING_SIZE, "u32", [0, 15, 1 << 30]],
      ["participants", L.H_MAX_PARTICIPANTS, "u32", [0, 1 << 20]],
      ["extensions", L.H_MAX_EXTENSIONS, "u32", [0, 1 << 20]],
      ["arena offset", L.H_ARENA_OFFSET, "f64", [0, -4096, NaN, 1e300, 4096.5]],
      ["arena size", L.H_ARENA_SIZE, "f64", [0, 2 ** 40, NaN, -(1 << 20), 1000]],
      ["segment size", L.H_SEGMENT_SIZE, "f64", [0, 2 ** 40, NaN]],
      ["state", L.H_STATE, "u32", [L.QueueState.Initializing, L.QueueState.Poisoned, 7]],
      ["idle segments kept", L.C_KEEP_IDLE_MS, "f64", [-1, NaN, -Infinity]],
    ];
    for (const [what, offset, type, values] of fields) {
      const view = type === "u32" ? m.u32 : m.f64;
      const index = offset / (type === "u32" ? 4 : 8);
      const original = view[index];
      for (const value of values) {
        view[index] = value;
        for (const open of [openSender, openReceiver]) {
          assert.throws(
            () => open(s.descriptor).close(),
            (e: unknown) =>
              e instanceof ClosedError && /not a valid queue/.test(e.message) &&
              e.reason === "corrupt",
            `${what} = ${value}`,
          );
        }
      }
      view[index] = original;
    }
    m.unmap();
    // The open ends read the header once, when they opened: they carry on.
    await s.put("still fine");
    assert.equal(await r.get(), "still fine");
    s.close();
    r.close();
  }));

// ------------------------------------------------------------------------- random scribbling

/** Scribbles random values over one queue's shared memory. */
class Scribbler {
  readonly counts: Record<string, number> = {};
  readonly #main: SegmentMapping;
  readonly #name: string;
  readonly #ringSize: number;
  readonly #arenaOffset: number;
  readonly #random: () => number;
  readonly #extensions = new Map<string, SegmentMapping | undefined>();

  constructor(name: string, main: SegmentMapping, random: () => number) {
    this.#name = name;
    this.#main = main;
    this.#random = random;
    // Read once: the victims read the geometry once too, when they open.
    this.#ringSize = Math.min(main.u32[L.H_RING_SIZE >> 2], 1 << 12);
    this.#arenaOffset = main.f64[L.H_ARENA_OFFSET >> 3];
  }

  #int(n: number): number {
    return Math.floor(this.#random() * n);
  }

  #u32(current: number): number {
    switch (this.#int(5)) {
      case 0:
        return this.#int(2 ** 32);
      case 1:
        return this.#int(8);
      case 2:
        return (current + this.#int(7) - 3) >>> 0;
      case 3:
        return 0xffffffff;
      default:
        return 0x80000000 + this.#int(4);
    }
  }

  #f64(current: number): number {
    const specials = [NaN, Infinity, -Infinity, -1, 0.5, 1e300, -1e12, 2 ** 53, 0];
    switch (this.#int(4)) {
      case 0:
        return specials[this.#int(specials.length)];
      case 1:
        return current + (this.#int(9) - 4) * 64;
      case 2:
        return current + this.#int(200) - 100;
      default:
        return this.#int(2 ** 32);
    }
  }

  #count(target: string): void {
    this.counts[target] = (this.counts[target] ?? 0) + 1;
  }

  #field(base: number, fields: [number, "u32" | "f64"][]): void {
    const [offset, type] = fields[this.#int(fields.length)];
    if (type === "u32") {
      const i = (base + offset) >> 2;
      this.#main.u32[i] = this.#u32(this.#main.u32[i]);
    } else {
      const i = (base + offset) >> 3;
      this.#main.f64[i] = this.#f64(this.#main.f64[i]);
    }
  }

  #lockWord(): number {
    // A word naming a live end makes its waiters give up after 10 s: only on request.
    // Owners past the table's end (the low 12 bits): contended, or with any tag.
    const dead = 300 + this.#int(1000);
    const value = [0, 0x40000000 | dead, (this.#int(2 ** 18) << 12) | dead][this.#int(3)];
    if (LIVE_LOCK && this.#random() < 0.3) return 1 + this.#int(6);
    return value;
  }

  /** One scribble somewhere; returns what it hit. */
  once(): string {
    const m = this.#main;
    const pick = this.#int(20);
    let target: string;
    if (pick < 1) {
      target = "header";
      this.#field(0, [[L.H_MAGIC, "u32"], [L.H_CAPACITY, "u32"], [L.H_ARENA_SIZE, "f64"], [
        L.H_STATE,
        "u32",
      ]]);
    } else if (pick < 2) {
      target = "lock word";
      Atomics.store(m.i32, L.W_LOCK >> 2, this.#lockWord());
    } else if (pick < 3) {
      target = "sequence and waiter words";
      const words = [
        L.W_PUT_SEQ,
        L.W_RECEIVERS_WAITING,
        L.W_RELEASE_SEQ,
        L.W_SENDERS_WAITING,
        L.W_UNSETTLED,
        L.W_ACK_WAITING,
      ];
      const i = words[this.#int(words.length)] >> 2;
      Atomics.store(m.i32, i, this.#u32(m.i32[i]) | 0);
    } else if (pick < 6) {
      target = "cursors and counters";
      this.#field(0, [
        [L.C_TAIL, "u32"],
        [L.C_READ, "u32"],
        [L.C_WRITE, "u32"],
        [L.C_IN_FLIGHT, "u32"],
        [L.C_LIVE_SENDERS, "u32"],
        [L.C_LIVE_RECEIVERS, "u32"],
        [L.C_ARENA_HEAD, "f64"],
        [L.C_ARENA_TAIL, "f64"],
        [L.C_SHM_DROPPED_BYTES, "f64"],
        [L.C_SHM_DROPPED_AT, "f64"],
        [L.C_KEEP_IDLE_MS, "f64"],
        [L.C_CLAIM_BYTES, "f64"],
        [L.C_CLAIM_BY, "u32"],
        [L.C_CLAIM_GEN, "u32"],
        [L.C_CLAIM_AT, "f64"],
      ]);
    } else if (pick < 8) {
      target = "extension table";
      this.#field(L.extensionOffset(this.#int(4)), [
        [L.E_STATE, "u32"],
        [L.E_GEN, "u32"],
        [L.E_SIZE, "f64"],
        [L.E_IDLE_SINCE, "f64"],
      ]);
    } else if (pick < 10) {
      target = "participant table";
      this.#field(L.participantOffset(this.#int(8)), [
        [L.P_KIND, "u32"],
        [L.P_GEN, "u32"],
        [L.P_PID, "u32"],
        [L.P_ACKED, "u32"],
        [L.P_FD, "u32"],
        [L.P_TID, "u32"],
        [L.P_PROCESS, "f64"],
        [L.P_THREAD_START, "f64"],
        [L.P_PID_NAMESPACE, "f64"],
        [L.P_TIME_NAMESPACE, "f64"],
        [L.P_WAITING, "u32"],
        [L.P_ACK_WAITING, "u32"],
      ]);
    } else if (pick < 14) {
      target = "slots";
      this.#field(L.slotOffset(this.#int(this.#ringSize)), [
        [L.S_STATE, "u32"],
        [L.S_SENDER, "u32"],
        [L.S_SENDER_GEN, "u32"],
        [L.S_TAKEN_BY, "u32"],
        [L.S_SEGMENT, "u32"],
        [L.S_OFFSET, "f64"],
        [L.S_LENGTH, "f64"],
        [L.S_ARENA_END, "f64"],
      ]);
    } else if (pick < 17) {
      target = "arena bytes";
      const at = this.#arenaOffset + this.#int(m.size - this.#arenaOffset - 16);
      for (let k = this.#int(16); k >= 0; k--) m.bytes[at + k] = this.#int(256);
    } else if (pick < 19) {
      target = "extension bytes";
      const names = shmEntries().filter((n) => n.startsWith(this.#name.slice(1) + "-x"));
      if (names.length === 0) return "nothing";
      const name = names[this.#int(names.length)];
      if (!this.#extensions.has(name)) this.#extensions.set(name, mapSegment(`/${name}`));
      const ext = this.#extensions.get(name);
      if (ext === undefined) return "nothing";
      // Mostly the codec header at the start, where lengths and types live.
      const at = this.#random() < 0.7 ? this.#int(256) : this.#int(ext.size - 16);
      for (let k = this.#int(16); k >= 0; k--) ext.bytes[at + k] = this.#int(256);
    } else {
      target = "bit flips";
      let at = this.#int(this.#arenaOffset);
      // A flipped lock word may name a live end (a 10 s wait): only on request.
      if (!LIVE_LOCK && at >> 2 === L.W_LOCK >> 2) at += 4;
      m.bytes[at] ^= 1 << this.#int(8);
    }
    this.#count(target);
    return target;
  }

  close(): void {
    this.#main.unmap();
    for (const ext of this.#extensions.values()) ext?.unmap();
  }
}

type VictimReport = {
  ops: number;
  values: number;
  intact: number;
  damaged: number;
  errors: Record<string, number>;
  unexpected: string[];
  samples: string[];
  slowestOverrunMs: number;
  slowest: string;
  peakKiB: number;
};

/** Runs one victim through its rounds, scribbling over each of its queues. */
async function victim(
  index: number,
  totals: {
    rounds: number;
    scribbles: number;
    counts: Record<string, number>;
    queues: Set<string>;
  },
): Promise<VictimReport> {
  const random = prng(SEED * 1000 + index);
  const child = new Watched("fault_fuzz_victim.ts", [
    `${ROUNDS}`,
    `${ROUND_MS}`,
    `${SEED * 1000 + index}`,
  ]);
  let next = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const line = await child.line(next++, ROUND_LIMIT_MS);
      assert.ok(line?.startsWith("queue "), `victim ${index} round ${round}: ${line}`);
      const name = line!.slice(6);
      totals.queues.add(name.slice(1));
      const main = mapSegment(name);
      const scribbler = main && new Scribbler(name, main, random);
      const ended = child.line(next++, ROUND_LIMIT_MS);
      let done = false;
      ended.then(() => done = true);
      // A few corruptions at random moments of the queue's life, so that the victim lives
      // with each one for a while (a queue poisoned at once tests little).
      const moments = Array.from(
        { length: 1 + Math.floor(random() * SCRIBBLES) },
        () => random() * ROUND_MS * 0.8,
      ).sort((a, b) => a - b);
      const started = performance.now();
      for (const at of moments) {
        await new Promise((ok) => setTimeout(ok, Math.max(0, started + at - performance.now())));
        if (done || !scribbler) break;
        scribbler.once();
        totals.scribbles++;
      }
      const report = await ended;
      if (!report?.startsWith("round ")) {
        const status = await Promise.race([
          child.proc.status,
          new Promise((ok) => setTimeout(ok, 100)),
        ]);
        assert.fail(
          `victim ${index} round ${round}: ${report ?? "no report"}; ` +
            (status ? `it exited: ${JSON.stringify(status)}` : "it hung"),
        );
      }
      scribbler?.close();
      for (const [k, v] of Object.entries(scribbler?.counts ?? {})) {
        totals.counts[k] = (totals.counts[k] ?? 0) + v;
      }
      totals.rounds++;
    }
    const done = await child.line(next, ROUND_LIMIT_MS);
    assert.ok(done?.startsWith("done "), `victim ${index}: ${done}`);
    const status = await child.exit();
    assert.equal(status.signal, null, `victim ${index} killed by ${status.signal}`);
    assert.equal(status.code, 0, `victim ${index} exit code`);
    return JSON.parse(done!.slice(5));
  } finally {
    await child.stop();
  }
}

Deno.test("random corruption of live queues while messages flow: no crash, hang or balloon", async () => {
  const totals = {
    rounds: 0,
    scribbles: 0,
    counts: {} as Record<string, number>,
    queues: new Set<string>(),
  };
  const started = performance.now();
  const reports = await Promise.all(
    Array.from({ length: VICTIMS }, (_, i) => victim(i, totals)),
  );
  const sum = (f: (r: VictimReport) => number) => reports.reduce((n, r) => n + f(r), 0);
  const errors: Record<string, number> = {};
  for (const r of reports) {
    for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  }
  console.log(
    `corruption fuzz: ${totals.rounds} queue lifetimes, ${totals.scribbles} corruptions ` +
      `(${JSON.stringify(totals.counts)}), ${sum((r) => r.ops)} calls in the victims, ` +
      `${sum((r) => r.values)} values received (${sum((r) => r.intact)} intact, ` +
      `${sum((r) => r.damaged)} with scribbled payload), errors ${JSON.stringify(errors)}, ` +
      `slowest call ${Math.max(...reports.map((r) => r.slowestOverrunMs)).toFixed(0)} ms ` +
      `past its timeout, peak ${Math.max(...reports.map((r) => r.peakKiB)) >> 10} MiB, ` +
      `${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  if (Deno.env.get("FUZZ_VERBOSE")) console.log(reports.map((r) => [r.slowest, r.samples]));
  // A forged header or extension table can keep the last end from removing every name of
  // its queue; once the victims are gone, the sweep must still find and remove them all.
  sweepStaleQueues();
  // Only the victims' queues: anything else on the machine may come and go meanwhile.
  assert.ok(totals.queues.size >= VICTIMS, `queues seen: ${totals.queues.size}`);
  // An extension's name carries its queue's id, then -x<index>-<gen>-<secret>: by the id
  // (before, a pattern without the secret matched no extension, and they were never checked).
  const left = shmEntries().filter((n) =>
    totals.queues.has(`shmq-${L.SHM_ENTRY_PATTERN.exec(n)?.[1]}`)
  );
  assert.deepEqual(left, [], "the sweep removes whatever corrupt queues left behind");
  for (const r of reports) {
    assert.deepEqual(r.unexpected, [], "only ClosedError, DecodeError, EmptyError, FullError");
    assert.ok(r.peakKiB < PEAK_LIMIT_KIB, `peak memory ${r.peakKiB} KiB`);
    // Every call has a timeout of at most 200 ms; a forged lock word naming a live end costs
    // 10 s, and only when FUZZ_LIVE_LOCK=1.
    assert.ok(r.slowestOverrunMs < (LIVE_LOCK ? 11_000 : 2_000), `${r.slowestOverrunMs} ms`);
  }
  assert.equal(totals.rounds, ROUNDS * VICTIMS);
});

// ------------------------------------------------------------------------- forged bookkeeping

/** `call` must throw ClosedError("corrupt") whose message matches `pattern`. */
function assertPoisoned(call: () => unknown, pattern: RegExp, what: string): void {
  assert.throws(
    call,
    (e: unknown) => e instanceof ClosedError && e.reason === "corrupt" && pattern.test(e.message),
    what,
  );
}

/** A queue, its ends and a mapping of its main segment to forge fields in. */
function forgeable(capacity = 4, arenaBytes = 1 << 20) {
  const [sender, receiver] = createSharedMemoryPair({ capacity, arenaBytes });
  const m = mapSegment(sender.descriptor.name)!;
  return {
    sender,
    receiver,
    m,
    /** The participant entry of the end of `kind`. */
    entryOf(kind: number): number {
      for (let i = 0; i < L.MAX_PARTICIPANTS; i++) {
        if (m.u32[(L.participantOffset(i) + L.P_KIND) >> 2] === kind) return i;
      }
      throw new Error(`no entry of kind ${kind}`);
    },
    [Symbol.dispose]() {
      m.unmap();
      sender.close();
      receiver.close();
    },
  };
}

Deno.test("forged live counts or entries are found out, never taken for the end of a stream", () =>
  withoutLeaks(() => {
    // Before: the receiver took the stream for drained while its sender was still open.
    {
      using q = forgeable();
      q.sender.putSync(1);
      q.m.u32[L.C_LIVE_SENDERS >> 2] = 0;
      assert.equal(q.receiver.getSync(), 1);
      assertPoisoned(
        () => q.receiver.getSync({ timeout: 5000 }),
        /no senders counted live, 1 in the participant table/,
        "senders counted 0",
      );
    }
    // Before: the receiver waited for good (here: EmptyError at the timeout).
    {
      using q = forgeable();
      q.m.u32[L.C_LIVE_SENDERS >> 2] = 0xffffffff;
      q.sender.close();
      assertPoisoned(
        () => q.receiver.getSync({ timeout: 5000 }),
        /senders and 1 receivers counted live, 0 and 1 in the participant table/,
        "senders counted 2^32 - 1",
      );
    }
    // An entry no end registered, reaped as a dead sender: before, the live count fell to 0
    // and the stream ended with the real sender still open.
    {
      using q = forgeable();
      const phantom = L.participantOffset(L.MAX_PARTICIPANTS - 1);
      q.m.u32[(phantom + L.P_KIND) >> 2] = L.ParticipantKind.Sender;
      assertPoisoned(() => q.receiver.getSync({ timeout: 5000 }), /counted live/, "phantom");
    }
    // Before: put said every receiver had closed.
    {
      using q = forgeable();
      q.m.u32[L.C_LIVE_RECEIVERS >> 2] = 0;
      assertPoisoned(
        () => q.sender.putSync(1),
        /no receivers counted live, 1 in the participant table/,
        "receivers counted 0",
      );
    }
    // A receiver whose entry was forged free leaves its count behind as it closes. Before:
    // every put waited for room for good (here: FullError at the timeout).
    {
      using q = forgeable(2);
      const at = L.participantOffset(q.entryOf(L.ParticipantKind.Receiver));
      q.m.u32[(at + L.P_KIND) >> 2] = L.ParticipantKind.Free;
      q.receiver.close();
      q.sender.putSync(1);
      q.sender.putSync(2);
      assertPoisoned(
        () => q.sender.putSync(3, { timeout: 5000 }),
        /1 receivers counted live, 1 and 0 in the participant table/,
        "receiver entry forged free",
      );
    }
  }));

Deno.test("a waiter count forged below 0 is repaired: waiters are woken again, not left to their slice", () =>
  withoutLeaks(async () => {
    /** Milliseconds from the moment `act` runs, 30 ms into `wait` (asleep by then), until
     * `wait` settles; the median of 7 rounds after the first (which may take a slice). */
    async function lateness(wait: () => Promise<unknown>, act: () => void): Promise<number> {
      const late: number[] = [];
      for (let round = 0; round < 8; round++) {
        const waiting = wait();
        await new Promise((ok) => setTimeout(ok, 30));
        const acted = performance.now();
        act();
        await waiting;
        if (round > 0) late.push(performance.now() - acted);
      }
      return late.sort((a, b) => a - b)[3];
    }
    // Before: every announcement of a waiter brought the count back to 0, so no put woke the
    // sleeping get: each took its 200 ms slice (median ~170 ms here), for good.
    {
      using q = forgeable();
      Atomics.store(q.m.i32, L.W_RECEIVERS_WAITING >> 2, -1);
      const ms = await lateness(() => q.receiver.get({ timeout: 2000 }), () => q.sender.putSync(1));
      assert.ok(ms < 60, `a get woke ${ms.toFixed(0)} ms after the put`);
    }
    // The same for a sender waiting for its messages to be acknowledged.
    {
      using q = forgeable();
      Atomics.store(q.m.i32, L.W_ACK_WAITING >> 2, -1);
      const held: { release(): void }[] = [];
      const ms = await lateness(() => {
        q.sender.putSync(1);
        const lease = q.receiver.borrowSync({ timeout: 1000 });
        held.push(lease);
        return q.sender.waitForAllAck({ timeout: 2000 });
      }, () => held.pop()!.release());
      assert.ok(ms < 60, `an ack wait woke ${ms.toFixed(0)} ms after the release`);
    }
  }));

Deno.test("a waiter share forged above its count: an end that leaves takes back no more than the count", () =>
  withoutLeaks(() => {
    using q = forgeable();
    const { i32 } = q.m;
    const { Receiver, Sender } = L.ParticipantKind;
    // Shares no count holds (nobody waits: the counts are 0), in the entries of both ends.
    const receiverAt = L.participantOffset(q.entryOf(Receiver));
    const senderAt = L.participantOffset(q.entryOf(Sender));
    Atomics.store(i32, (receiverAt + L.P_WAITING) >> 2, 5);
    Atomics.store(i32, (senderAt + L.P_WAITING) >> 2, 3);
    Atomics.store(i32, (senderAt + L.P_ACK_WAITING) >> 2, 7);
    const counts = () =>
      [L.W_RECEIVERS_WAITING, L.W_SENDERS_WAITING, L.W_ACK_WAITING].map((at) =>
        Atomics.load(i32, at >> 2)
      );
    assert.deepEqual(counts(), [0, 0, 0]);
    // Ends that keep the queue once the forged ones leave.
    const s2 = openSender(q.sender.descriptor);
    const r2 = openReceiver(q.sender.descriptor);
    try {
      q.receiver.close();
      q.sender.close();
      // Without the clamp: -5, -3, -7, and every put and release of the queue
      // then paid a futex wake syscall, and a sweep of the entries for the dead every 250 ms,
      // until a waiter's announcement repaired the count.
      assert.deepEqual(counts(), [0, 0, 0]);
      s2.putSync(1);
      assert.equal(r2.getSync({ timeout: 1000 }), 1);
    } finally {
      s2.close();
      r2.close();
    }
  }));

Deno.test("a lock holder killed while it settled a received message leaves the totals whole", () =>
  withoutLeaks(() => {
    using q = forgeable();
    q.sender.putSync("a");
    q.sender.putSync("b");
    assert.equal(q.receiver.getSync(), "a"); // released: its settle is due
    const before = q.m.f64[L.C_TOTAL_RELEASED >> 3];
    const slot = L.slotOffset(0);
    assert.equal(Atomics.load(q.m.i32, (slot + L.S_STATE) >> 2), L.SlotState.Released);
    // What a holder killed inside that settle left: the slot Done, the settle recorded as
    // under way, the total not yet counting it, and the lock still named after the holder
    // (an entry no end holds). Before, the total stayed one short for good.
    q.m.f64[L.C_CREDIT_BASE >> 3] = q.m.f64[L.C_TOTAL_RELEASED >> 3];
    q.m.u32[L.C_CREDITING_SLOT >> 2] = 0 + 1;
    Atomics.store(q.m.i32, (slot + L.S_STATE) >> 2, L.SlotState.Done);
    Atomics.store(q.m.i32, L.W_LOCK >> 2, L.MAX_PARTICIPANTS);
    const after = q.receiver.stats(); // takes the lock over, and repairs
    assert.equal(after.received, before + 1, "the message counts as received, once");
    assert.equal(after.put - after.received, 1, "one message still in flight");
    assert.equal(q.m.u32[L.C_CREDITING_SLOT >> 2], 0);
    assert.equal(q.receiver.getSync(), "b");
    assert.equal(q.receiver.stats().received, before + 2);
  }));

Deno.test("a forged ring or arena cursor is found out, never a stall or an overwrite", () =>
  withoutLeaks(() => {
    // Before: every put waited for room for good (here: FullError at the timeout).
    {
      using q = forgeable();
      q.m.u32[L.C_IN_FLIGHT >> 2] = 0xffffffff;
      assertPoisoned(
        () => q.sender.putSync(1, { timeout: 5000 }),
        /4294967295 messages counted in flight, 0 queued/,
        "in flight",
      );
    }
    // A tail forged back makes the ring look full of free slots. Before: a stall.
    {
      using q = forgeable();
      q.sender.putSync(1);
      q.m.u32[L.C_TAIL >> 2] = (1 - 16) >>> 0; // capacity 4: a ring of 16
      assertPoisoned(
        () => q.sender.putSync(2, { timeout: 5000 }),
        /free slot \d+ among the queued ones/,
        "tail",
      );
    }
    // A read cursor forged ahead. Before: the messages it skipped were neither delivered nor
    // reported (here: EmptyError at the timeout).
    {
      using q = forgeable();
      q.sender.putSync(1);
      q.sender.putSync(2);
      q.m.u32[L.C_READ >> 2] = q.m.u32[L.C_WRITE >> 2];
      assertPoisoned(
        () => q.receiver.getSync({ timeout: 5000 }),
        /slot \d+, not yet taken \(state \d+\), lies behind the read cursor/,
        "read cursor",
      );
    }
    // A slot "being written" by an entry no sender holds. Before: it held back the queue for
    // good (here: EmptyError at the timeout).
    {
      using q = forgeable();
      const write = q.m.u32[L.C_WRITE >> 2];
      const s = L.slotOffset(write & 15);
      q.m.u32[(s + L.S_SENDER) >> 2] = L.MAX_PARTICIPANTS - 1;
      q.m.u32[(s + L.S_SEGMENT) >> 2] = 0;
      q.m.f64[(s + L.S_LENGTH) >> 3] = 8;
      q.m.f64[(s + L.S_ARENA_END) >> 3] = 64;
      q.m.f64[L.C_ARENA_HEAD >> 3] = 64;
      q.m.u32[(s + L.S_STATE) >> 2] = L.SlotState.Writing;
      q.m.u32[L.C_WRITE >> 2] = write + 1;
      q.m.u32[L.C_IN_FLIGHT >> 2] = 1;
      assertPoisoned(
        () => q.receiver.getSync({ timeout: 5000 }),
        /slot \d+ is being written by no sender of the queue/,
        "orphan slot",
      );
    }
    // Before: adding a message's size to 2^60 rounded back, so every message went to offset
    // 0, over the ones not yet read.
    {
      using q = forgeable();
      q.m.f64[L.C_ARENA_HEAD >> 3] = 2 ** 60;
      q.m.f64[L.C_ARENA_TAIL >> 3] = 2 ** 60;
      assertPoisoned(() => q.sender.putSync(1), /arena cursors/, "arena cursors 2^60");
    }
    // Before: later messages were written over the unread one.
    {
      using q = forgeable();
      q.sender.putSync(new Uint8Array(20_000));
      assert.equal(q.m.u32[(L.slotOffset(0) + L.S_SEGMENT) >> 2], 0, "in the arena");
      q.m.f64[L.C_ARENA_TAIL >> 3] = q.m.f64[L.C_ARENA_HEAD >> 3];
      assertPoisoned(() => q.sender.putSync(2), /arena tail \d+ past a message/, "arena tail");
    }
  }));

Deno.test("a taken message naming no receiver as its taker is found out, never a stall", () =>
  withoutLeaks(() => {
    // Before: its receiver's release was ignored (not its taker) and nothing else ever freed
    // it: the ring stopped behind it for good, every put failed with FullError at its
    // timeout and waitForAllAck never completed, on a queue never found corrupt.
    for (const taker of [L.MAX_PARTICIPANTS - 1, 0xffffffff, "sender"] as const) {
      using q = forgeable(2);
      q.sender.putSync("held");
      const lease = q.receiver.borrowSync<string>();
      const s = L.slotOffset(0);
      assert.equal(q.m.u32[(s + L.S_STATE) >> 2], L.SlotState.Taken);
      q.m.u32[(s + L.S_TAKEN_BY) >> 2] = taker === "sender"
        ? q.entryOf(L.ParticipantKind.Sender)
        : taker;
      lease.release();
      assertPoisoned(
        () => {
          // The ring has 16 slots: the 16th put finds it full behind the held one.
          for (let i = 0; i < 16; i++) {
            q.sender.putSync(i, { timeout: 5000 });
            q.receiver.getSync({ timeout: 5000 });
          }
        },
        /slot 0 is held by no receiver of the queue/,
        `taker ${taker}`,
      );
    }
  }));

Deno.test("an extension forged busy with no message in it is found out, never a stall", () =>
  withoutLeaks(() => {
    // Before: it held the byte budget for good: every message too large for the arena
    // failed with FullError at its timeout ("messages in flight hold 4194304 bytes of
    // extension segments"), with none in flight, on a queue never found corrupt.
    const [sender, receiver] = createSharedMemoryPair({
      capacity: 4,
      arenaBytes: 64 * 1024,
      byteBudget: 4 << 20,
    });
    const m = mapSegment(sender.descriptor.name)!;
    try {
      const e = L.extensionOffset(L.MAX_EXTENSIONS - 1);
      m.f64[(e + L.E_SIZE) >> 3] = 4 << 20;
      m.u32[(e + L.E_STATE) >> 2] = L.ExtensionState.Busy;
      assertPoisoned(
        () => sender.putSync(new Uint8Array(300_000), { timeout: 5000 }),
        new RegExp(`extension ${L.MAX_EXTENSIONS - 1} is busy with no message in it`),
        "busy extension",
      );
    } finally {
      m.unmap();
      sender.close();
      receiver.close();
    }
  }));

Deno.test("an extension forged idle or empty under a message in flight is found out, not written over", () =>
  withoutLeaks(() => {
    // Before: the next large put was written into the same segment, over the message still
    // queued in it, and the receiver took the second message's bytes for the first (a
    // Uint8Array of 2s for one of 1s), silently; only the second get found the queue corrupt.
    for (const state of [L.ExtensionState.Idle, L.ExtensionState.Empty]) {
      {
        using q = forgeable(4, 64 * 1024);
        q.sender.putSync(new Uint8Array(200_000).fill(1)); // too large for the arena
        const s = L.slotOffset(q.m.u32[L.C_READ >> 2] & 15);
        const extension = q.m.u32[(s + L.S_SEGMENT) >> 2] - 1;
        assert.ok(extension >= 0, "the message went to an extension");
        q.m.u32[(L.extensionOffset(extension) + L.E_STATE) >> 2] = state;
        assertPoisoned(
          () => q.sender.putSync(new Uint8Array(200_000).fill(2), { timeout: 2000 }),
          /extension \d+ handed out while slot \d+ has a message in it/,
          `extension forged ${state}`,
        );
      }
      // A segment forged Empty is hidden from the last end's close; the sweep finds it.
      sweepStaleQueues();
    }
    // Its record of the message's slot forged too: the receiver finds it out as it takes.
    {
      using q = forgeable(4, 64 * 1024);
      q.sender.putSync(new Uint8Array(200_000).fill(1));
      const read = q.m.u32[L.C_READ >> 2];
      const s = L.slotOffset(read & 15);
      const e = L.extensionOffset(q.m.u32[(s + L.S_SEGMENT) >> 2] - 1);
      q.m.u32[(e + L.E_STATE) >> 2] = L.ExtensionState.Idle;
      q.m.u32[(e + L.E_SLOT) >> 2] = (read + 1) & 15;
      q.sender.putSync(new Uint8Array(200_000).fill(2), { timeout: 2000 });
      assertPoisoned(
        () => q.receiver.getSync({ timeout: 2000 }),
        /places \d+ bytes at 0 in segment/,
        "slot forged",
      );
    }
  }));

Deno.test("a forged extension size of 0 is corrupt state, not a native error", () =>
  withoutLeaks(() => {
    using q = forgeable(4, 64 * 1024);
    q.sender.putSync(new Uint8Array(200_000)); // too large for the arena: an extension
    const s = L.slotOffset(q.m.u32[L.C_READ >> 2] & 15);
    const extension = q.m.u32[(s + L.S_SEGMENT) >> 2] - 1;
    assert.ok(extension >= 0, "the message went to an extension");
    q.m.f64[(L.extensionOffset(extension) + L.E_SIZE) >> 3] = 0;
    q.m.f64[(s + L.S_LENGTH) >> 3] = 0;
    // Before: NativeError "mmap(…): EINVAL".
    assertPoisoned(() => q.receiver.getSync(), /places 0 bytes at 0 in segment/, "size 0");
  }));
