/**
 * Mapping POSIX shared-memory segments, and refusing or explaining the ones /dev/shm, or the
 * memory behind it, has no room for, before they turn into SIGBUS on some later write or into
 * the OOM killer's work.
 *
 * @module
 */

import * as native from "../ffi/native.ts";
import { collectNow } from "./collector.ts";
import { ClosedError, ours } from "./errors.ts";

/** A mapped segment (internal). */
export interface Mapping {
  readonly pointer: Deno.PointerObject;
  readonly size: number;
  readonly buffer: ArrayBuffer;
  readonly bytes: Uint8Array;
  /** A view into it was moved out of the library's hands: quarantine it, never unmap it. */
  moved?: boolean;
}

/** Maps `size` bytes of the segment open as `fd`, shared and read-write. */
export function mapFd(fd: number, size: number): Mapping {
  const pointer = native.map(fd, size);
  const buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, size);
  return { pointer, size, buffer, bytes: new Uint8Array(buffer) };
}

/** Detaches the JavaScript view first, so nothing can touch the memory once it is unmapped,
 * and forgets it in the native table of orphans' mappings (see native.adoptFd) before. Only
 * this detaches a mapping's view, so a detached one is unmapped already: a second call does
 * nothing (unmapping again could hit whatever was mapped there since). */
export function unmapAll(mapping: Mapping): void {
  if (mapping.buffer.detached) return;
  mapping.buffer.transfer(0);
  native.forgetMapping(mapping.pointer);
  if (!mapping.moved) {
    native.unmap(mapping.pointer, mapping.size);
    return;
  }
  try {
    native.quarantine(mapping.pointer, mapping.size);
  } catch {
    // No memory for the private pages (strict overcommit): the shared mapping stays, which
    // keeps the moved buffer from faulting all the same.
  }
}

/**
 * Backs a new mapping with memory now, so running out shows here as an error rather than as
 * SIGBUS on some later write. `remedy` says which knob makes the segment smaller.
 */
export function prefaultOrExplain(
  pointer: Deno.PointerObject,
  size: number,
  what: string,
  remedy: string,
): void {
  try {
    native.prefault(pointer, size);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOMEM" || code === "ENOSPC" || code === "EFAULT") {
      throw ours(
        new RangeError(
          `/dev/shm has no room for ${what} of ${size} bytes: free space in /dev/shm ` +
            `(df -h /dev/shm) or ${remedy}`,
          { cause: error },
        ),
      );
    }
    throw error;
  }
}

/** Free bytes in /dev/shm; Infinity when there is no figure (pre-faulting still fails cleanly
 * when a segment does not fit). */
export function shmFreeBytes(): number {
  try {
    return native.shmFreeBytes();
  } catch {
    return Infinity;
  }
}

/** Why an end refuses a segment whose open failed with EPERM (ffi/shmq.c, shmq_shm_open: not
 * a regular file of this user's, open to this user alone), after the segment's name. */
export const NOT_OWN_SEGMENT = "is not this user's own segment (a symlink, a directory, " +
  "another user's file, or one open to other users): refused";

/** Memory a new segment leaves to everything else (MemAvailable already leaves out the
 * kernel's own reserves): the next allocations of the processes at hand, a receiver's copy
 * of a message among them. */
export const MEMORY_MARGIN = 64 * 1024 * 1024;

/** MEMORY_MARGIN, or an eighth of a small cgroup limit when that is less: 64 MiB would be a
 * quarter of a 256 MiB container. */
export function cgroupMargin(limit: number): number {
  return Math.min(MEMORY_MARGIN, limit / 8);
}

/** What a new segment may take, and what sets that. */
export interface SegmentRoom {
  /** Bytes: the least of /dev/shm's free space and the memory left (see memoryLeft). */
  readonly bytes: number;
  /** What sets `bytes`: /dev/shm's size, the machine's memory, or a memory cgroup's limit
   * (a container's, most often, whose /dev/shm may be larger than its memory). */
  readonly setBy: "shm" | "machine" | "cgroup";
  /** Whether a collection was made to find it (see segmentRoom). */
  readonly collected?: boolean;
}

/** The least memory limit of this process's memory cgroup and its ancestors; Infinity when
 * none sets one, or when the figures cannot be read now. */
export function cgroupLimit(): number {
  try {
    return native.memoryRoom().cgroupLimit;
  } catch {
    return Infinity;
  }
}

/** Memory left for new memory of this process, and what sets that: the machine's, less
 * MEMORY_MARGIN, or this process's memory cgroup's, less cgroupMargin (Infinity bytes,
 * "machine", when unknown). */
export function memoryLeft(): { bytes: number; setBy: "machine" | "cgroup" } {
  let memory: native.MemoryRoom;
  try {
    memory = native.memoryRoom();
  } catch {
    return { bytes: Infinity, setBy: "machine" };
  }
  const machine = Math.max(0, memory.machine - MEMORY_MARGIN);
  const cgroup = Math.max(0, memory.cgroup - cgroupMargin(memory.cgroupLimit));
  return cgroup <= machine
    ? { bytes: cgroup, setBy: "cgroup" }
    : { bytes: machine, setBy: "machine" };
}

