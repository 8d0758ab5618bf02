/**
 * Shared test helpers: /dev/shm accounting, child processes, seeded randomness.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as native from "../ffi/native.ts";
import { ANY_ALIVE_LOCK_BYTE, SHM_ENTRY_PATTERN } from "../queue/layout.ts";
import * as L from "../queue/layout.ts";
import { openEndNames } from "../queue/open_ends.ts";
import { createSharedMemoryPair, openSender, type Receiver, type Sender } from "../mod.ts";

/**
 * The /dev/shm entries of this library (queues and their extension segments), listed natively
 * because Deno wants --allow-all to read /dev itself.
 */
export function shmEntries(): string[] {
  return native.shmList("/shmq-").filter((n) => SHM_ENTRY_PATTERN.test(n));
}

/**
 * Asserts that `fn` closes every queue end it opens and leaves no /dev/shm entry behind.
 * Entries that a live process still holds are someone else's (other test runs on this
 * machine): only entries nobody holds count as leaked.
 */
export async function withoutLeaks(fn: () => Promise<void> | void): Promise<void> {
  const before = new Set(shmEntries());
  const openBefore = openEndNames().length;
  await fn();
  assert.deepEqual(openEndNames().slice(openBefore), [], "queue ends left open");
  const leaked = leakedSince(before);
  assert.deepEqual(leaked, [], `left in /dev/shm: ${leaked.join(", ")}`);
}

/**
 * The files process `pid` (this one by default) has mapped (from /proc/PID/maps, read by
 * `cat` because Deno wants --allow-all to read /proc itself). A segment unlinked but still
 * mapped shows as "(deleted)".
 */
export function mappedFiles(pid: number = Deno.pid): string[] {
  const out = new Deno.Command("cat", { args: [`/proc/${pid}/maps`] }).outputSync();
  assert.ok(out.success, "cat /proc/PID/maps");
  return new TextDecoder().decode(out.stdout).split("\n")
    .map((line) => line.split(/\s+/).slice(5).join(" "))
    .filter((file) => file !== "");
}

/** Entries made since the snapshot `before` that no live process holds: leaks, not other
 * programs' live queues. */
export function leakedSince(before: ReadonlySet<string>): string[] {
  // Another process's queue can close between the listing and its probe (the probe then finds
  // no main segment), or be listed before its creator holds its "alive" byte: count only what
  // is still there, unheld, when looked at again; a leak stays, a queue in passing does not.
  const until = performance.now() + 1_000;
  for (;;) {
    const unheld = shmEntries().filter((n) => !before.has(n) && !heldByLiveProcess(n));
    const present = new Set(shmEntries());
    const leaked = unheld.filter((n) => present.has(n));
    if (leaked.length === 0 || performance.now() > until) return leaked;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  }
}

/** Whether any live process holds the queue that entry `name` belongs to. */
function heldByLiveProcess(name: string): boolean {
  const match = SHM_ENTRY_PATTERN.exec(name);
  if (!match) return false;
  let fd: number;
  try {
    fd = native.shmOpen(`/shmq-${match[1]}`);
  } catch {
    return false; // An extension whose queue is gone.
  }
  try {
    return native.lockProbe(fd, ANY_ALIVE_LOCK_BYTE);
  } finally {
    native.closeFd(fd);
  }
}

/**
 * Lets 10 ms pass without an event-loop wait of the library, so its next async call owes the
 * event loop a turn (queue/fairness.ts): a get or prepare awaits it before trying, a put
 * after writing. A call right after that one goes straight to its attempt (or futex wait).
 */
export function makeTurnDue(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 10));
}

/** Runs `deno <args>` to its end and returns its stdout, after asserting that it exited with
 * 0 and not by a signal (a SIGSEGV shows here, with the child's stderr). */
export async function runDeno(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.signal, null, `the child died of ${out.signal}: ${stderr}`);
  assert.equal(out.code, 0, stderr);
  return new TextDecoder().decode(out.stdout);
}

