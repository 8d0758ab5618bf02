/**
 * The reference's 1.7 GB message in a loop between two processes: how long each get takes
 * and how much memory the receiver keeps (README, "How much the machine..."). The bench's
 * rounds carry two messages each; a loop of several shows what a long-running receiver
 * keeps of the copies it dropped.
 *
 * Usage (about 10 GB of RAM free):
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-run \
 *     bench/reference_loop.ts [get|getSync|borrow] [messages, default 8]
 *
 * Prints the receiver's time per message and each process's peak RSS (getrusage's maxrss,
 * which counts the queue's segments the process touched).
 *
 * @module
 */

import { createSharedMemoryPair, NdArray, openReceiver, type QueueDescriptor } from "../mod.ts";
import { peakRssBytes } from "./common.ts";

/** The reference's `data_batch`: float32 [64, 80, 4, 84, 84, 3], 1,734,082,560 bytes. */
const SHAPE = [64, 80, 4, 84, 84, 3];
/** An element set apart, checked on arrival. */
const MARK = 12345;

type Mode = "get" | "getSync" | "borrow";

interface Message {
  idx: number;
  source: string;
  data_batch: NdArray;
}

function peakRssGiB(): string {
  const bytes = peakRssBytes();
  return bytes === null ? "unknown" : (bytes / 2 ** 30).toFixed(2);
}

function check(value: Message, i: number): void {
  if (value.idx !== i || value.data_batch.data[MARK] !== 1.5) {
    throw new Error(`message ${i} arrived wrong`);
  }
}

async function receive(descriptor: QueueDescriptor, mode: Mode, count: number): Promise<void> {
  using receiver = openReceiver(descriptor);
  const ms: string[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    if (mode === "borrow") {
      using lease = await receiver.borrow<Message>();
      check(lease.value, i);
    } else {
      check(mode === "get" ? await receiver.get<Message>() : receiver.getSync<Message>(), i);
    }
    ms.push((performance.now() - t0).toFixed(0));
  }
  console.log(`receiver (${mode}): ms per message ${ms.join(", ")}; peak RSS ${peakRssGiB()} GiB`);
}

async function send(mode: Mode, count: number): Promise<void> {
  using pair = createSharedMemoryPair({ capacity: 2 });
  const [sender] = pair;
  const batch = new NdArray("float32", SHAPE);
  (batch.data as Float32Array).fill(0.25);
  batch.data[MARK] = 1.5;
  await using child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      import.meta.filename!,
      "--receive",
      JSON.stringify(sender.descriptor),
      mode,
      String(count),
    ],
  }).spawn();
  const t0 = performance.now();
  for (let idx = 0; idx < count; idx++) {
    await sender.put({ idx, source: "actor_0", data_batch: batch });
  }
  await sender.waitForAllAck();
  const seconds = (performance.now() - t0) / 1000;
  sender.close();
  const status = await child.status;
  if (!status.success) throw new Error(`the receiver exited with code ${status.code}`);
  const gbps = count * batch.data.byteLength / 1e9 / seconds;
  console.log(
    `sender: ${count} messages of 1.73 GB in ${seconds.toFixed(1)} s (${gbps.toFixed(2)} GB/s); ` +
      `peak RSS ${peakRssGiB()} GiB`,
  );
}

if (import.meta.main) {
  if (Deno.args[0] === "--receive") {
    await receive(JSON.parse(Deno.args[1]), Deno.args[2] as Mode, Number(Deno.args[3]));
  } else {
    const mode = (Deno.args[0] ?? "get") as Mode;
    if (!["get", "getSync", "borrow"].includes(mode)) {
      console.error(`mode must be get, getSync or borrow, got ${mode}`);
      Deno.exit(2);
    }
    const count = Number(Deno.args[1] ?? 8);
    if (!(Number.isInteger(count) && count >= 1)) {
      console.error(`messages must be a positive integer, got ${Deno.args[1]}`);
      Deno.exit(2);
    }
    await send(mode, count);
  }
}
