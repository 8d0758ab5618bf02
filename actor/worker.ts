/**
 * Module Workers that receive queue ends: {@linkcode spawnWorker} in the parent,
 * {@linkcode workerContext} in the Worker.
 *
 * The Worker starts the exchange (`workerContext()` posts a hello), so the handoff can never
 * arrive before it listens; the parent answers with the descriptors and the `args` encoded by
 * the library's codec, and `spawnWorker` resolves once the Worker reports its ends open.
 *
 * @module
 */

import { pathToFileURL } from "node:url";
import { decode } from "../codec/mod.ts";
import { threadAlive, type ThreadIdentity, threadIdentity } from "../ffi/native.ts";
import {
  beforeClosingAtExit,
  closedEndsUnmapped,
  closeEndsOfThisThread,
  closeEndsOfThisThreadAtExit,
  recordEndsOfThisThreadAsDead,
} from "../queue/open_ends.ts";
import { onStopRequest, STOP_CLOSE, STOP_EXITING, STOP_TERMINATED } from "../queue/stop.ts";
import { refuseUnknownOptions } from "../queue/option_names.ts";
import { timeoutOption, timerFor } from "../queue/timer.ts";
import { signalOption } from "../queue/wait.ts";
import { ClosedError } from "../queue/errors.ts";
import { shown } from "../queue/shown.ts";
import { ActorError } from "./errors.ts";
import {
  type ActorContext,
  booleanOption,
  checkSpec,
  closeHanded,
  encodeArgs,
  errorText,
  HANDOFF_VERSION,
  makeContext,
  onUncaughtError,
  openAll,
  type OpenedQueues,
  PARENT_EXIT_REASONS,
  parseWireQueues,
  type QueueEnd,
  type QueueHandoff,
  type QueueSpec,
  startFailureCause,
  toWire,
  type WireQueues,
} from "./protocol.ts";

/** The key of every message the library exchanges with a Worker. */
const KEY = "shmq:worker";

type ToParent =
  /** `thread` lets the parent see the Worker end itself (self.close()), which posts nothing. */
  | { type: "hello"; thread?: ThreadIdentity }
  | { type: "ready" }
  | { type: "error"; error: string }
  | { type: "closed" };
type ToWorker =
  | {
    type: "handoff";
    version: number;
    queues: WireQueues;
    args?: Uint8Array;
    /** Raised by WorkerHandle.close: see queue/stop.ts. */
    stop?: Int32Array;
  }
  | { type: "close" };

function ours<T>(data: unknown): T | undefined {
  if (typeof data !== "object" || data === null || !Object.hasOwn(data, KEY)) return undefined;
  return (data as Record<string, T>)[KEY];
}

/**
 * Options of {@linkcode spawnWorker}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SpawnWorkerOptions } from "../mod.ts";
 * const options: SpawnWorkerOptions<{ name: string }> = { name: "w0", args: { name: "w0" } };
 * assert.ok(options.args?.name === "w0");
 * ```
 *
 * @typeParam A The type of `args`.
 */
export interface SpawnWorkerOptions<A = unknown> {
  /** Queue ends for the Worker, by name (as for `spawnActor`: a `Sender` or `Receiver` makes
   * the Worker open the same kind, a descriptor the end it names). */
  queues?: Readonly<Record<string, QueueHandoff>>;
  /** A value of the library's data model for the Worker: `workerContext()` returns it. */
  args?: A;
  /** Close the `Sender`/`Receiver` objects in `queues` once the Worker holds its own ends. */
  transfer?: boolean;
  /** The Worker's name (for debugging). */
  name?: string;
  /** Milliseconds to wait for the Worker to call `workerContext()` (default 60000), when it is
   * handed `queues` or `args`. A Worker that ends itself (`self.close()`) before that call is
   * noticed only then: until its first message, Deno tells its parent nothing of its end. (A
   * Worker that fails with an uncaught error is noticed at once.) */
  readyTimeout?: number;
  /** Aborting while the Worker starts terminates it and rejects `spawnWorker` with an
   * `ActorError` whose `cause` is the signal's reason (an already aborted signal rejects with
   * the reason itself, and no Worker is started). Unlike `spawnActor`'s, an abort once
   * `spawnWorker` has resolved does nothing: end the Worker with `close()`. */
  signal?: AbortSignal;
}

