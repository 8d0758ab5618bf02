/**
 * What one end of a queue has mapped of the queue's extension segments, and the zero-copy
 * views (leases, drafts) it handed out over them and over the arena: mapping a segment (and
 * making it, for a new reservation), unmapping those dropped or replaced since, and revoking
 * views. The table of segments is shared (see extensions.ts); this is the end's own.
 *
 * @module
 */

import { isDetached } from "../codec/array_buffer.ts";
import * as native from "../ffi/native.ts";
import { ClosedError } from "./errors.ts";
import { extensionSizeFor, type ExtensionTable } from "./extensions.ts";
import * as L from "./layout.ts";
import {
  createOrExplain,
  ensureRoom,
  mapFd,
  type Mapping,
  NOT_OWN_SEGMENT,
  prefaultOrExplain,
  unlinkSegment,
  unmapAll,
} from "./segment.ts";

/** A mapping zero-copy views are made over (internal): an extension segment's, or the main
 * segment's second mapping for arena views (see ExtensionMappings.openArenaView; gen 0). */
export interface ExtensionMapping extends Mapping {
  /** The extension table generation it maps. */
  readonly gen: number;
  /** Zero-copy views (leases, drafts) that still point into this mapping. */
  refs: number;
  retired: boolean;
  /** The native table's copy of `refs` (native.mapViews), when the mapping is recorded. */
  readonly views: Int32Array | undefined;
}

/** What an end maps an extension segment for: to make it (a new reservation), to write into
 * it (a reservation that reuses it), or to read a message in it. */
export type ExtensionUse = "create" | "reserve" | "read";

/** A revocable buffer over one message's bytes. */
export interface MessageView {
  readonly buffer: ArrayBuffer;
  /** The mapping the view is over; undefined for a copy (see `recycle`). */
  readonly mapping: ExtensionMapping | undefined;
  /** Set when `buffer` holds a copy in memory its owner recycles: takes the memory back,
   * of which the copy used the first `used` bytes. */
  readonly recycle?: (memory: ArrayBuffer, used: number) => void;
  readonly used?: number;
}

/** What to do when /dev/shm has no room for an extension segment. */
const EXTENSION_REMEDY = "send the data in smaller messages (each message larger than a " +
  "quarter of the arena gets a segment of its own; the queue waits for its own segments to " +
  "make room, not for other users of /dev/shm)";

/** Counts a view opened (+1) or dropped (-1) over `mapping`, in the native table too: should
 * this thread end with views open, the end that reclaims the mapping quarantines it. */
function countView(mapping: ExtensionMapping, change: 1 | -1): void {
  mapping.refs += change;
  if (mapping.views !== undefined) Atomics.store(mapping.views, 0, mapping.refs);
}

/** One end's mappings of a queue's extension segments, and its views. */
export class ExtensionMappings {
  readonly #queueName: string;
  readonly #fd: number;
  readonly #mainSize: number;
  readonly #table: ExtensionTable;
  readonly #extensions: (ExtensionMapping | undefined)[] = [];
  readonly #retired = new Set<ExtensionMapping>();
  /** External buffers over shared memory handed out by openView and not yet dropped, with the
   * mapping each is in: close detaches them, so a lease or draft kept past its end's close (an
   * unload listener that runs after the one closing every end) reads as empty instead of
   * faulting. */
  readonly #views = new Map<ArrayBuffer, ExtensionMapping>();
  /** See #lendMapping. */
  #lend: ExtensionMapping | undefined;

  /**
   * @param queueName The queue's name, for errors.
   * @param fd This end's descriptor of the main segment: mappings are recorded with it (see
   * native.adoptMapping), and the arena's second mapping made of it.
   * @param mainSize The size of the main segment.
   * @param table The extension table, which says what segments there are.
   */
  constructor(queueName: string, fd: number, mainSize: number, table: ExtensionTable) {
    this.#queueName = queueName;
    this.#fd = fd;
    this.#mainSize = mainSize;
    this.#table = table;
  }

  /** Whether this end has an extension segment mapped. */
  anyMapped(): boolean {
    return this.#extensions.some((mapping) => mapping !== undefined);
  }

