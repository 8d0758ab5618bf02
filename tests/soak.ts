// `deno task soak`: minutes of load on one queue while random actors are killed (SIGKILL) or
// stopped (SIGTERM) and replaced, and others paused (SIGSTOP, then SIGCONT within a second, as
// Ctrl-Z or a debugger would: one paused inside the queue's lock keeps it from every other end
// meanwhile, an ending one's close included). Senders put small, arena-sized or extension-sized
// messages; receivers check every checksum and each sender's order; the run checks that no
// message arrives twice and reports what moved, what failed, and what is left in /dev/shm.
// Not part of `deno task test`.
//
// The run takes turns, about every SOAK_PHASE_SECONDS, between two phases. Shared: the parent's
// anchor receiver and SOAK_RECEIVERS actors are open. Lone: one receiving actor, the queue's only
// receiver, so that its getMany batches hold what they copied (SlotState.Held) and a kill must
// give them back. Before a lone receiver is killed or stopped the parent opens its anchor again
// (senders would otherwise find no receiver and fail), so the kill also meets a receiver that
// joined while a batch was held.
//
//   SOAK_SECONDS (default 180), SOAK_SENDERS (4), SOAK_RECEIVERS (2), SOAK_SEED (1),
//   SOAK_PHASE_SECONDS (20; 0: shared all along)
import { createSharedMemoryPair, openReceiver, type Receiver, sweepStaleQueues } from "../mod.ts";
import { prng, shmEntries, Watched } from "./helpers.ts";

const SECONDS = Number(Deno.env.get("SOAK_SECONDS") ?? 180);
const SENDERS = Number(Deno.env.get("SOAK_SENDERS") ?? 4);
const RECEIVERS = Number(Deno.env.get("SOAK_RECEIVERS") ?? 2);
const PHASE_SECONDS = Number(Deno.env.get("SOAK_PHASE_SECONDS") ?? 20);
const random = prng(Number(Deno.env.get("SOAK_SEED") ?? 1));
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
const log = (line: string) => console.log(`[${(performance.now() / 1000).toFixed(1)} s] ${line}`);

const entriesBefore = shmEntries().length;
// The parent keeps a sender open all along, and a receiver open but in lone phases, so that the
// queue outlives any set of actors; it never puts or gets.
const [anchorSender, firstAnchorReceiver] = createSharedMemoryPair({
  capacity: 32,
  arenaBytes: 32 << 20,
  byteBudget: 256 << 20,
});
const name = anchorSender.descriptor.name;
const descriptor = JSON.stringify(anchorSender.descriptor);
let anchorReceiver: Receiver | undefined = firstAnchorReceiver;
let lone = false;
const openAnchor = () => anchorReceiver ??= openReceiver(descriptor);
const closeAnchor = () => {
  anchorReceiver?.close();
  anchorReceiver = undefined;
};

const sizeClasses: [string, number, number][] = [
  ["small", 0, 1024],
  ["arena", 16 << 10, 256 << 10],
  // Up to 40 MiB: copies from 32 MiB stream past the caches (codec/bulk_copy.ts).
  ["extension", 9 << 20, 40 << 20],
  ["mixed", 0, 4 << 20],
];

type Actor = {
  kind: "sender" | "receiver";
  id: number;
  child: Watched;
  sizes: string;
  fate?: "killed" | "stopped";
  /** Set while the actor is paused: resumes it at once. */
  resume?: () => void;
};

const stats = {
  started: 0,
  killed: 0,
  loneKilled: 0,
  lonePhases: 0,
  stopped: 0,
  paused: 0,
  abnormalExits: 0,
  errors: {} as Record<string, number>,
  errorSamples: [] as string[],
  messages: 0,
  bytes: 0,
  duplicates: 0,
  outOfOrder: 0,
  badChecksums: 0,
};
let nextSender = 0;
const actors: Actor[] = [];
/** Per sender id: delivered runs [first, last], merged. */
const delivered = new Map<number, [number, number][]>();
/** Per sender id: how many messages it completed, when known exactly (it exited normally). */
const completed = new Map<number, number>();
const retired: Actor[] = [];

function start(kind: "sender" | "receiver"): Actor {
  stats.started++;
  if (kind === "receiver") {
    const a: Actor = {
      kind,
      id: -1,
      sizes: "",
      child: new Watched("fault_load_child.ts", ["consume", descriptor]),
    };
    actors.push(a);
    return a;
  }
  const id = nextSender++;
  const [sizes, min, max] = sizeClasses[Math.floor(random() * sizeClasses.length)];
  const a: Actor = {
    kind,
    id,
    sizes,
    child: new Watched("fault_load_child.ts", [
      "produce",
      descriptor,
      `${id}`,
      "0",
      `${id + 1}`,
      `${min}`,
      `${max}`,
      "0.02",
      "20",
    ]),
  };
  actors.push(a);
  return a;
}