const SPAWN_WORKER_OPTIONS = [
  "queues",
  "args",
  "transfer",
  "name",
  "readyTimeout",
  "signal",
] as const satisfies (keyof SpawnWorkerOptions)[];

/** The stop word of each handle, which `spawnWorker` hands its Worker: kept out of the
 * handle's public face. */
const stopWords = new WeakMap<WorkerHandle, Int32Array>();
/** The stop words of the Workers not terminated yet, raised (STOP_EXITING) as this thread
 * exits, before it closes its ends: a Worker's call that then fails for want of them (its
 * receivers gone) is the exit's doing, not an error to print as uncaught. */
const liveStopWords = new Set<Int32Array>();
beforeClosingAtExit(() => {
  for (const word of liveStopWords) Atomics.compareExchange(word, 0, 0, STOP_EXITING);
});
/** The thread of each Worker that said hello, where /proc can name it. */
const workerThreads = new WeakMap<WorkerHandle, ThreadIdentity>();

/** How often a wait for a Worker checks whether its thread has ended. */
const THREAD_CHECK_MS = 100;

/** Calls `ended` once the Worker's thread has ended on its own (`self.close()`, which no event
 * reports), checked from its hello on; returns what stops the checks. */
function onWorkerEnded(handle: WorkerHandle, ended: () => void): () => void {
  const timer = setInterval(() => {
    const thread = workerThreads.get(handle);
    if (thread !== undefined && !threadAlive(Deno.pid, thread)) ended();
  }, THREAD_CHECK_MS);
  Deno.unrefTimer(timer);
  return () => clearInterval(timer);
}

/**
 * A module Worker started by {@linkcode spawnWorker}. Dispose it (`await using`) or call
 * {@linkcode WorkerHandle.close} to stop it cleanly: the Worker's queue ends are closed first,
 * then it is terminated.
 *
 * @example
 * ```ts ignore
 * import { spawnWorker } from "../mod.ts";
 * await using worker = await spawnWorker(new URL("./worker.ts", import.meta.url));
 * worker.worker.postMessage("hello"); // the plain Worker is there for your own messages
 * ```
 */
export class WorkerHandle implements AsyncDisposable {
  readonly #worker: Worker;
  #closing: Promise<void> | undefined;
  #closed?: () => void;
  #terminated = false;
  /** Whether the Worker called `workerContext()`: only then is there anything to close first. */
  #hasContext = false;
  /** The Worker failed with an uncaught error: Deno ended it, nothing is left to answer. */
  #failed = false;
  /** Raised by close and terminate, for a Worker blocked in a sync call (see queue/stop.ts). */
  readonly #stop = new Int32Array(new SharedArrayBuffer(4));

