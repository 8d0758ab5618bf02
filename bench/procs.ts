/**
 * Spawning and talking to the processes of one benchmark case, from the orchestrator.
 *
 * @module
 */

import { shmList } from "../ffi/native.ts";
import { childArgs, lines, RUN_ENV, segmentPrefix } from "./common.ts";

/** This run's token: every process the benchmark spawns carries `--bench-run=<token>`. */
export const RUN_TOKEN = `${Deno.pid}-${Date.now().toString(36)}`;
Deno.env.set(RUN_ENV, RUN_TOKEN);

/** Names of every queue a case reported (its descriptor), for the /dev/shm leak check. */
export const seenQueues: Set<string> = new Set();

/** The entries of /dev/shm (`after`, names without the slash) this run left: not there
 * `before`, and its own segments or queues. Another run's, made meanwhile, are not. */
export function leftByThisRun(before: ReadonlySet<string>, after: Iterable<string>): string[] {
  const segments = segmentPrefix(RUN_TOKEN);
  return [...after].filter((name) =>
    !before.has(name) &&
    (name.startsWith(segments) || [...seenQueues].some((q) => name.startsWith(q)))
  );
}

/** A JSON line from a case's timer. */
export interface TimerMessage {
  t: "ready" | "round" | "final" | "error";
  [key: string]: unknown;
}

/** The running processes of one case. */
export class CaseProcs {
  readonly children: Deno.ChildProcess[] = [];
  readonly drivers: WritableStreamDefaultWriter<Uint8Array>[] = [];
  #timer: AsyncGenerator<string> | undefined;
  #closed = false;
  readonly #encoder = new TextEncoder();

  /** Spawns `deno run <flags> bench/<module> <args>`. */
  spawnDeno(
    module: string,
    args: string[],
    io: { driver?: boolean; timer?: boolean },
  ): Deno.ChildProcess {
    return this.spawn(Deno.execPath(), childArgs(module, ...args), io);
  }

  /** Spawns any command; `driver` gets a piped stdin, `timer` a piped stdout we read. */
  spawn(
    command: string,
    args: string[],
    io: { driver?: boolean; timer?: boolean },
  ): Deno.ChildProcess {
    const child = new Deno.Command(command, {
      args,
      stdin: io.driver ? "piped" : "null",
      stdout: io.timer ? "piped" : "null",
      stderr: "inherit",
    }).spawn();
    this.children.push(child);
    if (io.driver) this.drivers.push(child.stdin.getWriter());
    if (io.timer) this.#timer = lines(child.stdout);
    return child;
  }

  /** The next message of the timer, failing after `timeoutMs`. */
  async next(timeoutMs: number): Promise<TimerMessage> {
    if (!this.#timer) throw new Error("no timer process");
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const result = await Promise.race([
        this.#timer.next(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer from the case within ${Math.round(timeoutMs)} ms`)),
            timeoutMs,
          );
        }),
      ]);
      if (result.done) throw new Error("the case's timer process exited early");
      let message: TimerMessage;
      try {
        message = JSON.parse(result.value);
      } catch {
        throw new Error(`unexpected output from the case: ${result.value.slice(0, 200)}`);
      }
      if (message.t === "error") throw new Error(`case failed: ${message.message}`);
      for (const d of [message.descriptor, ...((message.queues as unknown[]) ?? [])]) {
        const name = (d as { name?: unknown } | undefined)?.name;
        if (typeof name === "string") seenQueues.add(name.replace(/^\//, ""));
      }
      return message;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits for a message of type `t`. */
  async expect(t: TimerMessage["t"], timeoutMs: number): Promise<TimerMessage> {
    const message = await this.next(timeoutMs);
    if (message.t !== t) throw new Error(`expected "${t}" from the case, got ${message.t}`);
    return message;
  }

  /** Sends a command line to every driver. */
  async command(line: string): Promise<void> {
    const bytes = this.#encoder.encode(line + "\n");
    await Promise.all(this.drivers.map((w) => w.write(bytes)));
  }

  /** Sends `quit`, collects the final message, and waits for every process to exit. */
  async finish(timeoutMs: number): Promise<TimerMessage> {
    await this.command("quit");
    const final = await this.expect("final", timeoutMs);
    await this.close(timeoutMs);
    return final;
  }

  /** Closes the pipes (peers exit on EOF), waits, and kills what is still running. */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.drivers) await w.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const all = Promise.all(this.children.map((c) => c.status));
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), timeoutMs)),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      for (const c of this.children) {
        try {
          c.kill("SIGKILL");
        } catch { /* already exited */ }
      }
      await all;
    }
    await this.#timer?.return(undefined).catch(() => {});
  }
}

/** Processes started by this run (their arguments carry the run token) that still exist. */
export async function strayProcesses(): Promise<{ pid: number; args: string }[]> {
  const out = await new Deno.Command("ps", { args: ["-eo", "pid=,args="], stdout: "piped" })
    .output();
  const found: { pid: number; args: string }[] = [];
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const m = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (!m || !m[2].includes(`--bench-run=${RUN_TOKEN}`)) continue;
    const pid = Number(m[1]);
    if (pid !== Deno.pid) found.push({ pid, args: m[2] });
  }
  return found;
}

/**
 * Names of the /dev/shm entries starting with `shmq-` (the library's queues and this
 * benchmark's per-message segments), listed natively: Deno wants --allow-all to read /dev.
 */
export function shmEntries(): Set<string> {
  return new Set(shmList("/shmq-"));
}

/** Quotes a word for `sh -c`. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}