  /** {@linkcode openView} over the arena: `start` bytes into the main segment, in its second
   * mapping (see #lendMapping). */
  openArenaView(start: number, length: number): MessageView {
    return this.openView(this.#lendMapping(), start, length);
  }

  /**
   * A fresh ArrayBuffer over `length` bytes at `start` in `mapping` (an extension segment's,
   * see {@linkcode map}), for zero-copy views that can be revoked on their own. Pair every
   * call with {@linkcode dropView}.
   */
  openView(mapping: ExtensionMapping, start: number, length: number): MessageView {
    const base = Deno.UnsafePointer.offset(mapping.pointer, start)!;
    // A zero-length external buffer cannot be made; one spare byte of the block is harmless.
    const buffer = Deno.UnsafePointerView.getArrayBuffer(base, Math.max(length, 1));
    countView(mapping, 1);
    this.#views.set(buffer, mapping);
    return { buffer, mapping };
  }

  /**
   * The mapping arena views (leases, drafts) are made over: a second mapping of the main
   * segment, apart from the one this end works through, made at the first view. Should a
   * view's buffer be moved out of the library's hands, this one alone is retired, and
   * quarantined once its views are gone (see #noteMoved), and later views get a fresh one.
   */
  #lendMapping(): ExtensionMapping {
    if (this.#lend !== undefined) return this.#lend;
    // Not pre-faulted: the pages exist (the main mapping holds them), and page tables for a
    // whole arena took 15 ms at 64 MiB when the first lease needs a few.
    this.#lend = this.#lendable(mapFd(this.#fd, this.#mainSize), 0);
    return this.#lend;
  }

  /** A mapping readied for zero-copy views, at extension generation `gen` (0: the arena's). */
  #lendable(mapping: Mapping, gen: number): ExtensionMapping {
    // Should this end's Worker be terminated, another end of this process reclaims it.
    native.adoptMapping(this.#fd, mapping);
    const views = native.mapViews(mapping.pointer);
    return { ...mapping, gen, refs: 0, retired: false, views };
  }

  /** Revokes a view from {@linkcode openView} over `mapping`: its arrays read as empty
   * afterwards. */
  dropView(buffer: ArrayBuffer, mapping: ExtensionMapping): void {
    this.#views.delete(buffer);
    // Read through the prototype: an own `detached` property must not hide a moved buffer.
    if (isDetached(buffer)) this.#noteMoved(mapping);
    else buffer.transfer(0);
    if (mapping.refs === 0) return;
    if (mapping.retired && mapping.refs === 1) {
      // The last view of a retired mapping: gone from the native table with unmapAll, never
      // counted 0 there before (a reclaim in between would unmap what a moved buffer reaches).
      mapping.refs = 0;
      this.#retired.delete(mapping);
      unmapAll(mapping);
      return;
    }
    countView(mapping, -1);
  }

  /** Revokes every view and unmaps every mapping: the end closes. */
  close(): void {
    for (const [buffer, mapping] of this.#views) {
      if (isDetached(buffer)) this.#noteMoved(mapping);
      else buffer.transfer(0);
    }
    this.#views.clear();
    for (const mapping of this.#extensions) if (mapping) unmapAll(mapping);
    for (const mapping of this.#retired) unmapAll(mapping);
    if (this.#lend !== undefined) unmapAll(this.#lend);
    this.#lend = undefined;
    this.#extensions.length = 0;
    this.#retired.clear();
  }

  /**
   * Whether extension `index`'s segment exists at its current generation, and, when `sized`,
   * at its full size. A sender killed between creating the segment and sizing it leaves it
   * short (empty): such a segment is unlinked here, to be made anew, or it would fail every
   * message it fits. Not `sized` for a busy one, whose sender may be making it right now.
   */
  exists(index: number, sized = true): boolean {
    const gen = this.#table.gen(index);
    if (this.#extensions[index]?.gen === gen) return true;
    const name = this.#table.name(index, gen);
    let fd: number;
    try {
      fd = native.shmOpen(name);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === "ENOENT") return false;
      if (code !== "EPERM") throw error;
      // No segment this end may map (a symlink, a directory, a file opened up to others put in
      // its place): none, as for one left short, or every message it fits would fail the same
      // way. A directory stays (see unlinkSegment): the drop that follows gives its name up.
      unlinkSegment(name);
      return false;
    }
    try {
      if (!sized || native.fdSize(fd) >= this.#table.size(index)) return true;
    } finally {
      native.closeFd(fd);
    }
    native.shmUnlink(name, { missingOk: true });
    return false;
  }

  /** Unmaps cached extensions whose segment was replaced or dropped, unless views remain. */
  unmapStale(): void {
    for (let i = 0; i < this.#extensions.length; i++) {
      const cached = this.#extensions[i];
      if (cached === undefined) continue;
      if (
        cached.gen === this.#table.gen(i) &&
        this.#table.state(i) !== L.ExtensionState.Empty
      ) {
        continue;
      }
      this.#dropCachedExtension(i, cached);
    }
  }

  /**
   * A view's buffer was detached before the library detached it: the user moved its memory
   * out (`transfer()`, a `postMessage` transfer), and the moved buffer is beyond revoking. Its
   * mapping is retired now, so later messages are mapped anew and the moved buffer never
   * shows (nor, written, corrupts) them once the mapping's last view is gone; and it is
   * quarantined then instead of unmapped (see unmapAll), so that buffer can never fault.
   */
  #noteMoved(mapping: ExtensionMapping): void {
    mapping.moved = true;
    if (mapping === this.#lend) {
      this.#lend = undefined;
      mapping.retired = true;
      this.#retired.add(mapping);
      return;
    }
    const index = this.#extensions.indexOf(mapping);
    if (index >= 0) this.#dropCachedExtension(index, mapping);
  }

  /** Forgets extension `index`'s mapping: unmapped now, or once the views into it are gone. */
  #dropCachedExtension(index: number, cached: ExtensionMapping): void {
    this.#extensions[index] = undefined;
    if (cached.refs > 0) {
      cached.retired = true;
      this.#retired.add(cached);
    } else {
      unmapAll(cached);
    }
  }

  /** Maps extension `index` at its current generation, making the segment if asked. */
  map(index: number, use: ExtensionUse, needed: number): ExtensionMapping {
    const create = use === "create";
    if (!(index >= 0 && index < L.MAX_EXTENSIONS)) {
      throw new ClosedError(`queue ${this.#queueName}: corrupt slot names extension ${index}`, {
        reason: "corrupt",
      });
    }
    this.unmapStale();
    const gen = this.#table.gen(index);
    const cached = this.#extensions[index];
    if (cached && cached.gen === gen && cached.size >= needed) return cached;
    if (cached) this.#dropCachedExtension(index, cached);
    const name = this.#table.name(index, gen);
    const size = this.#table.size(index);
    let fd: number;
    if (create) {
      // The reservation set this size for this message: anything else was forged since, and
      // must not make this end create (and pre-fault) a segment of that size.
      if (size !== extensionSizeFor(needed)) {
        throw new ClosedError(`queue ${this.#queueName}: corrupt extension size ${size}`, {
          reason: "corrupt",
        });
      }
      ensureRoom(size, "an extension segment", EXTENSION_REMEDY);
      fd = createOrExplain(name, size);
    } else {
      try {
        fd = native.shmOpen(name);
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code !== "ENOENT" && code !== "EPERM") throw error;
        const what = code === "ENOENT" ? "is missing" : NOT_OWN_SEGMENT;
        throw new ClosedError(`queue ${this.#queueName}: extension segment ${name} ${what}`, {
          cause: error,
          reason: "corrupt",
        });
      }
    }
    try {
      const actual = native.fdSize(fd);
      // Only the recorded size is mapped and pre-faulted: a segment grown since (by a
      // same-user peer) must not make this end fill /dev/shm with memory no message uses.
      if (!(Number.isSafeInteger(size) && size >= needed && actual >= size)) {
        throw new ClosedError(
          `queue ${this.#queueName}: extension segment holds ${actual} bytes, its record says ` +
            `${size} and the message needs ${needed}`,
          { reason: "corrupt" },
        );
      }
      const mapping = mapFd(fd, size);
      try {
        prefaultOrExplain(mapping.pointer, size, "an extension segment", EXTENSION_REMEDY);
      } catch (error) {
        unmapAll(mapping);
        // A segment this end just made, or reserved to write into (one a sender killed while
        // it pre-faulted left half backed), but could not back goes at once: it would keep the
        // memory it got and fail every later message that fits it the same way.
        if (use !== "read") native.shmUnlink(name, { missingOk: true });
        throw error;
      }
      const extension = this.#lendable(mapping, gen);
      this.#extensions[index] = extension;
      return extension;
    } finally {
      native.closeFd(fd);
    }
  }
}