  /** @internal Made by `spawnWorker`. */
  constructor(worker: Worker) {
    if (!(worker instanceof Worker)) {
      throw new TypeError("a WorkerHandle is made by spawnWorker(), not new");
    }
    this.#worker = worker;
    stopWords.set(this, this.#stop);
    liveStopWords.add(this.#stop);
    worker.addEventListener("message", (event) => {
      const message = ours<ToParent>(event.data);
      if (message?.type === "hello") {
        this.#hasContext = true;
        if (isThreadIdentity(message.thread)) workerThreads.set(this, message.thread);
      }
      if (message?.type === "closed") this.#closed?.();
    });
    // Only noted, never prevented: whether the error ends this process stays the caller's call.
    worker.addEventListener("error", () => {
      this.#failed = true;
      liveStopWords.delete(this.#stop);
      this.#closed?.();
    });
  }

  /** The Worker itself, for your own messages and event listeners. */
  get worker(): Worker {
    return this.#worker;
  }

  /**
   * Stops the Worker cleanly: asks it to close the queue ends of its `workerContext()` (waits
   * in it then reject with `ClosedError`, reason `"closed"`; left uncaught, those end the
   * Worker quietly, and never this process), waits until it has (at most `timeout` ms,
   * default 1000, or until its thread is seen to have ended, as after `self.close()`), then
   * terminates it; one that never called `workerContext()`, or that failed, is terminated at
   * once. A Worker in a loop of the library's blocking or polling calls (`getSync`,
   * `getManySync`, `borrowSync`, `putSync`, `putManySync`, `prepareSync`,
   * `waitForAllAckSync`, `getNowait`, `hasSpace`) never reads the request, and Deno cannot
   * stop its thread; its next such call (or its current one, within a 0.2 s wait slice)
   * closes every end the Worker has open and throws `ClosedError` instead. A Worker blocked
   * or busy elsewhere runs on, and its ends stay open until the process exits.
   */
  close(options?: { timeout?: number }): Promise<void> {
    let timeout: number;
    try {
      if (options !== undefined) refuseUnknownOptions(options, ["timeout"], "WorkerHandle.close");
      timeout = timeoutOption(options?.timeout, 1000, "WorkerHandle.close: timeout");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#closing ??= this.#close(timeout);
  }

  /** Terminates the Worker at once. Its queue ends are not closed: their peers treat them as
   * dead once the Worker's thread has ended (within about a second), and a message one of them
   * held counts as received. A Worker in a loop of the library's blocking or polling calls,
   * which Deno does not stop, is stopped by its next such call as in {@linkcode close}; its
   * ends then leave as dead ones do (peers count them in `sendersDied`/`receiversDied`).
   * Prefer {@linkcode close}. */
  terminate(): void {
    if (!this.#terminated) {
      // The ClosedError the stop throws in the Worker is expected: it must not end this process.
      this.#worker.addEventListener("error", (event) => event.preventDefault());
    }
    this.#terminated = true;
    liveStopWords.delete(this.#stop);
    // Unless a close() asked for a clean close first (it ends with this terminate).
    Atomics.compareExchange(this.#stop, 0, 0, STOP_TERMINATED);
    this.#worker.terminate();
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(timeout: number): Promise<void> {
    if (this.#terminated) return;
    if (!this.#hasContext || this.#failed) {
      // No workerContext() (or the Worker failed since): nothing would answer.
      this.terminate();
      return;
    }
    // Closing its ends makes the Worker's pending waits throw; those are expected.
    this.#worker.addEventListener("error", (event) => event.preventDefault());
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopChecks: (() => void) | undefined;
    await new Promise<void>((resolve) => {
      this.#closed = resolve;
      timer = timerFor(timeout, resolve);
      // A Worker that ended itself never answers: no need to wait out the timeout.
      stopChecks = onWorkerEnded(this, resolve);
      // Read by a Worker blocked in a sync call, which never reads the message.
      Atomics.store(this.#stop, 0, STOP_CLOSE);
      this.#worker.postMessage({ [KEY]: { type: "close" } satisfies ToWorker });
    });
    clearTimeout(timer);
    stopChecks?.();
    this.terminate();
  }
}

function isThreadIdentity(value: unknown): value is ThreadIdentity {
  const t = value as ThreadIdentity | undefined;
  return typeof t === "object" && t !== null &&
    [t.tid, t.start, t.pidNamespace, t.timeNamespace].every(Number.isFinite);
}

/**
 * Starts a module Worker running `moduleUrl` and hands it queue ends; in the Worker,
 * {@linkcode workerContext} opens them. Resolves once the Worker holds its ends, so you may
 * close your copies then (or pass `transfer: true`). Rejects with {@linkcode ActorError}
 * (and terminates the Worker) when the Worker fails to load, fails to open its queues or does
 * not call `workerContext()` within `readyTimeout`. With neither `queues` nor `args`, it
 * resolves at once.
 *
 * Several Workers can be handed the same queue: each opens its own end, and the queue
 * delivers every message to exactly one receiver.
 *
 * @example Two Workers consuming one queue, answering on another
 * ```ts ignore
 * import { createSharedMemoryPair, spawnWorker } from "../mod.ts";
 * const [jobs, inbox] = createSharedMemoryPair();
 * const [outbox, results] = createSharedMemoryPair();
 * const url = new URL("./squarer.ts", import.meta.url);
 * const queues = { jobs: inbox, results: outbox };
 * await using a = await spawnWorker(url, { queues });
 * await using b = await spawnWorker(url, { queues });
 * inbox.close();
 * outbox.close();
 * for (let i = 0; i < 100; i++) await jobs.put(i);
 * jobs.close(); // the Workers' `for await` loops end once the queue is drained
 * let sum = 0;
 * // Every answer is in before `a` and `b` are closed (which stops work in progress).
 * for (let i = 0; i < 100; i++) sum += await results.get<number>();
 * ```
 *
 * @param moduleUrl The Worker's module: a URL (`new URL("./worker.ts", import.meta.url)`) or
 *   an absolute path.
 * @param options Queues, args, name.
 * @returns The running Worker, once it holds its queue ends.
 */
export async function spawnWorker<A = unknown>(
  moduleUrl: string | URL,
  options: SpawnWorkerOptions<A> = {},
): Promise<WorkerHandle> {
  const caller = "spawnWorker";
  refuseUnknownOptions(options, SPAWN_WORKER_OPTIONS, caller); // also refuses what is not an object
  const wire = toWire(options.queues, caller);
  const args = options.args === undefined ? undefined : encodeArgs(options.args, caller);
  const readyTimeout = timeoutOption(options.readyTimeout, 60_000, `${caller}: readyTimeout`);
  const transfer = booleanOption(options.transfer, false, "transfer", caller);
  const signal = signalOption(options.signal, caller);
  if (options.name !== undefined && typeof options.name !== "string") {
    throw new TypeError(`${caller}: name must be a string, got ${shown(options.name)}`);
  }
  signal?.throwIfAborted();

  if (typeof moduleUrl !== "string" && !(moduleUrl instanceof URL)) {
    throw new TypeError(
      `${caller}: moduleUrl must be a URL or an absolute path, got ${shown(moduleUrl)}`,
    );
  }
  const specifier = typeof moduleUrl === "string" && moduleUrl.startsWith("/")
    ? pathToFileURL(moduleUrl) // an absolute path (with "#" or "?" in it, too)
    : moduleUrl;
  if (typeof specifier === "string" && !URL.canParse(specifier)) {
    throw new TypeError(
      `${caller}: moduleUrl must be a URL or an absolute path, got ${JSON.stringify(specifier)} ` +
        `(for a module next to yours: new URL(${JSON.stringify(specifier)}, import.meta.url))`,
    );
  }
  const worker = new Worker(specifier, { type: "module", name: options.name });
  const handle = new WorkerHandle(worker);
  let settle: { resolve(): void; reject(error: Error): void } | undefined;
  const ready = new Promise<void>((resolve, reject) => settle = { resolve, reject });
  // Not awaited when the Worker is handed nothing: a failed workerContext() there is the
  // Worker's to handle, not an unhandled rejection that ends this process.
  ready.catch(() => {});
  const onMessage = (event: MessageEvent) => {
    const message = ours<ToParent>(event.data);
    if (message === undefined) return;
    event.stopImmediatePropagation();
    if (message.type === "hello") {
      const handoff: ToWorker = {
        type: "handoff",
        version: HANDOFF_VERSION,
        queues: wire,
        args,
        stop: stopWords.get(handle)!,
      };
      worker.postMessage({ [KEY]: handoff });
    } else if (message.type === "ready") {
      settle?.resolve();
    } else if (message.type === "error") {
      settle?.reject(new Error(`the Worker could not open its queues: ${message.error}`));
    }
  };
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    settle?.reject(new Error(`the Worker failed: ${event.message}`));
  };
  // Stays for the Worker's lifetime: it answers the hello even when nobody waits for "ready".
  worker.addEventListener("message", onMessage);
  // Args reach the Worker only through workerContext(), which it must call then: wait for it.
  if (Object.keys(wire).length === 0 && args === undefined) return handle;

  worker.addEventListener("error", onError);
  const onAbort = () => settle?.reject(new Error("aborted"));
  signal?.addEventListener("abort", onAbort, { once: true });
  const timer = timerFor(
    readyTimeout,
    () =>
      settle?.reject(
        new Error(`the Worker did not call workerContext() within ${readyTimeout} ms`),
      ),
  );
  const stopChecks = onWorkerEnded(
    handle,
    () =>
      settle?.reject(new Error("the Worker ended (self.close()) before it called workerContext()")),
  );
  try {
    await ready;
  } catch (error) {
    handle.terminate();
    throw new ActorError(`${caller}(${moduleUrl}): ${(error as Error).message}`, {
      cause: startFailureCause(error, signal),
    });
  } finally {
    clearTimeout(timer);
    stopChecks();
    signal?.removeEventListener("abort", onAbort);
    worker.removeEventListener("error", onError);
  }
  if (transfer) closeHanded(options.queues);
  return handle;
}

/**
 * Options of {@linkcode workerContext}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { WorkerContextOptions } from "../mod.ts";
 * const options: WorkerContextOptions<{ jobs: "receiver" }> = { queues: { jobs: "receiver" } };
 * assert.ok(options.queues?.jobs === "receiver");
 * ```
 *
 * @typeParam S The queue spec.
 */
export interface WorkerContextOptions<S extends QueueSpec = QueueSpec> {
  /** The queues this Worker expects, by name and end: `{ jobs: "receiver" }`. Types `queues`
   * and is checked against what the parent handed over (every name there, as that end, and no
   * other). Without it, every end handed over is opened. */
  queues?: S;
}

interface WorkerScope {
  postMessage(message: unknown): void;
  addEventListener(type: "message", listener: (event: MessageEvent) => void): void;
}

let workerStarted: Promise<{ queues: Record<string, QueueEnd>; args: unknown }> | undefined;
let workerCtx: ActorContext<Readonly<Record<string, QueueEnd>>, unknown> | undefined;

/**
 * In a Worker started by {@linkcode spawnWorker}: opens the queue ends the parent handed over
 * and returns them with the `args` value. The first call asks the parent for the handoff;
 * later calls return the same ends, checked against their own spec. Messages of the library
 * carry the key `"shmq:worker"` and are not passed to your listeners registered after it.
 * In a Worker made with `new Worker()` it gets no handoff: it warns after 5 s, and waits on.
 *
 * Close the ends (or the context, or `using`) when the Worker is done; the parent's
 * {@linkcode WorkerHandle.close} closes them too.
 *
 * @example A Worker squaring numbers from one queue into another
 * ```ts ignore
 * import { workerContext } from "../mod.ts";
 * using ctx = await workerContext({ queues: { jobs: "receiver", results: "sender" } });
 * for await (const n of ctx.queues.jobs) await ctx.queues.results.put((n as number) ** 2);
 * ```
 *
 * @typeParam S The queue spec (inferred from `options.queues`).
 * @typeParam A The type of the `args` value.
 * @param options The expected queues.
 * @returns The opened queue ends and the args.
 */
export async function workerContext<S extends QueueSpec = QueueSpec, A = unknown>(
  options?: WorkerContextOptions<S>,
): Promise<ActorContext<OpenedQueues<S>, A>> {
  const caller = "workerContext";
  if (options !== undefined) refuseUnknownOptions(options, ["queues"], caller);
  workerStarted ??= startWorker(options, caller);
  const { queues, args } = await workerStarted;
  const wire = Object.fromEntries(
    Object.entries(queues).map(([name, end]) => [name, {
      open: end.descriptor.end,
      descriptor: end.descriptor,
    }]),
  );
  checkSpec(wire, options?.queues, caller);
  workerCtx ??= makeContext(queues, args);
  return workerCtx as ActorContext<OpenedQueues<S>, A>;
}

/** How long {@linkcode workerContext} waits for the parent's handoff before it warns. */
const HANDOFF_WARN_MS = 5000;

function noHandoffWarning(caller: string): string {
  return `${caller}: no queues from spawnWorker() after ${HANDOFF_WARN_MS / 1000} s: a Worker ` +
    "made with new Worker() gets none (hand it descriptors, and open its ends with " +
    "openSender() / openReceiver()); still waiting";
}

function startWorker(
  options: WorkerContextOptions | undefined,
  caller: string,
): Promise<{ queues: Record<string, QueueEnd>; args: unknown }> {
  const scope = globalThis as unknown as Partial<WorkerScope>;
  if (typeof scope.postMessage !== "function" || typeof scope.addEventListener !== "function") {
    return Promise.reject(
      new ActorError(`${caller}: not in a Worker (use actorContext() in a subprocess actor)`),
    );
  }
  const post = (message: ToParent) => scope.postMessage!({ [KEY]: message });
  // Once the parent closes this Worker, the calls its ends were in throw ClosedError: the
  // expected way a Worker's loops end, not an error to report (Deno printed it as uncaught).
  let closing = false;
  // Raised to STOP_EXITING when the parent's thread exits: then a call that fails because the
  // parent's ends closed is as expected (Deno printed it, though the process exited with 0).
  let stopWord: Int32Array | undefined;
  // A start that failed is the parent's to report (spawnWorker rejects naming it), and the
  // parent ends this Worker: not printed here as well, as if the Worker had crashed.
  let failedStart: unknown;
  onUncaughtError((event, error) => {
    const parentExits = stopWord !== undefined && Atomics.load(stopWord, 0) === STOP_EXITING;
    if (
      (error instanceof ClosedError &&
        ((closing && error.reason === "closed") ||
          (parentExits && PARENT_EXIT_REASONS.includes(error.reason)))) ||
      (failedStart !== undefined && error === failedStart)
    ) {
      event.preventDefault();
    }
  });
  return new Promise((resolve, reject) => {
    let opened: Record<string, QueueEnd> | undefined;
    // A Worker made with new Worker() has no spawnWorker to answer: said rather than waited
    // out in silence. Unref'd: it keeps no Worker that is done otherwise from ending.
    const silence = setTimeout(() => console.warn(noHandoffWarning(caller)), HANDOFF_WARN_MS);
    Deno.unrefTimer(silence);
    scope.addEventListener!("message", (event: MessageEvent) => {
      const message = ours<ToWorker>(event.data);
      if (message === undefined) return;
      event.stopImmediatePropagation();
      clearTimeout(silence);
      if (message.type === "close") {
        closing = true;
        if (opened) { for (const end of Object.values(opened)) end.close(); }
        // The parent terminates this Worker at the answer: the ends' memory must be unmapped
        // by then (see closedEndsUnmapped).
        closedEndsUnmapped().then(() => post({ type: "closed" }));
        return;
      }
      if (opened !== undefined) return;
      try {
        if (message.version !== HANDOFF_VERSION) {
          throw new ActorError(`${caller}: handoff version ${message.version} is not supported`);
        }
        const wire = parseWireQueues(message.queues, caller);
        checkSpec(wire, options?.queues, caller, true);
        const args = message.args === undefined ? undefined : decode(message.args);
        const ends = opened = openAll(wire, caller);
        if (message.stop instanceof Int32Array) {
          stopWord = message.stop;
          // Every end of this Worker, not only these: one that catches the ClosedError and
          // loops on queues it opened itself must stop as well.
          onStopRequest(message.stop, (how) => {
            closing = true;
            if (how === STOP_TERMINATED) recordEndsOfThisThreadAsDead();
            if (how === STOP_EXITING) closeEndsOfThisThreadAtExit();
            for (const end of Object.values(ends)) end.close();
            closeEndsOfThisThread();
          });
        }
        post({ type: "ready" });
        resolve({ queues: opened, args });
      } catch (error) {
        failedStart = error;
        post({ type: "error", error: errorText(error) });
        reject(error);
      }
    });
    post({ type: "hello", thread: threadIdentity() });
  });
}
