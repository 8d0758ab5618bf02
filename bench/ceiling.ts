/**
 * The ceiling for small messages between two Deno processes: an ideal ring of one producer
 * and one consumer in shared memory, with none of what the queue guarantees (no lock, no
 * slots, no capacity or acks, no other senders or receivers, no crash recovery, no codec).
 * The producer writes `[length][bytes]` records and publishes its write cursor; the consumer
 * reads them and publishes its read cursor. It tells how much of the queue's cost per small
 * message is its protocol and how much Deno's, so what a leaner put path could reach. Not
 * part of `deno task bench`.
 *
 * The consumer either copies each message into a fresh `Uint8Array` (as `get` does) or looks
 * at it in place (as `borrow` does, and as the stdio pipe's reader of `deno task bench`
 * does with its reused buffer).
 *
 * Run: `deno run --allow-ffi --allow-run bench/ceiling.ts [sizes in bytes, default 10,64,100,1024]`
 *
 * @module
 */

const MESSAGES = 3_000_000;
/** Bytes of the ring's data: far more than the caches hold, so records are never reused hot. */
const RING_BYTES = 1 << 22;
/** The two cursors, each on its own cache line, before the data. */
const HEADER_BYTES = 4096;
/** How long either end waits for the other before it gives up. */
const STALL_MS = 10_000;
const WRITE_CURSOR = 0; // i32 index: bytes written, wrapping at 2^32 (a multiple of the ring)
const READ_CURSOR = 16; // i32 index: bytes read, wrapping