/** The environment of a child whose queues a kill leaves for a sweep to find: no exit
 * sweeper (queue/exit_sweeper.ts) removes them first. */
export const NO_EXIT_SWEEPER: FixtureOptions = { env: { SHMQ_EXIT_SWEEPER: "0" } };

/** Permissions every child of the tests needs. */
export const CHILD_PERMISSIONS = ["--allow-ffi", "--allow-read", "--allow-env"];

/** Path of a fixture module. */
export function fixture(name: string): string {
  return new URL(`./fixtures/${name}`, import.meta.url).pathname;
}

/**
 * Ends `child` with SIGKILL unless it has exited, and waits for its exit. What
 * `await using` of a {@linkcode spawnFixture} child or a {@linkcode Watched} does when its
 * scope ends, a failed assertion included, so that no child outlives its test.
 */
export async function endChild(child: Deno.ChildProcess): Promise<Deno.CommandStatus> {
  try {
    child.kill("SIGKILL");
  } catch { /* already exited */ }
  return await child.status;
}

/**
 * `child`, made to be ended by {@linkcode endChild} (SIGKILL unless exited, then its exit
 * awaited) when disposed: `await using` it, and no failed assertion leaves it running. Deno's
 * own dispose sends SIGTERM, which some fixtures catch and go on after.
 */
export function killedWhenDisposed(child: Deno.ChildProcess): Deno.ChildProcess {
  child[Symbol.asyncDispose] = async () => {
    await endChild(child);
  };
  return child;
}

/** How {@linkcode spawnFixture} runs a fixture. */
export interface FixtureOptions {
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** A command that runs Deno (given as its last arguments), such as `["setsid"]`. */
  launcher?: string[];
}

/**
 * A child Deno process running a fixture, with piped stdout and inherited stderr. Disposing it
 * ({@linkcode killedWhenDisposed}) kills it with SIGKILL.
 */
