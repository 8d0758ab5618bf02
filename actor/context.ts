/**
 * The actor side of {@linkcode spawnActor}: reading the handoff from stdin, opening the queue
 * ends, reporting to the parent, and watching stdin so that the actor exits with its parent.
 *
 * @module
 */

import { decode } from "../codec/mod.ts";
import type { QueueDescriptor } from "../queue/descriptor.ts";
import { openSender } from "../queue/pair.ts";
import type { Sender } from "../queue/sender.ts";
import { refuseUnknownOptions } from "../queue/option_names.ts";
import { ClosedError } from "../queue/errors.ts";
import { awaitProcessExit, openProcess } from "../ffi/native.ts";
import { ActorError } from "./errors.ts";
import { ACTOR_PARENT_ENV, PARENT_GONE_GRACE_MS, stopWatchingParent } from "./parent_watch.ts";
import {
  type ActorContext,
  booleanOption,
  checkSpec,
  type ControlMessage,
  errorText,
  HANDOFF_PREFIX,
  HANDOFF_VERSION,
  makeContext,
  MAX_HANDOFF_BYTES,
  onUncaughtError,
  openAll,
  type OpenedQueues,
  PARENT_EXIT_REASONS,
  parseWireQueues,
  type QueueEnd,
  type QueueSpec,
} from "./protocol.ts";

/**
 * Options of {@linkcode actorContext}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ActorContextOptions } from "../mod.ts";
 * const options: ActorContextOptions<{ obs: "sender" }> = {
 *   queues: { obs: "sender" },
 *   exitWithParent: true,
 * };
 * assert.ok(options.queues?.obs === "sender");
 * ```
 *
 * @typeParam S The queue spec.
 */
export interface ActorContextOptions<S extends QueueSpec = QueueSpec> {
  /**
   * The queues this actor expects, by name and end: `{ obs: "sender", cmds: "receiver" }`.
   * Types `queues` and is checked against what the parent handed over (every name there, as
   * that end, and no other); a mismatch makes both `actorContext()` and the parent's
   * `spawnActor()` fail with a message saying so. Without it, every end handed over is opened.
   */
  queues?: S;
  /**
   * Exit when the parent goes away (default true): a watchdog thread reads stdin, and when it
   * closes, the queue ends are closed and the process exits with code 0 (`unload` listeners run). A
   * parent that went away, rather than asked with `stop()`, is first waited for until every thread
   * of it has ended (half a second at most; the actor holds a pidfd of its parent to tell): a dying
   * parent's ends look alive until the kernel has released its files, and the actor's close would
   * not find itself the last. An uncaught `ClosedError` that the
   * parent's exit caused (it closes its ends a moment before) waits for that, a quarter second at
   * most, rather than end the actor with an error. If the main thread is blocked in a sync wait and
   * cannot do that within a second, the watchdog ends the process at once; peers then see the ends
   * as dead within about a second. The watchdog is a small Worker (about 18 MB of memory); it never
   * keeps the process alive. The actor also outlives a `SIGINT` (Ctrl-C in a terminal signals the
   * parent and its actors together) to leave with its parent instead, closing its ends as it goes:
   * killed beside the parent, neither could tell it was the last, and only the exit sweepers (or,
   * without them, a later sweep) would remove the queues. Your own `SIGINT` listener still runs.
   */
  exitWithParent?: boolean;
}

const ACTOR_CONTEXT_OPTIONS = ["queues", "exitWithParent"] as const satisfies (
  keyof ActorContextOptions
)[];

let started: Promise<{ queues: Record<string, QueueEnd>; args: unknown }> | undefined;
let context: ActorContext<Readonly<Record<string, QueueEnd>>, unknown> | undefined;

/**
 * In an actor started by {@linkcode spawnActor}: opens the queue ends the parent handed over
 * and returns them with the `args` value. The first call reads the handoff from stdin and
 * reports to the parent (whose `spawnActor` resolves then); later calls return the same ends,
 * checked against their own `queues` spec. Throws {@linkcode ActorError} when the process was
 * not started by `spawnActor`, and `TypeError` when the queues handed over do not match the
 * spec (the parent's `spawnActor` then rejects with an `ActorError` quoting it).
 *
 * Stdin belongs to the library in an actor: do not read it yourself.
 *
 * @example An actor that puts observations into the queue named "obs"
 * ```ts ignore
 * import { actorContext } from "../mod.ts";
 * const { queues, args } = await actorContext<{ obs: "sender" }, { count: number }>({
 *   queues: { obs: "sender" },
 * });
 * for (let i = 0; i < args.count; i++) await queues.obs.put({ idx: i });
 * queues.obs.close(); // the receiver sees the queue drained once every sender closed
 * ```
 *
 * @typeParam S The queue spec (inferred from `options.queues`).
 * @typeParam A The type of the `args` value.
 * @param options The expected queues, and whether to exit with the parent.
 * @returns The opened queue ends and the args.
 */
