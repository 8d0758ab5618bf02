/**
 * Shared pieces of the benchmark: payloads, the control protocol between the orchestrator
 * (`main.ts`) and the processes it spawns, pipe framing, and memory probes.
 *
 * Control protocol. The orchestrator writes `go <n>` and `quit` lines to a case's *driver*
 * (the process that sends); the case's *timer* (the process that receives, or does the work
 * in-process) answers one JSON line per round on stdout: `{"t":"round","ms":..,"n":..}`, and
 * at the end `{"t":"final",...}` with peak memory figures. Every peer exits on EOF of its
 * stdin, so closing the orchestrator's pipes is enough to stop a case.
 *
 * @module
 */

/** Deno flags every spawned benchmark process runs with. */
export const CHILD_FLAGS: readonly string[] = [
  "run",
  "--quiet",
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys",
];

/** Environment variable carrying the run token, so stray processes can be found and ended. */
export const RUN_ENV = "SHMQ_BENCH_RUN";

/**
 * `deno run` arguments for a module of this directory (path relative to `bench/`). The run
 * token, when set, is appended as `--bench-run=<token>` so that `ps` can find the process.
 */
export function childArgs(module: string, ...args: string[]): string[] {
  const token = Deno.env.get(RUN_ENV);
  return [
    ...CHILD_FLAGS,
    new URL(module, import.meta.url).pathname,
    ...args,
    ...(token ? [`--bench-run=${token}`] : []),
  ];
}

/** The start of the names of the segments a segment peer of run `token` makes (undefined: a
 * peer started by hand): the run's own, so that its leak check counts no other run's. */
export function segmentPrefix(token: string | undefined): string {
  return `shmq-bench-${token ?? "solo"}-`;
}

/** The payload kinds: raw bytes, and the reference's structured message. */
export type Kind = "bytes" | "struct";

/** The structured message of the Python reference: an int, a short string, a float32 array. */
export interface StructMessage {
  idx: number;
  source: string;
  data: Float32Array;
}

/** Float count of the structured message of nominal `size` bytes. */
export function floatsFor(size: number): number {
  return Math.max(1, Math.floor(size / 4));
}

/** A message of `kind` and nominal `size` bytes, filled with a recognizable pattern. */
export function makePayload(kind: Kind, size: number): Uint8Array | StructMessage {
  if (kind === "bytes") {
    const bytes = new Uint8Array(size);
    bytes.fill(0x5a);
    return bytes;
  }
  const data = new Float32Array(floatsFor(size));
  data.fill(1.5);
  return { idx: 12345, source: "actor_3", data };
}

/** Whether `value` is a received payload of `kind` and nominal `size` (cheap check). */
export function isPayload(value: unknown, kind: Kind, size: number): boolean {
  if (kind === "bytes") return value instanceof Uint8Array && value.length === size;
  const m = value as StructMessage | undefined;
  return typeof m === "object" && m !== null && m.data instanceof Float32Array &&
    m.data.length === floatsFor(size) && m.idx === 12345;
}

/**
 * Fewest messages in a measured round: 5 up to 256 MiB, so a round's steady state spans four
 * intervals between arrivals (with two, one slow arrival at 100 MiB moved a median by half);
 * 2 above, where each round already takes seconds.
 */
export function minRoundFor(size: number): number {
  return size <= 256 * 2 ** 20 ? 5 : 2;
}

/** Messages in flight a windowed transport allows by default (shmq's default capacity). */
export const DEFAULT_WINDOW = 64;

/** Messages in flight allowed by every windowed transport: at most ~1 GiB, 1..`most`. */
export function windowFor(size: number, most: number = DEFAULT_WINDOW): number {
  return Math.max(1, Math.min(most, Math.floor(2 ** 30 / size)));
}

/**
 * Peak resident memory of this process in bytes (VmHWM), from `getrusage(RUSAGE_SELF)`
 * through libc (Deno grants /proc/self reads only with --allow-all); null when unavailable.
 */
export function peakRssBytes(): number | null {
  try {
    const lib = Deno.dlopen("libc.so.6", {
      getrusage: { parameters: ["i32", "buffer"], result: "i32" },
    });
    try {
      const usage = new BigInt64Array(18); // struct rusage: 2 timevals, then ru_maxrss (KiB)
      if (lib.symbols.getrusage(0, usage) !== 0) return null;
      return Number(usage[4]) * 1024;
    } finally {
      lib.close();
    }
  } catch {
    return null;
  }
}

