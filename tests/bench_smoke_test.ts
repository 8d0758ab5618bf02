/**
 * Smoke test of `deno task bench`: the quick mode runs every transport end to end across real
 * processes and writes its reports, and leaves no process or /dev/shm entry behind. Plus unit
 * checks of the benchmark's framing, size parsing and statistics.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  CHILD_FLAGS,
  formatSize,
  FRAME_HEADER,
  FrameReader,
  FrameType,
  FrameWriter,
  parseSize,
  segmentPrefix,
} from "../bench/common.ts";
import { median, percentile } from "../bench/measure.ts";
import { interruptedOut, mergePasses, parseOptions } from "../bench/main.ts";
import { shmList } from "../ffi/native.ts";
import { SHM_ENTRY_PATTERN } from "../queue/layout.ts";
import { leakedSince, shmEntries } from "./helpers.ts";
import type { Results, ThroughputResult } from "../bench/results_types.ts";
import { TRANSPORTS } from "../bench/transports.ts";
import { leftByThisRun, RUN_TOKEN } from "../bench/procs.ts";

Deno.test("bench: sizes parse and print", () => {
  assert.equal(parseSize("10"), 10);
  assert.equal(parseSize("100B"), 100);
  assert.equal(parseSize("1KiB"), 1024);
  assert.equal(parseSize("1MiB"), 1024 ** 2);
  assert.equal(parseSize("10GiB"), 10 * 1024 ** 3);
  assert.equal(parseSize("2kB"), 2000);
  assert.throws(() => parseSize("1 parsec"), RangeError);
  assert.equal(formatSize(10), "10 B");
  assert.equal(formatSize(100 * 1024), "100 KiB");
  assert.equal(formatSize(1024 ** 3), "1 GiB");
  assert.equal(formatSize(1536), "1.5 KiB");
  assert.equal(formatSize(2_500_000), "2.5 MB");
  assert.equal(formatSize(1e9), "1 GB");
  // Before: both "65.5 kB", so a table of sizes around 64 KiB had two rows of one label.
  assert.equal(formatSize(65535), "65535 B");
  assert.equal(formatSize(65537), "65537 B");
});

Deno.test("bench: a default run stopped by a signal writes beside the published results, not over them", () => {
  const published = parseOptions([]);
  assert.match(published.out, /\/bench\/results$/);
  // Before: over them, though only a full run may replace them.
  assert.match(interruptedOut(published), /\/bench\/results-partial$/);
  const own = parseOptions(["--out=/tmp/mine", "--quick"]);
  assert.equal(interruptedOut(own), "/tmp/mine");
  assert.match(interruptedOut(parseOptions(["--quick"])), /\/bench\/results-partial$/);
});

Deno.test("bench: the leak check counts this run's segments and queues, not another run's", () => {
  const mine = `${segmentPrefix(RUN_TOKEN)}123-4`;
  const theirs = `${segmentPrefix("999-other")}123-4`;
  // Before: any shmq-bench- entry, so a second run on the machine failed the first's check.
  assert.deepEqual(leftByThisRun(new Set(), [mine, theirs, "unrelated"]), [mine]);
  assert.deepEqual(leftByThisRun(new Set([mine]), [mine]), [], "there before the run");
});

Deno.test("bench: median and percentile", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(xs, 50), 50);
  assert.equal(percentile(xs, 99), 99);
  assert.equal(percentile(xs, 100), 100);
});

Deno.test("bench: frames survive any split of the byte stream, small and large", () => {
  const chunks: Uint8Array[] = [];
  const sink = { writeSync: (p: Uint8Array) => (chunks.push(p.slice()), p.length) };
  const out = new FrameWriter(sink);
  const sizes = [0, 1, 10, 4096, 70_000, 9, 300_000, 5];
  for (const [i, n] of sizes.entries()) {
    out.write(FrameType.Bytes, new Uint8Array(n).map((_, j) => (i * 31 + j) & 0xff));
  }
  const stream = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    stream.set(c, at);
    at += c.length;
  }
  assert.equal(stream.length, sizes.reduce((a, n) => a + n + FRAME_HEADER, 0));
  for (const piece of [1, 7, 4096, 1 << 20]) {
    let pos = 0;
    const source = {
      readSync(p: Uint8Array): number | null {
        if (pos === stream.length) return null;
        const n = Math.min(piece, p.length, stream.length - pos);
        p.set(stream.subarray(pos, pos + n));
        pos += n;
        return n;
      },
    };
    const reader = new FrameReader(64 * 1024);
    for (const [i, n] of sizes.entries()) {
      const frame = reader.readSync(source);
      assert.ok(frame, `frame ${i} with reads of ${piece}`);
      assert.equal(frame.type, FrameType.Bytes);
      assert.equal(frame.payload.length, n);
      for (let j = 0; j < n; j += 997) assert.equal(frame.payload[j], (i * 31 + j) & 0xff);
    }
    assert.equal(reader.readSync(source), null);
  }
});

Deno.test({
  name: "bench: --quick runs every transport across processes and cleans up",
  // The benchmark spawns processes and maps shared memory on purpose; it checks itself that
  // nothing is left behind (its results list stray processes and /dev/shm entries).
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "shmq-bench-smoke-" });
    const shmBefore = new Set(shmList("/shmq-bench-"));
    try {
      const main = new URL("../bench/main.ts", import.meta.url).pathname;
      const started = performance.now();
      const child = new Deno.Command(Deno.execPath(), {
        args: [...CHILD_FLAGS, main, "--quick", `--out=${out}`],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
      const { code, stdout, stderr } = await child.output();
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      const err = new TextDecoder().decode(stderr);
      assert.equal(code, 0, `bench --quick failed:\n${err.slice(-4000)}`);
      assert.ok(seconds < 60, `--quick took ${seconds.toFixed(1)} s`);
      assert.match(err, /\(1\/\d+\)/, "progress goes to stderr");
      const md = new TextDecoder().decode(stdout);
      assert.match(md, /## Targets \(issues 3 and 4\)/);
      assert.match(md, /## Throughput: Uint8Array messages/);

      const results: Results = JSON.parse(await Deno.readTextFile(`${out}/results.json`));
      for (const kind of ["bytes", "struct"] as const) {
        for (const size of [100, 1024 ** 2]) {
          for (const t of TRANSPORTS) {
            if (t.id === "memcpy" && kind === "struct") continue;
            if (size > (t.maxSize ?? Infinity)) {
              assert.ok(!results.throughput.some((r) => r.transport === t.id && r.size === size));
              continue;
            }
            const r = results.throughput.find((r) =>
              r.transport === t.id && r.kind === kind && r.size === size
            );
            assert.ok(r, `${t.id} ${kind} ${size} measured`);
            assert.equal(r.status, "ok", `${t.id} ${kind} ${size}: ${r.reason}`);
            assert.ok(r.gbps! > 0 && r.msgps! > 0 && r.roundsMs!.length >= 1);
            assert.ok((r.receiverPeak ?? 0) > 0, `${t.id}: receiver peak memory reported`);
          }
        }
      }
      assert.deepEqual(
        results.latency.map((r) => [r.mode, r.status]),
        [["shmq-sync", "ok"], ["shmq-async", "ok"], ["pipe", "ok"], ["postmessage", "ok"]],
      );
      for (const r of results.latency) assert.ok(r.p50Us! > 0 && r.p99Us! >= r.p50Us!);
      assert.ok(results.fanIn.length >= 2 && results.fanIn.every((r) => r.status === "ok"));
      assert.ok(results.small.every((r) => r.status === "ok" && r.size === 64));
      const issues = new Set(results.targets.map((t) => t.issue));
      assert.ok(issues.has(3) && issues.has(4));
      for (const t of results.targets) assert.match(t.verdict, /^(PASS|FAIL|n\/a)$/);
      assert.deepEqual(results.cleanup, { strayProcesses: [], leakedShm: [] });

      for (const kind of ["bytes", "struct"]) {
        const svg = await Deno.readTextFile(`${out}/throughput-${kind}.svg`);
        assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
        assert.match(svg, /<\/svg>\n$/);
        assert.ok((svg.match(/<path /g) ?? []).length >= 8, "one line per transport");
      }
      const ours = shmList("/shmq-bench-").filter((n) => !shmBefore.has(n));
      assert.deepEqual(ours, [], "per-message segments unlinked");
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test("bench: passes merge into one result, rounds scaled to the first pass's count", () => {
  const base = {
    transport: "pipe",
    kind: "bytes",
    size: 1000,
    window: 64,
    status: "ok",
  } satisfies ThroughputResult;
  const merged = mergePasses([
    { ...base, n: 100, roundsMs: [10, 20, 30], rawRoundsMs: [11, 21, 31] },
    // Twice the messages per round in the second pass: its rounds count half.
    { ...base, n: 200, roundsMs: [80, 20, 40], rawRoundsMs: [82, 22, 42] },
  ].map((r) => ({ ...r, receiverPeak: r.n, senderPeak: [r.n * 2], wallMs: 5 })));
  assert.equal(merged.passes, 2);
  assert.equal(merged.n, 100);
  assert.deepEqual(merged.roundsMs, [10, 20, 30, 40, 10, 20]);
  assert.deepEqual(merged.rawRoundsMs, [11, 21, 31, 41, 11, 21]);
  assert.equal(merged.msgps, 100 / (20 / 1000)); // median round 20 ms
  assert.equal(merged.gbps, (100 * 1000) / (20 * 1e6));
  assert.equal(merged.gbpsMin, (100 * 1000) / (40 * 1e6));
  assert.equal(merged.gbpsMax, (100 * 1000) / (10 * 1e6));
  assert.equal(merged.receiverPeak, 200);
  assert.deepEqual(merged.senderPeak, [400]);
  assert.equal(merged.wallMs, 10);
  // A pass that failed stands for the whole case.
  const failed = mergePasses([
    { ...base, n: 1, roundsMs: [1] },
    { ...base, status: "error" as const, reason: "peer died" },
  ]);
  assert.equal(failed.status, "error");
  assert.equal(failed.reason, "peer died");
});

Deno.test({
  name: "bench: --passes interleaves the transports of a size, each pass in fresh processes",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "shmq-bench-passes-" });
    try {
      const main = new URL("../bench/main.ts", import.meta.url).pathname;
      const { code, stderr } = await new Deno.Command(Deno.execPath(), {
        args: [
          ...CHILD_FLAGS,
          main,
          "--sizes=100",
          "--kinds=bytes",
          "--transports=shmq-get-sync,pipe",
          "--passes=2",
          "--budget-ms=60",
          "--no-latency",
          "--no-fanin",
          "--no-small",
          "--no-codec",
          `--out=${out}`,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(stderr);
      assert.equal(code, 0, err.slice(-4000));
      // Each pass starts with a different transport.
      const order = [
        ...err.matchAll(/\((\d+)\/4\) pass (\d)\/2 (shmq get \(sync\)|stdio pipe)/g),
      ].map((m) => `${m[2]} ${m[3]}`);
      assert.deepEqual(order, [
        "1 shmq get (sync)",
        "1 stdio pipe",
        "2 stdio pipe",
        "2 shmq get (sync)",
      ]);
      // And the figure over both passes, as the report has it.
      assert.match(err, /shmq get \(sync\) · bytes · 100 B: [\d.]+ GB\/s, .* over the 2 passes/);
      const results: Results = JSON.parse(await Deno.readTextFile(`${out}/results.json`));
      assert.equal(results.throughput.length, 2);
      for (const r of results.throughput) {
        assert.equal(r.status, "ok", r.reason);
        assert.equal(r.passes, 2);
        assert.ok(r.roundsMs!.length >= 6, `3 rounds a pass: ${r.roundsMs}`);
      }
      assert.deepEqual(results.cleanup, { strayProcesses: [], leakedShm: [] });
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test("bench: a run of one kind leaves no chart of the other kind from an earlier run", async () => {
  const out = await Deno.makeTempDir({ prefix: "shmq-bench-kinds-" });
  try {
    await Deno.writeTextFile(`${out}/throughput-struct.svg`, "<svg>an earlier run's</svg>\n");
    const main = new URL("../bench/main.ts", import.meta.url).pathname;
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        ...CHILD_FLAGS,
        main,
        ...["--sizes=100", "--kinds=bytes", "--transports=memcpy", "--passes=1", "--budget-ms=20"],
        ...["--no-latency", "--no-fanin", "--no-small", "--no-codec", `--out=${out}`],
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    // Before: kept, beside this run's results, as if this run had drawn it.
    const charts = [...Deno.readDirSync(out)].map((e) => e.name).filter((n) => n.endsWith(".svg"));
    assert.deepEqual(charts, ["throughput-bytes.svg"]);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("bench: a bad option is refused before anything runs, with status 2 and no stack trace", async () => {
  const main = new URL("../bench/main.ts", import.meta.url).pathname;
  const file = await Deno.makeTempFile({ prefix: "shmq-bench-out-" });
  try {
    const cases: [string[], RegExp][] = [
      [["--budget-ms=abc"], /^bench: --budget-ms must be a number >= 1, got "abc"/],
      [["--budget-ms=1e-9"], /^bench: --budget-ms must be a number >= 1, got "1e-9"/],
      [["--repeats=0"], /^bench: --repeats must be a whole number >= 1, got "0"/],
      [["--repeats=0x10"], /^bench: --repeats must be a whole number >= 1, got "0x10"/],
      [["--sizes=1.5"], /^bench: .*bad size "1.5": not a whole number of bytes/],
      [["--transports=foo", "--transports=memcpy"], /^bench: --transports is given twice/],
      [
        ["--sizes=1MiB", "--transports=pipe-batched", "--no-latency", "--no-fanin", "--no-small"]
          .concat("--no-codec"),
        /^bench: no case to run: none of --transports=pipe-batched carries 1 MiB/,
      ],
      [["--window=1.5"], /^bench: --window must be a whole number >= 1, got "1.5"/],
      [["--window=2000000"], /^bench: --window must be at most 1048576/],
      [["--sizes"], /^bench: --sizes needs a value/],
      [["--quick=yes"], /^bench: --quick takes no value/],
      [["--kinds=bytez"], /^bench: --kinds: bad kind "bytez"/],
      [["--bogus"], /^bench: unknown option --bogus/],
      // A results folder that cannot be one: said at once, not after the run.
      [[`--out=${file}`, "--sizes=100"], /^bench: --out=.*: cannot write results there/],
    ];
    for (const [args, expected] of cases) {
      const started = performance.now();
      const out = await new Deno.Command(Deno.execPath(), {
        args: [...CHILD_FLAGS, main, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 2, `${args.join(" ")}: ${stderr}`);
      assert.match(stderr, expected);
      assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
      assert.ok(performance.now() - started < 10_000, "refused before any case ran");
    }
    const help = await new Deno.Command(Deno.execPath(), {
      args: [...CHILD_FLAGS, main, "-h"],
      stdout: "piped",
    }).output();
    assert.equal(help.code, 0);
    assert.match(new TextDecoder().decode(help.stdout), /--budget-ms=N/);
    assert.match(new TextDecoder().decode(help.stdout), /--window=N/);
  } finally {
    await Deno.remove(file);
  }
});

// Ctrl-C mid-size, as the next case starts; SIGTERM 0.4 s after the segment case's second pass
// is reported, its 1 MiB segments in flight (before, the peers it killed left some in /dev/shm).
const INTERRUPTED_RUNS = [
  ["SIGINT", 130, 100, 0, ["--sizes=100,1MiB,10MiB", "--transports=shmq-get-sync,pipe"]],
  ["SIGTERM", 143, 1024 ** 2, 400, ["--sizes=1MiB", "--transports=segment"]],
] as const;

for (const [signal, code, keptSize, afterMs, args] of INTERRUPTED_RUNS) {
  Deno.test({
    name: `bench: ${signal} to the run's process group writes what was measured, and leaves no ` +
      "process or /dev/shm entry",
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () => interruptedRun(signal, code, keptSize, afterMs, args),
  });
}

/** A run with `args` stopped by `signal` sent to its whole process group, as a terminal (Ctrl-C)
 * or job control sends it, `afterMs` after its first case's second pass is done. */
