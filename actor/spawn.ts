/**
 * Starting Deno subprocess actors and handing them queue ends.
 *
 * The parent writes one handoff line to the actor's stdin: the descriptors of the queues (and
 * which end to open), the `args` value encoded with the library's codec, and the descriptor of
 * a tiny control queue. The actor's `actorContext()` opens the ends and reports on the control
 * queue, so `spawnActor` resolves only once the actor holds its own ends: the parent may then
 * close its copies without the queue being seen as closed. The stdin pipe stays open for the
 * actor's lifetime; the actor exits when it closes (its parent died or called `stop()`).
 *
 * @module
 */

import {
  ACTOR_LIBRARY_PREFIX,
  native,
  NATIVE_LIB_ENV,
  transientLibraryBytes,
} from "../ffi/loader.ts";
import { createSharedMemoryPair } from "../queue/pair.ts";
import { sweepStaleQueues } from "../queue/sweep.ts";
import type { Receiver } from "../queue/receiver.ts";
import type { Sender } from "../queue/sender.ts";
import { refuseUnknownOptions } from "../queue/option_names.ts";
import { shown } from "../queue/shown.ts";
import { timeoutOption, type Timer, timerFor } from "../queue/timer.ts";
import { signalOption } from "../queue/wait.ts";
import { ActorError } from "./errors.ts";
import { StartupOutput } from "./output.ts";
import { ACTOR_PARENT_ENV } from "./parent_watch.ts";
import {
  booleanOption,
  closeHanded,
  type ControlMessage,
  encodeArgs,
  HANDOFF_VERSION,
  MAX_ACTOR_ARGS_BYTES,
  type QueueHandoff,
  startFailureCause,
  toWire,
  type WireQueues,
} from "./protocol.ts";

/** Smallest arena a queue can have: the control queue carries one tiny message. */
const CONTROL_ARENA_BYTES = 64 * 1024;
/** How much of a piped stderr or stdout a failed start quotes, and how long it waits for the
 * rest. */
const OUTPUT_TAIL_BYTES = 2048;
const OUTPUT_TAIL_WAIT_MS = 500;
/** How long disposing a running actor waits for it to stop on its own (its watchdog ends it
 * within a second of its stdin closing, blocked or not) before signalling it. */
const STOP_GRACE_MS = 1500;

/** Written to an actor's stdin before it is closed to ask it to stop (a newline, which a
 * handoff line still being read takes as trailing whitespace). */
const STOP_BYTE = new Uint8Array([0x0a]);

/**
 * Permissions granted to an actor, like Deno's `--allow-*` flags: `true` grants all, a list
 * grants those paths, hosts, variables or commands, absent or `false` grants nothing. The
 * actor always also gets `--allow-ffi` and read access to the native library, which the
 * library itself needs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ActorPermissions } from "./spawn.ts";
 * const permissions: ActorPermissions = { read: ["./data"], net: ["127.0.0.1:8080"], env: true };
 * assert.ok(permissions.read !== undefined);
 * ```
 */
export interface ActorPermissions {
  /** `--allow-read`: file system read access. */
  read?: boolean | readonly (string | URL)[];
  /** `--allow-write`: file system write access. */
  write?: boolean | readonly (string | URL)[];
  /** `--allow-net`: network access, by `host[:port]`. */
  net?: boolean | readonly string[];
  /** `--allow-env`: environment variables. */
  env?: boolean | readonly string[];
  /** `--allow-run`: running subprocesses. */
  run?: boolean | readonly (string | URL)[];
  /** `--allow-sys`: system information (`hostname`, `osRelease`, ...). */
  sys?: boolean | readonly string[];
  /** `--allow-ffi`: always granted in full, since the library's native core needs it. */
  ffi?: boolean | readonly (string | URL)[];
  /** `--allow-import`: hosts remote modules may be imported from. */
  import?: boolean | readonly string[];
}

/**
 * What happens to an actor's stdout or stderr: passed through, captured, or discarded.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ActorStdio } from "../mod.ts";
 * const capture: ActorStdio = "piped";
 * assert.ok(capture === "piped");
 * ```
 */
export type ActorStdio = "inherit" | "piped" | "null";

/**
 * Options of {@linkcode spawnActor}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SpawnActorOptions } from "../mod.ts";
 * const options: SpawnActorOptions<{ seed: number }> = {
 *   args: { seed: 1 },
 *   permissions: { read: ["./data"] },
 *   stdout: "piped",
 *   readyTimeout: 10_000,
 * };
 * assert.ok(options.args?.seed === 1);
 * ```
 *
 * @typeParam A The type of `args`.
 */
