/**
 * A full garbage collection before a receiver copies a huge message out, so that the copies
 * it dropped are freed first and the new one lands on their pages.
 *
 * A copy of a gigabyte needs a gigabyte of pages. V8 frees a dropped copy only once a
 * marking that started after it was dropped completes, and such a marking starts when the
 * next buffer is allocated (external memory passes its limit): too late for that copy, which
 * must find another gigabyte of pages. On a VM whose free pages go back to the host (free page
 * reporting), those cost a host fault each. Measured on a 2-vCPU VM, two processes, 1 GiB
 * Uint8Arrays at capacity 1, ms per get after the first: `get` 309-1641 (every second one over
 * a second), `getSync` 296-1583, peak RSS 5.12 and 4.12 GiB; collecting first, 288-567 for
 * both, 2.12 GiB. The collection took 8-16 ms, most of it unmapping the dropped copies (each
 * had a mapping of its own then; they now come from malloc's heap, see kept_heap.ts). Below
 * {@linkcode COLLECT_BEFORE_BYTES} it cost more than it saved: at 100 MiB gets ran 2.7-3.3
 * GB/s with it against 3.4-4.5 without, and 512 MiB was a wash.
 *
 * `gc()` is not exposed without `--expose-gc`; `node:v8`'s `setFlagsFromString` turns the
 * flag on long enough to take the function from a new context, then off again. Where that
 * fails, nothing is collected and copies go on as before.
 *
 * @module
 */

/** Copies of this many bytes and more collect first. */
export const COLLECT_BEFORE_BYTES = 768 << 20;

/** The share of a copy's time a collection may take: a program with a large heap of its own
 * pays more for a full collection, and its copies are then better off without. Not less: on a
 * machine kept busy a collection took twice its time (a tenth stopped it, and the copies kept
 * a dropped one again). */
const COLLECTION_SHARE = 0.25;
/** The copy rate a collection's share is reckoned against, in bytes per millisecond (3 GB/s,
 * a fast copy into fresh pages on the VM above). */
const COPY_BYTES_PER_MS = 3e6;
/** How much of an over-budget collection's cost is forgiven at each copy that skips one, so
 * that a heap that shrank is tried again (after 22 copies, for ten times the budget). */
const SKIP_DISCOUNT = 0.9;

/** Decides, copy by copy, whether a full collection is worth its cost, and makes it. */
export class CollectionBeforeCopy {
  readonly #collect: () => void;
  readonly #now: () => number;
  /** What a collection costs: the lesser of the last two (one that the scheduler held up, on
   * a busy machine, says nothing of the heap), discounted at each copy that skipped one. */
  #costMs = 0;
  /** What the last collection took. */
  #lastMs = 0;

  /**
   * @param collect Makes a full collection.
   * @param now The clock, in milliseconds.
   */
  constructor(collect: () => void, now: () => number = () => performance.now()) {
    this.#collect = collect;
    this.#now = now;
  }

  /** Before a copy of `byteLength` bytes into a new buffer: collects when the copy is huge
   * and a collection costs no more than its share of such a copy. True if it did. */
  before(byteLength: number): boolean {
    if (byteLength < COLLECT_BEFORE_BYTES) return false;
    if (this.#costMs > (byteLength / COPY_BYTES_PER_MS) * COLLECTION_SHARE) {
      this.#costMs *= SKIP_DISCOUNT;
      return false;
    }
    const start = this.#now();
    this.#collect();
    const ms = this.#now() - start;
    this.#costMs = Math.min(ms, this.#lastMs);
    this.#lastMs = ms;
    return true;
  }
}

/** What `node:v8` and `node:vm` offer that this module uses. */
interface Builtins {
  getBuiltinModule?(id: "node:v8"): { setFlagsFromString(flags: string): void };
  getBuiltinModule?(id: "node:vm"): { runInNewContext(code: string): unknown };
}

/**
 * `gc()`, taken from a new context (a global `gc` of the program's may be anything): as it is
 * when the program runs with `--expose-gc`, else with the flag on for that moment; null where
 * it cannot be had. The modules load here, at the first huge copy (about 25 ms), not as the
 * library loads (10 ms more per start).
 */
function exposedCollection(): (() => void) | null {
  try {
    const builtins = (globalThis as { process?: Builtins }).process;
    const v8 = builtins?.getBuiltinModule?.("node:v8");
    const vm = builtins?.getBuiltinModule?.("node:vm");
    if (v8 === undefined || vm === undefined) return null;
    const fromNewContext = (): (() => void) | null => {
      const gc = vm.runInNewContext("typeof gc === 'function' ? gc : null");
      return typeof gc === "function" ? gc as () => void : null;
    };
    const exposed = fromNewContext();
    if (exposed !== null) return exposed; // The program's own flag: left on.
    v8.setFlagsFromString("--expose-gc");
    try {
      return fromNewContext();
    } finally {
      setFlagsFromStringQuietly(v8, "--no-expose-gc");
    }
  } catch {
    return null; // No flags to set here, or no gc() in the new context: nothing is collected.
  }
}

function setFlagsFromStringQuietly(
  v8: { setFlagsFromString(flags: string): void },
  flags: string,
): void {
  try {
    v8.setFlagsFromString(flags);
  } catch {
    // The flag stays on: only contexts made from now on see a global gc().
  }
}

/** This isolate's `gc()`, looked for at the first need; null when it has none. */
let isolateGc: (() => void) | null | undefined;

function isolateCollection(): (() => void) | null {
  if (isolateGc === undefined) isolateGc = exposedCollection();
  return isolateGc;
}

/** This isolate's policy, made at its first huge copy; null when it has no `gc()`. */
let isolatePolicy: CollectionBeforeCopy | null | undefined;

/** Before this isolate copies `byteLength` bytes into a new buffer: collects first
 * when the copy is huge (see the module documentation). */
export function collectBeforeCopy(byteLength: number): void {
  if (byteLength < COLLECT_BEFORE_BYTES) return;
  if (isolatePolicy === undefined) {
    const gc = isolateCollection();
    isolatePolicy = gc === null ? null : new CollectionBeforeCopy(gc);
  }
  isolatePolicy?.before(byteLength);
}

/** Makes a full collection now, if this isolate can: for a copy the memory left seems too
 * short for, where copies dropped but not yet collected may hold what it needs. True if it
 * collected. */
export function collectNow(): boolean {
  const gc = isolateCollection();
  if (gc === null) return false;
  gc();
  return true;
}