const libc = Deno.dlopen(
  "libc.so.6",
  {
    shm_open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
    shm_unlink: { parameters: ["buffer"], result: "i32" },
    ftruncate: { parameters: ["i32", "i64"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  } as const,
);
const O_RDWR = 2;
const O_CREAT_EXCL = 0o100 | 0o200;
const PROT_READ_WRITE = 3;
const MAP_SHARED = 1;

type Mode = "copy" | "view";

/** The ring, mapped: its cursors and its data. */
interface Ring {
  cursors: Int32Array;
  data: Uint8Array;
  lengths: DataView;
}

function cString(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

function mapRing(name: string, create: boolean): Ring {
  const size = HEADER_BYTES + RING_BYTES;
  const fd = libc.symbols.shm_open(cString(name), create ? O_RDWR | O_CREAT_EXCL : O_RDWR, 0o600);
  if (fd < 0) throw new Error(`shm_open ${name} failed`);
  try {
    if (create && libc.symbols.ftruncate(fd, BigInt(size)) !== 0) {
      throw new Error(`ftruncate ${name} failed`);
    }
    const p = libc.symbols.mmap(null, BigInt(size), PROT_READ_WRITE, MAP_SHARED, fd, 0n);
    if (p === null || Deno.UnsafePointer.value(p) === 2n ** 64n - 1n) {
      throw new Error(`mmap ${name} failed`);
    }
    const buffer = Deno.UnsafePointerView.getArrayBuffer(p, size);
    const data = new Uint8Array(buffer, HEADER_BYTES, RING_BYTES);
    data.fill(0); // fault every page in before timing
    return {
      cursors: new Int32Array(buffer, 0, 1024),
      data,
      lengths: new DataView(buffer, HEADER_BYTES, RING_BYTES),
    };
  } finally {
    libc.symbols.close(fd);
  }
}

/** Either end, waiting for the other: gives up once it has waited STALL_MS, so that one that
 * never started, or died, leaves no process spinning for good. */
const stalled = {
  since: 0,
  start(): void {
    this.since = performance.now();
  },
  check(other: string): void {
    if (performance.now() - this.since > STALL_MS) {
      throw new Error(`waited ${STALL_MS} ms for ${other}: it is gone`);
    }
  },
};

/** Bytes a record of `length` takes: its length word and payload, 8-aligned. */
function recordBytes(length: number): number {
  return (4 + length + 7) & ~7;
}

/** A length word that says the rest of the ring is skipped: a record never wraps. */
const SKIP = 0xffffffff;

/** Messages per run for `size`: MESSAGES, fewer where they would pass 4 GiB. */
function messagesFor(size: number): number {
  return Math.min(MESSAGES, Math.floor(2 ** 32 / recordBytes(size)));
}

/** The producer: messagesFor(size) records of `size` bytes, as fast as the ring has room. */
function produce(ring: Ring, size: number): void {
  const { cursors, data, lengths } = ring;
  const payload = new Uint8Array(size).fill(7);
  const record = recordBytes(size);
  let write = 0;
  let read = 0; // the consumer's cursor as last seen: read again only when the ring looks full
  const messages = messagesFor(size);
  for (let i = 0; i < messages; i++) {
    let at = write & (RING_BYTES - 1);
    const skip = RING_BYTES - at < record ? RING_BYTES - at : 0;
    for (let spins = 0; ((write - read) | 0) + skip + record > RING_BYTES; spins++) {
      if (spins === 0) stalled.start();
      else if ((spins & 0xfffff) === 0) stalled.check("the consumer");
      read = Atomics.load(cursors, READ_CURSOR);
    }
    if (skip !== 0) {
      lengths.setUint32(at, SKIP, true);
      write = (write + skip) | 0;
      at = 0;
    }
    lengths.setUint32(at, size, true);
    data.set(payload, at + 4);
    write = (write + record) | 0;
    Atomics.store(cursors, WRITE_CURSOR, write);
  }
}

/** The consumer: takes every record, copied or viewed; returns messages per second. */
function consume(ring: Ring, mode: Mode, messages: number): number {
  const { cursors, data, lengths } = ring;
  let read = 0;
  let taken = 0;
  let checksum = 0;
  let started = 0;
  let spins = 0;
  while (taken < messages) {
    const write = Atomics.load(cursors, WRITE_CURSOR);
    if (write === read) {
      if (spins++ === 0) stalled.start();
      else if ((spins & 0xfffff) === 0) stalled.check("the producer");
      continue;
    }
    spins = 0;
    if (taken === 0) started = performance.now();
    while (read !== write) {
      const at = (read & (RING_BYTES - 1)) + 4;
      const length = lengths.getUint32(at - 4, true);
      if (length === SKIP) {
        read = (read + RING_BYTES - (at - 4)) | 0;
        continue;
      }
      const message = mode === "copy"
        ? data.slice(at, at + length)
        : data.subarray(at, at + length);
      checksum += message[length - 1];
      read = (read + recordBytes(length)) | 0;
      taken++;
    }
    Atomics.store(cursors, READ_CURSOR, read);
  }
  const rate = messages / ((performance.now() - started) / 1000);
  if (checksum !== 7 * messages) throw new Error(`bad checksum ${checksum}`);
  return rate;
}

const [role, name, sizeArg] = Deno.args;
if (role === "--produce") {
  const ring = mapRing(name, false);
  // Mapped: the name is not needed any more, and a consumer killed now would leave it behind.
  libc.symbols.shm_unlink(cString(name));
  produce(ring, Number(sizeArg));
} else {
  const sizes = (role ?? "10,64,100,1024").split(",").map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || recordBytes(n) > RING_BYTES / 4)) {
    console.error(`Usage: deno run --allow-ffi --allow-run bench/ceiling.ts [sizes, e.g. 10,100]`);
    Deno.exit(2);
  }
  console.log("| message | consumer copies (`get`) | consumer views (`borrow`) |");
  console.log("| ------: | ----------------------: | ------------------------: |");
  for (const size of sizes) {
    const rates: string[] = [];
    for (const mode of ["copy", "view"] as const) {
      const ringName = `/shmq-ceiling-${crypto.randomUUID()}`;
      let producer: Deno.ChildProcess | undefined;
      let rate: number;
      try {
        const ring = mapRing(ringName, true);
        producer = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--quiet",
            "--allow-ffi",
            import.meta.filename!,
            "--produce",
            ringName,
            `${size}`,
          ],
          stdin: "null",
        }).spawn();
        rate = consume(ring, mode, messagesFor(size));
      } catch (error) {
        producer?.kill("SIGKILL");
        throw error;
      } finally {
        libc.symbols.shm_unlink(cString(ringName));
      }
      const status = await producer.status;
      if (!status.success) throw new Error(`the producer failed (exit code ${status.code})`);
      rates.push(`${(rate / 1e6).toFixed(2)}M msg/s`);
    }
    console.log(`| ${size} B | ${rates[0]} | ${rates[1]} |`);
  }
}
