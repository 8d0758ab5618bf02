/**
 * The Markdown report of a run.
 *
 * @module
 */

import { DEFAULT_WINDOW, fmtRate, formatSize, type Kind } from "./common.ts";
import type { FanInResult, Results, ThroughputResult } from "./results_types.ts";
import { WARM_MS, WARMED_SIZE } from "./measure.ts";
import { find, memcpyBandwidth } from "./targets.ts";
import { type TransportId, TRANSPORTS } from "./transports.ts";

/** Messages per second, short: finer than fmtCount (1.37M, 812.5k), for the report's tables. */
function count(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "—";
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)}k`;
  if (n >= 10) return n.toFixed(0);
  return n.toFixed(2);
}

function ratio(
  a: ThroughputResult | undefined,
  b: ThroughputResult | number | undefined,
): string {
  const den = typeof b === "number" ? b : b?.status === "ok" ? b.gbps : undefined;
  if (a?.status !== "ok" || !a.gbps || !den) return "—";
  const r = a.gbps / den;
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}

function mib(bytes: number | null | undefined): string {
  return typeof bytes === "number" ? `${Math.round(bytes / 2 ** 20)} MiB` : "—";
}

function cell(r: ThroughputResult | undefined, key: "gbps" | "msgps"): string {
  if (!r) return "";
  if (r.status === "skipped") return "skip";
  if (r.status === "error") return "error";
  return key === "gbps" ? fmtRate(r.gbps) : count(r.msgps);
}

function table(header: string[], rows: string[][]): string {
  const lines = [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ];
  return lines.join("\n") + "\n";
}

const KIND_TITLE: Record<Kind, string> = {
  bytes: "Uint8Array messages",
  struct: "structured messages `{ idx, source, data: Float32Array }`",
};

function kindSections(results: Results, kind: Kind): string {
  const sizes = [...new Set(results.throughput.map((r) => r.size))].sort((a, b) => a - b);
  const present = TRANSPORTS.filter((t) =>
    results.throughput.some((r) => r.transport === t.id && (r.kind === kind || t.id === "memcpy"))
  );
  if (!results.throughput.some((r) => r.kind === kind)) return "";
  const get = (id: TransportId, size: number) => find(results, id, kind, size);
  let md = `## Throughput: ${KIND_TITLE[kind]}\n\n`;
  md += "GB/s (10⁹ bytes of payload per second), median of the measured rounds:\n\n";
  md += table(
    ["size", ...present.map((t) => t.label)],
    sizes.map((s) => [formatSize(s), ...present.map((t) => cell(get(t.id, s), "gbps"))]),
  );
  md += "\nMessages per second:\n\n";
  md += table(
    ["size", ...present.map((t) => t.label)],
    sizes.map((s) => [formatSize(s), ...present.map((t) => cell(get(t.id, s), "msgps"))]),
  );
  md += "\nRatios (throughput of shmq ÷ the alternative, same size and payload):\n\n";
  md += table(
    [
      "size",
      "get sync ÷ pipe",
      "get async ÷ pipe",
      "borrow ÷ pipe",
      "get sync ÷ segment/msg",
      "borrow ÷ segment/msg",
      "get sync ÷ memcpy",
      "get async ÷ memcpy",
      "borrow ÷ memcpy",
      "prepare→borrow ÷ memcpy",
    ],
    sizes.map((s) => [
      formatSize(s),
      ratio(get("shmq-get-sync", s), get("pipe", s)),
      ratio(get("shmq-get-async", s), get("pipe", s)),
      ratio(get("shmq-borrow", s), get("pipe", s)),
      ratio(get("shmq-get-sync", s), get("segment", s)),
      ratio(get("shmq-borrow", s), get("segment", s)),
      ratio(get("shmq-get-sync", s), get("memcpy", s)),
      ratio(get("shmq-get-async", s), get("memcpy", s)),
      ratio(get("shmq-borrow", s), get("memcpy", s)),
      ratio(get("shmq-zerocopy", s), get("memcpy", s)),
    ]),
  );
  const skipped = results.throughput.filter((r) => r.kind === kind && r.status !== "ok");
  if (skipped.length) {
    md += "\nNot measured:\n\n";
    for (const r of skipped) {
      md += `- ${r.transport} ${formatSize(r.size)}: ${r.status} — ${r.reason}\n`;
    }
  }
  return md + "\n";
}

