/**
 * Warm-up and repeated rounds of a running case, and the statistics of the results.
 *
 * @module
 */

import type { CaseProcs, TimerMessage } from "./procs.ts";

/** How long to warm up and measure a case. */
export interface MeasureOptions {
  /** Warm-up time (ms of rounds) before measuring. */
  warmMs: number;
  /** Messages the warm-up must send at least (e.g. to create every pipelined resource). */
  minWarm: number;
  /** Total measured time, split into `repeats` rounds. */
  measureMs: number;
  /** Measured rounds; the result is their median. */
  repeats: number;
  /** Fewest messages per measured round (default 2, so a steady-state period is seen). */
  minRound?: number;
  /** Called after every round (progress). */
  onRound?: (phase: "warm-up" | "measure", index: number, of: number, ms: number) => void;
}

/** The measured rounds of a case. */
export interface Rounds {
  /** Messages per measured round (all senders together). */
  n: number;
  /**
   * Steady-state time of each measured round, ms: the time from the first message's arrival
   * to the last one's, scaled from n - 1 to n messages. The first message's own transit
   * (pipeline fill) is left out, so a transport that overlaps sending and receiving is not
   * charged for the start of each round. With one message, the whole round.
   */
  ms: number[];
  /** Raw time of each measured round, from its marker to its last message, ms. */
  rawMs: number[];
  /** Messages sent while warming up. */
  warmMessages: number;
}

const MAX_ROUND_MESSAGES = 20_000_000;

/**
 * The shortest warm-up of a case whose messages are at most {@linkcode WARMED_SIZE} (the
 * sizes run in passes, each in fresh processes). Small messages: their rate is set by
 * JavaScript, which V8 compiles in tiers, and a shmq stream of them runs at about half its
 * steady speed for its first 0.3-0.4 s. Measured on a 2-vCPU VM, two processes, 100 B
 * messages, rate per 25k messages: getSync 277k msg/s over the first 90 ms, 550-650k to 260
 * ms, 750-920k after 300 ms; async get 285k, then 470-700k, then 1.0-1.15M after 410 ms.
 * Large ones: a receiver's first copies grow its malloc heap until it holds the copies in
 * flight, and each page of that growth faults (on this VM, a fault of the host too). Measured
 * on the 2-vCPU AMD VM, two processes, getSync in a loop, per 100 ms: 1 MiB 2.6-5.7 GB/s
 * while the receiver took 35k page faults over the first 0.3 s, then 5.6-8.3 GB/s with next to
 * none; 10 MiB 4.9-8.2 with 46k faults, then 6.7-9.1. With the default quarter of the budget
 * (125 ms, a third of it per pass) the bench measured the ramp, not the stream. Every
 * transport gets the same warm-up (the pipe's reader makes a fresh buffer per large frame too).
 */
export const WARM_MS = 600;
/** Messages up to this size get at least {@linkcode WARM_MS} of warm-up. */
export const WARMED_SIZE = 10 * 1024 ** 2;

/** The warm-up of a case of `size`-byte messages, given the budget's share for it. */
export function warmMsFor(size: number, shareMs: number, quick: boolean): number {
  return quick || size > WARMED_SIZE ? shareMs : Math.max(shareMs, WARM_MS);
}

/** One round: `go n`, then the timer's answer. */
export async function round(procs: CaseProcs, n: number, expectMs: number): Promise<TimerMessage> {
  await procs.command(`go ${n}`);
  const r = await procs.expect("round", 60_000 + expectMs * 20);
  if (typeof r.n === "number" && r.n % n !== 0) {
    throw new Error(`round of ${n} messages reported ${r.n}`);
  }
  if (typeof r.bad === "number" && r.bad > 0) {
    throw new Error(`the receiver saw ${r.bad} malformed or out-of-order message(s)`);
  }
  return r;
}

/** Warms a case up, then runs its measured rounds. */
export async function measureRounds(procs: CaseProcs, opts: MeasureOptions): Promise<Rounds> {
  let n = 1;
  let elapsed = 0;
  let sent = 0;
  // Messages per ms: from the latest round that took 1 ms or more, or any faster round (a
  // slow first round is start-up, not the steady rate).
  let rate = 0;
  let index = 0;
  for (;;) {
    const r = await round(procs, n, rate > 0 ? n / rate : 1000);
    const ms = Math.max(r.ms as number, 1e-3);
    elapsed += ms;
    sent += n;
    if (ms >= 1 || n / ms > rate) rate = n / ms;
    opts.onRound?.("warm-up", ++index, 0, ms);
    if (elapsed >= 0.9 * opts.warmMs && sent >= opts.minWarm) break;
    const left = opts.warmMs - elapsed;
    // Ramp up at most 8× per round, aiming to spend what is left of the warm-up in one round.
    n = left > 0
      ? Math.max(1, Math.min(n * 8, Math.ceil(rate * left), MAX_ROUND_MESSAGES))
      : Math.max(1, opts.minWarm - sent);
  }
  let repeats = opts.repeats;
  const perRound = opts.measureMs / repeats;
  const oneMessageMs = 1 / rate;
  // Messages slower than two rounds' budget: three rounds of one message still give a median.
  if (oneMessageMs > 2 * perRound) repeats = Math.min(repeats, 3);
  n = Math.max(opts.minRound ?? 2, Math.min(MAX_ROUND_MESSAGES, Math.round(rate * perRound)));
  const times: number[] = [];
  const raw: number[] = [];
  let total = n;
  for (let i = 0; i < repeats; i++) {
    const r = await round(procs, n, n / rate);
    total = r.n as number;
    times.push(steadyMs(r));
    raw.push(r.ms as number);
    opts.onRound?.("measure", i + 1, repeats, r.ms as number);
  }
  return { n: total, ms: times, rawMs: raw, warmMessages: sent };
}

/** The steady-state time of a round (see `Rounds.ms`). */
export function steadyMs(r: TimerMessage): number {
  const ms = r.ms as number;
  const first = r.firstMs as number | undefined;
  const n = r.n as number;
  if (n >= 2 && typeof first === "number" && first >= 0 && ms > first) {
    return ((ms - first) * n) / (n - 1);
  }
  return ms;
}

/** Median of numbers (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The p-th percentile (0..100) by nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank];
}