function addRun(sender: number, first: number, last: number): void {
  const runs = delivered.get(sender) ?? [];
  delivered.set(sender, runs);
  for (const [a, b] of runs) {
    if (first <= b && last >= a) stats.duplicates += Math.min(b, last) - Math.max(a, first) + 1;
  }
  runs.push([first, last]);
  runs.sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < runs.length; i++) {
    if (runs[i][0] <= runs[i - 1][1] + 1) {
      runs[i - 1][1] = Math.max(runs[i - 1][1], runs[i][1]);
      runs.splice(i--, 1);
    }
  }
}

/** Reads what a finished actor printed. */
function account(a: Actor, status: Deno.CommandStatus): void {
  const lastSeq = new Map<number, number>();
  let moved: [number, number] = [0, 0];
  for (const line of a.child.out) {
    if (line.startsWith("runs ")) {
      for (const [s, first, last] of JSON.parse(line.slice(5)) as number[][]) {
        if (first <= (lastSeq.get(s) ?? -1)) stats.outOfOrder++;
        lastSeq.set(s, last);
        addRun(s, first, last);
      }
    } else if (line.startsWith("moved ")) {
      moved = line.slice(6).split(" ").map(Number) as [number, number];
    } else if (line.startsWith("error ")) {
      const kind = line.slice(6, line.indexOf(":"));
      stats.errors[kind] = (stats.errors[kind] ?? 0) + 1;
      if (stats.errorSamples.length < 12) stats.errorSamples.push(line.slice(0, 200));
    } else if (line.startsWith("done ") && a.kind === "receiver") {
      const r = JSON.parse(line.slice(5));
      stats.badChecksums += r.bad;
      stats.outOfOrder += r.outOfOrder;
    } else if (line.startsWith("done ") && a.kind === "sender") {
      completed.set(a.id, Number(line.slice(5)));
    }
  }
  stats.messages += moved[0];
  stats.bytes += moved[1];
  if (a.fate !== "killed" && status.code !== 0) {
    stats.abnormalExits++;
    log(`${a.kind} ${a.id} exited with ${status.code} ${status.signal ?? ""}`);
  }
}

/** Pauses `a` (SIGSTOP) for 20 ms to 0.8 s. */
function pause(a: Actor): void {
  a.child.proc.kill("SIGSTOP");
  stats.paused++;
  const resume = () => {
    clearTimeout(timer);
    a.resume = undefined;
    a.child.proc.kill("SIGCONT");
  };
  const timer = setTimeout(resume, 20 + random() * 780);
  a.resume = resume;
}

async function retire(a: Actor, how: "killed" | "stopped"): Promise<void> {
  // A stopped process hears SIGTERM only once resumed.
  a.resume?.();
  actors.splice(actors.indexOf(a), 1);
  a.fate = how;
  stats[how]++;
  if (a.kind === "receiver" && anchorReceiver === undefined) {
    if (how === "killed") stats.loneKilled++;
    openAnchor();
  }
  // An actor hears SIGTERM only once its listener is in, which it says with "ready": one
  // started just before the wind-down was otherwise ended by the signal itself (exit 143).
  // One that dies before saying it is an abnormal exit all the same.
  if (how === "stopped") await a.child.expect("ready").catch(() => {});
  const status = await a.child.stop(how === "killed" ? "SIGKILL" : "SIGTERM");
  account(a, status);
  retired.push(a);
}

// The parent watches the queue through stats() all along, SIGKILLs inside the lock included:
// the totals must never fall, nor any figure leave its bounds.
const watch = {
  snapshots: 0,
  totalsFell: 0,
  outOfBounds: 0,
  errors: 0,
  samples: [] as string[],
  last: anchorSender.stats(),
};
const watcher = setInterval(() => {
  let now;
  try {
    now = anchorSender.stats();
  } catch (error) {
    watch.errors++;
    if (watch.samples.length < 6) watch.samples.push(`threw ${error}`.slice(0, 200));
    return;
  }
  watch.snapshots++;
  const last = watch.last;
  const what = () => `${JSON.stringify(last)} then ${JSON.stringify(now)}`.slice(0, 600);
  if (now.put < last.put || now.received < last.received) {
    watch.totalsFell++;
    if (watch.samples.length < 6) watch.samples.push(`fell: ${what()}`);
  }
  if (
    now.waiting > now.inFlight || now.inFlight > now.capacity || now.received > now.put ||
    now.bytesInUse > now.byteBudget
  ) {
    watch.outOfBounds++;
    if (watch.samples.length < 6) watch.samples.push(`bounds: ${what()}`);
  }
  watch.last = now;
}, 20);

for (let i = 0; i < RECEIVERS; i++) start("receiver");
for (let i = 0; i < SENDERS; i++) start("sender");
await Promise.all(actors.map((a) => a.child.expect("ready")));
log(`queue ${name}: ${SENDERS} senders, ${RECEIVERS} receivers, ${SECONDS} s`);