export interface SpawnActorOptions<A = unknown> {
  /**
   * Queue ends for the actor, by name. For a `Sender` or `Receiver` the actor opens an end of
   * the same kind on the same queue; for a descriptor, the end its `end` field names. Your
   * own ends stay open (see `transfer`).
   */
  queues?: Readonly<Record<string, QueueHandoff>>;
  /**
   * A value for the actor, any value of the library's data model (objects, arrays, Maps,
   * TypedArrays, NdArrays, bigints, ...): `actorContext()` returns it as `args`. At most
   * 64 MiB once encoded (a `RangeError` says so before anything starts): it travels in the
   * actor's start-up line; send large data through a queue.
   */
  args?: A;
  /** Close the `Sender`/`Receiver` objects given in `queues` once the actor has opened its own
   * ends (default false). */
  transfer?: boolean;
  /** Permissions of the actor (default none beyond what the library needs). */
  permissions?: ActorPermissions;
  /** Command-line arguments of the actor module (`Deno.args` in the actor). */
  argv?: readonly string[];
  /** Extra `deno run` flags placed before the module (e.g. `--v8-flags=...`, `--config`).
   * Permissions go in `permissions`: flags here that grant any (`--allow-*`, `-A`, `-R`, `-N`,
   * ... alone or grouped, `--permission-set`) are refused with a TypeError. */
  denoArgs?: readonly string[];
  /** Environment variables to set for the actor. */
  env?: Readonly<Record<string, string>>;
  /** Start the actor with an empty environment plus `env` (default false). */
  clearEnv?: boolean;
  /** Working directory of the actor. */
  cwd?: string | URL;
  /** The actor's stdout: `"inherit"` (default) passes it through, `"piped"` captures it in
   * {@linkcode ActorHandle.stdout}, `"null"` discards it. */
  stdout?: ActorStdio;
  /** The actor's stderr, like `stdout`. Default `"inherit"`. */
  stderr?: ActorStdio;
  /**
   * Milliseconds to wait for the actor to open its queues (call `actorContext()`; with
   * neither `queues` nor `args`, `spawnActor` does not wait); then it is killed and
   * `spawnActor` rejects. Default 60000; `Infinity` waits as long as it takes.
   */
  readyTimeout?: number;
  /** Aborting kills the actor (SIGTERM); while starting, `spawnActor` rejects with an
   * `ActorError` whose `cause` is the signal's reason (an already aborted signal rejects with
   * the reason itself). */
  signal?: AbortSignal;
}

const SPAWN_ACTOR_OPTIONS = [
  "queues",
  "args",
  "transfer",
  "permissions",
  "argv",
  "denoArgs",
  "env",
  "clearEnv",
  "cwd",
  "stdout",
  "stderr",
  "readyTimeout",
  "signal",
] as const satisfies (keyof SpawnActorOptions)[];

/**
 * What {@linkcode ActorHandle.output} returns: the exit status and the captured output.
 *
 * @example
 * ```ts ignore
 * import { spawnActor } from "../mod.ts";
 * const actor = await spawnActor("./report.ts", { stdout: "piped" });
 * const { status, stdout } = await actor.output();
 * console.log(status.code, stdout);
 * ```
 */
export interface ActorResult {
  /** The actor's exit status. */
  readonly status: Deno.CommandStatus;
  /** Its stdout as text, when `stdout: "piped"` and not read otherwise; else empty. */
  readonly stdout: string;
  /** Its stderr as text, when `stderr: "piped"` and not read otherwise; else empty. */
  readonly stderr: string;
}

/** What `spawnActor` does with a handle while the actor starts: kept out of its public face,
 * where a call such as `writeHandoff` could corrupt the handoff. */
interface ActorStartup {
  /** The exit status, without keeping this process alive for it. */
  exited: Promise<Deno.CommandStatus>;
  /** The handle is handed out: reading the pipes ahead stops. */
  handedOut(): void;
  /** The end of a piped stdout or stderr (once the actor exited, or after a short wait). */
  outputTail(which: "stdout" | "stderr"): Promise<string>;
  /** Writes the handoff line (without waiting for the actor to read it). */
  writeHandoff(bytes: Uint8Array): void;
}

const startups = new WeakMap<ActorHandle, ActorStartup>();