/**
 * Room for a new segment of `needed` bytes (0: whatever it is, nothing is collected for it;
 * nor when `mayCollect` is false: a put waiting for room collects once, not at every retry).
 * /dev/shm's free space alone is not enough: a tmpfs may be larger than the memory there is
 * (a container's limit, other processes' use), and pre-faulting a segment past that memory
 * does not fail but wakes the OOM killer, which ends this process or another one. Measured
 * on a 23.5 GiB VM whose /dev/shm holds 24 GiB: making 1000 queues of the default 64 MiB
 * arena was killed at the 370th, leaving them all in /dev/shm. When the memory is short, a
 * full collection comes first (8-16 ms for dropped copies, more for a large heap): only
 * then, and a caller may hold the queue's lock.
 */
export function segmentRoom(needed = 0, mayCollect = true): SegmentRoom {
  const shm = shmFreeBytes();
  let memory: SegmentRoom = memoryLeft();
  // This process's buffers dropped but not collected yet may hold what the segment needs.
  if (needed > memory.bytes && needed <= shm && mayCollect && freeDroppedMemory()) {
    memory = { ...memoryLeft(), collected: true };
  }
  return shm <= memory.bytes ? { bytes: shm, setBy: "shm", collected: memory.collected } : memory;
}

/**
 * Frees what this process's dropped buffers hold, so that it counts as memory left: a full
 * collection, then malloc_trim for the buffers that came from malloc's heap (all of them once
 * tuned), which the heap keeps otherwise (at its top, up to its trim threshold: 128 MiB or an
 * eighth of the memory there is, or twice the largest copy, see kept_heap.ts). False when
 * neither freed anything: no collection can be made here, and the trim gave nothing back.
 */
export function freeDroppedMemory(): boolean {
  const collected = collectNow();
  // Even with no collection to make, the heap may keep freed memory (see kept_heap.ts).
  const trimmed = native.mallocTrim();
  return collected || trimmed;
}

/** What has `bytes` of room for new memory, as the subject of an error message. */
export function roomHolder(setBy: SegmentRoom["setBy"], bytes: number): string {
  return setBy === "shm"
    ? `/dev/shm has ${bytes} bytes free`
    : setBy === "machine"
    ? `the machine has ${bytes} bytes of memory left (MemAvailable plus free swap, less ` +
      `${MEMORY_MARGIN >> 20} MiB kept for other allocations)`
    : `this process's memory cgroup (or one it is in) has ${bytes} bytes left below its limit ` +
      "(less a margin kept for other allocations: an eighth of the limit, 64 MiB at most)";
}

/**
 * Refuses a segment there is no room for before making it: pre-faulting it would fill
 * /dev/shm first, starving every other user of shared memory until it fails, or, past the
 * memory there is, have the OOM killer end a process.
 */
export function ensureRoom(size: number, what: string, remedy: string): void {
  const room = segmentRoom(size);
  if (size <= room.bytes) return;
  const message = room.setBy === "shm"
    ? `/dev/shm has no room for ${what} of ${size} bytes (${room.bytes} bytes free): free ` +
      `space in /dev/shm (df -h /dev/shm) or ${remedy}`
    : `not enough memory for ${what} of ${size} bytes: ${roomHolder(room.setBy, room.bytes)}: ` +
      `${room.setBy === "cgroup" ? "raise the cgroup's memory limit" : "free memory"} or ${remedy}`;
  throw ours(new RangeError(message));
}

/**
 * Unlinks segment `name`: false when it is gone already, or when what has the name is no file
 * this user may remove (a directory put in its place, another user's entry). Such a thing was
 * never a segment (no end maps it) and is not the library's to remove: it is left, and its
 * name given up (a dropped extension moves to a new name), never an error for the call.
 */
export function unlinkSegment(name: string): boolean {
  try {
    return native.shmUnlink(name, { missingOk: true });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "EISDIR" || code === "EPERM" || code === "EACCES") return false;
    throw error;
  }
}

/** Makes segment `name` of `size` bytes, saying what to do when /dev/shm cannot hold it. */
export function createOrExplain(name: string, size: number): number {
  try {
    return native.shmCreate(name, size);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOSPC" || code === "ENOMEM" || code === "EFBIG") {
      throw ours(
        new RangeError(
          `/dev/shm has no room for a ${size}-byte segment: free space in /dev/shm (df -h /dev/shm)`,
          { cause: error },
        ),
      );
    }
    if (code === "EEXIST") {
      // Generations only grow and replaced segments are unlinked first: a name taken means
      // the extension table was written by someone else.
      throw new ClosedError(`segment ${name} exists already: corrupt extension table`, {
        cause: error,
        reason: "corrupt",
      });
    }
    throw error;
  }
}