export async function actorContext<S extends QueueSpec = QueueSpec, A = unknown>(
  options?: ActorContextOptions<S>,
): Promise<ActorContext<OpenedQueues<S>, A>> {
  const caller = "actorContext";
  if (options !== undefined) refuseUnknownOptions(options, ACTOR_CONTEXT_OPTIONS, caller);
  const leaves = booleanOption(options?.exitWithParent, true, "exitWithParent", caller);
  started ??= start(options, caller, leaves);
  const { queues, args } = await started;
  checkSpecAgainst(queues, options?.queues, caller);
  context ??= makeContext(queues, args);
  return context as ActorContext<OpenedQueues<S>, A>;
}

function checkSpecAgainst(
  queues: Record<string, QueueEnd>,
  spec: QueueSpec | undefined,
  caller: string,
): void {
  const wire = Object.fromEntries(
    Object.entries(queues).map(([name, end]) => [name, {
      open: end.descriptor.end,
      descriptor: end.descriptor,
    }]),
  );
  checkSpec(wire, spec, caller);
}

/** `leaves`: the actor exits with its parent (options.exitWithParent). */
async function start(
  options: ActorContextOptions | undefined,
  caller: string,
  leaves: boolean,
): Promise<{ queues: Record<string, QueueEnd>; args: unknown }> {
  // Not isMainThread(): that asks the native library, which may not tell.
  if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope === "function") {
    throw new ActorError(
      `${caller}: this is a Worker, not a process started by spawnActor: in a Worker started ` +
        "by spawnWorker, call workerContext()",
    );
  }
  if (Deno.stdin.isTerminal()) {
    throw new ActorError(
      `${caller}: this process was not started by spawnActor (its stdin is a terminal)`,
    );
  }
  // spawnActor always sets it, and grants reading it: without it, stdin is someone else's
  // pipe, which may stay open without a byte (an IDE, a CI step, `cmd | deno run …`), and
  // the read would hang. So a variable this process may not read says as much as one unset.
  let parent: string | undefined;
  let why = `${ACTOR_PARENT_ENV} is not set`;
  try {
    parent = Deno.env.get(ACTOR_PARENT_ENV);
  } catch {
    why = `it may not read ${ACTOR_PARENT_ENV}, which spawnActor grants`;
  }
  if (parent === undefined) {
    throw new ActorError(`${caller}: this process was not started by spawnActor (${why})`);
  }
  // Inherited by a process an actor started (Deno.Command passes env and stdin on): that one
  // would read the actor's handoff from their stdin, and open the actor's queues in its stead.
  if (Number(parent) !== Deno.ppid) {
    throw new ActorError(
      `${caller}: this process was not started by spawnActor (${ACTOR_PARENT_ENV} names ` +
        `process ${parent}, not its parent ${Deno.ppid}: inherited from an actor that started ` +
        `this one, or the parent that set it is gone)`,
    );
  }
  // From before the ends are open: a Ctrl-C between the report (the parent's spawnActor
  // resolves) and the watchdog's start would otherwise kill the actor with its ends open.
  if (leaves) Deno.addSignalListener("SIGINT", leaveWithParent);
  try {
    return await handOver(options, caller, leaves, Number(parent));
  } catch (error) {
    if (leaves) Deno.removeSignalListener("SIGINT", leaveWithParent);
    throw error;
  }
}

