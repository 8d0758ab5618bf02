/**
 * Fixtures and helpers of the actor tests. Holds no tests: imported, it exports helpers; run
 * with `deno run` (as an actor: `deno run ... actor_fixture_test.ts <role>`) or loaded as a
 * Worker (the role is the Worker's name), it plays the role named.
 *
 * @module
 */

import {
  actorContext,
  ClosedError,
  createSharedMemoryPair,
  EmptyError,
  NdArray,
  openReceiver,
  type QueueDescriptor,
  type Receiver,
  type Sender,
  spawnActor,
  workerContext,
} from "../mod.ts";
import {
  awaitProcessExit,
  closeFd,
  fdSize,
  lockProbe,
  map,
  openProcess,
  pidAlive,
  shmOpen,
  unmap,
} from "../ffi/native.ts";
import {
  ANY_ALIVE_LOCK_BYTE,
  MAX_PARTICIPANTS,
  P_KIND,
  P_PID,
  PARTICIPANT_STRIDE,
  PARTICIPANTS_OFFSET,
  SHM_ENTRY_PATTERN,
} from "../queue/layout.ts";
import { shmEntries } from "./helpers.ts";

/** This module, to run as an actor or a Worker. */
export const FIXTURE: URL = new URL(import.meta.url);

// ------------------------------------------------------------------------------- helpers

/** The library's /dev/shm entries now. */
export function shmSnapshot(): Set<string> {
  return new Set(shmEntries());
}

/**
 * The entries that appeared since `before` and are leaked by the given processes (default:
 * this one): queues one of them took part in (by the pids in the participant table) that no
 * live process holds any more, or that this process still holds (an end the test forgot to
 * close). Entries of other processes (tests running in parallel, even crashing ones) do not
 * count. Suspects are checked twice.
 */
export async function leaksSince(
  before: Set<string>,
  pids: readonly number[] = [Deno.pid],
): Promise<string[]> {
  const suspects = () =>
    shmEntries().filter((name) => !before.has(name) && isLeak(name, new Set([Deno.pid, ...pids])));
  if (suspects().length === 0) return [];
  await sleep(300);
  return suspects();
}

function isLeak(name: string, pids: Set<number>): boolean {
  const match = SHM_ENTRY_PATTERN.exec(name);
  if (!match) return false;
  const main = `/shmq-${match[1]}`;
  let fd: number;
  try {
    fd = shmOpen(main);
  } catch {
    return false; // Gone (an extension without its queue is swept; we cannot tell whose).
  }
  try {
    const participants = participantPids(fd);
    if (!participants.some((p) => pids.has(p.pid))) return false; // Not ours.
    if (!lockProbe(fd, ANY_ALIVE_LOCK_BYTE)) return true; // Nobody alive holds it.
    return participants.some((p) => p.live && p.pid === Deno.pid); // Held by this process.
  } finally {
    closeFd(fd);
  }
}

/** The pids in the participant table (entries in use and, still recorded, freed ones). */
function participantPids(fd: number): { pid: number; live: boolean }[] {
  const size = PARTICIPANTS_OFFSET + MAX_PARTICIPANTS * PARTICIPANT_STRIDE;
  if (fdSize(fd) < size) return [];
  const pointer = map(fd, size);
  try {
    const view = new Deno.UnsafePointerView(pointer);
    const list = [];
    for (let i = 0; i < MAX_PARTICIPANTS; i++) {
      const at = PARTICIPANTS_OFFSET + i * PARTICIPANT_STRIDE;
      const pid = view.getInt32(at + P_PID);
      if (pid !== 0) list.push({ pid, live: view.getUint32(at + P_KIND) !== 0 });
    }
    return list;
  } finally {
    unmap(pointer, size);
  }
}

/**
 * Waits until a process has exited, every thread of it, so that the locks it held are
 * released (a zombie nobody reaped yet counts once its last thread has ended); false if it is
 * still there after `ms`. A process that is a zombie may still have threads unmapping its
 * memory, which holds its queue locks: a sweep right after would find it alive.
 */
