/**
 * Codec benchmark: the reference's small message (an int, a short string and a 1 KiB
 * Float32Array) encoded and decoded by this codec, by `node:v8` serialize/deserialize and by
 * JSON; and a 64 MiB array encoded into a preallocated region against a plain
 * `TypedArray.set` of the same bytes. Everything is measured in the same run, interleaved,
 * and reported as the median of repeats.
 *
 * Run alone: `deno run bench/codec_bench.ts` (prints a Markdown table), or call
 * {@linkcode runCodecBench} from another script.
 *
 * @module
 */

import v8 from "node:v8";
import { decode, encode, encodeInto, planEncode } from "../codec/mod.ts";

/** Options of {@linkcode runCodecBench}. */
export interface CodecBenchOptions {
  /** Bytes of the large array (default 64 MiB). */
  largeBytes?: number;
  /** Timed repeats of each case; the median is reported (default 15). */
  repeats?: number;
  /** Approximate milliseconds per repeat of each small-message case (default 40). */
  smallRepeatMs?: number;
}

/** Small-message figures: nanoseconds per round trip (encode then decode), median. */
export interface SmallMessageResult {
  /** Bytes of this codec's encoding of the message. */
  encodedBytes: number;
  /** planEncode + encodeInto a preallocated region + decode (copy): the queue's path. */
  codecNs: number;
  /** The same, decoding in view mode (zero-copy borrow). */
  codecViewNs: number;
  /** encode (fresh buffer) + decode (copy). */
  codecEncodeNs: number;
  /** node:v8 serialize + deserialize. */
  v8Ns: number;
  /** JSON.stringify + JSON.parse (the Float32Array becomes an object of 256 keys). */
  jsonNs: number;
  /** v8Ns / codecNs: how many times faster the codec is than node:v8 (> 1 is faster). */
  vsV8: number;
  /** jsonNs / codecNs: how many times faster the codec is than JSON (> 1 is faster). */
  vsJson: number;
  /** v8Ns / codecEncodeNs, for the allocating convenience path. */
  encodeVsV8: number;
  /** jsonNs / codecEncodeNs, for the allocating convenience path. */
  encodeVsJson: number;
}

/** Large-array figures, GB/s (1e9 bytes per second), median. */
export interface LargeArrayResult {
  /** Payload bytes. */
  bytes: number;
  /** planEncode + encodeInto of a Float32Array into a preallocated, touched region. */
  encodeGBps: number;
  /** TypedArray.set of the same bytes into the same region. */
  setGBps: number;
  /** encodeGBps / setGBps (the target is at least 0.9). */
  ratio: number;
  /** decode in copy mode (allocates and copies the payload). */
  decodeCopyGBps: number;
  /** Microseconds of a view-mode decode (no copy), averaged over 1000 decodes. */
  decodeViewUs: number;
}

/** Everything {@linkcode runCodecBench} measures. */
export interface CodecBenchResult {
  /** The reference's small message. */
  small: SmallMessageResult;
  /** The large array. */
  large: LargeArrayResult;
  /** `Deno.version.deno` and `v8` of the run. */
  runtime: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

let sink = 0;

/** Nanoseconds per call of `f`, over a batch of `n` calls. */
function timeBatch(f: () => number, n: number): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) sink += f();
  return ((performance.now() - t0) * 1e6) / n;
}

/**
 * Runs the codec benchmark and returns its figures.
 *
 * @example
 * ```ts
 * import { runCodecBench } from "./codec_bench.ts";
 * const r = await runCodecBench({ largeBytes: 1 << 20, repeats: 3, smallRepeatMs: 5 });
 * console.log(r.small.vsV8, r.large.ratio);
 * ```
 */