/** Memory available for new allocations (MemAvailable), bytes; Infinity when unknown. */
export function memAvailableBytes(): number {
  try {
    return Deno.systemMemoryInfo().available;
  } catch {
    return Infinity;
  }
}

/** Writes one JSON line to stdout (the timer's answer to the orchestrator). */
export function report(value: unknown): void {
  writeAllSync(Deno.stdout, new TextEncoder().encode(JSON.stringify(value) + "\n"));
}

/** Writes every byte with a blocking writer (loops over partial writes). */
export function writeAllSync(w: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += w.writeSync(off === 0 ? bytes : bytes.subarray(off));
}

/**
 * Has a peer process outlive Ctrl-C, and SIGTERM sent to the run's process group. The
 * terminal sends SIGINT to the whole group, and a peer it killed would leave its queue or
 * segments in /dev/shm; a peer exits on EOF of its stdin instead, which the orchestrator's
 * exit (on either signal too) brings at once. A write into a pipe whose reader is gone then
 * ends the peer quietly, its exit closing what it holds: the orchestrator learns of a real
 * failure from its own end.
 */
function outliveInterrupt(): void {
  // SIGTERM too: `kill -TERM -<group>` left the segment peers' segments in /dev/shm.
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, () => {});
  const quietly = (event: Event) => {
    const error = (event as PromiseRejectionEvent).reason ?? (event as ErrorEvent).error;
    if (!(error instanceof Deno.errors.BrokenPipe)) return;
    event.preventDefault();
    Deno.exit(0);
  };
  globalThis.addEventListener("error", quietly);
  globalThis.addEventListener("unhandledrejection", quietly);
}

/** What every peer process does first: outlive Ctrl-C (see outliveInterrupt), and read its
 * flags. */
export function peerFlags(): Map<string, string> {
  outliveInterrupt();
  return parseFlags(Deno.args);
}

/** A command from the orchestrator: `go n` or `quit` (also returned on EOF). */
export type Command = { op: "go"; n: number } | { op: "quit" };

/** Reads `go <n>` / `quit` lines from stdin with blocking reads (drivers are sync between rounds). */
export class CommandReader {
  #buf = new Uint8Array(256);
  #len = 0;
  readonly #decoder = new TextDecoder();

  /** The next command; `quit` on EOF. */
  next(): Command {
    for (;;) {
      const nl = this.#buf.subarray(0, this.#len).indexOf(10);
      if (nl >= 0) {
        const line = this.#decoder.decode(this.#buf.subarray(0, nl)).trim();
        this.#buf.copyWithin(0, nl + 1, this.#len);
        this.#len -= nl + 1;
        if (line === "") continue;
        const [op, arg] = line.split(" ");
        if (op === "go") return { op: "go", n: Number(arg) };
        return { op: "quit" };
      }
      if (this.#len === this.#buf.length) {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
      const n = Deno.stdin.readSync(this.#buf.subarray(this.#len));
      if (n === null) return { op: "quit" };
      this.#len += n;
    }
  }
}

/** Yields the lines of a byte stream (a child's stdout). */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      if (line.trim() !== "") yield line;
    }
  }
  if (rest.trim() !== "") yield rest;
}

// ---- pipe framing ----------------------------------------------------------------------

/** Bytes of a frame header: u32 length (low), u16 length (high), u16 frame type. */
export const FRAME_HEADER = 8;
/** Frame types. */
export const FrameType = { Bytes: 0, V8: 1, Marker: 2, Final: 3, Json: 4 } as const;

/** Writes a header for `length` payload bytes of `type` at `offset` of `view`. */
export function writeHeader(view: DataView, offset: number, length: number, type: number): void {
  view.setUint32(offset, length % 2 ** 32, true);
  view.setUint16(offset + 4, Math.floor(length / 2 ** 32), true);
  view.setUint16(offset + 6, type, true);
}

/** Payload length of the header at `offset`. */
export function headerLength(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint16(offset + 4, true) * 2 ** 32;
}

/** Frame type of the header at `offset`. */
export function headerType(view: DataView, offset: number): number {
  return view.getUint16(offset + 6, true);
}

/** Messages per `putMany` and per write of the batched pipe, in their bench cases. */
export const BATCH = 16;

/** Frames below this size are written with their header in one write call. */
export const COALESCE_LIMIT = 64 * 1024;