async function handOver(
  options: ActorContextOptions | undefined,
  caller: string,
  leaves: boolean,
  parent: number,
): Promise<{ queues: Record<string, QueueEnd>; args: unknown }> {
  const { handoff, stopAsked } = await readHandoff(caller);
  let control: Sender | undefined;
  if (handoff.control !== undefined) control = openSender(handoff.control as QueueDescriptor);
  let queues: Record<string, QueueEnd>;
  let args: unknown;
  try {
    const wire = parseWireQueues(handoff.queues, caller);
    checkSpec(wire, options?.queues, caller, true);
    args = typeof handoff.args === "string"
      ? decode(Uint8Array.fromBase64(handoff.args))
      : undefined;
    queues = openAll(wire, caller); // Closes what it opened when one fails.
  } catch (error) {
    report(control, { ok: false, error: errorText(error) });
    throw error;
  }
  try {
    report(control, { ok: true }); // The parent's spawnActor resolves now.
  } catch (error) {
    for (const end of Object.values(queues)) end.close();
    throw error;
  }
  // The watch spawnActor's preload keeps while the actor starts ends the process with a signal:
  // from here on the ends are open, and an actor whose parent dies must close them as it goes.
  // The watchdog does, and misses nothing: a parent gone before it starts has closed stdin.
  stopWatchingParent();
  // Started after the report, so that it does not delay the parent.
  if (leaves) await startWatchdog(queues, parent, stopAsked);
  return { queues, args };
}

/** An actor's answer to SIGINT: none (see ActorContextOptions.exitWithParent). */
function leaveWithParent(): void {}

function report(control: Sender | undefined, message: ControlMessage): void {
  if (control === undefined) return;
  try {
    control.putSync(message, { timeout: 5000 });
  } finally {
    control.close();
  }
}

interface Handoff {
  shmqActor: number;
  control?: unknown;
  queues?: unknown;
  args?: unknown;
}

/** Reads the one handoff line from stdin, and whatever came in the same read: bytes after it
 * are a stop request (ActorHandle.stop right after the start), which the watchdog must not
 * miss, or it takes the end of stdin that follows for its parent gone, and waits for that. */
export async function readHandoff(
  caller: string,
): Promise<{ handoff: Handoff; stopAsked: boolean }> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buffer = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await Deno.stdin.read(buffer);
    if (n === null) {
      throw new ActorError(
        `${caller}: this process was not started by spawnActor (stdin ended without a handoff)`,
      );
    }
    const chunk = buffer.slice(0, n);
    chunks.push(chunk);
    total += n;
    if (total - n < PREFIX_BYTES.length) refuseUnlessHandoff(chunks, caller);
    if (chunk.at(-1) === 0x0a) break; // The parent writes the line and nothing after it.
    if (total > MAX_HANDOFF_BYTES) {
      throw new ActorError(
        `${caller}: the handoff is longer than ${MAX_HANDOFF_BYTES} bytes: stdin is not ` +
          `a spawnActor handoff`,
      );
    }
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  const line = bytes.indexOf(0x0a);
  const stopAsked = line < total - 1;
  let value: Handoff;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes.subarray(0, line)));
  } catch {
    throw new ActorError(`${caller}: stdin did not carry a spawnActor handoff`);
  }
  if (typeof value !== "object" || value === null || value.shmqActor !== HANDOFF_VERSION) {
    throw new ActorError(
      `${caller}: stdin did not carry a spawnActor handoff of version ${HANDOFF_VERSION}`,
    );
  }
  return { handoff: value, stopAsked };
}

const PREFIX_BYTES = new TextEncoder().encode(HANDOFF_PREFIX);

/** Throws once the bytes read so far differ from the start of a handoff line. */
function refuseUnlessHandoff(chunks: Uint8Array[], caller: string): void {
  let at = 0;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length && at < PREFIX_BYTES.length; i++, at++) {
      if (chunk[i] !== PREFIX_BYTES[at]) {
        throw new ActorError(`${caller}: stdin did not carry a spawnActor handoff`);
      }
    }
  }
}

/**
 * The watchdog thread: reads stdin until it closes, tells the main thread, and ends the
 * process itself if the main thread does not (it may be blocked in a sync queue wait).
 * A `node:worker_threads` Worker because it can be unref'd: it never keeps the actor alive.
 */
const WATCHDOG = `
const { parentPort, workerData } = require("node:worker_threads");
(async () => {
  const buffer = new Uint8Array(4096);
  let asked = workerData.asked;
  try {
    for (let n; (n = await Deno.stdin.read(buffer)) !== null;) if (n > 0) asked = true;
  } catch {}
  Atomics.store(workerData.gone, 0, asked ? 2 : 1);
  Atomics.notify(workerData.gone, 0);
  parentPort.postMessage(asked ? "stop" : "parent-gone");
  setTimeout(() => {
    try {
      const libc = Deno.dlopen("libc.so.6", { _exit: { parameters: ["i32"], result: "void" } });
      libc.symbols._exit(0);
    } catch (error) {
      console.error("shmq actor watchdog: cannot end the process: " + error);
    }
  }, workerData.graceMs);
})();
`;