export function spawnFixture(
  name: string,
  args: string[],
  options: FixtureOptions = {},
): Deno.ChildProcess {
  const deno = [Deno.execPath(), "run", ...CHILD_PERMISSIONS, fixture(name), ...args];
  const [command, ...rest] = [...(options.launcher ?? []), ...deno];
  return killedWhenDisposed(
    new Deno.Command(command, {
      args: rest,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn(),
  );
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

export { prng } from "./prng.ts";

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

/** A word-at-a-time FNV-style checksum: several times faster than {@linkcode checksum} on large
 * buffers, for the load tests. The same bytes give the same sum wherever they sit. */
export function checksum32(bytes: Uint8Array): number {
  if (bytes.byteOffset % 4 !== 0) bytes = bytes.slice();
  let h = 0x811c9dc5 ^ bytes.length;
  const words = bytes.length >>> 2;
  const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, words);
  for (let k = 0; k < words; k++) h = Math.imul(h ^ u32[k], 0x01000193);
  for (let i = words * 4; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

/** A test's own read-write mapping of a shared-memory object (a queue's main segment or an
 * extension), to inspect or corrupt it from outside the library. */
export interface SegmentMapping {
  readonly size: number;
  readonly bytes: Uint8Array;
  readonly i32: Int32Array;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;
  /** Unmaps it (detaching the views first). */
  unmap(): void;
}

/** Maps the shared-memory object `name` ("/shmq-…") read-write, or returns undefined when it
 * no longer exists. */
export function mapSegment(name: string): SegmentMapping | undefined {
  let fd: number;
  try {
    fd = native.shmOpen(name);
  } catch {
    return undefined;
  }
  try {
    const size = native.fdSize(fd);
    if (size === 0) return undefined;
    const pointer = native.map(fd, size);
    const buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, size);
    return {
      size,
      bytes: new Uint8Array(buffer),
      i32: new Int32Array(buffer, 0, size >> 2),
      u32: new Uint32Array(buffer, 0, size >> 2),
      f64: new Float64Array(buffer, 0, size >> 3),
      unmap() {
        if (buffer.detached) return;
        buffer.transfer(0);
        native.unmap(pointer, size);
      },
    };
  } finally {
    native.closeFd(fd);
  }
}

/** Reads an i32 word of a queue's main segment from outside the library. */
export function segmentWord(name: string, offset: number): number {
  const m = mapSegment(name)!;
  try {
    return Atomics.load(m.i32, offset >> 2);
  } finally {
    m.unmap();
  }
}

/** How many slots of queue `name` are in `state` (a `SlotState`), read from its shared memory. */
export function slotsInState(name: string, state: number): number {
  const m = mapSegment(name);
  if (m === undefined) throw new Error(`no queue named ${name}`);
  try {
    return slotsInStateOf(m, state);
  } finally {
    m.unmap();
  }
}

/** {@linkcode slotsInState} in a main segment mapped already (one that may be unlinked since). */
export function slotsInStateOf(m: SegmentMapping, state: number): number {
  const ring = m.u32[L.H_RING_SIZE >> 2];
  let n = 0;
  for (let i = 0; i < ring; i++) {
    if (Atomics.load(m.i32, (L.slotOffset(i) + L.S_STATE) >> 2) === state) n++;
  }
  return n;
}

let isolation: Promise<boolean> | undefined;

/** Whether {@linkcode isolated} can run here: it needs root and `unshare`. */
export function canIsolate(): Promise<boolean> {
  isolation ??= Deno.uid() !== 0 ? Promise.resolve(false) : new Deno.Command("unshare", {
    args: ["--mount", "--propagation", "private", "true"],
    stdout: "null",
    stderr: "null",
  }).output().then((o) => o.success, () => false);
  return isolation;
}

/** Shell words naming this process's memory cgroup directory of cgroup v1 (whose children
 * take a memory limit without further setup). In shell: Deno reads /proc/self and writes
 * /sys only with --allow-all. */
const MEMORY_CGROUP_SH = `"/sys/fs/cgroup/memory$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' ` +
  `/proc/self/cgroup | cut -d: -f3)"`;

let cgroups = 0;

/**
 * The most malloc's heap keeps free once the library has tuned it (ffi/shmq.c, kept_most): an
 * eighth of the machine's memory, or of the least memory cgroup limit over this process when
 * that is less, and no more than mallopt takes (an int).
 */
export function heapKeepsAtMost(): number {
  const memory = Math.min(Deno.systemMemoryInfo().total, native.memoryRoom().cgroupLimit);
  return Math.min(2 ** 31 - 1, Math.floor(memory / 8));
}

/** Runs `script` with sh, true when it succeeds. */
async function sh(script: string): Promise<boolean> {
  return (await shOutput(script)) !== undefined;
}

/** Runs `script` with sh: its stdout when it succeeds, else undefined. */
async function shOutput(script: string): Promise<string | undefined> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "null",
  })
    .output().catch(() => undefined);
  return out?.success ? new TextDecoder().decode(out.stdout) : undefined;
}

/** Whether {@linkcode isolated} can run a fixture in a memory cgroup of its own here: it
 * needs root, `unshare` and cgroup v1's memory controller. */
export async function canLimitMemory(): Promise<boolean> {
  if (!(await canIsolate())) return false;
  const probe = `${MEMORY_CGROUP_SH}/shmq-probe-${Deno.pid}`;
  return await sh(
    `mkdir ${probe} || exit 1; echo ${64 << 20} > ${probe}/memory.limit_in_bytes; s=$?; ` +
      `rmdir ${probe}; exit $s`,
  );
}

/** What else {@linkcode isolated} sets up for its fixture. */
export interface Isolation {
  /** Run it under `ulimit -n` of that many files. */
  fdLimit?: number;
  /** Run it in a memory cgroup of its own with that limit, as a container is (check
   * {@linkcode canLimitMemory} first). */
  memoryBytes?: number;
  /** A directory it may write in (fixtures get no write permission otherwise). */
  writable?: string;
}