export async function waitGone(pid: number, ms: number): Promise<boolean> {
  const handle = openProcess(pid);
  const deadline = performance.now() + ms;
  let polls = 0;
  try {
    while (performance.now() < deadline) {
      if (handle !== undefined ? awaitProcessExit(handle, 0) : !pidAlive(pid)) return true;
      // Without a pidfd (Linux before 5.3), an orphan that nobody reaped yet is a zombie.
      if (handle === undefined && ++polls % 10 === 0 && await isZombie(pid)) return true;
      await sleep(20);
    }
    if (handle !== undefined) return awaitProcessExit(handle, 0);
    return !pidAlive(pid) || await isZombie(pid);
  } finally {
    if (handle !== undefined) closeFd(handle);
  }
}

async function isZombie(pid: number): Promise<boolean> {
  try {
    const { stdout } = await new Deno.Command("ps", {
      args: ["-o", "stat=", "-p", String(pid)],
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(stdout).trim().startsWith("Z");
  } catch {
    return false;
  }
}

/** Sleeps `ms` milliseconds. */
/**
 * Process `pid`, which the test did not spawn itself (an actor a child of it started), ended
 * with SIGKILL when the `await using` scope ends unless it is gone by then, so that no failed
 * assertion leaves it running; waits up to 5 s for it to go. Nothing for a pid that is none
 * (0 or less would signal a whole process group).
 */
export function killedAtScopeEnd(pid: number): AsyncDisposable {
  return {
    async [Symbol.asyncDispose]() {
      if (!(Number.isSafeInteger(pid) && pid > 0) || !pidAlive(pid)) return;
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone meanwhile */ }
      await waitGone(pid, 5000);
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What the echo roles send back for every message. */
export interface Echo {
  got: unknown;
  args: unknown;
  by: string;
}

// ------------------------------------------------------------------------------- roles

/** Echoes every message of `in` to `out` with the args, until `in` is drained. */
async function echo(queues: { in: Receiver; out: Sender }, args: unknown, by: string) {
  for await (const got of queues.in) await queues.out.put({ got, args, by });
  queues.out.close();
  queues.in.close();
}

/** Blocks the main thread for good (no event loop turns). */
function blockForever(): never {
  const word = new Int32Array(new SharedArrayBuffer(4));
  for (;;) Atomics.wait(word, 0, 0);
}

const roles: Record<string, () => Promise<void> | void> = {
  /** Starts a Worker of the "echo" role with new Worker(), not spawnWorker: its workerContext()
   * gets no handoff. Ends it once the warning had time to come. */
  async plainWorkerContext() {
    const worker = new Worker(FIXTURE, { type: "module", name: "echo" });
    await sleep(6000);
    worker.terminate();
  },
  async echo() {
    const { queues, args } = await actorContext({ queues: { in: "receiver", out: "sender" } });
    await echo(queues, args, "actor");
  },

  async permissions() {
    const { queues, args } = await actorContext<{ out: "sender" }, { library: string }>({
      queues: { out: "sender" },
    });
    const state = (descriptor: Deno.PermissionDescriptor) =>
      Deno.permissions.querySync(descriptor).state;
    await queues.out.put({
      readLibrary: state({ name: "read", path: args.library }),
      readEtc: state({ name: "read", path: "/etc/hostname" }),
      write: state({ name: "write", path: "/tmp" }),
      netLocal: state({ name: "net", host: "127.0.0.1" }),
      netOther: state({ name: "net", host: "example.com" }),
      envHome: state({ name: "env", variable: "HOME" }),
      envPath: state({ name: "env", variable: "PATH" }),
      run: state({ name: "run" }),
      sys: state({ name: "sys", kind: "hostname" }),
      ffi: state({ name: "ffi" }),
    });
    queues.out.close();
  },

  async print() {
    const { args } = await actorContext();
    console.log(`stdout: ${JSON.stringify(args)}`);
    console.error("stderr: hello");
  },

  /** Prints the length and last byte of its args, a Uint8Array. */
  async argsLength() {
    const { args } = await actorContext<Record<never, never>, Uint8Array>();
    console.log(`${args.length} ${args.at(-1)}`);
  },

  exit3() {
    Deno.exit(3); // Never calls actorContext().
  },

  /** Prints more than a pipe holds before it opens its queues, then a last line. */
  async chatty() {
    await Deno.stdout.write(new Uint8Array(256 * 1024).fill(0x61));
    const { queues } = await actorContext({ queues: { out: "sender" } });
    console.log("\nready");
    await queues.out.put("ok");
    queues.out.close();
  },

  /** Prints a line before opening its queues, then waits for a message and prints it. */
  async greeter() {
    console.log("hello before ready");
    const { queues } = await actorContext({ queues: { inbox: "receiver" } });
    console.log(`got ${await queues.inbox.get()}`);
    queues.inbox.close();
  },

  /** Starts a Deno process that calls actorContext() with this actor's env and stdin, prints
   * what it said, then opens its own queues and puts "ok". */
  async grandchild() {
    const code = `import { actorContext } from ${
      JSON.stringify(new URL("../mod.ts", import.meta.url).href)
    };
      try {
        await actorContext();
        console.log("opened the actor's queues");
      } catch (error) {
        console.log(error.message);
      }`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdin: "inherit",
      stderr: "inherit",
    }).output();
    await Deno.stdout.write(out.stdout);
    const { queues } = await actorContext({ queues: { out: "sender" } });
    await queues.out.put("ok");
    queues.out.close();
  },

  /** Says why on stderr, then fails before opening its queues. */
  crash() {
    console.error("config file /nonexistent/actor.toml is missing");
    throw new Error("start-up failed");
  },

  /** A parent that starts a holder actor, puts to it, prints its pid and just ends: no
   * dispose, no close. */
  async forgetful() {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
    const actor = await spawnActor(FIXTURE, {
      queues: { inbox: receiver },
      argv: ["holder", "async"],
      transfer: true,
    });
    await sender.put(1);
    console.log(actor.pid);
  },

  async slow() {
    await sleep(60_000); // Never calls actorContext().
  },

  /** Prints its pid, then keeps its main thread busy for good, never calling actorContext(). */
  busy() {
    console.log(Deno.pid);
    for (;;) {
      // Nothing runs on this thread again: no timer, no event.
    }
  },

  /** A parent that starts a busy actor and prints its pid: with `queues`, the actor prints it
   * on the stdout they share while the parent waits in spawnActor for a start that never
   * comes (the test kills the parent); without, the parent passes it on and ends. */
  async abandonsBusy() {
    if (Deno.args[1] === "queues") {
      const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
      await spawnActor(FIXTURE, { argv: ["busy"], queues: { inbox: receiver } });
      sender.close();
      receiver.close();
      return;
    }
    const actor = await spawnActor(FIXTURE, { argv: ["busy"], stdout: "piped" });
    const lines = actor.stdout!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n")) text += (await lines.read()).value ?? "";
    console.log(text.trim());
    Deno.exit(0); // no dispose: the actor is left to the watch its preload keeps
  },

  /** Exits with code 7 before opening its queues, and says nothing. */
  quietExit() {
    Deno.exit(7);
  },

  /** Gives up before opening its queues, saying why on stdout. */
  saysOnStdout() {
    console.log("no GPU found: giving up");
    Deno.exit(3);
  },

  /** Reads a file it was given no permission for, before opening its queues. */
  needsRead() {
    Deno.readTextFileSync("/etc/hostname");
  },

  /** Opens its sender, then dies of an uncaught error: no unload, no close. */
  async uncaught() {
    await actorContext({ queues: { out: "sender" } });
    throw new Error("the actor fails after opening its queue");
  },

  async mismatch() {
    await actorContext({ queues: { inbox: "sender" } });
  },

  /** Holds a receiver; `sync` blocks the main thread, `async` idles in the event loop; with
   * `no-watchdog`, it does not exit when its stdin closes. */
  async holder() {
    const exitWithParent = Deno.args[2] !== "no-watchdog";
    await actorContext({ queues: { inbox: "receiver" }, exitWithParent });
    if (Deno.args[1] === "sync") blockForever();
    setInterval(() => {}, 1000);
  },

  /** Puts numbered messages as fast as the queue takes them, forever. */
  async streamer() {
    const { queues } = await actorContext({ queues: { out: "sender" } });
    const payload = new Uint8Array(4096);
    for (let seq = 0;; seq++) queues.out.putSync({ seq, payload });
  },

  /** Puts to its parent until it fails; `sync` with putSync. Writes `unloaded` to the file
   * named by its third argument when its unload listeners run. */
  async putsToParent() {
    // Before actorContext: a parent that leaves (or a Ctrl-C) the moment the actor has its
    // ends may end it before the line after actorContext runs, cleanly all the same.
    const marker = Deno.args[2];
    globalThis.addEventListener("unload", () => Deno.writeTextFileSync(marker, "unloaded"));
    const { queues } = await actorContext({ queues: { out: "sender" } });
    const payload = new Uint8Array(1024);
    if (Deno.args[1] === "sync") { for (let seq = 0;; seq++) queues.out.putSync({ seq, payload }); }
    for (let seq = 0;; seq++) await queues.out.put({ seq, payload });
  },

  /** Puts to its parent in a loop it does not await, handling the rejection itself (a
   * listener added after actorContext()), then ends its other work normally. */
  async putsWithOwnHandler() {
    const { queues } = await actorContext({ queues: { out: "sender" } });
    globalThis.addEventListener("unhandledrejection", (event) => {
      event.preventDefault();
      console.log(`handled ${(event.reason as ClosedError).reason}`);
      setTimeout(() => console.log("work done"), 200);
    });
    (async () => {
      for (let seq = 0;; seq++) await queues.out.put({ seq });
    })();
  },

  /** A parent that takes a few messages of a putsToParent actor, prints its pid, and leaves
   * without stopping it: its script ends (`end`), it calls Deno.exit (`exit`), it fails with an
   * uncaught error (`crash`), or it kills itself with SIGKILL (`kill`). */
  async leaver() {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
    const actor = await spawnActor(FIXTURE, {
      queues: { out: sender },
      argv: ["putsToParent", Deno.args[1], Deno.args[3]],
      permissions: { write: [Deno.args[3]] },
      transfer: true,
    });
    console.log(actor.pid);
    for (let i = 0; i < 20; i++) receiver.getSync({ timeout: 10_000 });
    if (Deno.args[2] === "exit") Deno.exit(7);
    if (Deno.args[2] === "crash") throw new Error("the parent fails");
    if (Deno.args[2] === "kill") Deno.kill(Deno.pid, "SIGKILL");
  },

  /** A parent as the README has it for Ctrl-C: it exits on SIGINT. Starts a putsToParent
   * actor, prints its pid, and takes its messages until the test interrupts the group. */
  async interruptible() {
    Deno.addSignalListener("SIGINT", () => Deno.exit(130));
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
    const actor = await spawnActor(FIXTURE, {
      queues: { out: sender },
      argv: ["putsToParent", "async", Deno.args[1]],
      permissions: { write: [Deno.args[1]] },
      transfer: true,
    });
    if (Deno.args[2] === "at-once") {
      // Interrupts its own group the moment spawnActor resolves: the actor has just opened its
      // ends, and its watchdog may not run yet.
      console.log(actor.pid);
      new Deno.Command("kill", { args: ["-INT", "--", `-${Deno.pid}`] }).outputSync();
      await sleep(60_000);
    }
    for (let i = 0; i < 20; i++) receiver.getSync({ timeout: 10_000 });
    console.log(actor.pid);
    for await (const _ of receiver) { /* until interrupted */ }
  },

  /** An intermediate parent: starts a holder actor, prints its pid, waits to be killed. */
  async middle() {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
    const actor = await spawnActor(FIXTURE, {
      queues: { inbox: receiver },
      argv: ["holder", Deno.args[1]],
      transfer: true,
    });
    console.log(actor.pid);
    await sleep(120_000);
    sender.close();
  },
};

const workerRoles: Record<string, () => Promise<void> | void> = {
  async echo() {
    const { queues, args } = await workerContext({ queues: { in: "receiver", out: "sender" } });
    await echo(queues, args, "worker");
  },

  throws() {
    throw new Error("this Worker fails on load");
  },

  /** Echoes in a loop of sync calls: never back in its event loop, where "close" waits. */
  async syncEcho() {
    const { queues } = await workerContext({ queues: { in: "receiver", out: "sender" } });
    for (;;) queues.out.putSync(queues.in.getSync());
  },

  /** Polls with getNowait in a loop of JS that never yields. */
  async pollLoop() {
    const { queues } = await workerContext({ queues: { in: "receiver" } });
    for (;;) queues.in.getNowait();
  },

  /** Polls hasSpace in a loop of JS that never yields, putting when there is room. */
  async pollHasSpace() {
    const { queues } = await workerContext({ queues: { out: "sender" } });
    for (let i = 0;;) if (queues.out.hasSpace()) queues.out.putSync(i++);
  },

  /** Loops on a queue it opened itself (from `args.own`), shrugging off empty waits. */
  async ownLoop() {
    const { args } = await workerContext<{ in: "receiver" }, { own: QueueDescriptor }>({
      queues: { in: "receiver" },
    });
    const own = openReceiver(args.own);
    for (;;) {
      try {
        own.getSync({ timeout: 50 });
      } catch (error) {
        if (!(error instanceof EmptyError)) throw error;
      }
    }
  },

  /** Loops on getSync; on a ClosedError opens its receiver again from the descriptor, and
   * ends when that open is refused. */
  async reopenLoop() {
    const { queues } = await workerContext({ queues: { in: "receiver" } });
    const descriptor = queues.in.descriptor;
    let inbox = queues.in;
    for (;;) {
      try {
        inbox.getSync({ timeout: 50 });
      } catch (error) {
        if (error instanceof EmptyError) continue;
        if (!(error instanceof ClosedError)) throw error;
        try {
          inbox = openReceiver(descriptor);
        } catch {
          return;
        }
      }
    }
  },

  /** Opens its receiver, then fails with an uncaught error. */
  async throwsLater() {
    await workerContext({ queues: { inbox: "receiver" } });
    setTimeout(() => {
      throw new Error("this Worker fails after opening its queue");
    }, 10);
  },

  async mismatch() {
    await workerContext({ queues: { inbox: "sender" } });
  },

  /** Asks for a queue its parent did not hand, and handles the error itself. */
  async caughtMismatch() {
    try {
      await workerContext({ queues: { inbox: "receiver" } });
    } catch (error) {
      const scope = globalThis as unknown as { postMessage(m: unknown): void };
      scope.postMessage(`caught: ${(error as Error).message}`);
    }
  },

  /** Opens its receiver and, when the parent asks, says so and ends itself: nothing answers a
   * close request after. (Not at once: posted right behind "ready", the message could reach
   * the parent before its listener, which it can attach only once spawnWorker returned.) */
  async selfClose() {
    await workerContext({ queues: { inbox: "receiver" } });
    const scope = globalThis as unknown as {
      postMessage(m: unknown): void;
      close(): void;
      addEventListener(type: "message", listener: (event: MessageEvent) => void): void;
    };
    scope.addEventListener("message", (event) => {
      if (event.data !== "close yourself") return;
      scope.postMessage("closing myself");
      scope.close();
    });
  },

  /** Calls actorContext(), the subprocess actor's call, by mistake. */
  async actorContextInWorker() {
    await actorContext();
  },

  /** Never calls workerContext(): a plain Worker that idles until terminated. */
  plain() {
    setInterval(() => {}, 1000);
  },

  /** Waits on its receiver until the parent closes the Worker. */
  async idle() {
    const { queues } = await workerContext({ queues: { inbox: "receiver" } });
    try {
      await queues.inbox.get();
    } catch (error) {
      if (!(error instanceof ClosedError)) throw error;
    }
  },

  /** Waits on its receiver while a timer keeps its event loop busy 30 ms at a time: the wait's
   * return, once close() wakes it, comes late. */
  async idleBusy() {
    const { queues } = await workerContext({ queues: { inbox: "receiver" } });
    setInterval(() => {
      const until = Date.now() + 30;
      while (Date.now() < until) { /* busy */ }
    }, 0);
    try {
      await queues.inbox.get();
    } catch (error) {
      if (!(error instanceof ClosedError)) throw error;
    }
  },

  /** Waits on its receiver, not catching the ClosedError the parent's close() causes. */
  async idleUncaught() {
    const { queues } = await workerContext({ queues: { inbox: "receiver" } });
    await queues.inbox.get();
  },

  /** Sums the `value` of every message of `in` and puts the total on `out`. */
  async sum() {
    const { queues, args } = await workerContext<
      { in: "receiver"; out: "sender" },
      { name: string }
    >({ queues: { in: "receiver", out: "sender" } });
    let total = 0;
    let count = 0;
    for await (const m of queues.in) {
      total += (m as { value: number }).value;
      count++;
    }
    await queues.out.put({ name: args.name, total, count, probe: new NdArray("int8", [1]) });
    queues.out.close();
    queues.in.close();
  },
};

const inWorker = typeof (globalThis as { postMessage?: unknown }).postMessage === "function";
if (inWorker) {
  const name = (globalThis as { name?: string }).name ?? "";
  await workerRoles[name]?.();
} else if (import.meta.main) {
  const role = roles[Deno.args[0]];
  if (role === undefined) throw new Error(`unknown role ${Deno.args[0]}`);
  await role();
}