/**
 * How long an actor whose stdin closed without a stop request (its parent exited or died)
 * waits for the parent to be gone before it closes its ends (well within
 * PARENT_GONE_GRACE_MS, after which the watchdog ends the process). A dying parent closes
 * the actor's stdin before the kernel has released its queues' files and so its ends' locks:
 * the actor's close then saw the parent's ends alive, was not the last, and left the queues
 * in /dev/shm until a sweep (3 times in 5 with the parent killed mid-stream, 5 in 5 with it
 * dying of an uncaught error). Nor is a parent gone once this process is no longer its child:
 * the first of its exiting threads to finish hands its children on, while another may still
 * be unmapping its memory, and so holding its locks (5 actors in 141 left their queue so on a
 * 2-vCPU VM kept busy, the parent's lock seen held up to 3.5 ms after the hand-over to init).
 * The actor holds a pidfd of its parent, which tells when every thread of it has ended.
 */
const PARENT_REAP_WAIT_MS = 500;

/** Blocks until the parent is gone, for at most `ms`: by its pidfd `handle` when the kernel
 * gave one, else (older kernels) until `parent` is no longer this process's parent. */
function awaitParentGone(parent: number, handle: number | undefined, ms: number): void {
  if (handle !== undefined) {
    try {
      awaitProcessExit(handle, ms);
      return;
    } catch {
      // Waits as it can below.
    }
  }
  if (!(parent > 0)) return;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = performance.now() + ms;
  while (Deno.ppid === parent && performance.now() < deadline) Atomics.wait(nap, 0, 0, 1);
}

async function startWatchdog(
  queues: Record<string, QueueEnd>,
  parent: number,
  stopAsked: boolean,
): Promise<void> {
  const { Worker } = await import("node:worker_threads");
  // Raised by the watchdog as it finds stdin closed, before its message can arrive: 1 when
  // the parent went away, 2 when it asked the actor to stop (ActorHandle.stop: a byte first).
  const gone = new Int32Array(new SharedArrayBuffer(4));
  const watchdog = new Worker(WATCHDOG, {
    eval: true,
    workerData: { graceMs: PARENT_GONE_GRACE_MS, gone, asked: stopAsked },
    name: "shmq actor watchdog",
  });
  watchdog.unref();
  // Opened now: the pid is the parent's, or its zombie's, until the parent's own parent reaps
  // it (reused after that, it would cost a bounded wait). Kept open for the actor's life.
  const parentHandle = parent > 0 ? openProcess(parent) : undefined;
  const exitAsParentGone = (): never => {
    // A parent that asked lives on; one that went away may still hold its ends: wait for it.
    if (Atomics.load(gone, 0) !== 2) awaitParentGone(parent, parentHandle, PARENT_REAP_WAIT_MS);
    for (const end of Object.values(queues)) {
      try {
        end.close();
      } catch {
        // Exiting anyway.
      }
    }
    Deno.exit(0);
  };
  watchdog.on("message", exitAsParentGone);
  const parentGone = (): boolean => {
    // The parent's exit closes stdin a moment after its ends: wait for that, briefly.
    if (Atomics.load(gone, 0) === 0) Atomics.wait(gone, 0, 0, PARENT_EXIT_WAIT_MS);
    return Atomics.load(gone, 0) !== 0;
  };
  onUncaughtError((event, error) => {
    if (
      !event.defaultPrevented && error instanceof ClosedError &&
      PARENT_EXIT_REASONS.includes(error.reason) && parentGone()
    ) exitAsParentGone();
  });
}

/** How long such an error waits for the parent's stdin to close. Measured on a 2-vCPU VM: 0-4
 * ms after the error, for a parent whose script ends or that calls Deno.exit(); this leaves
 * room for a parent whose other `unload` listeners take a while, and bounds the pause an
 * actor that handles such errors itself (a global listener) takes for each while its parent
 * lives on. */
const PARENT_EXIT_WAIT_MS = 250;