/**
 * Runs a fixture in a private mount namespace with its own /dev/shm: a tmpfs of `shmBytes`
 * that no other process sees, so what is left in it, or running out of it, concerns this
 * run alone. Returns its stdout; fails when it exits non-zero. Check
 * {@linkcode canIsolate} first.
 */
export async function isolated(
  name: string,
  args: string[],
  shmBytes: number,
  { fdLimit, memoryBytes, writable }: Isolation = {},
): Promise<string> {
  const cgroup = `${MEMORY_CGROUP_SH}/shmq-test-${Deno.pid}-${cgroups++}`;
  const limit = fdLimit === undefined ? "" : `ulimit -n ${fdLimit} && `;
  const join = memoryBytes === undefined ? "" : `mkdir ${cgroup} && ` +
    `echo ${memoryBytes} > ${cgroup}/memory.limit_in_bytes && echo $$ > ${cgroup}/cgroup.procs && `;
  const script =
    `${join}${limit}mount -t tmpfs -o size=${shmBytes} shmq-test /dev/shm && exec "$0" "$@"`;
  let out: Deno.CommandOutput;
  let memory = "";
  try {
    out = await new Deno.Command("unshare", {
      args: [
        ...["--mount", "--propagation", "private", "sh", "-c", script, Deno.execPath(), "run"],
        ...CHILD_PERMISSIONS,
        "--allow-run",
        ...(writable === undefined ? [] : [`--allow-write=${writable}`]),
        fixture(name),
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } finally {
    if (memoryBytes !== undefined) {
      // What the cgroup went through, for a failure to show whether the kernel killed it.
      memory = await shOutput(
        `cd ${cgroup} && echo "peak $(cat memory.max_usage_in_bytes) of $(cat ` +
          `memory.limit_in_bytes), limit hit $(cat memory.failcnt) times, ` +
          `$(grep '^oom_kill ' memory.oom_control || echo no oom_kill count)"`,
      ) ?? "cgroup counters unreadable";
      await sh(`rmdir ${cgroup}`);
    }
  }
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(
    out.success,
    `isolated ${name} ${args.join(" ")} failed: exit code ${out.code}, signal ${out.signal}; ` +
      `${memory.trim()}\nstdout: ${new TextDecoder().decode(out.stdout)}\nstderr: ${stderr}`,
  );
  return new TextDecoder().decode(out.stdout);
}

/** A fixture process whose stdout lines are collected as they come, for tests that watch a
 * child and kill it at a chosen moment. `await using` one ends it with SIGKILL, if it still
 * runs, when its scope ends. */
export class Watched implements AsyncDisposable {
  readonly proc: Deno.ChildProcess;
  readonly out: string[] = [];
  readonly #drained: Promise<void>;
  #wake: (() => void) | undefined;

  constructor(fixtureName: string, args: string[], options?: FixtureOptions) {
    const proc = this.proc = spawnFixture(fixtureName, args, options);
    this.#drained = (async () => {
      for await (const line of lines(proc)) {
        this.out.push(line);
        this.#wake?.();
      }
      this.#wake?.();
    })();
  }

  /** Waits for line number `index` (from 0); undefined when the child ended first or
   * `timeoutMs` passed. */
  async line(index: number, timeoutMs = 30_000): Promise<string | undefined> {
    const until = performance.now() + timeoutMs;
    let ended = false;
    while (index >= this.out.length && !ended && performance.now() < until) {
      ended = await Promise.race([
        new Promise<boolean>((ok) => this.#wake = () => ok(false)),
        this.#drained.then(() => true),
        new Promise((ok) => setTimeout(ok, 50)).then(() => false),
      ]);
    }
    return this.out[index];
  }

  /** Waits for a line starting with `prefix`; returns it. */
  async expect(prefix: string, timeoutMs = 30_000): Promise<string> {
    const until = performance.now() + timeoutMs;
    let from = 0;
    for (;;) {
      for (; from < this.out.length; from++) {
        if (this.out[from].startsWith(prefix)) return this.out[from];
      }
      if (performance.now() > until) throw new Error(`no "${prefix}" line; got ${this.out}`);
      const ended = await Promise.race([
        new Promise<boolean>((ok) => this.#wake = () => ok(false)),
        this.#drained.then(() => true),
        new Promise((ok) => setTimeout(ok, 50)).then(() => false),
      ]);
      if (ended && from >= this.out.length) {
        throw new Error(`child exited before printing "${prefix}"; got ${this.out}`);
      }
    }
  }

  /** Sends `signal`, waits for the exit and the end of its output. */
  async stop(signal: Deno.Signal = "SIGKILL"): Promise<Deno.CommandStatus> {
    try {
      this.proc.kill(signal);
    } catch { /* already gone */ }
    const status = await this.proc.status;
    await this.#drained;
    return status;
  }

  /** Waits for a normal exit. */
  async exit(): Promise<Deno.CommandStatus> {
    const status = await this.proc.status;
    await this.#drained;
    return status;
  }

  /** Kills it with SIGKILL unless it has exited; waits for the exit and its output. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }

  /** Largest N of the lines "<word> N". */
  last(word: string): number {
    let n = -1;
    for (const line of this.out) {
      if (line.startsWith(word + " ")) n = Math.max(n, Number(line.slice(word.length + 1)));
    }
    return n;
  }
}

/** `children` as one disposable: `await using` the array ends them all, each as its own
 * `await using` would. */
export function endedTogether<T extends AsyncDisposable>(children: T[]): T[] & AsyncDisposable {
  return Object.assign(children, {
    async [Symbol.asyncDispose]() {
      await Promise.all(children.map((child) => child[Symbol.asyncDispose]()));
    },
  });
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `done()` holds, for up to `ms`; returns whether it did. */
export async function eventually(done: () => boolean, ms = 5_000): Promise<boolean> {
  const until = performance.now() + ms;
  while (!done()) {
    if (performance.now() > until) return false;
    await delay(20);
  }
  return true;
}

/**
 * A queue with 40 MiB of byte budget for extension messages (a 1 MiB arena of 41 MiB), two senders
 * (`a`, `b`) and a receiver, for the tests of puts that wait for that budget: messages of 4 MiB fit
 * beside each other, one of 30 MiB does not fit beside two of them.
 */
export function budgetQueue(): { a: Sender; b: Sender; r: Receiver } & Disposable {
  const [b, r] = createSharedMemoryPair({
    capacity: 16,
    arenaBytes: 1 << 20,
    byteBudget: 41 << 20,
  });
  const a = openSender(b.descriptor);
  return {
    a,
    b,
    r,
    [Symbol.dispose]() {
      a.close();
      b.close();
      r.close();
    },
  };
}

/** A queue's sender and receiver, with what its extension segments hold: their /dev/shm
 * entries and this process's mappings of them. Closes both ends when disposed. */
export interface SegmentQueue extends Disposable {
  s: Sender;
  r: Receiver;
  segments(): string[];
  mapped(): string[];
}

/**
 * A queue for the tests of extension segments: messages above 64 KiB (a quarter of a 256 KiB
 * arena, unless `options` says otherwise) travel in them, and idle ones are kept
 * `keepIdleSegmentsMs`.
 */
export function segmentQueue(
  keepIdleSegmentsMs: number,
  options: { capacity?: number; arenaBytes?: number; byteBudget?: number } = {},
): SegmentQueue {
  const [s, r] = createSharedMemoryPair({
    capacity: 4,
    arenaBytes: 256 * 1024,
    ...options,
    keepIdleSegmentsMs,
  });
  const prefix = s.descriptor.name.slice(1) + "-x";
  return {
    s,
    r,
    segments: () => shmEntries().filter((n) => n.startsWith(prefix)),
    mapped: () => mappedFiles().filter((file) => file.includes(prefix)),
    [Symbol.dispose]() {
      s.close();
      r.close();
    },
  };
}
