/**
 * A steady stream through one queue, as a profiler or an A/B comparison wants it: sender
 * processes put the same message in a loop (`putSync`) for as long as the queue is open, and
 * this process receives for a while and prints its rate per window. Unlike `deno task bench`
 * there are no rounds and no other transports: one long stream, so a profile of it
 * (`--cpu-prof`) or a count in the library's hot paths covers the steady state. Not part of
 * `deno task bench`.
 *
 * The stream figures of the settle-count fix (337724e: capacity 1024 and 64, one sender) were
 * measured with this loop, then a scratch script.
 *
 * Run: `deno run --allow-ffi --allow-read --allow-write --allow-run --allow-env bench/stream.ts
 * [--size=64] [--capacity=64] [--senders=1] [--mode=sync|async|pooled|borrow] [--seconds=2]
 * [--window-ms=250]`
 *
 * @module
 */

import { createSharedMemoryPair, openSender, type Receiver } from "../mod.ts";
import { CHILD_FLAGS, fmtCount, fmtRate, peakRssBytes } from "./common.ts";
import { median } from "./measure.ts";

/** The flags of a run, from `--name=value` arguments. */
interface StreamOptions {
  size: number;
  capacity: number;
  senders: number;
  mode: "sync" | "async" | "pooled" | "borrow";
  seconds: number;
  windowMs: number;
}

const MODES = ["sync", "async", "pooled", "borrow"] as const;
const FLAGS = ["size", "capacity", "senders", "mode", "seconds", "window-ms"];

function parseOptions(args: string[]): StreamOptions {
  const flags = new Map(args.map((a) => {
    const [name, value = ""] = a.replace(/^--/, "").split("=");
    if (!FLAGS.includes(name)) {
      throw new TypeError(`unknown option ${a}: takes --${FLAGS.join(", --")}`);
    }
    return [name, value];
  }));
  const number = (name: string, fallback: number, integer = true): number => {
    const value = flags.has(name) ? Number(flags.get(name)) : fallback;
    if (!(value > 0 && (integer ? Number.isSafeInteger(value) : Number.isFinite(value)))) {
      throw new RangeError(`--${name} must be a ${integer ? "whole " : ""}number > 0`);
    }
    return value;
  };
  const mode = (flags.get("mode") ?? "sync") as StreamOptions["mode"];
  if (!MODES.includes(mode)) throw new RangeError(`--mode must be one of ${MODES.join(", ")}`);
  return {
    size: number("size", 64),
    capacity: number("capacity", 64),
    senders: number("senders", 1),
    mode,
    seconds: number("seconds", 2, false),
    windowMs: number("window-ms", 250, false),
  };
}

/** Sender mode: puts one message in a loop until every receiver has closed. */
function sendUntilClosed(descriptor: string, size: number): void {
  const sender = openSender(descriptor);
  // Filled, so its pages are its own: an untouched buffer reads as the one shared zero page,
  // from the cache, and the sender would copy faster than any real message allows.
  const message = new Uint8Array(size).fill(0x5a);
  try {
    for (;;) sender.putSync(message);
  } catch {
    // ClosedError once the receiver is gone: the stream is over.
  } finally {
    sender.close();
  }
}

/** Takes one message the way `mode` says. */
async function receiveOne(receiver: Receiver, mode: StreamOptions["mode"]): Promise<void> {
  if (mode === "sync") receiver.getSync();
  else if (mode === "pooled") receiver.getSync({ pooled: true });
  else if (mode === "borrow") receiver.borrowSync().release();
  else await receiver.get();
}

/** Receiver mode: spawns the senders, receives, and returns the rate of each window. */
async function measure(options: StreamOptions): Promise<number[]> {
  const [sender, receiver] = createSharedMemoryPair({ capacity: options.capacity });
  const children: Deno.ChildProcess[] = [];
  try {
    const descriptor = JSON.stringify(receiver.descriptor);
    for (let i = 0; i < options.senders; i++) {
      children.push(
        new Deno.Command(Deno.execPath(), {
          args: [
            ...CHILD_FLAGS,
            import.meta.filename!,
            "--send",
            descriptor,
            String(options.size),
          ],
          stdin: "null",
        }).spawn(),
      );
    }
    // The pair's own sender holds the stream open until every child has put once.
    for (let i = 0; i < options.senders; i++) await receiver.get({ timeout: 30_000 });
    sender.close();
    const rates: number[] = [];
    // Small messages are taken a hundred between clock reads, so the clock costs nothing;
    // large ones one at a time, so a window is not stretched by seconds.
    const batch = options.size <= 64 * 1024 ? 100 : 1;
    const end = performance.now() + options.seconds * 1000;
    while (performance.now() < end) {
      const start = performance.now();
      let n = 0;
      while (performance.now() - start < options.windowMs) {
        for (let i = 0; i < batch; i++) await receiveOne(receiver, options.mode);
        n += batch;
      }
      rates.push(n / ((performance.now() - start) / 1000));
    }
    return rates;
  } finally {
    sender.close();
    receiver.close(); // the senders' next put throws ClosedError, and they exit
    for (const child of children) {
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await child.status;
      clearTimeout(timer);
    }
  }
}

if (import.meta.main) {
  if (Deno.args[0] === "--send") sendUntilClosed(Deno.args[1], Number(Deno.args[2]));
  else {
    const options = parseOptions(Deno.args);
    const rates = await measure(options);
    const shown = (x: number) => `${fmtCount(x)} msg/s, ${fmtRate(x * options.size / 1e9)} GB/s`;
    console.log(
      `${options.size} B, capacity ${options.capacity}, ${options.senders} sender(s), ` +
        `${options.mode}: median ${shown(median(rates))} ` +
        `(min ${shown(Math.min(...rates))}, max ${shown(Math.max(...rates))}, ` +
        `${rates.length} windows of ${options.windowMs} ms; receiver's peak RSS ` +
        `${Math.round((peakRssBytes() ?? NaN) / 2 ** 20)} MiB)`,
    );
  }
}