async function interruptedRun(
  signal: "SIGINT" | "SIGTERM",
  expectedCode: number,
  keptSize: number,
  afterMs: number,
  args: readonly string[],
): Promise<void> {
  const out = await Deno.makeTempDir({ prefix: "shmq-bench-interrupt-" });
  const shmBefore = new Set(shmList("/"));
  try {
    const main = new URL("../bench/main.ts", import.meta.url).pathname;
    // A process group of its own, as a terminal gives a command: Ctrl-C signals all of it.
    const child = new Deno.Command("setsid", {
      args: [
        Deno.execPath(),
        ...CHILD_FLAGS,
        main,
        ...args,
        "--kinds=bytes",
        ...["--no-latency", "--no-fanin", "--no-small", "--no-codec", `--out=${out}`],
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let err = "";
    // Once the first pass of the first case is done, and the next under way: mid-size.
    while (!/\(2\/\d+\)/.test(err)) {
      const { value, done } = await lines.read();
      if (done) break;
      err += value;
    }
    await new Promise((ok) => setTimeout(ok, afterMs));
    Deno.kill(-child.pid, signal);
    const timer = setTimeout(() => Deno.kill(-child.pid, "SIGKILL"), 30_000);
    for (;;) {
      const { value, done } = await lines.read();
      if (done) break;
      err += value;
    }
    const { code } = await child.status;
    clearTimeout(timer);
    assert.equal(code, expectedCode, err);
    assert.match(err, new RegExp(`${signal}: stopping; writing what was measured so far`));
    assert.doesNotMatch(err, /\n\s+at /, `no peer's stack trace:\n${err}`);
    const md = await Deno.readTextFile(`${out}/results.md`);
    assert.ok(md.includes(`**Interrupted** (${signal})`), md.slice(0, 2000));
    const results: Results = JSON.parse(await Deno.readTextFile(`${out}/results.json`));
    const kept = results.throughput.find((r) => r.status === "ok" && r.size === keptSize);
    assert.ok(kept, "the case with a pass done is kept");
    assert.ok(kept.passes === undefined || kept.passes < 3, "over the passes it had");
    // The peers exit on the EOF the orchestrator's exit gives them, closing their queues.
    // A queue some other process on this machine holds (another test run) is not the run's:
    // only unheld ones count, as in withoutLeaks; one a stray of the run holds shows as a
    // stray. Before, any queue made meanwhile elsewhere failed this test.
    let left: string[] = [];
    let strays = "";
    for (const until = performance.now() + 5_000; performance.now() < until;) {
      left = [
        ...shmList("/").filter((n) => !shmBefore.has(n) && !SHM_ENTRY_PATTERN.test(n)),
        ...leakedSince(shmBefore),
      ];
      const ps = await new Deno.Command("pgrep", {
        args: ["-s", String(child.pid)], // its session: every process of the run
        stdout: "piped",
      }).output();
      strays = new TextDecoder().decode(ps.stdout).trim();
      if (left.length === 0 && strays === "") break;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    assert.deepEqual(left, [], "nothing left in /dev/shm");
    assert.equal(strays, "", "no process of the run left");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

Deno.test({
  name: "bench/stream.ts: sender processes stream into one receiver, which reports its rate",
  // It spawns its senders and maps a queue on purpose; the test checks they are gone after.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const before = new Set(shmEntries());
    const stream = new URL("../bench/stream.ts", import.meta.url).pathname;
    const run = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: [...CHILD_FLAGS, stream, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const { code, stdout, stderr } = await run(["--seconds=0.5", "--senders=2", "--size=100"]);
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const line = new TextDecoder().decode(stdout);
    const rate =
      /^100 B, capacity 64, 2 sender\(s\), sync: median ([\d.]+)([kM]?) msg\/s, ([\d.]+) GB\/s/
        .exec(line);
    assert.ok(rate !== null && Number(rate[1]) > 0 && Number(rate[3]) > 0, line);
    assert.deepEqual(leakedSince(before), []);
    const senders = await new Deno.Command("pgrep", { args: ["-f", `${stream} --send`] }).output();
    assert.equal(new TextDecoder().decode(senders.stdout), "", "a sender process is left");
    for (
      const [args, message] of [
        [["--mode=fast"], /--mode must be one of sync, async/],
        [["--capcity=8"], /unknown option --capcity=8/],
        [["--senders=1.5"], /--senders must be a whole number > 0/],
      ] as const
    ) {
      const bad = await run([...args]);
      assert.notEqual(bad.code, 0);
      assert.match(new TextDecoder().decode(bad.stderr), message);
    }
  },
});
