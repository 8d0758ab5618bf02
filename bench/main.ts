/**
 * `deno task bench`: this library against every alternative, in one run.
 *
 * One way between two Deno processes (unless said otherwise), for each message size and
 * payload kind: shmq `get` (async and sync), `borrow`, the zero-copy write path, a stdio
 * pipe, Worker `postMessage` (clone and transfer), the py-sharedmemory design (a segment per
 * message), and single-thread memcpy. Plus 64-byte message rates, round-trip latency, and
 * fan-in of 4 sender processes. Every case runs in fresh processes, warms up, and reports
 * the median of repeated rounds; a message counts when the receiver has it.
 *
 * Progress goes to stderr; the Markdown report to stdout and, with the JSON and SVG charts,
 * to the results folder.
 *
 * Options:
 *   --quick              few sizes, short rounds, no JIT warm-up: checks that the harness
 *                        runs (the CI smoke test); its figures are no measurements
 *   --sizes=10,1KiB,...  message sizes (default 10 B .. 1 GiB; 10GiB on request)
 *   --budget-ms=N        measured time per case (default 500; warm-up adds a quarter, and
 *                        at least 0.6 s for messages up to 10 MiB)
 *   --repeats=N          measured rounds per case (default 5); a case run in passes
 *                        measures ceil(N / passes) rounds a pass, and at least 3
 *   --passes=N           cases up to 10 MiB run in N passes interleaved with the other
 *                        transports of their size, each pass in fresh processes with its own
 *                        warm-up and an Nth of the budget (default 3; 1 with --quick)
 *   --window=N           messages in flight at most in every windowed transport: shmq's
 *                        capacity, the segment and postMessage cases' window (default 64;
 *                        fewer where that would pass ~1 GiB in flight)
 *   --kinds=bytes,struct payload kinds
 *   --transports=a,b     subset of: shmq-get-async shmq-get-sync shmq-get-reuse shmq-borrow
 *                        shmq-get-pooled-sync shmq-get-pooled-async
 *                        shmq-putmany-pooled-sync shmq-zerocopy pipe pipe-batched
 *                        postmessage-clone postmessage-transfer segment memcpy
 *   --no-latency --no-fanin --no-small --no-codec   skip sections (the 64 B, latency
 *                        and fan-in sections run shmq and the pipe whatever --transports
 *                        and --kinds say)
 *   --out=DIR            results folder (default bench/results for a run with no options,
 *                        else bench/results-partial, so a partial run never replaces the
 *                        published results); checked before the first case
 *   --help, -h           this text
 *
 * A bad option is refused before anything runs, with exit status 2.
 *
 * Every process of the run inherits the environment: `DENO_V8_FLAGS=...` applies to all of
 * them, the pipe's and Workers' cases included, so a flag is compared on equal terms.
 *
 * @module
 */

import {
  DEFAULT_WINDOW,
  fmtCount,
  fmtRate,
  formatSize,
  type Kind,
  memAvailableBytes,
  minRoundFor,
  parseFlags,
  parseSize,
  windowFor,
} from "./common.ts";
import { measureRounds, median, percentile, warmMsFor } from "./measure.ts";
import { CaseProcs, leftByThisRun, RUN_TOKEN, shmEntries, strayProcesses } from "./procs.ts";
import { launchShmq, transport, type TransportId, TRANSPORTS } from "./transports.ts";
import type { FanInResult, LatencyResult, Results, ThroughputResult } from "./results_types.ts";
import { checkTargets } from "./targets.ts";
import { MAX_CAPACITY } from "../queue/layout.ts";
import { renderMarkdown } from "./report.ts";
import { renderChart } from "./chart.ts";

const DEFAULT_SIZES = [
  10,
  100,
  1024,
  10 * 1024,
  100 * 1024,
  1024 ** 2,
  10 * 1024 ** 2,
  100 * 1024 ** 2,
  1024 ** 3,
];
const QUICK_SIZES = [100, 1024 ** 2];