/**
 * A running actor process, returned by {@linkcode spawnActor}. Dispose it (`await using`) to
 * make sure the process is gone: asked to stop as {@linkcode stop} does, then, if still
 * running after 1.5 s, sent SIGTERM, and SIGKILL 3 s later; then awaited.
 *
 * The actor does not keep this process alive by itself: a parent whose script ends exits,
 * and its actors then exit too (their stdin closes). Reading {@linkcode status}, the piped
 * streams or {@linkcode output}, and {@linkcode stop} or disposing, keep it alive until the
 * actor has exited.
 *
 * @example
 * ```ts ignore
 * import { spawnActor } from "../mod.ts";
 * await using actor = await spawnActor(new URL("./worker.ts", import.meta.url));
 * console.log(actor.pid);
 * const status = await actor.status;
 * console.log(status.code);
 * ```
 */
export class ActorHandle implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #stdout: StartupOutput | undefined;
  readonly #stderr: StartupOutput | undefined;
  #running = true;
  #stdinClosed = false;
  /** The handoff line is written, or queued on the writer: a byte written now comes after it
   * (the actor reads the two apart, see readHandoff), never before it. */
  #handoffQueued = false;

  /** @internal Made by `spawnActor`. */
  constructor(child: Deno.ChildProcess, piped: { stdout: boolean; stderr: boolean }) {
    if (!(child instanceof Deno.ChildProcess)) {
      throw new TypeError("an ActorHandle is made by spawnActor(), not new");
    }
    this.#child = child;
    // Otherwise a parent that forgets its actor never exits: the running child would keep it
    // alive, while the actor waits for the parent's end of its stdin to close.
    child.unref();
    this.#stdin = child.stdin.getWriter();
    this.#stdout = piped.stdout ? new StartupOutput(child.stdout) : undefined;
    this.#stderr = piped.stderr ? new StartupOutput(child.stderr) : undefined;
    this.#status = child.status.then((status) => {
      this.#running = false;
      this.#closeStdin();
      // An actor that died without closing its ends (killed, or an uncaught error: no unload
      // then) may have held the last end of a queue: remove what it left now, not whenever
      // a process next makes or opens a queue end. The sweep never touches a live queue.
      if (!status.success) {
        try {
          sweepStaleQueues();
        } catch { /* best effort: the next end made or opened sweeps again */ }
      }
      return status;
    });
    startups.set(this, {
      exited: this.#status,
      handedOut: () => {
        this.#stdout?.stopCapturing();
        this.#stderr?.stopCapturing();
      },
      outputTail: (which) =>
        (which === "stdout" ? this.#stdout : this.#stderr)?.tail(
          OUTPUT_TAIL_WAIT_MS,
          OUTPUT_TAIL_BYTES,
        ) ?? Promise.resolve(""),
      writeHandoff: (bytes) => {
        this.#handoffQueued = true;
        this.#stdin.write(bytes).catch(() => {
          // The actor exited without reading it: its status says why.
        });
      },
    });
  }

  /** The actor's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Resolves with the actor's exit status when it exits (code, and signal if killed by one).
   * Keeps this process alive until then. */
  get status(): Promise<Deno.CommandStatus> {
    this.#child.ref();
    return this.#status;
  }

  /** Whether the actor is still running (as far as this process has seen). */
  get running(): boolean {
    return this.#running;
  }

  /** The actor's stdout when spawned with `stdout: "piped"`, else `null`: from its first
   * byte (what it printed while starting was kept). Read it, or the actor blocks once the
   * pipe is full. */
  get stdout(): ReadableStream<Uint8Array> | null {
    return this.#piped(this.#stdout);
  }

  /** The actor's stderr when spawned with `stderr: "piped"`, else `null`. */
  get stderr(): ReadableStream<Uint8Array> | null {
    return this.#piped(this.#stderr);
  }

  /** Sends a signal to the actor (default SIGTERM). Does nothing once it has exited; throws
   * `TypeError` for a signal Deno does not know. An actor that reached `actorContext()` (with
   * `exitWithParent`, the default) does not die of `SIGINT`, so that Ctrl-C ends it with its
   * parent: send `SIGTERM`, or use `stop()`. */
  kill(signal?: Deno.Signal): void {
    if (!this.#running) return;
    try {
      this.#child.kill(signal);
    } catch (error) {
      // It exited between the check and the kill; a signal Deno does not know is the
      // caller's mistake, not a race.
      if (error instanceof TypeError && /invalid signal/i.test(error.message)) {
        throw new TypeError(`ActorHandle.kill: ${error.message}`, { cause: error });
      }
      if (!(error instanceof TypeError) && !(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  /**
   * Asks the actor to stop: closes its stdin, which its `actorContext()` watchdog treats like
   * the parent going away (it closes its queue ends and exits with code 0). If it has not
   * exited after `timeout` ms (default 2000), it is killed with SIGKILL.
   */
  async stop(options?: { timeout?: number }): Promise<Deno.CommandStatus> {
    if (options !== undefined) refuseUnknownOptions(options, ["timeout"], "ActorHandle.stop");
    const timeout = timeoutOption(options?.timeout, 2000, "ActorHandle.stop: timeout");
    this.#child.ref();
    this.#closeStdin(true);
    await this.#awaitExit(timeout);
    return await this.#status;
  }

  /**
   * Waits for the actor to exit and returns its status with the captured output (the piped
   * streams that nobody else has read, decoded as UTF-8).
   */
  async output(): Promise<ActorResult> {
    const read = (stream: ReadableStream<Uint8Array> | null): Promise<string> =>
      stream === null || stream.locked ? Promise.resolve("") : new Response(stream).text();
    const [status, stdout, stderr] = await Promise.all([
      this.status,
      read(this.stdout),
      read(this.stderr),
    ]);
    return { status, stdout, stderr };
  }

  /**
   * Ends the actor if it is running and waits for it; releases the pipes nobody reads. First
   * as {@linkcode stop} does: its stdin closes, and its `actorContext()` watchdog closes its
   * queue ends and exits, within about a second even when the actor is blocked. One that has
   * not exited by then (started without the watchdog) gets SIGTERM, then SIGKILL after 3 s:
   * killed, it dies without closing its ends, and this process then sweeps what it left (see
   * {@linkcode spawnActor}).
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#child.ref();
    if (this.#running) {
      this.#closeStdin(true);
      if (await this.#stillRunningAfter(STOP_GRACE_MS)) {
        this.kill("SIGTERM");
        await this.#awaitExit(3000);
      }
    }
    await this.#status;
    this.#closeStdin();
    for (const stream of [this.stdout, this.stderr]) {
      if (stream !== null && !stream.locked) await stream.cancel().catch(() => {});
    }
  }

  #piped(output: StartupOutput | undefined): ReadableStream<Uint8Array> | null {
    if (output === undefined) return null;
    this.#child.ref(); // Whoever reads it waits for it.
    return output.stream;
  }

  /** `ask`: a stop request (a byte, then the end of the stream), which the actor's watchdog
   * tells from its parent going away: it need not wait for this process to be gone before it
   * closes its ends. Without the byte (no handoff queued yet) it waits briefly. */
  #closeStdin(ask = false): void {
    if (this.#stdinClosed) return;
    this.#stdinClosed = true;
    if (ask && this.#handoffQueued) {
      this.#stdin.write(STOP_BYTE).catch(() => {});
      this.#stdin.close().catch(() => {});
    } else this.#stdin.abort().catch(() => {});
  }

  async #awaitExit(timeout: number): Promise<void> {
    if (await this.#stillRunningAfter(timeout)) this.kill("SIGKILL");
  }

  /** Waits up to `timeout` ms for the actor to exit; true when it is still running then. */
  async #stillRunningAfter(timeout: number): Promise<boolean> {
    if (!this.#running) return false;
    let timer: Timer | undefined;
    const expired = new Promise<boolean>((resolve) => {
      timer = timerFor(timeout, () => resolve(true));
    });
    try {
      return await Promise.race([this.#status.then(() => false), expired]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Starts a Deno subprocess actor running `moduleUrl` (`deno run` with `Deno.execPath()`) and
 * hands it queue ends. In the actor, `actorContext()` opens them. Resolves once the actor has
 * opened its ends, so you may close your copies then (or pass `transfer: true`). Rejects with
 * {@linkcode ActorError} when the actor exits, fails to open its queues or does not call
 * `actorContext()` within `readyTimeout`; the process is gone by then.
 *
 * The actor gets only the permissions you name in `options.permissions`, plus `--allow-ffi`
 * and read access to the native library (and, when the library came from `SHMQ_NATIVE_LIB` or
 * a remote import, that variable, so the actor opens the very same binary). Its stdin is the
 * handoff pipe: when it closes (this process died, or {@linkcode ActorHandle.stop}), the actor
 * closes its queue ends and exits. An actor that exits with an error or a signal may not have
 * closed them: this process then runs `sweepStaleQueues()`, which removes a queue it left with
 * no live end. The parent needs `--allow-run` (and `--allow-ffi`).
 *
 * With neither `queues` nor `args` (a process that need not call `actorContext()`), it
 * resolves as soon as the process is started.
 *
 * @example Hand a sender to an actor and read what it puts
 * ```ts ignore
 * import { createSharedMemoryPair, spawnActor } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair({ capacity: 8 });
 * await using actor = await spawnActor(new URL("./producer.ts", import.meta.url), {
 *   queues: { out: sender },
 *   args: { count: 10 },
 *   transfer: true, // closes `sender` here once the actor holds its own
 * });
 * for await (const message of receiver) console.log(message); // ends when the actor is done
 * console.log((await actor.status).code);
 * receiver.close();
 * ```
 *
 * @param moduleUrl The actor's module: a URL (`new URL("./actor.ts", import.meta.url)`) or a
 *   path (a relative path is resolved by `deno run` in the actor's working directory).
 * @param options Queues, args, permissions, output handling.
 * @returns The running actor, once it holds its queue ends.
 */
export async function spawnActor<A = unknown>(
  moduleUrl: string | URL,
  options: SpawnActorOptions<A> = {},
): Promise<ActorHandle> {
  const caller = "spawnActor";
  refuseUnknownOptions(options, SPAWN_ACTOR_OPTIONS, caller); // also refuses what is not an object
  const module = moduleSpecifier(moduleUrl, caller);
  const wire = toWire(options.queues, caller);
  const readyTimeout = timeoutOption(options.readyTimeout, 60_000, `${caller}: readyTimeout`);
  const args = options.args === undefined ? undefined : actorArgs(options.args, caller);
  const stdout = stdioOption(options.stdout, "stdout", caller);
  const stderr = stdioOption(options.stderr, "stderr", caller);
  const denoArgs = checkDenoArgs(options.denoArgs, caller);
  const argv = stringList(options.argv, "argv", caller);
  const transfer = booleanOption(options.transfer, false, "transfer", caller);
  const clearEnv = booleanOption(options.clearEnv, false, "clearEnv", caller);
  const cwd = cwdOption(options.cwd, caller);
  const signal = signalOption(options.signal, caller);
  const env = envOption(options.env, caller);
  signal?.throwIfAborted();
  const copy = await libraryCopy();
  const library = copy === undefined ? libraryLocation() : { path: copy.path, source: "remote" };
  let flags: string[];
  try {
    flags = permissionFlags(options.permissions, library, caller);
  } catch (error) {
    copy?.remove();
    throw error;
  }
  if (library !== undefined && library.source !== "local") env[NATIVE_LIB_ENV] = library.path;
  env[ACTOR_PARENT_ENV] = String(Deno.pid); // for the preload's watch

  // Args reach the actor only through actorContext(), which it must call then: wait for it.
  const needsAck = Object.keys(wire).length > 0 || args !== undefined;
  const control = needsAck
    ? createSharedMemoryPair({ capacity: 1, arenaBytes: CONTROL_ARENA_BYTES })
    : undefined;
  let handle: ActorHandle;
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        ...preloadFlags(),
        ...flags,
        ...denoArgs,
        module,
        ...argv,
      ],
      stdin: "piped",
      stdout,
      stderr,
      env,
      clearEnv,
      cwd,
      signal,
    }).spawn();
    handle = new ActorHandle(child, {
      stdout: stdout === "piped",
      stderr: stderr === "piped",
    });
  } catch (error) {
    closeControl(control);
    copy?.remove();
    throw processFailure(error, `${caller}(${module})`, cwd);
  }
  // An actor without queues may open the library any time while it runs.
  const startup = startups.get(handle)!;
  if (copy !== undefined) startup.exited.then(copy.remove);
  startup.writeHandoff(handoffLine(wire, args, control?.[1].descriptor));
  if (control === undefined) {
    startup.handedOut();
    return handle;
  }

  try {
    await awaitReady(startup, control[1], readyTimeout, signal);
  } catch (error) {
    // Never leave a process behind: the caller gets no handle.
    handle.kill("SIGKILL");
    const status = await handle.status;
    // Without Deno's colours: the text goes into an error message, not to a terminal.
    const [tail, outTail] = (await Promise.all([
      startup.outputTail("stderr"),
      startup.outputTail("stdout"),
      // deno-lint-ignore no-control-regex -- ESC starts the colour codes to remove
    ])).map((text) => text.replace(/\x1b\[[0-9;]*m/g, "").trimEnd());
    await handle[Symbol.asyncDispose]();
    closeControl(control); // After the actor is gone, so its control end is reaped.
    // Failed by itself, not killed by the timeout: what it wrote (or did not) says why.
    const failedAlone = status.code !== 0 && status.signal === null;
    // An actor may say why on stdout too (console.log): quoted when piped and not empty.
    const said = (tail === ""
      ? stderr === "piped" && failedAlone ? "; it wrote nothing to stderr" : ""
      : `; its stderr ended with:\n${tail}`) +
      (outTail === "" ? "" : `${tail === "" ? ";" : "\nand"} its stdout ended with:\n${outTail}`);
    // Deno's own advice ("run again with the --allow-read flag") does not apply to an actor,
    // whose permissions come from options.permissions (denoArgs refuses permission flags).
    // Its stderr is quoted only when piped: otherwise it went to this process's stderr, which
    // may hold the same advice.
    const permissions = "an actor gets only the permissions named in spawnActor's " +
      'options.permissions, e.g. { read: ["./data"] }';
    const hint = /NotCapable|Requires \w+ access/.test(tail)
      ? `\n(${permissions}: pass the one it asks for there)`
      : stderr !== "piped" && failedAlone
      ? `\n(its stderr was not captured: if it asks for a permission there, note that ${permissions})`
      : "";
    throw new ActorError(`${caller}(${module}): ${(error as Error).message}${said}${hint}`, {
      cause: startFailureCause(error, signal),
      status,
    });
  }
  copy?.remove(); // The actor opened its queues: its library is open.
  await settleControl(control);
  if (transfer) closeHanded(options.queues);
  startup.handedOut();
  return handle;
}

/**
 * Closes the control queue after a successful report, as its last end: the actor closes its
 * control sender right after reporting, but it may be killed in between, so wait until the
 * queue is drained (the actor closed, or its death was noticed) and only then leave. Leaving
 * first could leave the dying actor as the last participant, and the queue in /dev/shm.
 */
async function settleControl([sender, receiver]: [Sender, Receiver]): Promise<void> {
  sender.close();
  try {
    await receiver.get({ timeout: 5000 });
  } catch {
    // Drained, as expected (or still held after 5 s: then a later sweep removes it).
  }
  receiver.close();
}

/** Waits for the actor's report on the control queue. */
async function awaitReady(
  startup: ActorStartup,
  control: Receiver,
  timeout: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const stop = new AbortController();
  let why = "";
  const abort = (reason: string) => {
    if (!why) why = reason;
    stop.abort();
  };
  const onSignal = () => abort("aborted");
  signal?.addEventListener("abort", onSignal, { once: true });
  startup.exited.then((s) =>
    abort(
      `the actor exited (${describe(s)}) before it called actorContext(), or before that call ` +
        "reported back",
    )
  );
  const timer = timerFor(
    timeout,
    () => abort(`the actor did not call actorContext() within ${timeout} ms`),
  );
  let report: ControlMessage | undefined;
  try {
    report = await control.get<ControlMessage>({ signal: stop.signal });
  } catch (error) {
    if (!stop.signal.aborted) throw error;
    // It may have reported just before exiting.
    report = control.getNowait<ControlMessage>();
    if (report === undefined) throw new Error(why);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onSignal);
  }
  if (!report.ok) throw new Error(`the actor could not open its queues: ${report.error}`);
}

function describe(status: Deno.CommandStatus): string {
  return status.signal ? `killed by ${status.signal}` : `code ${status.code}`;
}

function closeControl(control: [Sender, Receiver] | undefined): void {
  if (control === undefined) return;
  control[0].close();
  control[1].close();
}

/** The `args` option as the handoff carries it (base64 of the codec's bytes). */
function actorArgs(value: unknown, caller: string): string {
  const bytes = encodeArgs(value, caller);
  if (bytes.length > MAX_ACTOR_ARGS_BYTES) {
    throw new RangeError(
      `${caller}: args encode to ${bytes.length} bytes, more than the ${MAX_ACTOR_ARGS_BYTES} ` +
        `an actor is started with: send large data through a queue`,
    );
  }
  return bytes.toBase64();
}

function handoffLine(
  wire: WireQueues,
  args: string | undefined,
  control: unknown,
): Uint8Array {
  const handoff = { shmqActor: HANDOFF_VERSION, control, queues: wire, args };
  return new TextEncoder().encode(JSON.stringify(handoff) + "\n");
}

/** The module every actor runs first: it exits should this process go before the actor
 * reaches actorContext() (see preload.ts). One URL for every actor: a remote one goes into
 * lockfiles. */
const PRELOAD = new URL("./preload.ts", import.meta.url).href;

/** `--preload` for the actor, on a Deno that has it (2.4 and later; the actor runs this one). */
function preloadFlags(): string[] {
  const [major, minor] = Deno.version.deno.split(".").map(Number);
  return major > 2 || (major === 2 && minor >= 4) ? [`--preload=${PRELOAD}`] : [];
}

function stdioOption(value: ActorStdio | undefined, name: string, caller: string): ActorStdio {
  if (value === undefined) return "inherit";
  if (value !== "inherit" && value !== "piped" && value !== "null") {
    throw new TypeError(
      `${caller}: ${name} must be "inherit", "piped" or "null", got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function moduleSpecifier(moduleUrl: string | URL, caller: string): string {
  if (moduleUrl instanceof URL) return moduleUrl.href;
  if (typeof moduleUrl !== "string" || moduleUrl === "") {
    throw new TypeError(`${caller}: moduleUrl must be a URL or a path`);
  }
  // `deno run` would take "-W" or "-hello.ts" for a flag: a path it stays.
  return moduleUrl.startsWith("-") ? `./${moduleUrl}` : moduleUrl;
}

/**
 * A private copy of the native library for one actor, when this process opened its own from a
 * temporary copy removed since (an http(s) import without env permission, or an actor of
 * such a parent); else undefined.
 * `remove` deletes it (once the actor has opened it, or exited).
 */
async function libraryCopy(): Promise<{ path: string; remove(): void } | undefined> {
  const bytes = transientLibraryBytes();
  if (bytes === undefined) return undefined;
  const path = await Deno.makeTempFile({ prefix: ACTOR_LIBRARY_PREFIX, suffix: ".so" });
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    try {
      Deno.removeSync(path);
    } catch {
      // Gone already: nothing to do.
    }
  };
  try {
    await Deno.writeFile(path, bytes);
  } catch (error) {
    remove();
    throw error;
  }
  return { path, remove };
}

/**
 * The error of a process that could not be started at all, as an ActorError that says what
 * to do: Deno's own advice ("run again with the --allow-run flag") does not fit an actor
 * that starts actors, whose permissions come from its parent's spawnActor.
 */
function processFailure(error: unknown, what: string, cwd: string | URL | undefined): unknown {
  if (error instanceof Deno.errors.NotCapable) {
    return new ActorError(
      `${what}: this process may not start ${Deno.execPath()}: run it with --allow-run (an ` +
        `actor that starts actors of its own needs permissions: { run: true } from its parent)`,
      { cause: error },
    );
  }
  if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied) {
    const dir = cwd instanceof URL ? cwd.pathname : cwd;
    const where = dir === undefined ? "" : ` in options.cwd ${dir} (is it a directory?)`;
    return new ActorError(
      `${what}: could not start ${Deno.execPath()}${where}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return error;
}

/** Where the native library was opened from here, so the actor can be allowed to open it. */
function libraryLocation(): { path: string; source: string } | undefined {
  try {
    const core = native();
    return { path: core.path, source: core.source };
  } catch {
    return undefined; // The actor will report the problem itself.
  }
}

const PERMISSIONS = ["read", "write", "net", "env", "run", "sys", "ffi", "import"] as const;

/** The hosts Deno lets a program import from when `--allow-import` is not given. */
const DEFAULT_IMPORT_HOSTS = [
  "deno.land:443",
  "jsr.io:443",
  "esm.sh:443",
  "raw.esm.sh:443",
  "cdn.jsdelivr.net:443",
  "raw.githubusercontent.com:443",
  "gist.githubusercontent.com:443",
];

/** The host (with its port) the actor imports `preload` from; undefined for a local file. */
function preloadImportHost(preload: string): string | undefined {
  const url = new URL(preload);
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  return `${url.hostname}:${url.port || (url.protocol === "https:" ? "443" : "80")}`;
}

/** The `--allow-*` flags: the caller's, plus what the library needs (reading its native
 * library, its environment variables, and importing its preload module). */
export function permissionFlags(
  permissions: ActorPermissions | undefined,
  library: { path: string; source: string } | undefined,
  caller: string,
  preload: string = PRELOAD,
): string[] {
  if (permissions !== undefined && (typeof permissions !== "object" || permissions === null)) {
    throw new TypeError(`${caller}: permissions must be an object like { read: ["./data"] }`);
  }
  for (const key of Object.keys(permissions ?? {})) {
    if (!(PERMISSIONS as readonly string[]).includes(key)) {
      throw new TypeError(
        `${caller}: unknown permission "${key}"; known: ${PERMISSIONS.join(", ")}`,
      );
    }
  }
  const flags: string[] = [];
  for (const name of PERMISSIONS) {
    const given = permissions?.[name];
    let grant: true | Set<string> | undefined;
    if (given === true || name === "ffi") {
      grant = true;
    } else if (Array.isArray(given)) {
      grant = new Set(given.map((v) => permissionValue(v, name, caller)));
    } else if (given !== undefined && given !== false) {
      throw new TypeError(`${caller}: permissions.${name} must be a boolean or a list`);
    }
    if (grant !== true) {
      const importHost = name === "import" ? preloadImportHost(preload) : undefined;
      const needed = name === "read" && library !== undefined
        ? [library.path]
        : name === "env"
        ? [ACTOR_PARENT_ENV, ...(library && library.source !== "local" ? [NATIVE_LIB_ENV] : [])]
        : importHost === undefined
        ? []
        : grant !== undefined // the caller's list, which replaces Deno's default one
        ? [importHost]
        : DEFAULT_IMPORT_HOSTS.includes(importHost)
        ? []
        // A list replaces Deno's default one: keep that too.
        : [importHost, ...DEFAULT_IMPORT_HOSTS];
      if (needed.length > 0) {
        const list: Set<string> = grant ?? new Set();
        for (const value of needed) list.add(value);
        grant = list;
      }
    }
    if (grant === true) flags.push(`--allow-${name}`);
    else if (grant !== undefined && grant.size > 0) flags.push(`--allow-${name}=${[...grant]}`);
  }
  return flags;
}

function permissionValue(value: unknown, name: string, caller: string): string {
  if (value instanceof URL && value.protocol !== "file:") {
    throw new TypeError(
      `${caller}: permissions.${name} entries may be file: URLs only, got ${value.href}`,
    );
  }
  const text = value instanceof URL ? decodeURIComponent(value.pathname) : value;
  if (typeof text !== "string" || text === "" || text.includes(",")) {
    throw new TypeError(
      `${caller}: permissions.${name} entries must be non-empty strings without commas, got ${
        JSON.stringify(String(value))
      }`,
    );
  }
  return text;
}

/** `deno run` flags that grant permissions: the long ones, and short ones alone or in a group
 * (`-A`, `-R`, `-W`, `-N`, `-E`, `-S`, `-I`, `-P`, `-RW`, `-N=host`). */
const PERMISSION_FLAG = /^(--allow-|--permission-set|--unsafely-ignore|-[A-Za-z]*[ARWNESIP])/;

function checkDenoArgs(denoArgs: readonly string[] | undefined, caller: string): string[] {
  const list = stringList(denoArgs, "denoArgs", caller);
  for (const arg of list) {
    if (PERMISSION_FLAG.test(arg)) {
      // Not a permission, but npm's lifecycle scripts run outside the actor's sandbox.
      const why = /^--allow-scripts(=|$)/.test(arg)
        ? "; npm lifecycle scripts run outside the permission sandbox: run them in the parent " +
          "(deno install --allow-scripts) before it starts the actor"
        : "; use options.permissions";
      throw new TypeError(`${caller}: denoArgs may not grant permissions (${arg})${why}`);
    }
  }
  return list;
}

/** The actor's environment additions: names to string values (a copy). */
function envOption(env: unknown, caller: string): Record<string, string> {
  if (env === undefined) return {};
  if (typeof env !== "object" || env === null || Array.isArray(env)) {
    throw new TypeError(`${caller}: env must be an object of names to strings, got ${shown(env)}`);
  }
  const copy: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    // What the environment cannot carry, refused by name rather than by the spawn.
    if (name === "" || /[=\0]/.test(name)) {
      throw new TypeError(`${caller}: env has a name the environment cannot hold: ${shown(name)}`);
    }
    if (typeof value !== "string") {
      throw new TypeError(`${caller}: env.${name} must be a string, got ${shown(value)}`);
    }
    if (value.includes("\0")) {
      throw new TypeError(`${caller}: env.${name} holds a NUL character, which no process gets`);
    }
    copy[name] = value;
  }
  return copy;
}

/** The actor's working directory: a path or a file: URL. */
function cwdOption(cwd: unknown, caller: string): string | URL | undefined {
  if (
    cwd !== undefined && typeof cwd !== "string" &&
    !(cwd instanceof URL && cwd.protocol === "file:")
  ) {
    throw new TypeError(`${caller}: cwd must be a path or a file: URL, got ${shown(cwd)}`);
  }
  return cwd;
}

function stringList(list: readonly string[] | undefined, what: string, caller: string): string[] {
  if (list === undefined) return [];
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string")) {
    throw new TypeError(`${caller}: ${what} must be a list of strings`);
  }
  const nul = list.findIndex((s) => s.includes("\0"));
  if (nul >= 0) {
    throw new TypeError(`${caller}: ${what}[${nul}] holds a NUL character, which no process gets`);
  }
  return [...list];
}
