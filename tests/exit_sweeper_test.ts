/**
 * The exit sweeper: a process killed with its queues open (SIGKILL, an uncaught error) leaves
 * nothing in /dev/shm, with no later sweep, unless another live process still uses the queue.
 * Across real processes: each fixture has its own sweeper.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openReceiver, sweepStaleQueues } from "../mod.ts";
import { sweeperStart } from "../ffi/native.ts";
import { eventually, NO_EXIT_SWEEPER, shmEntries, Watched } from "./helpers.ts";

/** What a sweeper_child fixture printed for one queue. */
interface Made {
  name: string;
  sweeper: number | null;
}

/** The /dev/shm entries of queue `name` ("/shmq-…"): its main segment and its extensions. */
function entriesOf(name: string): string[] {
  const id = name.slice(1);
  return shmEntries().filter((entry) => entry === id || entry.startsWith(`${id}-`));
}

/** The state letter of process `pid` ("S", "Z", …), or undefined once it is reaped (read by
 * `cat`: Deno wants --allow-all to read /proc itself). */
function processState(pid: number): string | undefined {
  const out = new Deno.Command("cat", { args: [`/proc/${pid}/stat`], stderr: "null" })
    .outputSync();
  if (!out.success) return undefined;
  const text = new TextDecoder().decode(out.stdout);
  return text.slice(text.lastIndexOf(")") + 2)[0];
}

/** Whether process `pid` has exited: reaped, or a zombie its new parent (init) has yet to
 * reap. */
function exited(pid: number): boolean {
  const state = processState(pid);
  return state === undefined || state === "Z" || state === "X";
}

/** The `index`th queue line of a sweeper_child fixture. */
async function made(child: Watched, index = 0): Promise<Made> {
  for (let seen = 0, i = 0;; i++) {
    const line = await child.line(i);
    if (line === undefined) throw new Error(`no queue line ${index}; got ${child.out}`);
    if (line.startsWith("{") && seen++ === index) return JSON.parse(line) as Made;
  }
}

Deno.test("a killed process's queue, extensions included, leaves /dev/shm without any sweep", async () => {
  await using child = new Watched("sweeper_child.ts", ["hold"]);
  const { name, sweeper } = await made(child);
  assert.equal(entriesOf(name).length, 2, "the main segment and one extension");
  assert.ok(typeof sweeper === "number" && sweeper > 0, "a sweeper started");
  assert.equal(exited(sweeper), false);
  assert.notEqual(sweeper, sweeperStart(), "one per process: this one's is another");
  await child.stop("SIGKILL");
  assert.ok(await eventually(() => entriesOf(name).length === 0), `left: ${entriesOf(name)}`);
  assert.ok(await eventually(() => exited(sweeper)), "the sweeper exits once done");
});

Deno.test("every queue of a killed process goes, 40 of them", async () => {
  await using child = new Watched("sweeper_child.ts", ["many"]);
  const queues: Made[] = [];
  for (let i = 0; i < 40; i++) queues.push(await made(child, i));
  assert.equal(new Set(queues.map((q) => q.sweeper)).size, 1, "one sweeper for them all");
  const entries = () => queues.flatMap(({ name }) => entriesOf(name));
  assert.equal(entries().length, 80, "each queue and its extension");
  await child.stop("SIGKILL");
  assert.ok(await eventually(() => entries().length === 0), `left: ${entries()}`);
});

Deno.test("a queue its process was killed while making goes too", async () => {
  const before = new Set(shmEntries());
  await using child = new Watched("sweeper_child.ts", ["making"]);
  const first = await made(child);
  await child.expect("making");
  // The 1 GiB arena's segment exists from the start of its making, which takes a while.
  const fresh = () =>
    shmEntries().filter((entry) => !before.has(entry) && !entry.startsWith(first.name.slice(1)));
  assert.ok(await eventually(() => fresh().length > 0), "the segment being made");
  await child.stop("SIGKILL");
  assert.equal(child.out.filter((l) => l.startsWith("{")).length, 1, "killed while making it");
  assert.ok(await eventually(() => fresh().length === 0), `left: ${fresh()}`);
  assert.ok(await eventually(() => entriesOf(first.name).length === 0));
});

Deno.test("a SIGKILL to its whole process group does not take the sweeper with it", async () => {
  // What `timeout -s KILL`, `kill -9 -PGID` or a shell killing a job does. The fixture leads
  // a session of its own (setsid), so its pid is its group's id.
  await using child = new Watched("sweeper_child.ts", ["hold"], { launcher: ["setsid"] });
  const { name, sweeper } = await made(child);
  Deno.kill(-child.proc.pid, "SIGKILL");
  await child.exit();
  assert.ok(await eventually(() => entriesOf(name).length === 0), `left: ${entriesOf(name)}`);
  assert.ok(await eventually(() => exited(sweeper!)));
});

