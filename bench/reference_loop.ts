/**
 * The reference's 1.7 GB message in a loop between two processes: how long each get takes
 * and how much memory the receiver keeps (README, "Performance": "`get` copies"). The bench's
 * rounds carry two messages each; a loop of several shows what a long-running receiver
 * keeps of the copies it dropped.
 *
 * Usage (about 10 GB of RAM free):
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-run \
 *     bench/reference_loop.ts [get|getSync|borrow] [messages, default 8] \
 *     [--capacity=N] [--bytes=N] [--gc]
 *
 * Prints the receiver's time per message and each process's peak RSS (getrusage's maxrss,
 * which counts the queue's segments the process touched). `--capacity` sets the queue's
 * (default 2); `--bytes` sends a Uint8Array of that many bytes instead of the reference's
 * message. With `--gc` the receiver runs with `--v8-flags=--expose-gc` and collects garbage
 * before each message, so the copy it dropped is freed before the next one is made.
 *
 * @module
 */

import { createSharedMemoryPair, NdArray, openReceiver, type QueueDescriptor } from "../mod.ts";
import { CHILD_FLAGS, peakRssBytes } from "./common.ts";

/** The reference's `data_batch`: float32 [64, 80, 4, 84, 84, 3], 1,734,082,560 bytes. */
const SHAPE = [64, 80, 4, 84, 84, 3];
/** An element set apart, checked on arrival. */
const MARK = 12345;

type Mode = "get" | "getSync" | "borrow";

/** What the receiver is told on its command line. */
interface Loop {
  mode: Mode;
  count: number;
  /** Bytes of a plain Uint8Array message; 0 for the reference's message. */
  bytes: number;
  collect: boolean;
}

interface Message {
  idx: number;
  source: string;
  data_batch: NdArray;
}

function peakRssGiB(): string {
  const bytes = peakRssBytes();
  return bytes === null ? "unknown" : (bytes / 2 ** 30).toFixed(2);
}

/** Message `i`: the reference's, or `bytes` bytes whose first holds `i`. */
function check(value: unknown, i: number, bytes: number): void {
  const ok = bytes > 0
    ? value instanceof Uint8Array && value.length === bytes && value[0] === (i & 255)
    : (value as Message).idx === i && (value as Message).data_batch.data[MARK] === 1.5;
  if (!ok) throw new Error(`message ${i} arrived wrong`);
}

async function receive(descriptor: QueueDescriptor, loop: Loop): Promise<void> {
  using receiver = openReceiver(descriptor);
  const gc = loop.collect ? (globalThis as unknown as { gc(): void }).gc : undefined;
  const ms: string[] = [];
  for (let i = 0; i < loop.count; i++) {
    gc?.();
    const t0 = performance.now();
    if (loop.mode === "borrow") {
      using lease = await receiver.borrow();
      check(lease.value, i, loop.bytes);
    } else {
      check(loop.mode === "get" ? await receiver.get() : receiver.getSync(), i, loop.bytes);
    }
    ms.push((performance.now() - t0).toFixed(0));
  }
  const how = loop.collect ? ", gc() before each" : "";
  console.log(
    `receiver (${loop.mode}${how}): ms per message ${ms.join(", ")}; ` +
      `peak RSS ${peakRssGiB()} GiB`,
  );
}

async function send(loop: Loop, capacity: number): Promise<void> {
  using pair = createSharedMemoryPair({ capacity });
  const [sender] = pair;
  let payload: Uint8Array | NdArray;
  if (loop.bytes > 0) payload = new Uint8Array(loop.bytes).fill(0x25);
  else {
    payload = new NdArray("float32", SHAPE);
    (payload.data as Float32Array).fill(0.25);
    payload.data[MARK] = 1.5;
  }
  await using child = new Deno.Command(Deno.execPath(), {
    args: [
      ...CHILD_FLAGS,
      ...(loop.collect ? ["--v8-flags=--expose-gc"] : []),
      import.meta.filename!,
      "--receive",
      JSON.stringify(sender.descriptor),
      JSON.stringify(loop),
    ],
  }).spawn();
  const t0 = performance.now();
  for (let idx = 0; idx < loop.count; idx++) {
    if (payload instanceof Uint8Array) {
      payload[0] = idx & 255;
      await sender.put(payload);
    } else await sender.put({ idx, source: "actor_0", data_batch: payload });
  }
  await sender.waitForAllAck();
  const seconds = (performance.now() - t0) / 1000;
  sender.close();
  const status = await child.status;
  if (!status.success) throw new Error(`the receiver exited with code ${status.code}`);
  const size = payload instanceof Uint8Array ? payload.byteLength : payload.data.byteLength;
  const gbps = loop.count * size / 1e9 / seconds;
  console.log(
    `sender: ${loop.count} messages of ${(size / 1e9).toFixed(2)} GB, capacity ${capacity}, ` +
      `in ${seconds.toFixed(1)} s (${gbps.toFixed(2)} GB/s); peak RSS ${peakRssGiB()} GiB`,
  );
}

/** The value of `--name=N` among `flags`, a positive integer, or `fallback`. */
function numberFlag(flags: string[], name: string, fallback: number): number {
  const flag = flags.find((arg) => arg.startsWith(`--${name}=`));
  if (flag === undefined) return fallback;
  const value = Number(flag.slice(name.length + 3));
  if (!(Number.isSafeInteger(value) && value >= 1)) {
    console.error(`--${name} must be a positive integer, got ${flag}`);
    Deno.exit(2);
  }
  return value;
}

if (import.meta.main) {
  if (Deno.args[0] === "--receive") {
    await receive(JSON.parse(Deno.args[1]), JSON.parse(Deno.args[2]));
  } else {
    const flags = Deno.args.filter((arg) => arg.startsWith("--"));
    const [mode = "get", messages = "8"] = Deno.args.filter((arg) => !arg.startsWith("--"));
    const unknown = flags.filter((f) => !/^--(gc|capacity=.*|bytes=.*)$/.test(f));
    if (unknown.length > 0) {
      console.error(`unknown option ${unknown[0]}: use --capacity=N, --bytes=N or --gc`);
      Deno.exit(2);
    }
    if (!["get", "getSync", "borrow"].includes(mode)) {
      console.error(`mode must be get, getSync or borrow, got ${mode}`);
      Deno.exit(2);
    }
    const count = Number(messages);
    if (!(Number.isInteger(count) && count >= 1)) {
      console.error(`messages must be a positive integer, got ${messages}`);
      Deno.exit(2);
    }
    const loop: Loop = {
      mode: mode as Mode,
      count,
      bytes: numberFlag(flags, "bytes", 0),
      collect: flags.includes("--gc"),
    };
    await send(loop, numberFlag(flags, "capacity", 2));
  }
}
