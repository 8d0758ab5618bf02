/**
 * Shared pieces of the reinforcement-learning pipeline example (`rl_pipeline.ts`).
 *
 * @module
 */

import { ClosedError, type Lease, type NdArray, type Receiver } from "../mod.ts";

/** One observation: an 84x84 RGB frame of float32. */
export const FRAME: readonly number[] = [84, 84, 3];
/** Floats per observation. */
export const OBS_FLOATS: number = 84 * 84 * 3;

/** What an actor puts into the observation queue. */
export interface ObservationBatch {
  idx: number;
  source: string;
  obs: NdArray<Float32Array>;
}

/** What the replay buffer serves to the learner. */
export interface SampleBatch {
  step: number;
  ids: NdArray<Int32Array>;
  obs: NdArray<Float32Array>;
}

/** What every process reports to the parent at the end. */
export interface Report {
  role: "actor" | "replay" | "learner";
  name: string;
  batches: number;
  bytes: number;
  seconds: number;
  mismatches?: number;
  sampled?: number;
}

/** Borrows the next message, or returns undefined once every sender closed and it is drained. */
export async function borrowOrEnd<T>(receiver: Receiver): Promise<Lease<T> | undefined> {
  try {
    return await receiver.borrow<T>();
  } catch (error) {
    if (error instanceof ClosedError && error.reason === "drained") return undefined;
    throw error;
  }
}

/** Prints a throughput line at most once a second. */
export function meter(name: string, unit: string): (batches: number, bytes: number) => void {
  const start = performance.now();
  let last = start;
  return (batches, bytes) => {
    const now = performance.now();
    if (now - last < 1000) return;
    last = now;
    const s = (now - start) / 1000;
    console.log(
      `${name}: ${batches} ${unit}, ${(batches / s).toFixed(1)} ${unit}/s, ` +
        `${(bytes / s / 1e9).toFixed(2)} GB/s`,
    );
  };
}

/** A small seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