function summary(results: Results): string {
  const sizes = [...new Set(results.throughput.map((r) => r.size))].sort((a, b) => a - b);
  const kind: Kind = results.throughput.some((r) => r.kind === "bytes") ? "bytes" : "struct";
  const get = (id: TransportId, size: number) => find(results, id, kind, size);
  const bw = memcpyBandwidth(results);
  let md = `## Summary (${KIND_TITLE[kind]}, GB/s)\n\n`;
  md += table(
    [
      "size",
      "shmq get (sync)",
      "shmq get (async)",
      "get, reused buffers",
      "get pooled (sync)",
      "shmq borrow",
      "stdio pipe",
      "segment/msg",
      "memcpy",
      "get sync ÷ pipe",
      "borrow ÷ pipe",
      "get sync ÷ memcpy bw",
      "get reused ÷ memcpy bw",
      "borrow ÷ memcpy bw",
    ],
    sizes.map((s) => [
      formatSize(s),
      cell(get("shmq-get-sync", s), "gbps"),
      cell(get("shmq-get-async", s), "gbps"),
      cell(get("shmq-get-reuse", s), "gbps"),
      cell(get("shmq-get-pooled-sync", s), "gbps"),
      cell(get("shmq-borrow", s), "gbps"),
      cell(get("pipe", s), "gbps"),
      cell(get("segment", s), "gbps"),
      cell(get("memcpy", s), "gbps"),
      ratio(get("shmq-get-sync", s), get("pipe", s)),
      ratio(get("shmq-borrow", s), get("pipe", s)),
      ratio(get("shmq-get-sync", s), bw),
      ratio(get("shmq-get-reuse", s), bw),
      ratio(get("shmq-borrow", s), bw),
    ]),
  );
  md += bw === undefined
    ? "\n(No memcpy of 64 MiB or more in this run: no memcpy bandwidth figure.)\n"
    : `\nmemcpy bw = single-thread memcpy bandwidth out of the caches, ${fmtRate(bw)} GB/s (best ` +
      "of the memcpy results at 64 MiB and more); smaller memcpy sizes run in the CPU caches.\n";
  return md + "\n";
}

function fanInTable(rows: FanInResult[]): string {
  return table(
    ["transport", "size", "senders", "GB/s", "msg/s", "receiver peak", "per-sender order"],
    rows.map((r) => [
      r.label,
      formatSize(r.size),
      String(r.senders),
      r.status === "ok" ? fmtRate(r.gbps) : r.status,
      r.status === "ok" ? count(r.msgps) : "",
      mib(r.receiverPeak),
      r.status === "ok" ? "checked, no loss" : r.reason ?? "",
    ]),
  );
}

function codecSection(codec: unknown): string {
  if (codec === undefined) return "";
  const md = "## Codec (bench/codec_bench.ts, `runCodecBench()`)\n\n";
  const c = codec as { markdown?: unknown; status?: unknown; reason?: unknown; result?: unknown };
  if (c.status !== "ok") return md + `Not run: ${String(c.reason).split("\n")[0]}\n\n`;
  if (typeof c.markdown === "string") return md + c.markdown.trim() + "\n\n";
  return md + "```json\n" + JSON.stringify(c.result, null, 1) + "\n```\n\n";
}

/** The run's `--window` (older results have none: the default then). */
function windowOf(results: Results): number {
  const window = results.options.window;
  return typeof window === "number" ? window : DEFAULT_WINDOW;
}