/** Resolved options of a run. */
export interface Options {
  quick: boolean;
  sizes: number[];
  budgetMs: number;
  repeats: number;
  passes: number;
  /** Messages in flight at most (see windowFor). */
  window: number;
  kinds: Kind[];
  transports: TransportId[];
  latency: boolean;
  fanIn: boolean;
  small: boolean;
  codec: boolean;
  out: string;
  /** A full default run: its results replace the published ones (`bench/results/`). */
  publishes: boolean;
}

/** A bad command line: reported without a stack trace, with exit status 2. */
export class OptionError extends Error {
  override name = "OptionError";
}

/** Options that take a value, and those that take none. */
const VALUE_OPTIONS = [
  "sizes",
  "budget-ms",
  "repeats",
  "passes",
  "window",
  "kinds",
  "transports",
  "out",
];
const SWITCHES = ["quick", "no-latency", "no-fanin", "no-small", "no-codec", "help"];

export function parseOptions(args: string[]): Options {
  let flags: Map<string, string>;
  try {
    flags = parseFlags(
      args.filter((a) => !a.startsWith("--bench-run=")).map((a) => a === "-h" ? "--help" : a),
    );
  } catch (error) {
    throw new OptionError((error as Error).message);
  }
  for (const [name, value] of flags) {
    // parseFlags gives a bare --name the value "true".
    const bare = value === "true" && !args.includes(`--${name}=true`);
    if (VALUE_OPTIONS.includes(name) && (bare || value === "")) {
      throw new OptionError(`--${name} needs a value (--${name}=…)`);
    }
    if (SWITCHES.includes(name) && !bare) {
      throw new OptionError(`--${name} takes no value`);
    }
    if (!VALUE_OPTIONS.includes(name) && !SWITCHES.includes(name)) {
      throw new OptionError(`unknown option --${name}`);
    }
  }
  if (flags.has("help")) {
    const doc = Deno.readTextFileSync(new URL(import.meta.url));
    const usage = /\/\*\*([\s\S]*?)\*\//.exec(doc)![1].replace(/^ \* ?/gm, "");
    console.log(usage.replace(/@module\s*$/, "").trim());
    Deno.exit(0);
  }
  const quick = flags.has("quick");
  const listed = <T>(name: string, parse: (item: string) => T): T[] | undefined => {
    const text = flags.get(name);
    if (text === undefined) return undefined;
    try {
      return text.split(",").map(parse);
    } catch (error) {
      throw new OptionError(`--${name}: ${(error as Error).message}`);
    }
  };
  const sizes = listed("sizes", parseSize) ?? (quick ? QUICK_SIZES : DEFAULT_SIZES);
  const transports = listed("transports", (id) => transport(id as TransportId).id) ??
    TRANSPORTS.map((t) => t.id);
  const kinds = listed("kinds", (k) => {
    if (k !== "bytes" && k !== "struct") throw new RangeError(`bad kind "${k}" (bytes, struct)`);
    return k as Kind;
  }) ?? ["bytes", "struct"];
  return {
    quick,
    sizes: [...new Set(sizes)].sort((a, b) => a - b),
    budgetMs: positiveNumber(flags.get("budget-ms") ?? (quick ? "150" : "500"), "budget-ms"),
    repeats: positiveInteger(flags.get("repeats") ?? (quick ? "3" : "5"), "repeats"),
    passes: positiveInteger(flags.get("passes") ?? (quick ? "1" : "3"), "passes"),
    window: windowOption(flags.get("window")),
    kinds: [...new Set(kinds)],
    transports: [...new Set(transports)],
    latency: !flags.has("no-latency"),
    fanIn: !flags.has("no-fanin"),
    small: !flags.has("no-small"),
    codec: !flags.has("no-codec"),
    // Only a full default run replaces the published results; a partial one goes aside.
    out: flags.get("out") ?? (flags.size === 0 ? PUBLISHED_DIR : PARTIAL_DIR),
    publishes: flags.size === 0,
  };
}

const PUBLISHED_DIR = new URL("./results", import.meta.url).pathname;
const PARTIAL_DIR = new URL("./results-partial", import.meta.url).pathname;