const receivers = () => actors.filter((a) => a.kind === "receiver");
const until = performance.now() + SECONDS * 1000;
let lastReport = performance.now();
let phaseEnds = performance.now() + PHASE_SECONDS * 1000;
while (performance.now() < until) {
  await sleep(500 + random() * 2500);
  if (PHASE_SECONDS > 0 && performance.now() > phaseEnds) {
    phaseEnds = performance.now() + PHASE_SECONDS * 1000;
    lone = !lone;
    if (lone) stats.lonePhases++;
    log(`${lone ? "lone" : "shared"} phase`);
    if (!lone) openAnchor();
    while (lone && receivers().length > 1) await retire(receivers()[0], "stopped");
  }
  // In a lone phase the receiver is the victim half the time: its kills are what the phase tests.
  const victim = lone && random() < 0.5
    ? receivers()[0]
    : actors[Math.floor(random() * actors.length)];
  const how = random() < 0.7 ? "killed" : "stopped";
  // Half the time another actor is paused as the victim goes: a close that meets the lock kept
  // by a paused peer leaves without it, for a reap to remove.
  const others = actors.filter((a) => a !== victim && a.resume === undefined);
  if (random() < 0.5 && others.length > 0) pause(others[Math.floor(random() * others.length)]);
  await retire(victim, how);
  // Now and then every receiver at once: senders must wait, then go on.
  if (random() < 0.05) {
    for (const r of receivers()) await retire(r, "killed");
  }
  while (receivers().length < (lone ? 1 : RECEIVERS)) start("receiver");
  while (actors.filter((a) => a.kind === "sender").length < SENDERS) start("sender");
  if (lone && anchorReceiver) {
    // The replacement must be open before the anchor closes: else no receiver, for a moment.
    await Promise.all(receivers().map((r) => r.child.expect("ready")));
    closeAnchor();
  }
  if (performance.now() - lastReport > 15_000) {
    lastReport = performance.now();
    log(
      `${stats.started} actors started, ${stats.killed} killed, ${stats.stopped} stopped; ` +
        `${stats.messages} messages (${(stats.bytes / 2 ** 30).toFixed(2)} GiB) accounted so far`,
    );
  }
}

for (const a of actors) a.resume?.();
// Wind down: stop everything gracefully, then close the parent's ends. Senders first: a
// stopped sender waits for its acks, which receivers stopped before it would never give.
openAnchor();
const bySendersFirst = [...actors].sort((a, b) =>
  Number(b.kind === "sender") - Number(a.kind === "sender")
);
for (const a of bySendersFirst) await retire(a, "stopped");
clearInterval(watcher);
const end = anchorSender.stats();
anchorSender.close();
closeAnchor();
const left = shmEntries().filter((n) => n.startsWith(name.slice(1)));
const { removed } = sweepStaleQueues();

// Messages a sender completed (known for those that exited normally) that no receiver
// reported: taken by a receiver that was killed before it reported them, or held by it.
let unaccounted = 0;
for (const [id, count] of completed) {
  const got = (delivered.get(id) ?? []).reduce((n, [a, b]) => n + (b - a + 1), 0);
  unaccounted += count - got;
}
const seconds = SECONDS;
console.log(
  [
    `soak: ${seconds} s, ${stats.started} actors started, ${stats.killed} SIGKILLed ` +
    `(${stats.loneKilled} of them the queue's only receiver, in ${stats.lonePhases} lone ` +
    `phases), ${stats.stopped} stopped with SIGTERM, ${stats.paused} paused with SIGSTOP, ` +
    `${stats.abnormalExits} abnormal exits`,
    `  moved ${stats.messages} messages, ${(stats.bytes / 2 ** 30).toFixed(2)} GiB ` +
    `(${Math.round(stats.messages / seconds)} msg/s, ` +
    `${(stats.bytes / 2 ** 20 / seconds).toFixed(0)} MiB/s) as reported by receivers`,
    `  duplicates ${stats.duplicates}, out of order ${stats.outOfOrder}, bad checksums ` +
    `${stats.badChecksums}, completed-but-unreported ${unaccounted} (receivers killed ` +
    `before reporting, or holding a message)`,
    `  errors seen: ${JSON.stringify(stats.errors)}`,
    ...stats.errorSamples.map((s) => `    ${s}`),
    `  stats(): ${watch.snapshots} snapshots, totals fell ${watch.totalsFell} times, figures ` +
    `out of bounds ${watch.outOfBounds} times, ${watch.errors} errors; at the end ` +
    `put ${end.put}, received ${end.received}, in flight ${end.inFlight}, waiting ` +
    `${end.waiting}, senders ${end.senders}, receivers ${end.receivers}, senders died ` +
    `${end.sendersDied}, receivers died ${end.receiversDied}`,
    ...watch.samples.map((s) => `    ${s}`),
    `  /dev/shm: ${left.length} entries of the queue left after the last close; sweep removed ` +
    `${removed.length}; shmq entries now ${shmEntries().length} (before the run: ${entriesBefore})`,
  ].join("\n"),
);
if (
  stats.duplicates || stats.outOfOrder || stats.badChecksums || stats.abnormalExits ||
  left.length || watch.totalsFell || watch.outOfBounds || watch.errors
) {
  Deno.exit(1);
}
