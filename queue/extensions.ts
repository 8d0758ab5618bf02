/**
 * A queue's extension table, as one end sees it: which extension segments there are (each
 * message too large for the arena gets a segment of its own), at which generation and of what
 * size, whether a message is in one, and dropping idle ones (past the byte budget, or idle for
 * long enough). Where a message goes, and waiting for room, is the queue's (see SharedQueue);
 * what one end has mapped of the segments is its own (see extension_mappings.ts).
 *
 * @module
 */

import * as native from "../ffi/native.ts";
import * as L from "./layout.ts";
import type { Header } from "./main_segment.ts";
import { unlinkSegment } from "./segment.ts";

/** Extension segments of 16 MiB and more are sized in 2 MiB steps (huge-page friendly, and
 * similar messages reuse one); smaller ones in pages. */
const EXTENSION_GRANULE = 2 * 1024 * 1024;

/** The size of the extension segment a message of `length` encoded bytes gets. */
export function extensionSizeFor(length: number): number {
  return L.alignUp(length, length >= 8 * EXTENSION_GRANULE ? EXTENSION_GRANULE : L.PAGE_SIZE);
}

/** How long a put waits for the memory of extension segments it dropped to come back: every
 * end unmaps them at its next call of the queue, or wait slice (0.2 s), unless busy
 * elsewhere. */
export const UNMAP_GRACE_MS = 2000;

/** The extension table of one end's mapping of a queue. Methods named `…Locked` run under
 * the queue's lock. */
export class ExtensionTable {
  readonly #queueName: string;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;
  /** The extensions' name salt, as hex (see layout.C_EXTENSION_SALT). */
  readonly #salt: string;
  /** See layout.C_KEEP_IDLE_MS. */
  readonly #keepIdleMs: number;
  /** Bytes the extensions may hold within the byte budget: what the arena leaves of it. */
  readonly #room: number;

  /**
   * @param queueName The queue's name, which every extension segment's name starts with.
   * @param main The main segment's memory.
   * @param header The queue's geometry, as validated (see main_segment.ts Header).
   */
  constructor(queueName: string, main: ArrayBuffer, header: Header) {
    this.#queueName = queueName;
    const u32 = new Uint32Array(main);
    this.#u32 = u32;
    this.#f64 = new Float64Array(main);
    this.#salt = [u32[L.C_EXTENSION_SALT >> 2], u32[(L.C_EXTENSION_SALT >> 2) + 1]]
      .map((word) => word.toString(16).padStart(8, "0")).join("");
    this.#keepIdleMs = header.keepIdleMs;
    this.#room = header.byteBudget - header.arenaSize;
  }

  /** Extension `index`'s state (L.ExtensionState). */
  state(index: number): number {
    return this.#u32[(L.extensionOffset(index) + L.E_STATE) >> 2];
  }

  /** The size extension `index`'s segment is recorded at. */
  size(index: number): number {
    return this.#f64[(L.extensionOffset(index) + L.E_SIZE) >> 3];
  }

  /** Extension `index`'s generation: that of the segment behind it now. */
  gen(index: number): number {
    return this.#u32[(L.extensionOffset(index) + L.E_GEN) >> 2];
  }

  /** The name of extension `index`'s segment at generation `gen`. */
  name(index: number, gen: number): string {
    return L.extensionName(this.#queueName, index, gen, this.#salt);
  }

  /** The slot (ring index) of the message placed in extension `index` last. */
  lastSlot(index: number): number {
    return this.#u32[(L.extensionOffset(index) + L.E_SLOT) >> 2];
  }

  /** Bytes of the extension segments that carry a message (`busyOnly`), or of all there are. */
  bytes(busyOnly: boolean): number {
    let bytes = 0;
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      const e = L.extensionOffset(i);
      const state = this.#u32[(e + L.E_STATE) >> 2];
      if (busyOnly ? state === L.ExtensionState.Busy : state !== L.ExtensionState.Empty) {
        bytes += this.#f64[(e + L.E_SIZE) >> 3];
      }
    }
    return bytes;
  }

  /** Whether extension `index` carries slot `slot`'s message, in a segment of whole pages
   * that holds `length` bytes. */
  carries(index: number, slot: number, length: number): boolean {
    const e = L.extensionOffset(index);
    const size = this.#f64[(e + L.E_SIZE) >> 3];
    return this.#u32[(e + L.E_STATE) >> 2] === L.ExtensionState.Busy &&
      this.#u32[(e + L.E_SLOT) >> 2] === slot && size > 0 && size % L.PAGE_SIZE === 0 &&
      length <= size;
  }