/** The whole report. */
export function renderMarkdown(results: Results): string {
  const m = results.machine as Record<string, unknown>;
  const o = results.options as Record<string, unknown>;
  let md = `# shmq benchmark\n\n`;
  md += `Run ${results.startedAt} on ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os} ` +
    `(${m.arch}), Deno ${m.deno} (V8 ${m.v8}).\n\n`;
  if (results.interrupted !== undefined) {
    md += `**Interrupted** (${results.interrupted}): only the cases with a pass finished ` +
      `before it are here (over the passes they had), and the cleanup was not checked.\n\n`;
  }
  const load = (x: unknown) =>
    Array.isArray(x) ? x.map((v) => Number(v).toFixed(2)).join(" / ") : "?";
  md += `Load average (1 / 5 / 15 min) at start ${load(m.loadAverageAtStart)}, at end ` +
    `${load(m.loadAverageAtEnd)}; anything else running on the machine shows up as noise.\n\n`;
  const [reportedFrom, reportedTo] = [m.reportedFreeKiBAtStart, m.reportedFreeKiBAtEnd];
  if (typeof reportedFrom === "number" && typeof reportedTo === "number") {
    md +=
      `Free page reporting is on: the guest handed ${
        ((reportedTo - reportedFrom) / 2 ** 20).toFixed(1)
      } GiB of freed memory back to its host during the run, and memory handed back costs a host ` +
      `fault per page on its next first touch (the swings of the 1 GiB \`get\` cells).\n\n`;
  }
  const passes = Number(o.passes ?? 1);
  const passed = results.throughput.some((r) => (r.passes ?? 1) > 1) ||
    results.small.some((r) => (r.passes ?? 1) > 1);
  md += `Command: \`${results.command}\` — ${o.budgetMs} ms measured per case in ${o.repeats} ` +
    `rounds after a warm-up` +
    (passed ? ` (a case in passes: at least 3 rounds a pass, see below)` : "") +
    (o.quick
      ? " (--quick: a smoke test of the harness. Its rounds are short and its small messages " +
        "get no JIT warm-up, so its figures, and the target verdicts drawn from them, are no " +
        "measurements)"
      : ` (at least ${WARM_MS / 1000} s for messages up to ` +
        `${formatSize(WARMED_SIZE)}: a stream of small ones runs at about half speed for its ` +
        "first 0.3-0.4 s, while V8 compiles it, and one of large ones at half to two thirds " +
        "for about as long, while the receiver's heap grows to hold its copies)") +
    `; every case runs in fresh processes.` +
    (passes > 1 && passed
      ? ` Cases up to 10 MiB${
        results.small.length ? " (and the 64 B ones)" : ""
      } ran in ${passes} passes, each in fresh ` +
        `processes with its own warm-up, 1/${passes} of the measured time and at least 3 ` +
        `rounds; every pass runs each transport of a size once, in a rotated order, so noise ` +
        `on the machine falls on all of them alike. Their median is over every round of ` +
        `every pass.`
      : "") +
    "\n\n";
  md += "One way between two Deno processes unless noted; a message counts when the receiver " +
    "has it (decoded, or borrowed). Throughput is the steady state of each round (at least 5 " +
    "messages up to 256 MiB, 2 above): messages after the first ÷ time from the first arrival " +
    "to the last, so no " +
    "transport is charged for filling its pipeline; the median of the rounds is shown. " +
    "Sizes are payload bytes; the structured message holds a " +
    "Float32Array of ⌊size/4⌋ elements plus `idx` and `source`, and counts as size bytes " +
    "(its 10 B carries 8 B of floats, and a number and a string beside them). " +
    "Messages in flight are bounded " +
    `the same way for every windowed transport: ${windowOf(results)}, or fewer so that at ` +
    "most ~1 GiB is in flight (1 at 1 GiB). memcpy is kind-independent and repeated in both " +
    "tables.\n\n";
  md += summary(results);
  md += "## Targets (issues 3 and 4)\n\n";
  md += table(
    ["issue", "target", "verdict", "measured"],
    results.targets.map((t) => [`#${t.issue}`, t.target, `**${t.verdict}**`, t.detail]),
  );
  md += "\n";
  for (const kind of ["bytes", "struct"] as Kind[]) md += kindSections(results, kind);

  if (results.small.length) {
    md += "## 64-byte messages (one way, Uint8Array)\n\n";
    md += table(
      ["transport", "msg/s", "GB/s", "messages per round"],
      results.small.map((r) => [
        TRANSPORTS.find((t) => t.id === r.transport)!.label,
        r.status === "ok" ? count(r.msgps) : r.status,
        r.status === "ok" ? fmtRate(r.gbps) : "",
        String(r.n ?? ""),
      ]),
    );
    md += "\n";
  }
  if (results.latency.length) {
    md += "## Round-trip latency, 64-byte messages\n\n";
    md += table(
      ["transport", "p50 µs", "p99 µs", "mean µs", "min µs", "trips"],
      results.latency.map((r) =>
        r.status === "ok"
          ? [
            r.label,
            r.p50Us!.toFixed(1),
            r.p99Us!.toFixed(1),
            r.meanUs!.toFixed(1),
            r.minUs!.toFixed(1),
            String(r.trips),
          ]
          : [r.label, r.status, r.reason ?? "", "", "", ""]
      ),
    );
    md += "\nshmq: two queues and an echo process; pipe: parent writes/reads the child's " +
      "stdin/stdout streams, the child echoes with blocking reads and writes; postMessage: " +
      "main thread ↔ echo Worker.\n\n";
  }
  if (results.fanIn.length) {
    md += "## Fan-in: 4 sender processes → 1 receiver (Uint8Array)\n\n";
    md += fanInTable(results.fanIn);
    md += "\n";
  }

  const largest = Math.max(
    ...results.throughput.filter((r) => r.status === "ok").map((r) => r.size),
  );
  if (Number.isFinite(largest)) {
    md += `## Peak memory (VmHWM) at the largest size, ${formatSize(largest)}\n\n`;
    md += table(
      ["transport", "kind", "sender peak", "receiver peak", "note"],
      results.throughput.filter((r) => r.size === largest && r.status === "ok").map((r) => [
        TRANSPORTS.find((t) => t.id === r.transport)!.label,
        r.kind,
        mib(r.senderPeak?.[0]),
        mib(r.receiverPeak),
        r.sameProcess ? "one process" : "",
      ]),
    );
    md += "\nResident set high-water marks include the Deno runtime (~45 MiB) and shared " +
      "memory the process touched (counted in both processes).\n\n";
  }
  md += codecSection(results.codec);

  md += "## Transports\n\n";
  const ran = new Set([...results.throughput, ...results.small].map((r) => r.transport));
  for (const t of TRANSPORTS.filter((t) => ran.has(t.id))) {
    md += `- **${t.label}**: ${t.description}.\n`;
  }
  if (results.interrupted === undefined) {
    md += "\n## Cleanup\n\n";
    md += `Stray processes after the run: ${results.cleanup.strayProcesses.length || "none"}; ` +
      `entries left in /dev/shm: ${results.cleanup.leakedShm.length || "none"}.\n`;
    for (const p of results.cleanup.strayProcesses) md += `- process ${p}\n`;
    for (const n of results.cleanup.leakedShm) md += `- /dev/shm/${n}\n`;
  }
  return md;
}
