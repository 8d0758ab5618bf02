/**
 * The shape of a benchmark run's results (what `results.json` holds).
 *
 * @module
 */

import type { Kind } from "./common.ts";
import type { TransportId } from "./transports.ts";

/** Outcome of one case. */
export type Status = "ok" | "skipped" | "error";

/** One one-way throughput case. */
export interface ThroughputResult {
  transport: TransportId;
  kind: Kind;
  /** Nominal message size in bytes (the payload; framing and encoding not counted). */
  size: number;
  /** Messages allowed in flight (queue capacity, ack window). */
  window: number;
  status: Status;
  /** Why it was skipped or what failed. */
  reason?: string;
  /** Messages per measured round. */
  n?: number;
  /** Steady-state time of each measured round, ms (see `Rounds.ms` in measure.ts). */
  roundsMs?: number[];
  /** Raw time of each measured round, from its start marker to its last message, ms. */
  rawRoundsMs?: number[];
  /** Median throughput, GB/s (1e9 bytes/s). */
  gbps?: number;
  /** Median messages per second. */
  msgps?: number;
  /** Slowest and fastest round, GB/s. */
  gbpsMin?: number;
  gbpsMax?: number;
  /** Peak resident memory (VmHWM) of the receiving process and of each sending process. */
  receiverPeak?: number | null;
  senderPeak?: (number | null)[];
  /** Sender and receiver are threads of one process. */
  sameProcess?: boolean;
  /** Wall time of the whole case, including process start and warm-up, ms. */
  wallMs?: number;
  /** Passes the case ran in, each in fresh processes, interleaved with the other transports
   * of its size and kind (absent: one). Its rounds are scaled to `n` messages. */
  passes?: number;
}

/** Round-trip latency of one transport. */
export interface LatencyResult {
  mode: "shmq-sync" | "shmq-async" | "pipe" | "postmessage";
  label: string;
  size: number;
  status: Status;
  reason?: string;
  trips?: number;
  p50Us?: number;
  p99Us?: number;
  meanUs?: number;
  minUs?: number;
}

/** Fan-in: several sender processes into one receiver. */
export interface FanInResult {
  transport: "shmq-get-sync" | "pipe";
  label: string;
  size: number;
  senders: number;
  status: Status;
  reason?: string;
  n?: number;
  roundsMs?: number[];
  gbps?: number;
  msgps?: number;
  receiverPeak?: number | null;
  senderPeak?: (number | null)[];
}

/** One explicit check of a performance target from issues 3 and 4. */
export interface TargetCheck {
  issue: number;
  target: string;
  verdict: "PASS" | "FAIL" | "n/a";
  detail: string;
}

/** Everything a run produced. */
export interface Results {
  version: 1;
  startedAt: string;
  finishedAt: string;
  command: string;
  options: Record<string, unknown>;
  machine: Record<string, unknown>;
  throughput: ThroughputResult[];
  /** 64-byte one-way messages (the issue 4 message-rate targets). */
  small: ThroughputResult[];
  latency: LatencyResult[];
  fanIn: FanInResult[];
  /** What `runCodecBench()` returned, when it exists. */
  codec?: unknown;
  targets: TargetCheck[];
  cleanup: { strayProcesses: string[]; leakedShm: string[] };
  /** The signal that stopped the run part way, when one did: its results are partial. */
  interrupted?: string;
}