/** Where a run stopped by a signal writes what it measured: a default run, which would have
 * replaced the published results, writes beside them, as a partial run does. */
export function interruptedOut(opts: Options): string {
  return opts.publishes ? PARTIAL_DIR : opts.out;
}

/** `--window`: at most a queue's largest capacity, so that no case fails part way. */
function windowOption(text: string | undefined): number {
  const window = positiveInteger(text ?? `${DEFAULT_WINDOW}`, "window");
  if (window > MAX_CAPACITY) {
    throw new OptionError(`--window must be at most ${MAX_CAPACITY} (a queue's largest capacity)`);
  }
  return window;
}

function positiveInteger(text: string, name: string): number {
  const n = Number(text);
  // Digits only: Number() reads "0x10" as 16 and "1e3" as 1000.
  if (!/^\s*\d+\s*$/.test(text) || n < 1) {
    throw new OptionError(`--${name} must be a whole number >= 1, got "${text}"`);
  }
  return n;
}

/** A number of milliseconds, at least 1: less measures rounds of a handful of messages. */
function positiveNumber(text: string, name: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n < 1) {
    throw new OptionError(`--${name} must be a number >= 1, got "${text}"`);
  }
  return n;
}

/**
 * Makes the results folder and checks it takes files, before the first case: a path that
 * cannot be one would otherwise be found only once the run is over, and the run lost.
 */
async function checkOut(out: string): Promise<void> {
  try {
    await Deno.mkdir(out, { recursive: true });
    const probe = await Deno.makeTempFile({ dir: out, prefix: ".bench-probe-" });
    await Deno.remove(probe);
  } catch (error) {
    throw new OptionError(`--out=${out}: cannot write results there: ${(error as Error).message}`);
  }
}

// ---- progress --------------------------------------------------------------------------

const started = performance.now();
const encoder = new TextEncoder();

