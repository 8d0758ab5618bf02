import assert from "node:assert/strict";
import { CHILD_PERMISSIONS, heapKeepsAtMost, runDeno } from "./helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** What the child of the test below saw of its anonymous memory, in MiB. */
interface HeapReport {
  /** After the put, before any copy. */
  before: number;
  /** After a copy was made, dropped and freed. */
  freed: number;
  /** Whether 300 MiB malloc'd and freed then stayed free at the heap's top: the copy raised
   * the trim threshold past the 128 MiB the tuning sets. */
  topKept: boolean;
  /** After a wait that found nothing for 1.5 s. */
  idle: number;
  /** After a second copy was made, dropped and freed. */
  freedAgain: number;
  /** After the receiver closed. */
  closed: number;
}

// Malloc's settings belong to the whole process: a fresh one, whose first large copy tunes it.
const CHILD = `
  import { createSharedMemoryPair, EmptyError } from "${ROOT}mod.ts";
  import { mallocFromHeap } from "${ROOT}ffi/native.ts";
  const libc = Deno.dlopen("libc.so.6", {
    mallinfo2: { parameters: [], result: { struct: Array(10).fill("usize") } },
    malloc: { parameters: ["usize"], result: "pointer" },
    free: { parameters: ["pointer"], result: "void" },
  });
  /** Free bytes in malloc's heaps (fordblks, the ninth field of struct mallinfo2). */
  const heapFree = () => Number(new BigUint64Array(libc.symbols.mallinfo2().buffer)[8]);
  const anonMiB = () =>
    Number(/RssAnon:\\s+(\\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"))[1]) / 1024;
  // Over the 128 MiB glibc keeps at the top once tuned: kept only as the copy asks.
  const SIZE = 160 << 20;
  /** Copies one message out, drops the copy, and waits until malloc has it back. */
  const copyAndFree = async () => {
    sender.putSync(source);
    let copy = receiver.getSync({ timeout: 10_000 });
    if (copy.length !== SIZE || copy[SIZE - 1] !== 7) throw new Error("a wrong copy");
    // A chunk the heap gave back in its middle stays free there, its pages discarded: what is
    // free while the copy lives is what to compare with.
    const free = heapFree();
    copy = undefined;
    // V8 frees a collected buffer's memory on a sweeper thread.
    for (let i = 0; i < 500 && heapFree() < free + SIZE * 0.9; i++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    if (heapFree() < free + SIZE * 0.9) throw new Error("the copy was never freed into the heap");
  };
  const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
  const source = new Uint8Array(SIZE).fill(7);
  const report = { before: anonMiB() };
  await copyAndFree();
  report.freed = anonMiB();
  mallocFromHeap(true); // as the receiver's own copies are made
  const untouched = libc.symbols.malloc(300 << 20); // never touched: no resident memory
  mallocFromHeap(false);
  libc.symbols.free(untouched);
  report.topKept = Number(new BigUint64Array(libc.symbols.mallinfo2().buffer)[9]) >= 300 << 20;
  try {
    receiver.getSync({ timeout: 1500 });
    throw new Error("a message out of nowhere");
  } catch (e) {
    if (!(e instanceof EmptyError)) throw e;
  }
  report.idle = anonMiB();
  await copyAndFree();
  report.freedAgain = anonMiB();
  receiver.close();
  sender.close();
  report.closed = anonMiB();
  console.log(JSON.stringify(report));
`;

/** Whether the heap may keep two of the copies below: it keeps an eighth of the memory there is
 * at most (a small cgroup's case is in bad_input_test.ts, where such copies are mapped alone). */
const roomToKeep = heapKeepsAtMost() >= 2 * (160 << 20);

Deno.test({
  name: "a receiver's heap keeps a huge copy it freed, and gives it back when idle or closed",
  ignore: !roomToKeep,
}, async () => {
  const out = await runDeno([
    "eval",
    ...CHILD_PERMISSIONS,
    "--v8-flags=--expose-gc",
    CHILD,
  ]);
  const r: HeapReport = JSON.parse(out);
  const shown = JSON.stringify(r);
  assert.ok(r.topKept, `the copy let the heap keep twice its size at its top: ${shown}`);
  // Kept: the next copy of its size takes the same pages, with no fault or zeroing.
  assert.ok(r.freed - r.before > 128, `the freed 160 MiB copy was kept: ${shown}`);
  assert.ok(
    r.freed - r.idle > 128,
    `a second and a half with nothing to copy gave it back: ${shown}`,
  );
  assert.ok(r.freedAgain - r.idle > 128, `the next copy's was kept again: ${shown}`);
  assert.ok(r.freedAgain - r.closed > 128, `closing the receiver gave it back: ${shown}`);
});
