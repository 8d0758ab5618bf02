/**
 * The bench's target verdicts (a library case that did not complete fails its target), and
 * what its report says about the machine.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkTargets } from "../bench/targets.ts";
import { renderMarkdown } from "../bench/report.ts";
import type { Results, ThroughputResult } from "../bench/results_types.ts";

const MiB = 1024 * 1024;

function result(transport: ThroughputResult["transport"], gbps: number | undefined) {
  return {
    transport,
    kind: "bytes",
    size: MiB,
    window: 64,
    status: gbps === undefined ? "error" : "ok",
    gbps,
  } as ThroughputResult;
}

function run(throughput: ThroughputResult[]): Results {
  return {
    version: 1,
    startedAt: "",
    finishedAt: "",
    command: "",
    options: {},
    machine: {},
    throughput,
    small: [],
    latency: [],
    fanIn: [],
    targets: [],
    cleanup: { strayProcesses: [], leakedShm: [] },
  };
}

const pipeTarget = (r: Results) =>
  checkTargets(r).find((t) => t.target.includes("10× the stdio pipe"))!;

Deno.test("bench targets: a library case that failed is a FAIL, not left out", () => {
  const pipe = result("pipe", 0.5);
  const passing = run([pipe, result("shmq-get-sync", 6), result("shmq-borrow", 15)]);
  assert.equal(pipeTarget(passing).verdict, "PASS");
  const failed = run([pipe, result("shmq-get-sync", undefined), result("shmq-borrow", 15)]);
  const verdict = pipeTarget(failed);
  assert.equal(verdict.verdict, "FAIL");
  assert.match(verdict.detail, /shmq-get-sync bytes 1 MiB: did not complete \(error\)/);
});

Deno.test("bench targets: a case this machine skipped is not checked, and says why; NaN is no pass", () => {
  const skipped = (transport: ThroughputResult["transport"]) =>
    ({
      ...result(transport, undefined),
      status: "skipped",
      reason: "needs ~4 GiB",
    }) as ThroughputResult;
  // The library's case skipped: n/a, not a FAIL "below 10×".
  const libSkipped = pipeTarget(run([result("pipe", 0.5), skipped("shmq-get-sync")]));
  assert.equal(libSkipped.verdict, "n/a");
  assert.match(
    libSkipped.detail,
    /not checked: shmq-get-sync bytes 1 MiB \(skipped: needs ~4 GiB\)/,
  );
  // The reference skipped: said so, not dropped in silence.
  const refSkipped = pipeTarget(
    run([skipped("pipe"), result("shmq-get-sync", 6), result("shmq-borrow", 15)]),
  );
  assert.equal(refSkipped.verdict, "n/a");
  assert.match(refSkipped.detail, /shmq-borrow bytes 1 MiB \(no reference result at that size\)/);
  // Rounds that measured nothing give NaN: never a PASS.
  const nan = pipeTarget(run([result("pipe", NaN), result("shmq-get-sync", NaN)]));
  assert.equal(nan.verdict, "FAIL");
  assert.match(nan.detail, /did not complete \(no rate measured\)/);
});

Deno.test("bench targets: a failed 64 B or round-trip case of the library is a FAIL too", () => {
  const failed = run([]);
  failed.small = [
    { ...result("shmq-get-sync", undefined), size: 64, reason: "timer exited early" },
  ];
  failed.latency = [
    { mode: "shmq-sync", size: 64, status: "error", reason: "echo exited early" },
    { mode: "pipe", size: 64, status: "ok", p50Us: 60, p99Us: 120 },
  ] as Results["latency"];
  const targets = checkTargets(failed);
  const rate = targets.find((t) => t.target.includes("sync API"))!;
  assert.equal(rate.verdict, "FAIL");
  assert.match(rate.detail, /did not complete \(timer exited early\)/);
  const rtt = targets.find((t) => t.target.includes("round trip (shmq-sync)"))!;
  assert.equal(rtt.verdict, "FAIL");
  // Not run at all: n/a.
  const notRun = checkTargets(run([])).find((t) => t.target.includes("sync API"))!;
  assert.equal(notRun.verdict, "n/a");
});

Deno.test("bench report: names the memory handed back to the host where the kernel counts it", () => {
  const counted = run([]);
  counted.machine = { reportedFreeKiBAtStart: 1024, reportedFreeKiBAtEnd: 1024 + 3 * 2 ** 20 };
  assert.match(renderMarkdown(counted), /handed 3\.0 GiB of freed memory back to its host/);
  const uncounted = run([]);
  uncounted.machine = { reportedFreeKiBAtStart: null, reportedFreeKiBAtEnd: null };
  assert.doesNotMatch(renderMarkdown(uncounted), /Free page reporting/);
});