function clock(): string {
  const s = Math.floor((performance.now() - started) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function progress(line: string): void {
  Deno.stderr.writeSync(encoder.encode(`[${clock()}] ${line}\n`));
}

// ---- cases -----------------------------------------------------------------------------

/** What one pass of a case measures: its warm-up, measured time and rounds. */
interface PassShare {
  warmMs: number;
  measureMs: number;
  repeats: number;
}

/** Cases of this size or less run in `opts.passes` interleaved passes; larger ones in one,
 * since a round of them takes long enough to ride out a noisy moment. */
const MAX_PASSED_SIZE = 10 * 1024 ** 2;

/** One pass's share of a case's budget. Each pass warms up in full (its processes are fresh)
 * and measures at least 3 rounds, so that every pass has a median of its own. */
function passShare(opts: Options, passes: number): PassShare {
  return {
    warmMs: opts.budgetMs / 4,
    measureMs: opts.budgetMs / passes,
    repeats: passes === 1 ? opts.repeats : Math.max(3, Math.ceil(opts.repeats / passes)),
  };
}

async function runThroughput(
  opts: Options,
  id: TransportId,
  kind: Kind,
  size: number,
  tag: string,
  share: PassShare = passShare(opts, 1),
): Promise<ThroughputResult> {
  const t = transport(id);
  const window = windowFor(size, opts.window);
  const base: ThroughputResult = { transport: id, kind, size, window, status: "ok" };
  const label = `${tag} ${t.label} · ${kind} · ${formatSize(size)}`;
  const needBytes = t.memoryFactor(kind, window) * size + 400 * 1024 ** 2;
  const available = memAvailableBytes();
  if (needBytes > 0.8 * available) {
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
    const reason = `needs ~${gib(needBytes)}, ${gib(available)} available`;
    progress(`${label}: skipped (${reason})`);
    return { ...base, status: "skipped", reason };
  }
  const procs = new CaseProcs();
  const t0 = performance.now();
  try {
    await t.launch(procs, { transport: id, kind, size, window });
    const rounds = await measureRounds(procs, {
      warmMs: warmMsFor(size, share.warmMs, opts.quick),
      minWarm: t.madeOnFirstUse ? window + 1 : 1,
      measureMs: share.measureMs,
      repeats: share.repeats,
      minRound: minRoundFor(size),
      onRound: (phase, i, of, ms) => {
        if (ms > 1500) {
          progress(
            `${label}: ${phase} round ${i}${of ? `/${of}` : ""} took ${(ms / 1000).toFixed(1)} s`,
          );
        }
      },
    });
    const final = await procs.finish(120_000);
    const gb = rounds.ms.map((ms) => (rounds.n * size) / (ms * 1e6));
    const result: ThroughputResult = {
      ...base,
      n: rounds.n,
      roundsMs: rounds.ms.map((ms) => Math.round(ms * 1000) / 1000),
      rawRoundsMs: rounds.rawMs.map((ms) => Math.round(ms * 1000) / 1000),
      gbps: median(gb),
      msgps: rounds.n / (median(rounds.ms) / 1000),
      gbpsMin: Math.min(...gb),
      gbpsMax: Math.max(...gb),
      receiverPeak: final.receiverHwm as number | null,
      senderPeak: final.senderHwm as (number | null)[],
      sameProcess: final.sameProcess === true,
      wallMs: Math.round(performance.now() - t0),
    };
    progress(
      `${label}: ${fmtRate(result.gbps)} GB/s, ${fmtCount(result.msgps)} msg/s ` +
        `(${rounds.ms.length}×${rounds.n} msgs, ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    return result;
  } catch (error) {
    const reason = String((error as Error)?.message ?? error);
    progress(`${label}: ERROR ${reason}`);
    return { ...base, status: "error", reason, wallMs: Math.round(performance.now() - t0) };
  } finally {
    await procs.close(5_000);
  }
}

/**
 * Runs the cases of one size and kind (the transports compared with each other) in passes:
 * every transport once per pass, each pass in a rotated order, so a moment of noise on the
 * machine (on a 2-vCPU VM, runs minutes apart differed 2×) falls on several transports
 * rather than on whichever ran then. Adds one merged result per case to `into`, in `block`
 * order.
 */
async function runBlock(
  opts: Options,
  block: readonly { id: TransportId; kind: Kind; size: number }[],
  passes: number,
  tag: () => string,
  into: ThroughputResult[],
): Promise<void> {
  const share = passShare(opts, passes);
  const parts = block.map((): ThroughputResult[] => []);
  unfinished = { parts, into };
  for (let pass = 0; pass < passes; pass++) {
    for (let j = 0; j < block.length; j++) {
      const i = (j + pass) % block.length;
      const c = block[i];
      const done = parts[i];
      if (done.length > 0 && done[done.length - 1].status !== "ok") {
        tag(); // a case that failed or was skipped is not run again
        continue;
      }
      const label = passes > 1 ? `${tag()} pass ${pass + 1}/${passes}` : tag();
      done.push(await runThroughput(opts, c.id, c.kind, c.size, label, share));
    }
  }
  unfinished = undefined;
  const merged = parts.map(mergePasses);
  if (passes > 1) {
    for (const r of merged.filter((r) => r.status === "ok")) {
      progress(
        `   ${transport(r.transport).label} · ${r.kind} · ${formatSize(r.size)}: ` +
          `${fmtRate(r.gbps)} GB/s, ${fmtCount(r.msgps)} msg/s over the ${passes} passes`,
      );
    }
  }
  into.push(...merged);
}

/** The passes of the cases of the size under way, by case, and the results they go into: an
 * interrupt keeps those done. */
let unfinished: { parts: ThroughputResult[][]; into: ThroughputResult[] } | undefined;

/**
 * One result from the passes of a case: every pass's rounds, scaled to the first pass's
 * message count (each pass sizes its rounds from its own warm-up), with the median, slowest
 * and fastest over all of them. A pass that failed or was skipped stands for the case.
 */
export function mergePasses(parts: readonly ThroughputResult[]): ThroughputResult {
  const notOk = parts.find((r) => r.status !== "ok");
  if (notOk !== undefined || parts.length === 1) return { ...(notOk ?? parts[0]) };
  const first = parts[0];
  const n = first.n!;
  const scaled = (r: ThroughputResult, ms: number[] | undefined) =>
    (ms ?? []).map((v) => Math.round((v * n) / r.n! * 1000) / 1000);
  const roundsMs = parts.flatMap((r) => scaled(r, r.roundsMs));
  const gb = roundsMs.map((ms) => (n * first.size) / (ms * 1e6));
  const peak = (values: (number | null | undefined)[]) => {
    const known = values.filter((v): v is number => typeof v === "number");
    return known.length ? Math.max(...known) : null;
  };
  return {
    ...first,
    n,
    roundsMs,
    rawRoundsMs: parts.flatMap((r) => scaled(r, r.rawRoundsMs)),
    gbps: median(gb),
    msgps: n / (median(roundsMs) / 1000),
    gbpsMin: Math.min(...gb),
    gbpsMax: Math.max(...gb),
    receiverPeak: peak(parts.map((r) => r.receiverPeak)),
    senderPeak: (first.senderPeak ?? []).map((_, i) => peak(parts.map((r) => r.senderPeak?.[i]))),
    wallMs: parts.reduce((sum, r) => sum + (r.wallMs ?? 0), 0),
    passes: parts.length,
  };
}

const LATENCY_LABELS: Record<LatencyResult["mode"], string> = {
  "shmq-sync": "shmq putSync/getSync",
  "shmq-async": "shmq put/get (async)",
  "pipe": "stdio pipe",
  "postmessage": "postMessage (Worker)",
};

async function runLatency(
  opts: Options,
  mode: LatencyResult["mode"],
  size: number,
  tag: string,
): Promise<LatencyResult> {
  const label = `${tag} round trip ${LATENCY_LABELS[mode]} · ${size} B`;
  const base: LatencyResult = { mode, label: LATENCY_LABELS[mode], size, status: "ok" };
  const procs = new CaseProcs();
  try {
    procs.spawnDeno("peers/latency_host.ts", [`--mode=${mode}`, `--size=${size}`], {
      driver: true,
      timer: true,
    });
    await procs.expect("ready", 60_000);
    await procs.command(`go ${opts.quick ? 200 : 2000}`); // warm-up
    const warm = await procs.expect("round", 60_000);
    const rate = (warm.n as number) / (warm.ms as number);
    const perRound = Math.max(
      50,
      Math.min(50_000, Math.round(rate * opts.budgetMs / opts.repeats)),
    );
    const samples: number[] = [];
    for (let i = 0; i < opts.repeats; i++) {
      await procs.command(`go ${perRound}`);
      const r = await procs.expect("round", 120_000);
      samples.push(...(r.samples as number[]));
    }
    await procs.finish(30_000);
    const result: LatencyResult = {
      ...base,
      trips: samples.length,
      p50Us: percentile(samples, 50),
      p99Us: percentile(samples, 99),
      meanUs: samples.reduce((a, b) => a + b, 0) / samples.length,
      minUs: Math.min(...samples),
    };
    progress(
      `${label}: p50 ${result.p50Us!.toFixed(1)} µs, p99 ${
        result.p99Us!.toFixed(1)
      } µs (${samples.length} trips)`,
    );
    return result;
  } catch (error) {
    const reason = String((error as Error)?.message ?? error);
    progress(`${label}: ERROR ${reason}`);
    return { ...base, status: "error", reason };
  } finally {
    await procs.close(5_000);
  }
}

async function runFanIn(
  opts: Options,
  which: FanInResult["transport"],
  size: number,
  senders: number,
  tag: string,
): Promise<FanInResult> {
  const name = which === "pipe" ? "stdio pipes" : "shmq getSync";
  const label = `${tag} fan-in ${senders}→1 ${name} · ${formatSize(size)}`;
  const base: FanInResult = { transport: which, label: name, size, senders, status: "ok" };
  const procs = new CaseProcs();
  try {
    if (which === "pipe") {
      procs.spawnDeno("peers/pipe_fanin.ts", [`--size=${size}`, `--senders=${senders}`], {
        driver: true,
        timer: true,
      });
      await procs.expect("ready", 60_000);
    } else {
      await launchShmq(
        procs,
        { kind: "bytes", size, window: windowFor(size, opts.window) },
        "get-sync",
        "sync",
        senders,
      );
    }
    const rounds = await measureRounds(procs, {
      warmMs: warmMsFor(size, opts.budgetMs / 4, opts.quick),
      minWarm: windowFor(size, opts.window) + 1,
      measureMs: opts.budgetMs,
      repeats: opts.repeats,
    });
    const final = await procs.finish(60_000);
    const total = rounds.n;
    const gb = rounds.ms.map((ms) => (total * size) / (ms * 1e6));
    const result: FanInResult = {
      ...base,
      n: total,
      roundsMs: rounds.ms,
      gbps: median(gb),
      msgps: total / (median(rounds.ms) / 1000),
      receiverPeak: final.receiverHwm as number | null,
      senderPeak: final.senderHwm as (number | null)[],
    };
    progress(
      `${label}: ${fmtRate(result.gbps)} GB/s, ${fmtCount(result.msgps)} msg/s (order checked)`,
    );
    return result;
  } catch (error) {
    const reason = String((error as Error)?.message ?? error);
    progress(`${label}: ERROR ${reason}`);
    return { ...base, status: "error", reason };
  } finally {
    await procs.close(5_000);
  }
}

async function runCodec(opts: Options): Promise<unknown> {
  const path = new URL("./codec_bench.ts", import.meta.url);
  try {
    Deno.statSync(path);
  } catch {
    progress("codec: bench/codec_bench.ts not present, skipped");
    return { status: "skipped", reason: "bench/codec_bench.ts not present" };
  }
  try {
    const mod = await import(path.href);
    if (typeof mod.runCodecBench !== "function") {
      progress("codec: bench/codec_bench.ts has no runCodecBench(), skipped");
      return { status: "skipped", reason: "no runCodecBench() export" };
    }
    progress("codec: runCodecBench() (small message vs node:v8 and JSON; 64 MiB encode vs set)");
    const result = await mod.runCodecBench(
      opts.quick ? { largeBytes: 64 * 1024 ** 2, repeats: 3, smallRepeatMs: 5 } : {},
    );
    const markdown = typeof mod.formatCodecBench === "function"
      ? String(mod.formatCodecBench(result))
      : undefined;
    const s = result?.small, l = result?.large;
    if (s && l) {
      progress(
        `codec: small message ${s.vsV8?.toFixed(2)}× node:v8, ${s.vsJson?.toFixed(1)}× JSON; ` +
          `64 MiB encode ${l.ratio?.toFixed(2)}× set`,
      );
    }
    return { status: "ok", result, markdown };
  } catch (error) {
    const reason = String((error as Error)?.stack ?? error);
    progress(`codec: ERROR ${reason}`);
    return { status: "error", reason };
  }
}

// ---- machine ---------------------------------------------------------------------------

/**
 * KiB this VM's guest has reported to its host as free so far, or null where the kernel does
 * not count them. Memory reported back is faulted in by the host again on its next first
 * touch, which is what makes the 1 GiB `get` cells swing (README, "How runs vary"); the run
 * records how much was reported while it ran.
 */
function reportedFreeKiB(): number | null {
  try {
    // Deno 2.9 wants --allow-all to read /sys; the bench may run programs.
    const out = new Deno.Command("cat", {
      args: ["/sys/module/page_reporting/parameters/reported_kib"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const kib = Number(new TextDecoder().decode(out.stdout).trim());
    return out.success && Number.isSafeInteger(kib) ? kib : null;
  } catch {
    return null;
  }
}

function machine(): Record<string, unknown> {
  let cpu = "unknown";
  try {
    cpu = /^model name\s*:\s*(.*)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? cpu;
  } catch { /* /proc needs --allow-all in Deno 2.9: fall back to lscpu below */ }
  if (cpu === "unknown") {
    try {
      const out = new Deno.Command("lscpu", { stdout: "piped", stderr: "null" }).outputSync();
      cpu = /^Model name:\s*(.*)$/m.exec(new TextDecoder().decode(out.stdout))?.[1] ?? cpu;
    } catch { /* no lscpu */ }
  }
  const mem = Deno.systemMemoryInfo();
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memoryGiB: Math.round(mem.total / 2 ** 30 * 10) / 10,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    arch: Deno.build.arch,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    loadAverageAtStart: Deno.loadavg(),
    reportedFreeKiBAtStart: reportedFreeKiB(),
  };
}

// ---- main ------------------------------------------------------------------------------

/** Runs the benchmark with command-line `args`; returns the results. */
export async function run(args: string[]): Promise<Results> {
  const opts = parseOptions(args);
  await checkOut(opts.out);
  const startedAt = new Date().toISOString();
  const shmBefore = shmEntries();
  const results: Results = {
    version: 1,
    startedAt,
    finishedAt: "",
    command: `deno task bench${args.length ? " " + args.join(" ") : ""}`,
    options: { ...opts, out: undefined, token: RUN_TOKEN },
    machine: machine(),
    throughput: [],
    small: [],
    latency: [],
    fanIn: [],
    targets: [],
    cleanup: { strayProcesses: [], leakedShm: [] },
  };
  stopOnSignals({ opts, results });

  type Case = { id: TransportId; kind: Kind; size: number };
  const blocks: { cases: Case[]; passes: number }[] = [];
  for (const size of opts.sizes) {
    for (const kind of opts.kinds) {
      const cases: Case[] = [];
      for (const id of opts.transports) {
        if (id === "memcpy" && kind !== opts.kinds[0]) continue; // the same bytes for both kinds
        if (size > (transport(id).maxSize ?? Infinity)) continue;
        cases.push({ id, kind, size });
      }
      if (cases.length) blocks.push({ cases, passes: size <= MAX_PASSED_SIZE ? opts.passes : 1 });
    }
  }
  const smallCases: TransportId[] = opts.small
    ? (["shmq-get-sync", "shmq-get-async", "pipe"] as TransportId[])
    : [];
  const latencyModes: LatencyResult["mode"][] = opts.latency
    ? ["shmq-sync", "shmq-async", "pipe", "postmessage"]
    : [];
  const fanInCases: [FanInResult["transport"], number][] = opts.fanIn
    ? (opts.quick ? [["shmq-get-sync", 64], ["pipe", 64]] : [
      ["shmq-get-sync", 64],
      ["pipe", 64],
      ["shmq-get-sync", 1024 ** 2],
      ["pipe", 1024 ** 2],
    ])
    : [];
  const runs = blocks.reduce((sum, b) => sum + b.cases.length * b.passes, 0) +
    smallCases.length * opts.passes;
  const total = runs + latencyModes.length + fanInCases.length;
  if (total === 0 && !opts.codec) {
    throw new OptionError(
      `no case to run: none of --transports=${opts.transports.join(",")} carries ` +
        `${opts.sizes.map(formatSize).join(", ")} (each transport's largest size: --help)`,
    );
  }
  let index = 0;
  const tag = () => `(${++index}/${total})`;
  progress(
    `shmq bench: ${total} cases, sizes ${opts.sizes.map(formatSize).join(", ")}; ` +
      `${opts.budgetMs} ms × ${opts.repeats} rounds per case` +
      (opts.passes > 1 ? ` in ${opts.passes} interleaved passes up to 10 MiB` : "") +
      `; results → ${opts.out}`,
  );

  for (const block of blocks) {
    await runBlock(opts, block.cases, block.passes, tag, results.throughput);
  }
  const small = smallCases.map((id) => ({ id, kind: "bytes" as Kind, size: 64 }));
  await runBlock(opts, small, opts.passes, tag, results.small);
  for (const mode of latencyModes) results.latency.push(await runLatency(opts, mode, 64, tag()));
  for (const [which, size] of fanInCases) {
    results.fanIn.push(await runFanIn(opts, which, size, 4, tag()));
  }
  if (opts.codec) results.codec = await runCodec(opts);

  // Cleanup checks: nothing of ours may be left running or in /dev/shm.
  const strays = await strayProcesses();
  for (const p of strays) {
    try {
      Deno.kill(p.pid, "SIGKILL");
    } catch { /* gone */ }
  }
  results.cleanup.strayProcesses = strays.map((p) => `${p.pid} ${p.args}`);
  results.cleanup.leakedShm = leftByThisRun(shmBefore, shmEntries());

  stopOnSignals(undefined);
  await writeResults(opts, results);
  progress(`done in ${clock()}; wrote ${opts.out}/results.{json,md} and throughput-*.svg`);
  return results;
}

/** Checks the targets and writes the report, the JSON and the charts; prints the report. */
async function writeResults(opts: Options, results: Results): Promise<void> {
  (results.machine as Record<string, unknown>).loadAverageAtEnd = Deno.loadavg();
  (results.machine as Record<string, unknown>).reportedFreeKiBAtEnd = reportedFreeKiB();
  results.targets = checkTargets(results);
  results.finishedAt = new Date().toISOString();
  await Deno.mkdir(opts.out, { recursive: true });
  const md = renderMarkdown(results);
  await Deno.writeTextFile(`${opts.out}/results.json`, JSON.stringify(results, null, 1) + "\n");
  await Deno.writeTextFile(`${opts.out}/results.md`, md);
  for (const kind of ["bytes", "struct"] as const) {
    const chart = `${opts.out}/throughput-${kind}.svg`;
    if (opts.kinds.includes(kind)) await Deno.writeTextFile(chart, renderChart(results, kind));
    // An earlier run's chart of a kind this run did not measure would pass for this run's.
    else await Deno.remove(chart).catch(() => {});
  }
  console.log(md);
}

const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;
let stopListeners: (() => void)[] = [];
/** The signal that stopped the run, once one did. */
let stoppedBy: Deno.Signal | undefined;

/**
 * On Ctrl-C or SIGTERM, writes what was measured so far and exits; the peers outlive the
 * signal and exit on the EOF this process's exit gives their stdin, closing their queues
 * (see outliveInterrupt). What is written is a copy taken when the signal came: the cases
 * still running then may fail for the interrupt, and end while the files are written. A
 * second signal exits at once. `undefined` removes the listeners.
 */
function stopOnSignals(stop: { opts: Options; results: Results } | undefined): void {
  stopListeners.forEach((remove) => remove());
  stopListeners = [];
  if (stop === undefined) return;
  for (const signal of STOP_SIGNALS) {
    const listener = async () => {
      if (stoppedBy !== undefined) Deno.exit(signal === "SIGINT" ? 130 : 143);
      stoppedBy = signal;
      const opts = { ...stop.opts, out: interruptedOut(stop.opts) };
      progress(`${signal}: stopping; writing what was measured so far to ${opts.out}`);
      const snapshot = structuredClone(stop.results);
      snapshot.interrupted = signal;
      // The size under way: the cases with a pass done, over the passes they had, in the
      // section they belong to.
      if (unfinished !== undefined) {
        const section = unfinished.into === stop.results.small
          ? snapshot.small
          : snapshot.throughput;
        for (const parts of unfinished.parts) {
          if (parts.length > 0) section.push(mergePasses(structuredClone(parts)));
        }
      }
      try {
        await writeResults(opts, snapshot);
      } finally {
        Deno.exit(signal === "SIGINT" ? 130 : 143);
      }
    };
    Deno.addSignalListener(signal, listener);
    stopListeners.push(() => Deno.removeSignalListener(signal, listener));
  }
}

if (import.meta.main) {
  const results = await run(Deno.args).catch((error) => {
    if (!(error instanceof OptionError)) throw error;
    console.error(`bench: ${error.message} (--help lists the options)`);
    Deno.exit(2);
  });
  const failed = [...results.throughput, ...results.small, ...results.latency, ...results.fanIn]
    .filter((r) => r.status === "error").length;
  const dirty = results.cleanup.strayProcesses.length + results.cleanup.leakedShm.length;
  if (failed > 0 || dirty > 0) {
    progress(`${failed} case(s) failed, ${dirty} cleanup problem(s)`);
    Deno.exit(1);
  }
}
