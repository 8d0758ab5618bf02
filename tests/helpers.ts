/**
 * Shared test helpers: /dev/shm accounting, child processes, seeded randomness.
 *
 * @module
 */

import assert from "node:assert/strict";
import { shmList } from "../ffi/native.ts";

/**
 * The /dev/shm entries of this library (queues and their extension segments), listed natively
 * because Deno wants --allow-all to read /dev itself.
 */
export function shmEntries(): string[] {
  return shmList("/shmq-").filter((n) => !n.startsWith("shmq-test-"));
}

/** Asserts that `fn` leaves no new /dev/shm entry of this library behind. */
export async function withoutLeaks(fn: () => Promise<void> | void): Promise<void> {
  const before = new Set(shmEntries());
  await fn();
  const leaked = shmEntries().filter((n) => !before.has(n));
  assert.deepEqual(leaked, [], `left in /dev/shm: ${leaked.join(", ")}`);
}

/** Permissions every child of the tests needs. */
export const CHILD_PERMISSIONS = ["--allow-ffi", "--allow-read", "--allow-env"];

/** Path of a fixture module. */
export function fixture(name: string): string {
  return new URL(`./fixtures/${name}`, import.meta.url).pathname;
}

/** A child Deno process running a fixture, with piped stdout and inherited stderr. */
export function spawnFixture(name: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...CHILD_PERMISSIONS, fixture(name), ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

/** Reads a child's whole stdout as text and waits for it to exit. */
export async function finish(child: Deno.ChildProcess): Promise<{ code: number; text: string }> {
  const [out, status] = await Promise.all([new Response(child.stdout).text(), child.status]);
  return { code: status.code, text: out };
}

/** Reads lines from a child's stdout as they come. */
export async function* lines(child: Deno.ChildProcess): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, nl);
      rest = rest.slice(nl + 1);
    }
  }
  if (rest) yield rest;
}

/** A small seeded PRNG (mulberry32), so failures reproduce. */
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

/** Deterministic payload bytes for (sender, seq), and their checksum. */
export function payload(sender: number, seq: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = (sender * 7919 + seq * 104729 + 1) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

/** FNV-1a over bytes. */
export function checksum(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}