  /** Records slot `slot`'s message as the one placed in extension `index` last. */
  placeLocked(index: number, slot: number): void {
    this.#u32[(L.extensionOffset(index) + L.E_SLOT) >> 2] = slot;
  }

  /** Marks extension `index` busy: a message is placed in it. */
  busyLocked(index: number): void {
    this.#setStateLocked(index, L.ExtensionState.Busy);
  }

  /** Whether any extension has a segment (busy or idle). */
  anyHeld(): boolean {
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      if (this.#u32[(L.extensionOffset(i) + L.E_STATE) >> 2] !== L.ExtensionState.Empty) {
        return true;
      }
    }
    return false;
  }

  /** Whether any extension carries a message (by the count, see L.C_EXTENSIONS_BUSY). */
  get anyBusy(): boolean {
    return this.#u32[L.C_EXTENSIONS_BUSY >> 2] !== 0;
  }

  /** Gives the empty extension `index` a new segment of `size` bytes, at a new generation,
   * for its maker to create. */
  newSegmentLocked(index: number, size: number): void {
    this.#renewLocked(index);
    this.#f64[(L.extensionOffset(index) + L.E_SIZE) >> 3] = size;
  }

  /** Marks extension `index` idle: no message uses it from now on. */
  idleLocked(index: number): void {
    this.#setStateLocked(index, L.ExtensionState.Idle);
    this.#f64[(L.extensionOffset(index) + L.E_IDLE_SINCE) >> 3] = Date.now();
  }

  /** Marks idle every busy extension not in `used` (the extensions of the messages in
   * flight): a holder killed mid-section may have left one busy for no slot. Then counts the
   * busy ones afresh. */
  idleUnusedLocked(used: ReadonlySet<number>): void {
    let busy = 0;
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      const at = (L.extensionOffset(i) + L.E_STATE) >> 2;
      if (this.#u32[at] !== L.ExtensionState.Busy) continue;
      if (used.has(i)) busy++;
      else this.idleLocked(i);
    }
    this.#u32[L.C_EXTENSIONS_BUSY >> 2] = busy;
  }

  /** Sets extension `index`'s state, and the count of busy ones with it. */
  #setStateLocked(index: number, state: number): void {
    const at = (L.extensionOffset(index) + L.E_STATE) >> 2;
    const was = this.#u32[at];
    this.#u32[at] = state;
    if ((was === L.ExtensionState.Busy) === (state === L.ExtensionState.Busy)) return;
    const count = L.C_EXTENSIONS_BUSY >> 2;
    if (state === L.ExtensionState.Busy) {
      this.#u32[count] = Math.min(this.#u32[count] + 1, L.MAX_EXTENSIONS);
    } else if (this.#u32[count] > 0) this.#u32[count]--;
  }

  /**
   * Drops idle extensions, largest first, while the queue holds more than its byte budget.
   * Only a message larger than the budget takes the queue past it. Once that message is done
   * with, its segment goes at the next put that does not need it (a stream of such messages
   * reuses it), or it would keep its memory (RAM, in tmpfs) for the queue's life, being the
   * smallest idle fit of every later extension message. Each end unmaps it at its next put,
   * take or wait (see SharedQueue's #noticeRenewedExtensionsLocked); an end that does none of
   * these keeps it.
   */
  trimLocked(): void {
    const u32 = this.#u32;
    const f64 = this.#f64;
    const sizeOf = (i: number) => f64[(L.extensionOffset(i) + L.E_SIZE) >> 3];
    const room = this.#room;
    let held = 0;
    const idle: number[] = [];
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      const state = u32[(L.extensionOffset(i) + L.E_STATE) >> 2];
      if (state === L.ExtensionState.Empty) continue;
      held += sizeOf(i);
      if (state === L.ExtensionState.Idle) idle.push(i);
    }
    if (held <= room) return;
    idle.sort((a, b) => sizeOf(b) - sizeOf(a));
    for (const i of idle) {
      if (held <= room) break;
      held -= sizeOf(i);
      this.dropLocked(i);
    }
  }

  /**
   * Drops every extension that has been idle for C_KEEP_IDLE_MS, so its memory goes back to
   * /dev/shm once every end has unmapped it. An idle time that is not a time, or in the
   * future, is reset to now.
   */
  dropIdleLocked(): void {
    if (this.#keepIdleMs === Infinity) return;
    const now = Date.now();
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      const e = L.extensionOffset(i);
      if (this.#u32[(e + L.E_STATE) >> 2] !== L.ExtensionState.Idle) continue;
      const idleFor = now - this.#f64[(e + L.E_IDLE_SINCE) >> 3];
      // Not a time, or in the future (the wall clock stepped back since): idle since now, or
      // the segment would stay as long as the step (or for good).
      if (!(idleFor >= 0)) this.#f64[(e + L.E_IDLE_SINCE) >> 3] = now;
      else if (idleFor >= this.#keepIdleMs) this.dropLocked(i);
    }
  }

  /**
   * Bytes the extension segments already made will still take from /dev/shm. A segment takes
   * its memory only as its pages are first touched: one that another end is making (and
   * pre-faulting) right now shows in the free space of /dev/shm bit by bit, and two ends
   * making segments at once would otherwise each count the same room as theirs, and both fail
   * halfway. A segment reserved and not made yet takes all of its size. `writing`: the
   * extensions that messages still being written are in (see SharedQueue's
   * #extensionsBeingWrittenLocked).
   */
  unbackedBytesLocked(writing: ReadonlyMap<number, number>): number {
    let unbacked = 0;
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      const e = L.extensionOffset(i);
      const state = this.#u32[(e + L.E_STATE) >> 2];
      if (state === L.ExtensionState.Empty) continue;
      const recorded = this.#f64[(e + L.E_SIZE) >> 3];
      const claimed = recorded > 0 && recorded <= Number.MAX_SAFE_INTEGER ? recorded : 0;
      let fd: number;
      try {
        fd = native.shmOpen(this.name(i, this.#u32[(e + L.E_GEN) >> 2]));
      } catch (error) {
        // Any other failure (out of file descriptors: EMFILE) says nothing of the segment,
        // and would fail making the new one the same way: the put fails with it, rather than
        // count a segment made long ago as still to come and wait for room /dev/shm has.
        const code = (error as { code?: string }).code;
        if (code !== "ENOENT" && code !== "EPERM") throw error;
        // Reserved for a message being written, not made yet: all of it is to come. (Left so
        // by a put that failed or an end that died, or idle without one: it holds nothing.
        // Nor does a name that is no segment of this user's, see ExtensionMappings.exists.)
        if (state === L.ExtensionState.Busy && writing.has(i)) unbacked += claimed;
        continue;
      }
      try {
        const size = Math.max(native.fdSize(fd), claimed);
        unbacked += Math.max(0, size - native.fdAllocatedBytes(fd));
      } finally {
        native.closeFd(fd);
      }
    }
    return unbacked;
  }

  /** Unlinks an idle extension's segment; its memory is freed once every end unmaps it. */
  dropLocked(index: number): void {
    const e = L.extensionOffset(index);
    const removed = unlinkSegment(this.name(index, this.#u32[(e + L.E_GEN) >> 2]));
    if (removed) {
      const f64 = this.#f64;
      const now = Date.now();
      // Every drop renews the window: what it dropped may stay mapped that long. (A message
      // waits for other ends' drops once, so a stream of them cannot hold it for good.)
      f64[L.C_SHM_DROPPED_BYTES >> 3] = this.droppedLatelyLocked(now) +
        f64[(e + L.E_SIZE) >> 3];
      f64[L.C_SHM_DROPPED_AT >> 3] = now;
    }
    this.#renewLocked(index);
    this.#setStateLocked(index, L.ExtensionState.Empty);
    this.#f64[(e + L.E_SIZE) >> 3] = 0;
  }

  /**
   * Bytes of extension segments any end dropped in the window open at `now` (`Date.now()`),
   * whose memory may still be mapped by an end that has not noticed yet. The window lasts
   * UNMAP_GRACE_MS from the last drop; a value from the future, or not a size, counts as none.
   */
  droppedLatelyLocked(now: number): number {
    const bytes = this.#f64[L.C_SHM_DROPPED_BYTES >> 3];
    const age = now - this.#f64[L.C_SHM_DROPPED_AT >> 3];
    return age >= 0 && age < UNMAP_GRACE_MS && bytes > 0 && bytes <= Number.MAX_SAFE_INTEGER
      ? bytes
      : 0;
  }

  /** Unlinks every extension segment there is: the queue goes. */
  unlinkAllLocked(): void {
    const u32 = this.#u32;
    for (let i = 0; i < L.MAX_EXTENSIONS; i++) {
      const e = L.extensionOffset(i);
      if (u32[(e + L.E_STATE) >> 2] !== L.ExtensionState.Empty) {
        unlinkSegment(this.name(i, u32[(e + L.E_GEN) >> 2]));
      }
    }
  }

  /** Moves extension `index` to a new generation (a new segment name) and tells every end. */
  #renewLocked(index: number): void {
    const at = (L.extensionOffset(index) + L.E_GEN) >> 2;
    this.#u32[at] = (this.#u32[at] + 1) >>> 0;
    this.#u32[L.C_EXTENSION_EPOCH >> 2] = (this.#u32[L.C_EXTENSION_EPOCH >> 2] + 1) >>> 0;
  }
}