export async function runCodecBench(options: CodecBenchOptions = {}): Promise<CodecBenchResult> {
  const largeBytes = options.largeBytes ?? 64 * 1024 * 1024;
  const repeats = options.repeats ?? 15;
  const repeatMs = options.smallRepeatMs ?? 40;

  // ---- small message
  const data = new Float32Array(256);
  for (let i = 0; i < data.length; i++) data[i] = i * 0.25;
  const msg = { idx: 12345, source: "actor_3", data };
  const region = new Uint8Array(64 * 1024);
  const cases: Record<string, () => number> = {
    codec: () => {
      const n = encodeInto(planEncode(msg), region);
      return (decode(region.subarray(0, n)) as typeof msg).idx;
    },
    codecView: () => {
      const n = encodeInto(planEncode(msg), region);
      return (decode(region.subarray(0, n), { view: true }) as typeof msg).idx;
    },
    codecEncode: () => (decode(encode(msg)) as typeof msg).idx,
    v8: () => (v8.deserialize(v8.serialize(msg)) as typeof msg).idx,
    json: () => JSON.parse(JSON.stringify(msg)).idx,
  };
  const names = Object.keys(cases);
  // Warm up, and size each batch to about repeatMs.
  const batch: Record<string, number> = {};
  for (const name of names) {
    const f = cases[name];
    timeBatch(f, 2000);
    const ns = timeBatch(f, 2000);
    batch[name] = Math.max(200, Math.round((repeatMs * 1e6) / ns));
  }
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < repeats; r++) {
    for (const name of names) samples[name].push(timeBatch(cases[name], batch[name]));
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  const ns = Object.fromEntries(names.map((n) => [n, median(samples[n])]));
  const small: SmallMessageResult = {
    encodedBytes: planEncode(msg).byteLength,
    codecNs: ns.codec,
    codecViewNs: ns.codecView,
    codecEncodeNs: ns.codecEncode,
    v8Ns: ns.v8,
    jsonNs: ns.json,
    vsV8: ns.v8 / ns.codec,
    vsJson: ns.json / ns.codec,
    encodeVsV8: ns.v8 / ns.codecEncode,
    encodeVsJson: ns.json / ns.codecEncode,
  };

  // ---- large array
  const src = new Float32Array(largeBytes / 4);
  for (let i = 0; i < src.length; i += 1024) src[i] = i;
  const srcBytes = new Uint8Array(src.buffer);
  const plan = planEncode(src);
  const target = new Uint8Array(plan.byteLength + 4096);
  target.fill(1); // touch every page once, outside the timing
  const payloadAt = plan.byteLength - largeBytes;
  const encodeS: number[] = [];
  const setS: number[] = [];
  const copyS: number[] = [];
  const viewS: number[] = [];
  for (let r = 0; r < repeats + 1; r++) {
    let t0 = performance.now();
    encodeInto(planEncode(src), target);
    const e = performance.now() - t0;
    t0 = performance.now();
    target.set(srcBytes, payloadAt);
    const s = performance.now() - t0;
    const encoded = target.subarray(0, plan.byteLength);
    t0 = performance.now();
    const copy = decode(encoded) as Float32Array;
    const c = performance.now() - t0;
    sink += copy[1024];
    const VIEWS = 1000;
    t0 = performance.now();
    for (let i = 0; i < VIEWS; i++) sink += (decode(encoded, { view: true }) as Float32Array)[1024];
    const v = (performance.now() - t0) / VIEWS;
    if (r > 0) { // the first round warms up
      encodeS.push(e / 1e3);
      setS.push(s / 1e3);
      copyS.push(c / 1e3);
      viewS.push(v / 1e3);
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  const gbps = (sec: number) => largeBytes / sec / 1e9;
  const large: LargeArrayResult = {
    bytes: largeBytes,
    encodeGBps: gbps(median(encodeS)),
    setGBps: gbps(median(setS)),
    ratio: median(setS) / median(encodeS),
    decodeCopyGBps: gbps(median(copyS)),
    decodeViewUs: median(viewS) * 1e6,
  };
  if (sink === 0.5) console.log(""); // keep the results alive
  return { small, large, runtime: `deno ${Deno.version.deno}, v8 ${Deno.version.v8}` };
}

/** The results as a small Markdown report. */
export function formatCodecBench(r: CodecBenchResult): string {
  const s = r.small;
  const l = r.large;
  const f = (x: number, d = 0) => x.toFixed(d);
  return [
    `Codec benchmark (${r.runtime}), medians of repeats, one run.`,
    "",
    `Small message \`{ idx: 12345, source: "actor_3", data: Float32Array(256) }\` ` +
    `(${s.encodedBytes} bytes encoded), encode + decode round trip:`,
    "",
    "| path | ns per round trip | codec is faster by |",
    "|---|---:|---:|",
    `| codec: planEncode + encodeInto region + decode (copy) | ${f(s.codecNs)} | |`,
    `| codec: same, decode in view mode | ${f(s.codecViewNs)} | |`,
    `| codec: encode (fresh buffer) + decode (copy) | ${f(s.codecEncodeNs)} | |`,
    `| node:v8 serialize + deserialize | ${f(s.v8Ns)} | ${f(s.vsV8, 1)}x (${
      f(s.encodeVsV8, 1)
    }x with encode) |`,
    `| JSON.stringify + JSON.parse | ${f(s.jsonNs)} | ${f(s.vsJson, 1)}x (${
      f(s.encodeVsJson, 1)
    }x with encode) |`,
    "",
    `Large array (Float32Array, ${f(l.bytes / 2 ** 20)} MiB) into a preallocated region:`,
    "",
    "| operation | GB/s |",
    "|---|---:|",
    `| planEncode + encodeInto | ${f(l.encodeGBps, 2)} |`,
    `| TypedArray.set of the same bytes | ${f(l.setGBps, 2)} |`,
    `| ratio encode / set | ${f(l.ratio, 3)} |`,
    `| decode, copy mode | ${f(l.decodeCopyGBps, 2)} |`,
    `| decode, view mode | ${f(l.decodeViewUs, 1)} us |`,
  ].join("\n");
}

if (import.meta.main) {
  console.log(formatCodecBench(await runCodecBench()));
}
