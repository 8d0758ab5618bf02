/**
 * The performance targets of issues 4 (the queue) and 3 (the codec), checked against one
 * run's results.
 *
 * @module
 */

import { formatSize, type Kind } from "./common.ts";
import type { LatencyResult, Results, TargetCheck, ThroughputResult } from "./results_types.ts";
import type { TransportId } from "./transports.ts";

const MiB = 1024 ** 2;

function ok(r: ThroughputResult | undefined): r is ThroughputResult & { gbps: number } {
  return r !== undefined && r.status === "ok" && typeof r.gbps === "number" &&
    Number.isFinite(r.gbps) && r.gbps > 0;
}

/** The result of a transport at a size and kind (memcpy is measured once per size), among
 * `rows` (by default the run's throughput cases). */
export function find(
  results: Results,
  id: TransportId,
  kind: Kind,
  size: number,
  rows: readonly ThroughputResult[] = results.throughput,
): ThroughputResult | undefined {
  return rows.find((r) =>
    r.transport === id && r.size === size && (id === "memcpy" || r.kind === kind)
  );
}

function fmt(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** A reference throughput for a kind and size: its GB/s and how to name it. */
type Reference = (kind: Kind, size: number) => { gbps: number; name: string } | undefined;

/** The result of transport `id` at the same size and kind as the reference. */
function sameSize(
  results: Results,
  id: TransportId,
  name: string,
  rows: readonly ThroughputResult[] = results.throughput,
): Reference {
  return (kind, size) => {
    const r = find(results, id, kind, size, rows);
    return ok(r) ? { gbps: r.gbps, name } : undefined;
  };
}

/**
 * Single-thread memcpy bandwidth out of the caches: the best of the memcpy results at 64 MiB
 * and more (11-13 GB/s on the README's 2-vCPU AMD VM, 8-10 on its Intel one), or undefined when
 * the run has none. The best, not
 * the median: noise on the machine only ever makes a copy slower, and a slow memcpy round
 * would lower the bar the library's copies are held to (a run with 7.83 and 10.35 GB/s at
 * 100 MiB and 1 GiB had passed its gets against their mean, 9.09).
 */
export function memcpyBandwidth(results: Results): number | undefined {
  const big = results.throughput.filter((r) => r.transport === "memcpy" && r.size >= 64 * MiB)
    .filter(ok).map((r) => r.gbps);
  return big.length === 0 ? undefined : Math.max(...big);
}

/** Checks `lib ≥ factor × reference` at each size that `sizeFilter` keeps, per kind. */
function ratioCheck(
  results: Results,
  issue: number,
  target: string,
  libs: TransportId[],
  reference: Reference,
  factor: number,
  sizeFilter: (size: number) => boolean,
  rows: readonly ThroughputResult[] = results.throughput,
): TargetCheck {
  const fails: string[] = [];
  // Cases this machine could not run (not enough memory), of the library or its reference:
  // neither a pass nor a fail, and said so.
  const unchecked: string[] = [];
  let worst: { ratio: number; where: string } | undefined;
  let checked = 0;
  const kinds = [...new Set(rows.map((r) => r.kind))];
  const sizes = [...new Set(rows.map((r) => r.size))].filter(sizeFilter).sort((a, b) => a - b);
  for (const lib of libs) {
    for (const kind of kinds) {
      for (const size of sizes) {
        const a = find(results, lib, kind, size, rows);
        if (a === undefined) continue; // not part of this run
        const where = `${lib} ${kind} ${formatSize(size)}`;
        if (a.status === "skipped") {
          unchecked.push(`${where} (skipped: ${a.reason ?? "no reason given"})`);
          continue;
        }
        if (!ok(a)) {
          // A case of the library that failed fails its target: dropping it would turn a
          // FAIL into a PASS.
          checked++;
          const why = a.status === "ok" ? "no rate measured" : a.reason ?? a.status;
          fails.push(`${where}: did not complete (${why})`);
          continue;
        }
        const b = reference(kind, size);
        if (!b) {
          unchecked.push(`${where} (no reference result at that size)`);
          continue;
        }
        checked++;
        const ratio = a.gbps / b.gbps;
        const measured = `${where}: ${fmt(a.gbps)} vs ${b.name} ${fmt(b.gbps)} GB/s = ${
          fmt(ratio)
        }×`;
        if (!worst || ratio < worst.ratio) worst = { ratio, where: measured };
        if (ratio < factor) fails.push(measured);
      }
    }
  }
  const notChecked = unchecked.length ? `; not checked: ${unchecked.join("; ")}` : "";
  if (checked === 0) {
    return {
      issue,
      target,
      verdict: "n/a",
      detail: unchecked.length ? `nothing checked${notChecked}` : "no sizes of this run apply",
    };
  }
  return {
    issue,
    target,
    verdict: fails.length ? "FAIL" : "PASS",
    detail:
      (fails.length
        ? `${fails.length} of ${checked} below ${factor}×: ${fails.join("; ")}`
        : `${checked} checked; lowest ${worst!.where}`) + notChecked,
  };
}

function rateCheck(
  results: Results,
  target: string,
  id: TransportId,
  minimum: number,
): TargetCheck {
  const r = results.small.find((r) => r.transport === id && r.size === 64);
  // The library's case failed: a FAIL, as in ratioCheck; skipped or not run: n/a.
  if (r?.status === "error") {
    return { issue: 4, target, verdict: "FAIL", detail: `did not complete (${r.reason})` };
  }
  if (!r || r.status !== "ok" || !(Number.isFinite(r.msgps) && r.msgps! > 0)) {
    return { issue: 4, target, verdict: "n/a", detail: r?.reason ?? "not measured in this run" };
  }
  return {
    issue: 4,
    target,
    verdict: r.msgps! >= minimum ? "PASS" : "FAIL",
    detail: `${Math.round(r.msgps!).toLocaleString("en-US")} msg/s (target ${
      minimum.toLocaleString("en-US")
    })`,
  };
}

function latencyCheck(results: Results, mode: LatencyResult["mode"]): TargetCheck {
  const target = `64 B round trip (${mode}) at most 1/5 of the stdio pipe's (p50)`;
  const lib = results.latency.find((r) => r.mode === mode);
  const pipe = results.latency.find((r) => r.mode === "pipe");
  if (lib?.status === "error") {
    return { issue: 4, target, verdict: "FAIL", detail: `did not complete (${lib.reason})` };
  }
  if (lib?.status !== "ok" || pipe?.status !== "ok") {
    return { issue: 4, target, verdict: "n/a", detail: "not measured in this run" };
  }
  const ratio = lib.p50Us! / pipe.p50Us!;
  return {
    issue: 4,
    target,
    verdict: ratio <= 0.2 ? "PASS" : "FAIL",
    detail: `p50 ${lib.p50Us!.toFixed(1)} µs vs pipe ${pipe.p50Us!.toFixed(1)} µs = ${
      ratio.toFixed(2)
    }× (p99 ${lib.p99Us!.toFixed(1)} vs ${pipe.p99Us!.toFixed(1)} µs)`,
  };
}

/** Issue 3's targets, from what `runCodecBench()` measured in this run. */
function codecChecks(results: Results): TargetCheck[] {
  const smallTarget =
    "small structured message (int, short string, 1 KiB Float32Array): encode+decode at least " +
    "as fast as node:v8 serialize+deserialize and as JSON";
  const largeTarget =
    "large arrays (64 MiB+): encode at least 0.9× TypedArray.set of the same size";
  const codec = results.codec as {
    status?: string;
    reason?: string;
    result?: {
      small?: { codecNs?: number; v8Ns?: number; jsonNs?: number; vsV8?: number; vsJson?: number };
      large?: { bytes?: number; encodeGBps?: number; setGBps?: number; ratio?: number };
    };
  } | undefined;
  const s = codec?.result?.small;
  const l = codec?.result?.large;
  const why = codec?.reason?.split("\n")[0] ?? "not measured in this run";
  const checks: TargetCheck[] = [];
  if (s && typeof s.vsV8 === "number" && typeof s.vsJson === "number") {
    checks.push({
      issue: 3,
      target: smallTarget,
      verdict: s.vsV8 >= 1 && s.vsJson >= 1 ? "PASS" : "FAIL",
      detail:
        `codec ${(s.codecNs! / 1000).toFixed(2)} µs, node:v8 ${(s.v8Ns! / 1000).toFixed(2)} µs, ` +
        `JSON ${(s.jsonNs! / 1000).toFixed(2)} µs per round trip: ${s.vsV8.toFixed(2)}× v8, ` +
        `${s.vsJson.toFixed(1)}× JSON`,
    });
  } else {
    checks.push({ issue: 3, target: smallTarget, verdict: "n/a", detail: why });
  }
  if (l && typeof l.ratio === "number") {
    checks.push({
      issue: 3,
      target: largeTarget,
      verdict: l.bytes! >= 64 * MiB && l.ratio >= 0.9 ? "PASS" : l.ratio >= 0.9 ? "n/a" : "FAIL",
      detail: `${formatSize(l.bytes!)}: encode ${l.encodeGBps!.toFixed(2)} GB/s vs set ` +
        `${l.setGBps!.toFixed(2)} GB/s = ${l.ratio.toFixed(2)}×`,
    });
  } else {
    checks.push({ issue: 3, target: largeTarget, verdict: "n/a", detail: why });
  }
  return checks;
}

/** Every target check of the run. */
export function checkTargets(results: Results): TargetCheck[] {
  const big = (size: number) => size >= MiB;
  const bandwidth = memcpyBandwidth(results);
  // "memcpy bandwidth": copies of 64 MiB and more, out of the caches. Without such sizes in the
  // run, these targets are not checked: memcpy of the same size runs in the caches below ~32
  // MiB, 3-4 times as fast, and a partial run held borrow to it failed where a full one passed
  // (the "stricter reading" targets below hold the library to that on purpose).
  const dram: Reference = bandwidth === undefined
    ? () => undefined
    : () => ({ gbps: bandwidth, name: "memcpy bandwidth" });
  const sameMemcpy = sameSize(results, "memcpy", "same-size memcpy");
  const pipe = sameSize(results, "pipe", "pipe");
  const bwNote = bandwidth === undefined
    ? "memcpy bandwidth (not measured: no memcpy of 64 MiB or more in this run)"
    : `memcpy bandwidth (${fmt(bandwidth)} GB/s: best memcpy at ≥ 64 MiB)`;
  // The 64 B one-way cases count as sizes too: the pipe carries them faster than any other.
  const everySize = [...results.throughput, ...results.small];
  return [
    ratioCheck(
      results,
      4,
      `≥ 1 MiB: get (copy out) at least 0.4× single-thread ${bwNote}`,
      ["shmq-get-sync", "shmq-get-async"],
      dram,
      0.4,
      big,
    ),
    ratioCheck(
      results,
      4,
      `(get into reused buffers) ≥ 1 MiB: \`getSync({ allocate })\` at least 0.4× ${bwNote}`,
      ["shmq-get-reuse"],
      dram,
      0.4,
      big,
    ),
    ratioCheck(
      results,
      4,
      `≥ 1 MiB: borrow at least 0.8× single-thread ${bwNote}`,
      ["shmq-borrow"],
      dram,
      0.8,
      big,
    ),
    ratioCheck(
      results,
      4,
      "(stricter reading) ≥ 1 MiB: get at least 0.4× memcpy of the same size " +
        "(in cache below ~32 MiB)",
      ["shmq-get-sync", "shmq-get-async"],
      sameMemcpy,
      0.4,
      big,
    ),
    ratioCheck(
      results,
      4,
      "(stricter reading) ≥ 1 MiB: borrow at least 0.8× memcpy of the same size",
      ["shmq-borrow"],
      sameMemcpy,
      0.8,
      big,
    ),
    ratioCheck(
      results,
      4,
      "≥ 1 MiB: at least 10× the stdio pipe's throughput (get sync/async, borrow)",
      ["shmq-get-sync", "shmq-get-async", "shmq-borrow"],
      pipe,
      10,
      big,
    ),
    rateCheck(results, "64 B messages: ≥ 500k msg/s with the sync API", "shmq-get-sync", 500_000),
    rateCheck(results, "64 B messages: ≥ 100k msg/s with the async API", "shmq-get-async", 100_000),
    latencyCheck(results, "shmq-sync"),
    latencyCheck(results, "shmq-async"),
    ratioCheck(
      results,
      4,
      "faster than the stdio pipe at every size from 10 B to 1 GB (get sync/async, borrow; " +
        "64 B from the small-message cases)",
      ["shmq-get-sync", "shmq-get-async", "shmq-borrow"],
      sameSize(results, "pipe", "pipe", everySize),
      1,
      (size) => size >= 10 && size <= 1024 ** 3,
      everySize,
    ),
    ratioCheck(
      results,
      4,
      "(pooled gets) faster than the stdio pipe from 10 B to 10 KiB: " +
        "`getSync`/`get` with `{ pooled: true }`",
      ["shmq-get-pooled-sync", "shmq-get-pooled-async"],
      pipe,
      1,
      (size) => size >= 10 && size <= 10 * 1024,
    ),
    ratioCheck(
      results,
      4,
      "(batched puts) faster than a stdio pipe that batches as much, from 10 B to 10 KiB: " +
        "`putManySync` of 16 → pooled `getSync`, against 16 frames per write (fewer when they " +
        "pass 64 KiB)",
      ["shmq-putmany-pooled-sync"],
      sameSize(results, "pipe-batched", "batched pipe"),
      1,
      (size) => size >= 10 && size <= 10 * 1024,
    ),
    ...codecChecks(results),
  ];
}