Deno.test("an uncaught error, which skips every exit handler, leaves nothing in /dev/shm", async () => {
  await using child = new Watched("sweeper_child.ts", ["throw"]);
  const { name, sweeper } = await made(child);
  const status = await child.exit();
  assert.equal(status.code, 1, "the error ended it");
  assert.ok(await eventually(() => entriesOf(name).length === 0), `left: ${entriesOf(name)}`);
  assert.ok(await eventually(() => exited(sweeper!)));
});

Deno.test("a sweeper started by a Worker that has ended since still sweeps", async () => {
  // It runs on the thread pointer of the thread that started it, whose TLS may be gone.
  await using child = new Watched("sweeper_child.ts", ["worker"]);
  const { name, sweeper } = await made(child);
  assert.ok(typeof sweeper === "number" && sweeper > 0);
  assert.equal(entriesOf(name).length, 2);
  await child.stop("SIGKILL");
  assert.ok(await eventually(() => entriesOf(name).length === 0), `left: ${entriesOf(name)}`);
  assert.ok(await eventually(() => exited(sweeper)));
});

Deno.test("queues only a Worker had ends in go when the process exits normally", async () => {
  // Deno runs no unload in Workers as the process exits, and this main thread had no end whose
  // exit check could look: before the sweeper, the queue stayed until a later sweep.
  await using child = new Watched("sweeper_child.ts", ["worker-exit"]);
  const { name, sweeper } = await made(child);
  assert.equal((await child.exit()).code, 0);
  assert.ok(await eventually(() => entriesOf(name).length === 0), `left: ${entriesOf(name)}`);
  assert.ok(await eventually(() => exited(sweeper!)));
});

Deno.test("a queue another live process holds stays when one of its processes is killed", async () => {
  await using maker = new Watched("sweeper_child.ts", ["hold"]);
  const { name, sweeper } = await made(maker);
  await using joiner = new Watched("sweeper_child.ts", ["join", name]);
  assert.equal((await made(joiner)).name, name);
  const entries = entriesOf(name).sort();
  assert.ok(entries.length >= 2, "the queue and its extensions");
  await maker.stop("SIGKILL");
  // The maker's sweeper exits once it has looked: the joiner holds the queue, so it stays.
  assert.ok(await eventually(() => exited(sweeper!)));
  assert.deepEqual(entriesOf(name).sort(), entries, "the queue and its extensions stay");
  // Its messages too: the maker's and the joiner's.
  using receiver = openReceiver({ shmq: 1, end: "receiver", name });
  assert.equal((receiver.getSync({ timeout: 5_000 }) as Uint8Array).length, 3 << 20);
  assert.equal((receiver.getSync({ timeout: 5_000 }) as Uint8Array).length, 3 << 20);
  receiver.close();
  await joiner.stop("SIGKILL");
  assert.ok(await eventually(() => entriesOf(name).length === 0), "then it goes with the last");
});

Deno.test("a sweeper killed by hand is reaped, no zombie, and the next queue starts another", async () => {
  await using child = new Watched("sweeper_child.ts", ["again"]);
  const first = await made(child);
  Deno.kill(first.sweeper!, "SIGKILL");
  child.proc.kill("SIGUSR1");
  const second = await made(child, 1);
  assert.ok(second.sweeper !== null && second.sweeper !== first.sweeper, "a new sweeper");
  assert.equal(processState(first.sweeper!), undefined, "the killed one is reaped");
  await child.stop("SIGKILL");
  for (const { name } of [first, second]) {
    assert.ok(await eventually(() => entriesOf(name).length === 0), `left: ${entriesOf(name)}`);
  }
});

Deno.test("SHMQ_EXIT_SWEEPER=0 starts no sweeper: a killed process's queue waits for a sweep", async () => {
  await using child = new Watched("sweeper_child.ts", ["hold"], NO_EXIT_SWEEPER);
  const { name, sweeper } = await made(child);
  await child.stop("SIGKILL");
  assert.equal(sweeper, null);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(entriesOf(name).length, 2, "nothing removed it");
  const { removed } = sweepStaleQueues();
  assert.ok(removed.includes(name.slice(1)), "the sweep does");
  assert.deepEqual(entriesOf(name), []);
});