/**
 * Writes length-prefixed frames to a blocking writer: one write call per small frame
 * (header and payload copied into a reused buffer), header then payload for large ones.
 * `write` does no batching across messages: each is handed to the kernel when it is sent;
 * `writeMany` is the batching writer, for the batched pipe's case.
 */
export class FrameWriter {
  readonly #w: { writeSync(p: Uint8Array): number };
  #scratch = new Uint8Array(COALESCE_LIMIT + FRAME_HEADER);
  readonly #view = new DataView(this.#scratch.buffer);

  constructor(w: { writeSync(p: Uint8Array): number }) {
    this.#w = w;
  }

  /**
   * Sends `payloads` as frames of `type`, with one write call for as many of them as fit the
   * coalescing buffer (the batched pipe: what a writer that batches does, as `putMany` does).
   */
  writeMany(type: number, payloads: readonly Uint8Array[]): void {
    let used = 0;
    for (const payload of payloads) {
      const frame = FRAME_HEADER + payload.length;
      if (used + frame > this.#scratch.length && used > 0) {
        writeAllSync(this.#w, this.#scratch.subarray(0, used));
        used = 0;
      }
      if (frame > this.#scratch.length) {
        this.write(type, payload);
        continue;
      }
      writeHeader(this.#view, used, payload.length, type);
      this.#scratch.set(payload, used + FRAME_HEADER);
      used += frame;
    }
    if (used > 0) writeAllSync(this.#w, this.#scratch.subarray(0, used));
  }

  /** Sends one frame. */
  write(type: number, payload: Uint8Array): void {
    writeHeader(this.#view, 0, payload.length, type);
    if (payload.length <= COALESCE_LIMIT) {
      this.#scratch.set(payload, FRAME_HEADER);
      writeAllSync(this.#w, this.#scratch.subarray(0, FRAME_HEADER + payload.length));
    } else {
      writeAllSync(this.#w, this.#scratch.subarray(0, FRAME_HEADER));
      writeAllSync(this.#w, payload);
    }
  }
}

/** A frame read by {@linkcode FrameReader}: its type and an owned payload. */
export interface Frame {
  type: number;
  payload: Uint8Array;
}

/**
 * Reads frames into memory the caller owns, from either a blocking reader (`readSync`) or an
 * async one (`read`, e.g. a BYOB stream reader). Small frames are parsed out of a reused
 * chunk buffer (one read call returns many of them) and copied out; a large frame is read
 * straight into its own buffer, so its bytes cross from the kernel exactly once.
 */
export class FrameReader {
  #chunk: Uint8Array;
  #view: DataView;
  #start = 0;
  #end = 0;

  constructor(chunkBytes = 256 * 1024) {
    this.#chunk = new Uint8Array(chunkBytes);
    this.#view = new DataView(this.#chunk.buffer);
  }

  /**
   * The next complete frame already buffered, or undefined. When undefined, call
   * {@linkcode needed} to learn where to read into next.
   */
  poll(): Frame | undefined {
    const have = this.#end - this.#start;
    if (have < FRAME_HEADER) return undefined;
    const length = headerLength(this.#view, this.#start);
    const type = headerType(this.#view, this.#start);
    if (have < FRAME_HEADER + length) return undefined;
    const from = this.#start + FRAME_HEADER;
    const payload = this.#chunk.slice(from, from + length);
    this.#start = from + length;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return { type, payload };
  }

  /**
   * After {@linkcode poll} returned undefined: either the chunk region to read more into, or
   * a large frame being assembled (`frame.payload` to fill from `filled` on).
   */
  needed(): { region: Uint8Array } | { big: Frame; filled: number } {
    const have = this.#end - this.#start;
    if (have >= FRAME_HEADER) {
      const length = headerLength(this.#view, this.#start);
      if (FRAME_HEADER + length > this.#chunk.length / 2) {
        const big = { type: headerType(this.#view, this.#start), payload: new Uint8Array(length) };
        const part = Math.min(have - FRAME_HEADER, length);
        const from = this.#start + FRAME_HEADER;
        big.payload.set(this.#chunk.subarray(from, from + part));
        this.#start = from + part;
        return { big, filled: part };
      }
    }
    // A small frame is at most half the chunk: it fits whenever it starts in the first half.
    const free = this.#chunk.length - this.#end;
    if (this.#start > this.#chunk.length / 2 || (this.#start > 0 && free < 4096)) {
      this.#chunk.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    return { region: this.#chunk.subarray(this.#end) };
  }

  /** Records `n` bytes read into the region returned by {@linkcode needed}. */
  advance(n: number): void {
    this.#end += n;
  }

  /** The next frame using blocking reads; null at EOF. */
  readSync(r: { readSync(p: Uint8Array): number | null }): Frame | null {
    for (;;) {
      const f = this.poll();
      if (f) return f;
      const need = this.needed();
      if ("big" in need) {
        let filled = need.filled;
        const payload = need.big.payload;
        while (filled < payload.length) {
          const n = r.readSync(payload.subarray(filled));
          if (n === null) return null;
          filled += n;
        }
        return need.big;
      }
      const n = r.readSync(need.region);
      if (n === null) return null;
      this.advance(n);
    }
  }

  /** The next frame using a BYOB reader; null at EOF. */
  async read(r: ReadableStreamBYOBReader): Promise<Frame | null> {
    for (;;) {
      const f = this.poll();
      if (f) return f;
      const need = this.needed();
      if ("big" in need) {
        let filled = need.filled;
        let payload = need.big.payload;
        while (filled < payload.length) {
          const { value, done } = await r.read(payload.subarray(filled));
          if (done || value === undefined) return null;
          payload = new Uint8Array(value.buffer); // the BYOB read transferred the buffer
          filled += value.length;
        }
        return { type: need.big.type, payload };
      }
      const region = need.region;
      const { value, done } = await r.read(region);
      if (done || value === undefined) return null;
      // The BYOB read transferred our buffer: adopt the returned one.
      this.#chunk = new Uint8Array(value.buffer);
      this.#view = new DataView(this.#chunk.buffer);
      this.advance(value.length);
    }
  }
}

// ---- sizes and formatting -------------------------------------------------------------

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
};

/** Parses `10`, `100B`, `1KiB`, `1MiB`, `1GiB`, `10GiB` (also kB/MB/GB decimal). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new RangeError(`bad size "${text}"`);
  const value = Number(m[1]) * unit;
  // "1.5" is no size: rounded, it ran as 2 B and said nothing.
  if (!Number.isInteger(value)) {
    throw new RangeError(`bad size "${text}": not a whole number of bytes`);
  }
  if (!(value >= 1)) throw new RangeError(`bad size "${text}"`);
  return value;
}

/** `10 B`, `1 KiB`, `100 MiB`, `1.5 GiB`, `2.5 MB`: binary units when exact to 0.1 (below 1024 of
 * them but in GiB), else decimal ones when exact as shown, else bytes (`65535 B`): two sizes
 * never share a label. */
export function formatSize(bytes: number): string {
  for (const [unit, div] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= div && (bytes * 10) % div === 0 && (unit === "GiB" || bytes < 1024 * div)) {
      const v = bytes / div;
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${unit}`;
    }
  }
  for (const [unit, div, digits] of [["GB", 1e9, 2], ["MB", 1e6, 2], ["kB", 1e3, 1]] as const) {
    if (bytes >= div && (bytes * 10 ** digits) % div === 0) {
      const v = bytes / div;
      return `${Number.isInteger(v) ? v : v.toFixed(digits).replace(/0$/, "")} ${unit}`;
    }
  }
  return `${bytes} B`;
}

/** `1.23 GB/s` with sensible precision. */
export function fmtRate(gbps: number | undefined): string {
  if (gbps === undefined || !Number.isFinite(gbps)) return "—";
  if (gbps >= 100) return gbps.toFixed(0);
  if (gbps >= 10) return gbps.toFixed(1);
  if (gbps >= 1) return gbps.toFixed(2);
  if (gbps >= 0.01) return gbps.toFixed(3);
  return gbps.toPrecision(2);
}

/** `1.2M`, `35k`, `812`. */
export function fmtCount(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "—";
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e4 ? 0 : 1)}k`;
  if (n >= 10) return n.toFixed(0);
  return n.toFixed(2);
}

/** Milliseconds to sleep. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Parses `--key=value` and `--flag` arguments into a map (flags map to "true"). */
export function parseFlags(args: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const arg of args) {
    const m = /^--([^=]+)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new TypeError(`unexpected argument "${arg}" (expected --name or --name=value)`);
    // Given twice, the first would be dropped in silence.
    if (out.has(m[1])) throw new TypeError(`--${m[1]} is given twice`);
    out.set(m[1], m[2] ?? "true");
  }
  return out;
}

/** A required flag of a peer process. */
export function need(flags: Map<string, string>, name: string): string {
  const v = flags.get(name);
  if (v === undefined) throw new TypeError(`missing --${name}`);
  return v;
}
