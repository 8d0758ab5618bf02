/**
 * Thin typed wrappers over the native core: shared memory, futexes, 64-bit atomics,
 * byte locks and liveness. Failures throw {@linkcode NativeError}, whose message names
 * the call, the argument that matters and the errno, e.g.
 * `shm_open("/x"): ENOENT No such file or directory`.
 *
 * The library is opened on first use (see `loader.ts`). The futex and atomic wrappers
 * pass pointers straight through and allocate nothing beyond `bigint` values. 64-bit
 * arguments are `bigint`: Deno's fast FFI path takes them only as `bigint` (a `number`
 * works but is about 10x slower).
 *
 * @module
 */

import { native } from "./loader.ts";
import type { ShmqLibrary } from "./symbols.ts";

let sym: ShmqLibrary["symbols"] | undefined;

/** The native symbols, opening the library on first use. */
function s(): ShmqLibrary["symbols"] {
  return sym ??= native().symbols;
}

const nameCache = new Map<number, string>();
const textCache = new Map<number, string>();

/**
 * The symbolic name of a positive errno value (`"EEXIST"`), or `"EUNKNOWN"`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errnoName } from "./native.ts";
 * assert.ok(errnoName(17) === "EEXIST");
 * ```
 */
export function errnoName(errno: number): string {
  let name = nameCache.get(errno);
  if (name === undefined) {
    const p = s().shmq_errno_name(errno);
    name = p === null ? "EUNKNOWN" : Deno.UnsafePointerView.getCString(p);
    nameCache.set(errno, name);
  }
  return name;
}

/**
 * The strerror(3) text of a positive errno value (`"File exists"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { strerror } from "./native.ts";
 * assert.ok(strerror(2) === "No such file or directory");
 * ```
 */
export function strerror(errno: number): string {
  let text = textCache.get(errno);
  if (text === undefined) {
    const p = s().shmq_strerror(errno);
    text = p === null ? `errno ${errno}` : Deno.UnsafePointerView.getCString(p);
    textCache.set(errno, text);
  }
  return text;
}

/** What to do about an errno a user can do something about. */
const REMEDIES: Record<string, string> = {
  EMFILE: " (this process has as many files open as its limit allows, and every queue end " +
    "keeps one open: raise the limit, `ulimit -n`, or close ends no longer used)",
  ENFILE: " (the system has as many files open as it allows: close queue ends no longer used)",
};

/**
 * An error reported by a native call: `code` is the errno name (`"EEXIST"`), `errno` its
 * positive number, `call` the operation (`"shm_open"`) and `arg` the argument that
 * mattered, if any.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NativeError, shmOpen } from "./native.ts";
 * assert.throws(
 *   () => shmOpen("/shmq-doc-missing"),
 *   (e: unknown) => e instanceof NativeError && e.code === "ENOENT",
 * );
 * ```
 */
export class NativeError extends Error {
  /** The errno name, e.g. `"EEXIST"`. */
  readonly code: string;
  /** The positive errno number. */
  readonly errno: number;
  /** The native operation, e.g. `"shm_open"`. */
  readonly call: string;
  /** The argument that mattered (a name, an fd), if any. */
  readonly arg: string | undefined;

  /** Builds the error from a positive errno; the message reads `call("arg"): CODE text`. */
  constructor(errno: number, call: string, arg?: string) {
    const code = errnoName(errno);
    const where = arg === undefined
      ? `${call}()`
      : /^-?[0-9][0-9a-z@ ]*$/i.test(arg)
      ? `${call}(${arg})` // fds, offsets, sizes
      : `${call}(${JSON.stringify(arg)})`; // names
    super(`${where}: ${code} ${strerror(errno)}${REMEDIES[code] ?? ""}`);
    this.name = "NativeError";
    this.code = code;
    this.errno = errno;
    this.call = call;
    this.arg = arg;
  }
}

/**
 * Returns `result` when it is not negative; otherwise throws a {@linkcode NativeError}
 * for the errno `-result`, naming `call` and `arg`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { check } from "./native.ts";
 * assert.ok(check(3, "close") === 3);
 * assert.throws(() => check(-17, "shm_create", "/x"), {
 *   message: 'shm_create("/x"): EEXIST File exists',
 * });
 * ```
 */
export function check(result: number, call: string, arg?: string): number {
  if (result < 0) throw new NativeError(-result, call, arg);
  return result;
}

/** Like check, for 64-bit results; returns a number (sizes and addresses fit in 2^53). */
function check64(result: bigint, call: string, arg?: string): number {
  if (result < 0n) throw new NativeError(Number(-result), call, arg);
  return Number(result);
}

const encoder = new TextEncoder();

/** NUL-terminated UTF-8 of a name. */
function cName(name: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(name.length * 3 + 1);
  const { written } = encoder.encodeInto(name, bytes);
  if (bytes.subarray(0, written).includes(0)) {
    throw new NativeError(22, "shm", name); // EINVAL: embedded NUL
  }
  return bytes.subarray(0, written + 1);
}

/**
 * Creates a new shared-memory object exclusively (mode 0600) of `size` bytes and returns
 * its fd. Names look like `"/shmq-…"`. Throws `EEXIST` when the name exists.
 *
 * @example
 * ```ts
 * import { closeFd, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-create", 4096);
 * shmUnlink("/shmq-doc-create");
 * closeFd(fd);
 * ```
 */
export function shmCreate(name: string, size: number): number {
  return check(s().shmq_shm_create(cName(name), BigInt(size)), "shm_create", name);
}

/**
 * Opens an existing shared-memory object read-write and returns its fd. Throws `ENOENT`
 * when it does not exist, and `EPERM` for anything but a regular file of this user with no
 * group or other permission (what {@linkcode shmCreate} makes): another user could truncate
 * such a file under a mapping of it.
 *
 * @example
 * ```ts
 * import { closeFd, shmCreate, shmOpen, shmUnlink } from "./native.ts";
 * const a = shmCreate("/shmq-doc-open", 4096);
 * const b = shmOpen("/shmq-doc-open");
 * shmUnlink("/shmq-doc-open");
 * closeFd(a);
 * closeFd(b);
 * ```
 */
export function shmOpen(name: string): number {
  return check(s().shmq_shm_open(cName(name)), "shm_open", name);
}

/**
 * Removes a shared-memory name. Returns `true` when it was removed; with
 * `missingOk: true` a missing name returns `false` instead of throwing `ENOENT`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shmUnlink } from "./native.ts";
 * assert.ok(shmUnlink("/shmq-doc-never-made", { missingOk: true }) === false);
 * ```
 */
export function shmUnlink(name: string, options?: { missingOk?: boolean }): boolean {
  const rc = s().shmq_shm_unlink(cName(name));
  if (rc === -2 && options?.missingOk) return false;
  check(rc, "shm_unlink", name);
  return true;
}

let listBuf = new Uint8Array(16 * 1024);
const decoder = new TextDecoder();

/**
 * The names of the shared-memory objects whose names start with `prefix` (given with or
 * without the leading slash), each returned WITHOUT a leading slash, sorted. Use this
 * rather than reading /dev/shm: Deno refuses to read /dev without `--allow-all`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, shmCreate, shmList, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-list-a", 64);
 * assert.ok(shmList("/shmq-doc-list-").includes("shmq-doc-list-a"));
 * shmUnlink("/shmq-doc-list-a");
 * closeFd(fd);
 * ```
 */
export function shmList(prefix: string = ""): string[] {
  const pre = cName(prefix);
  for (;;) {
    const need = check64(s().shmq_shm_list(pre, listBuf, BigInt(listBuf.length)), "shm_list");
    if (need <= listBuf.length) {
      if (need === 0) return [];
      return decoder.decode(listBuf.subarray(0, need - 1)).split("\0").sort();
    }
    listBuf = new Uint8Array(need * 2); // entries appeared meanwhile: leave some room
  }
}

/**
 * Bytes of /dev/shm this process may still fill (statvfs).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shmFreeBytes } from "./native.ts";
 * assert.ok(shmFreeBytes() >= 0);
 * ```
 */
export function shmFreeBytes(): number {
  return check64(s().shmq_shm_free_bytes(), "statvfs", "/dev/shm");
}

/**
 * Size of the /dev/shm file system (statvfs), whatever is in it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shmFreeBytes, shmTotalBytes } from "./native.ts";
 * assert.ok(shmTotalBytes() >= shmFreeBytes());
 * ```
 */
export function shmTotalBytes(): number {
  return check64(s().shmq_shm_total_bytes(), "statvfs", "/dev/shm");
}

/** Memory a new segment may still take, in bytes (see {@linkcode memoryRoom}). */
export interface MemoryRoom {
  /** The machine's: MemAvailable plus free swap; Infinity when unknown. */
  machine: number;
  /** This process's memory cgroup's (and its ancestors'): what is left below the least
   * limit, clean page cache counted as free; Infinity when none sets a limit. */
  cgroup: number;
  /** The least memory limit of that cgroup and its ancestors, whatever is used of it;
   * Infinity when none sets one. */
  cgroupLimit: number;
}

/**
 * Memory a new shared-memory segment may still take before pre-faulting it would wake the
 * OOM killer rather than fail: the machine's (/proc/meminfo) and this process's memory
 * cgroup's (v2, or v1's memory controller), each Infinity when unknown or unlimited.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryRoom } from "./native.ts";
 * const room = memoryRoom();
 * assert.ok(room.machine > 0 && room.cgroup >= 0 && room.cgroupLimit >= room.cgroup);
 * ```
 */
export function memoryRoom(): MemoryRoom {
  const out = new BigInt64Array(3);
  check(s().shmq_memory_room(out), "memory_room", "/proc/meminfo");
  const bytes = (v: bigint) => v < 0n ? Infinity : Number(v);
  return { machine: bytes(out[0]), cgroup: bytes(out[1]), cgroupLimit: bytes(out[2]) };
}

/**
 * Gives the CPU to another runnable thread, if any (sched_yield): for waiters that spin.
 *
 * @example
 * ```ts
 * import { yieldCpu } from "./native.ts";
 * yieldCpu();
 * ```
 */
export function yieldCpu(): void {
  s().shmq_yield();
}

/**
 * Closes a file descriptor.
 *
 * @example
 * ```ts
 * import { closeFd, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-close", 64);
 * shmUnlink("/shmq-doc-close");
 * closeFd(fd);
 * ```
 */
export function closeFd(fd: number): void {
  check(s().shmq_close(fd), "close", String(fd));
}

/**
 * The size in bytes of the object behind an fd.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, fdSize, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-size", 8192);
 * assert.ok(fdSize(fd) === 8192);
 * shmUnlink("/shmq-doc-size");
 * closeFd(fd);
 * ```
 */
export function fdSize(fd: number): number {
  return check64(s().shmq_fd_size(fd), "fstat", String(fd));
}

/**
 * Bytes of memory backing the object behind an fd. A new shared-memory object holds none
 * until its pages are first touched, so it can be much less than {@linkcode fdSize}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, fdAllocatedBytes, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-allocated", 1 << 20);
 * assert.ok(fdAllocatedBytes(fd) === 0);
 * shmUnlink("/shmq-doc-allocated");
 * closeFd(fd);
 * ```
 */
export function fdAllocatedBytes(fd: number): number {
  return check64(s().shmq_fd_allocated(fd), "fstat", String(fd));
}

/**
 * The link count of the object behind an fd: 1 while its name exists, 0 once unlinked.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, fdLinks, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-links", 64);
 * assert.ok(fdLinks(fd) === 1);
 * shmUnlink("/shmq-doc-links");
 * assert.ok(fdLinks(fd) === 0);
 * closeFd(fd);
 * ```
 */
export function fdLinks(fd: number): number {
  return check(s().shmq_fd_links(fd), "fstat", String(fd));
}

/**
 * Milliseconds since the last status change of the object behind an fd: for a segment, since
 * it was created and sized (writes through a mapping do not count). 0 when the wall clock
 * reads earlier than that.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, fdAgeMs, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-age", 64);
 * assert.ok(fdAgeMs(fd) < 60_000);
 * shmUnlink("/shmq-doc-age");
 * closeFd(fd);
 * ```
 */
export function fdAgeMs(fd: number): number {
  return check64(s().shmq_fd_age_ms(fd), "fstat", String(fd));
}

/**
 * Maps `size` bytes of an fd read-write and shared; returns the address. Make one
 * `Deno.UnsafePointerView.getArrayBuffer(ptr, size)` per mapping and reuse it, and never
 * {@linkcode unmap} while a view of it can still be reached.
 *
 * @example
 * ```ts
 * import { closeFd, map, shmCreate, shmUnlink, unmap } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-map", 4096);
 * const ptr = map(fd, 4096);
 * new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ptr, 4096))[0] = 7;
 * unmap(ptr, 4096);
 * shmUnlink("/shmq-doc-map");
 * closeFd(fd);
 * ```
 */
export function map(fd: number, size: number): Deno.PointerObject {
  const addr = s().shmq_map(fd, BigInt(size));
  check64(addr, "mmap", String(fd));
  let ptr;
  try {
    ptr = Deno.UnsafePointer.create(addr);
  } catch (error) {
    // The mapping stays (unmapping takes the pointer refused here); its segment goes, and the
    // process cannot make or open any queue. Deno's own message tells a user of
    // `--allow-ffi=<path>` to pass the flag they passed.
    if (error instanceof Deno.errors.NotCapable) {
      throw new Deno.errors.NotCapable(
        "shmq needs --allow-ffi without a path: the library loaded, but Deno allows the " +
          "pointers into shared memory it makes only under an unscoped --allow-ffi",
        { cause: error },
      );
    }
    throw error;
  }
  if (ptr === null) throw new NativeError(14, "mmap", String(fd)); // EFAULT: cannot happen
  return ptr;
}

/**
 * Unmaps a mapping made by {@linkcode map}.
 *
 * @example
 * ```ts
 * import { closeFd, map, shmCreate, shmUnlink, unmap } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-unmap", 4096);
 * unmap(map(fd, 4096), 4096);
 * shmUnlink("/shmq-doc-unmap");
 * closeFd(fd);
 * ```
 */
export function unmap(ptr: Deno.PointerObject, size: number): void {
  check(s().shmq_unmap(ptr, BigInt(size)), "munmap");
}

/**
 * Instead of {@linkcode unmap}, for a mapping that a buffer moved out of the library's hands
 * may still reach: its pages become private zero pages, kept for the life of the process
 * (address space only; memory is taken only if something writes there).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, map, quarantine, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-quarantine", 4096);
 * const ptr = map(fd, 4096);
 * new Deno.UnsafePointerView(ptr).getUint8(0); // shared memory
 * quarantine(ptr, 4096);
 * assert.equal(new Deno.UnsafePointerView(ptr).getUint8(0), 0); // still readable, and private
 * shmUnlink("/shmq-doc-quarantine");
 * closeFd(fd);
 * ```
 */
export function quarantine(ptr: Deno.PointerObject, size: number): void {
  check(s().shmq_quarantine(ptr, BigInt(size)), "mmap");
}

/**
 * Pre-faults `len` bytes at `ptr` for writing (MADV_POPULATE_WRITE, or touching pages on
 * old kernels) without changing their contents. Throws (e.g. `ENOMEM`/`EFAULT`) when the
 * memory cannot be backed, such as a full /dev/shm.
 *
 * @example
 * ```ts
 * import { closeFd, map, prefault, shmCreate, shmUnlink, unmap } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-prefault", 1 << 16);
 * const ptr = map(fd, 1 << 16);
 * prefault(ptr, 1 << 16);
 * unmap(ptr, 1 << 16);
 * shmUnlink("/shmq-doc-prefault");
 * closeFd(fd);
 * ```
 */
export function prefault(ptr: Deno.PointerObject, len: number): void {
  check(s().shmq_prefault(ptr, BigInt(len)), "madvise", `${len} bytes`);
}

/**
 * Readies a freshly allocated buffer to receive a large copy: transparent huge pages where
 * the kernel offers them, and its pages pre-faulted, so that copying tens of MiB into it
 * runs near memcpy speed instead of faulting every 4 KiB. Contents are unchanged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { prepareCopyTarget } from "./native.ts";
 * const target = new Uint8Array(8 << 20);
 * prepareCopyTarget(target.buffer);
 * target.set(new Uint8Array(8 << 20).fill(1));
 * assert.equal(target[12345], 1);
 * ```
 */
export function prepareCopyTarget(buffer: ArrayBuffer): void {
  const pointer = Deno.UnsafePointer.of(buffer);
  if (pointer === null || buffer.byteLength === 0) return;
  check(
    s().shmq_prepare_copy_target(pointer, BigInt(buffer.byteLength)),
    "madvise",
    `${buffer.byteLength} bytes`,
  );
}

/**
 * Starts readying a freshly allocated buffer for a large copy on a helper thread: huge
 * pages, and its pages pre-faulted from the end backwards while the caller copies into it
 * from the front, so the kernel's zeroing of fresh pages runs on another core. Bytes the
 * caller writes meanwhile stay as written. Returns an id for {@linkcode prefaultJoin}, or
 * `undefined` when no helper was started (a buffer without a whole 2 MiB page, a kernel
 * older than 5.14, 8 helpers started and not yet joined, or no thread to be had): then use
 * {@linkcode prepareCopyTarget}. Helpers that a thread which has ended left unjoined (a
 * Worker terminated mid-copy) are joined to make room.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { prefaultJoin, prefaultStart } from "./native.ts";
 * const target = new Uint8Array(8 << 20);
 * const helper = prefaultStart(target.buffer);
 * target.set(new Uint8Array(8 << 20).fill(1));
 * if (helper !== undefined) prefaultJoin(helper);
 * assert.equal(target[(8 << 20) - 1], 1);
 * ```
 */
export function prefaultStart(buffer: ArrayBuffer): number | undefined {
  const pointer = Deno.UnsafePointer.of(buffer);
  if (pointer === null || buffer.byteLength === 0) return undefined;
  const id = s().shmq_prefault_start(pointer, BigInt(buffer.byteLength));
  return id >= 0 ? id : undefined;
}

/**
 * Stops and waits for the helper {@linkcode prefaultStart} started, and returns how many
 * bytes it pre-faulted. Call it before the buffer may be freed: at the latest before the
 * code that copies returns to its caller. Each id is joined once.
 *
 * @example
 * ```ts
 * import { prefaultJoin, prefaultStart } from "./native.ts";
 * const helper = prefaultStart(new ArrayBuffer(8 << 20));
 * if (helper !== undefined) prefaultJoin(helper);
 * ```
 */
export function prefaultJoin(id: number): number {
  return check64(BigInt(s().shmq_prefault_join(id)), "pthread_join", String(id));
}

/**
 * Tunes glibc malloc, for the whole process, for copying large messages out into fresh buffers:
 * buffers below a fixed 32 MiB mmap threshold come from the heap, and up to 128 MiB (an eighth
 * of the memory there is, when less: the machine's, or a memory cgroup's limit) the collector
 * frees there stays for the next copies instead of going back to the kernel, to be faulted in and
 * zeroed again a page at a time (raise that with {@linkcode keepFreedHeap}; larger buffers come
 * from the heap within {@linkcode mallocFromHeap}). Returns the mmap threshold glibc was given (32
 * MiB), or `undefined` when malloc was left alone: the environment the process started with has
 * `SHMQ_TUNE_MALLOC=0`, a `glibc.malloc.*` tunable in `GLIBC_TUNABLES`, a `MALLOC_*` variable or a
 * non-empty `LD_PRELOAD`, or cannot be read, or glibc refused. Never throws once the library is
 * loaded. The receiver calls it before its first copy of 256 KiB or more.
 *
 * @example
 * ```ts
 * import { tuneMallocForCopies } from "./native.ts";
 * const heapBelow = tuneMallocForCopies();
 * console.log(heapBelow === undefined ? "malloc left alone" : `heap below ${heapBelow} bytes`);
 * ```
 */
export function tuneMallocForCopies(): number | undefined {
  const threshold = Number(s().shmq_tune_malloc());
  return threshold > 0 ? threshold : undefined;
}

/**
 * Switches malloc's mapping of large buffers off (`true`: M_MMAP_MAX 0, so buffers of 32 MiB
 * and more come from the heap too, where glibc can grow it) or back on (`false`), for the whole
 * process: for one allocation at a time, between the two calls. A buffer from the heap reuses
 * the pages of one freed before, where one mapped afresh takes pages the kernel must zero and
 * fault in. Only once {@linkcode tuneMallocForCopies} has tuned malloc: false (nothing
 * changed) otherwise.
 *
 * @example
 * ```ts
 * import { mallocFromHeap, tuneMallocForCopies } from "./native.ts";
 * tuneMallocForCopies();
 * mallocFromHeap(true);
 * let buffer: ArrayBuffer;
 * try {
 *   buffer = new ArrayBuffer(64 << 20);
 * } finally {
 *   mallocFromHeap(false);
 * }
 * console.log(buffer.byteLength);
 * ```
 */
export function mallocFromHeap(on: boolean): boolean {
  return s().shmq_malloc_from_heap(on ? 1 : 0) === 1;
}

/**
 * Lets malloc's heap keep up to `bytes` of freed memory at its top, not give it back to the
 * kernel at once (glibc's trim threshold): a receiver of huge messages frees one copy while it
 * makes the next, which then reuses its pages. Clamped to what {@linkcode tuneMallocForCopies}
 * set at least and an eighth of the memory there is at most (the machine's, or the least memory
 * cgroup limit over this process), and never lowered (another isolate's copies may need it).
 * Returns the threshold now in effect, or `undefined` when malloc was left alone (see
 * {@linkcode tuneMallocForCopies}, which must come first).
 *
 * @example
 * ```ts
 * import { keepFreedHeap, tuneMallocForCopies } from "./native.ts";
 * tuneMallocForCopies();
 * console.log(keepFreedHeap(2 ** 31) ?? "malloc left alone");
 * ```
 */
export function keepFreedHeap(bytes: number): number | undefined {
  const threshold = Number(s().shmq_malloc_keep(BigInt(Math.max(0, Math.floor(bytes)))));
  return threshold > 0 ? threshold : undefined;
}

/**
 * Gives the free memory of malloc's heaps back to the kernel (malloc_trim): after a garbage
 * collection, so that the buffers it freed in the heap count as memory left. True if any
 * went back.
 *
 * @example
 * ```ts
 * import { mallocTrim } from "./native.ts";
 * console.log(mallocTrim() ? "memory given back" : "nothing to give back");
 * ```
 */
export function mallocTrim(): boolean {
  return s().shmq_malloc_trim() === 1;
}

/**
 * {@linkcode mallocTrim} on a thread of Deno's blocking pool, so the event loop runs on while
 * the kernel takes the pages back (tens of milliseconds for gigabytes). Resolves true if any
 * went back.
 *
 * @example
 * ```ts
 * import { mallocTrimAsync } from "./native.ts";
 * console.log(await mallocTrimAsync() ? "memory given back" : "nothing to give back");
 * ```
 */
export async function mallocTrimAsync(): Promise<boolean> {
  return await s().shmq_malloc_trim_nb() === 1;
}

/**
 * Copies `source` into `target` (the same length) with stores that bypass the caches (see
 * `shmq_copy_streaming`): for copies of tens of MiB and more, where glibc's memcpy, and so
 * `TypedArray.prototype.set`, may copy at half the speed. The codec uses it for large arrays
 * once the queue has loaded the library. Ranges that overlap are copied as `memmove` copies
 * them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { copyStreaming } from "./native.ts";
 * const source = new Uint8Array(1 << 20).fill(7);
 * const target = new Uint8Array(1 << 20);
 * copyStreaming(target, source);
 * assert.deepEqual(target, source);
 * ```
 */
export function copyStreaming(target: Uint8Array, source: Uint8Array): void {
  if (target.byteLength !== source.byteLength) {
    throw new RangeError(
      `copyStreaming: the target holds ${target.byteLength} bytes, the source ${source.byteLength}`,
    );
  }
  s().shmq_copy_streaming(target, source, BigInt(source.byteLength));
}

/** What a futex wait reports. `"changed"`: the word did not hold `expected` to begin with. */
export type FutexWaitResult = "woken" | "timeout" | "changed";

const FUTEX_RESULTS: readonly FutexWaitResult[] = ["woken", "timeout", "changed"];

const NO_TIMEOUT = -1n;

/** Longer waits than this (about 292 years) do not fit the native i64 of nanoseconds. */
const MAX_TIMEOUT_MS = 9.2e12;

function timeoutNs(timeoutMs: number | undefined): bigint {
  if (timeoutMs === undefined || !(timeoutMs >= 0) || timeoutMs >= MAX_TIMEOUT_MS) {
    return NO_TIMEOUT;
  }
  return BigInt(Math.round(timeoutMs * 1e6));
}

function futexResult(rc: number): FutexWaitResult {
  if (rc < 0) throw new NativeError(-rc, "futex_wait");
  return FUTEX_RESULTS[rc];
}

/**
 * Blocks the calling thread while the 32-bit word at `ptr` (4-byte aligned, in shared
 * memory) equals `expected`, until woken or `timeoutMs` elapse (`undefined`, negative or
 * `Infinity`: no timeout). A spurious or signal wake-up reports `"woken"`: re-check the
 * condition.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, futexWait, map, shmCreate, shmUnlink, unmap } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-futex", 4096);
 * const ptr = map(fd, 4096);
 * assert.ok(futexWait(ptr, 1, 10) === "changed"); // the word is 0
 * assert.ok(futexWait(ptr, 0, 10) === "timeout");
 * unmap(ptr, 4096);
 * shmUnlink("/shmq-doc-futex");
 * closeFd(fd);
 * ```
 */
export function futexWait(
  ptr: Deno.PointerObject,
  expected: number,
  timeoutMs?: number,
): FutexWaitResult {
  return futexResult(s().shmq_futex_wait(ptr, expected >>> 0, timeoutNs(timeoutMs)));
}

/**
 * Like {@linkcode futexWait}, but waits on a Deno worker thread and returns a Promise.
 * Each call costs tens of microseconds: spin or poll first, and use a timeout so a wake
 * that is never sent cannot hang the caller.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, futexWaitAsync, map, shmCreate, shmUnlink, unmap } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-futex-async", 4096);
 * const ptr = map(fd, 4096);
 * assert.ok((await futexWaitAsync(ptr, 0, 5)) === "timeout");
 * unmap(ptr, 4096);
 * shmUnlink("/shmq-doc-futex-async");
 * closeFd(fd);
 * ```
 */
export async function futexWaitAsync(
  ptr: Deno.PointerObject,
  expected: number,
  timeoutMs?: number,
): Promise<FutexWaitResult> {
  return futexResult(await s().shmq_futex_wait_nb(ptr, expected >>> 0, timeoutNs(timeoutMs)));
}

/**
 * Sleeps on one Deno worker thread for many futex words: while the word at `addresses[i]`
 * holds `expected[i]` for every `i < count` (1 to 128), until one is woken or `timeoutMs`
 * pass. Resolves with the index of the word woken, or a negative errno: `-EAGAIN` (a word did
 * not hold its value at the start), `-ETIMEDOUT`, `-EINTR`, `-ENOSYS` (Linux before 5.16).
 * Both arrays must stay untouched until it resolves. The words are read by the kernel only,
 * so an address unmapped meanwhile gives `-EFAULT`, never a crash. Rejects with a `RangeError`
 * when `count` is more than either array holds.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { futexWaitManyAsync } from "./native.ts";
 * const word = new Uint32Array(new ArrayBuffer(4096));
 * const addresses = new BigUint64Array(new ArrayBuffer(8));
 * addresses[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(word)));
 * const ETIMEDOUT = 110;
 * assert.ok((await futexWaitManyAsync(addresses, new Uint32Array([0]), 1, 5)) === -ETIMEDOUT);
 * ```
 */
export function futexWaitManyAsync(
  addresses: BigUint64Array,
  expected: Uint32Array,
  count: number,
  timeoutMs?: number,
): Promise<number> {
  // The native side reads `count` elements of each array (a count it refuses, 0 or over
  // SHMQ_WAITV_MAX, gives -EINVAL): never past their ends.
  if (count > addresses.length || count > expected.length) {
    return Promise.reject(
      new RangeError(
        `futexWaitManyAsync: count ${count} is more than the ${addresses.length} addresses ` +
          `or ${expected.length} expected values given`,
      ),
    );
  }
  return s().shmq_futex_waitv_nb(addresses, expected, count, timeoutNs(timeoutMs));
}

/**
 * Wakes up to `count` waiters (any process) on the word at `ptr`; returns how many woke.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, futexWake, map, shmCreate, shmUnlink, unmap } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-wake", 4096);
 * const ptr = map(fd, 4096);
 * assert.ok(futexWake(ptr, 1) === 0); // nobody waits
 * unmap(ptr, 4096);
 * shmUnlink("/shmq-doc-wake");
 * closeFd(fd);
 * ```
 */
export function futexWake(ptr: Deno.PointerObject, count: number = 0x7fffffff): number {
  const rc = s().shmq_futex_wake(ptr, count);
  if (rc < 0) throw new NativeError(-rc, "futex_wake");
  return rc;
}

/**
 * 64-bit atomic load with acquire ordering (`ptr` 8-byte aligned).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { atomicLoadU64, atomicStoreU64, closeFd, map, shmCreate, shmUnlink, unmap } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-load", 4096);
 * const ptr = map(fd, 4096);
 * atomicStoreU64(ptr, 5n);
 * assert.ok(atomicLoadU64(ptr) === 5n);
 * unmap(ptr, 4096);
 * shmUnlink("/shmq-doc-load");
 * closeFd(fd);
 * ```
 */
export function atomicLoadU64(ptr: Deno.PointerObject): bigint {
  return s().shmq_atomic_load_u64(ptr);
}

/**
 * 64-bit atomic store with release ordering (`ptr` 8-byte aligned).
 *
 * @example
 * ```ts ignore
 * import { atomicStoreU64 } from "./native.ts";
 * atomicStoreU64(ptr, 1n); // publish
 * ```
 */
export function atomicStoreU64(ptr: Deno.PointerObject, value: bigint): void {
  s().shmq_atomic_store_u64(ptr, value);
}

/**
 * 64-bit atomic fetch-add (acq_rel); returns the previous value. Wraps modulo 2^64.
 *
 * @example
 * ```ts ignore
 * import { atomicAddU64 } from "./native.ts";
 * const ticket = atomicAddU64(ptr, 1n);
 * ```
 */
export function atomicAddU64(ptr: Deno.PointerObject, delta: bigint): bigint {
  return s().shmq_atomic_add_u64(ptr, delta);
}

/**
 * 64-bit strong compare-and-swap (acq_rel): stores `desired` if the word equals
 * `expected`. Returns `true` if it swapped.
 *
 * @example
 * ```ts ignore
 * import { atomicCasU64 } from "./native.ts";
 * if (atomicCasU64(ptr, 0n, 1n)) console.log("claimed");
 * ```
 */
export function atomicCasU64(
  ptr: Deno.PointerObject,
  expected: bigint,
  desired: bigint,
): boolean {
  return s().shmq_atomic_cas_u64(ptr, expected, desired) === 1;
}

/** The modes of {@linkcode lockByte}. */
export type LockMode = "unlock" | "shared" | "exclusive";

const LOCK_MODES: Record<LockMode, number> = { unlock: 0, shared: 1, exclusive: 2 };

/**
 * Takes, or releases, an open-file-description lock on byte `offset` of `fd`
 * (non-blocking). Returns `true` on success and `false` when another open file
 * description holds a conflicting lock. The kernel drops the lock when the holder's last
 * fd for that open is closed or its process dies, which makes it a liveness signal.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, lockByte, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-lock", 4096);
 * assert.ok(lockByte(fd, 0, "exclusive"));
 * lockByte(fd, 0, "unlock");
 * shmUnlink("/shmq-doc-lock");
 * closeFd(fd);
 * ```
 */
export function lockByte(fd: number, offset: number, mode: LockMode): boolean {
  const rc = s().shmq_lock_byte(fd, BigInt(offset), LOCK_MODES[mode]);
  if (rc === -11) return false; // EAGAIN
  check(rc, "fcntl_lock", `${fd}@${offset}`);
  return true;
}

/**
 * Whether ANOTHER open file description holds any lock on byte `offset` of `fd` (locks
 * taken through this same open never count).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, lockProbe, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-probe", 4096);
 * assert.ok(lockProbe(fd, 0) === false);
 * shmUnlink("/shmq-doc-probe");
 * closeFd(fd);
 * ```
 */
export function lockProbe(fd: number, offset: number): boolean {
  return check(s().shmq_lock_probe(fd, BigInt(offset)), "fcntl_getlk", `${fd}@${offset}`) === 1;
}

/**
 * Starts this process's exit sweeper, once (see `shmq_sweeper_start` in `ffi/shmq.h`): a
 * process, sharing this one's memory, that removes the queues counted with
 * {@linkcode sweeperTrack} from /dev/shm once this process is gone, if no live end holds them,
 * whatever killed it. Returns its pid, the same one at later calls (a new one if it was
 * killed). Throws when it cannot start: `ENOSYS` (no pidfds, before Linux 5.3) and `EPERM`
 * (a seccomp filter) at every later call too, a lack of fds or memory only this once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sweeperStart } from "./native.ts";
 * assert.ok(sweeperStart() === sweeperStart());
 * ```
 */
export function sweeperStart(): number {
  return check(s().shmq_sweeper_start(), "sweeper_start");
}

/**
 * Counts an end of queue `name` opened (`delta` 1) or closed (-1) in this process, for the
 * exit sweeper, with the byte of the main segment every live end holds a shared lock on.
 * Returns false when the table is full (4096 queues): that queue is left to later sweeps.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sweeperTrack } from "./native.ts";
 * assert.ok(sweeperTrack("/shmq-doc-track", 0, 1));
 * assert.ok(sweeperTrack("/shmq-doc-track", 0, -1));
 * ```
 */
export function sweeperTrack(name: string, aliveByte: number, delta: 1 | -1): boolean {
  const rc = s().shmq_sweeper_track(cName(name), BigInt(aliveByte), delta);
  if (rc === -28) return false; // ENOSPC
  return check(rc, "sweeper_track", name) === 0;
}

/**
 * The exit sweeper's pid, or undefined when none was started (or it could not start).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sweeperPid, sweeperStart } from "./native.ts";
 * assert.equal(sweeperPid(), sweeperStart());
 * ```
 */
export function sweeperPid(): number | undefined {
  const pid = s().shmq_sweeper_pid();
  return pid > 0 ? pid : undefined;
}

/**
 * Whether a process with this pid exists (`kill(pid, 0)`; a process owned by another user
 * counts as alive). Pids are reused, so pair it with another check where that matters.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pidAlive } from "./native.ts";
 * assert.ok(pidAlive(Deno.pid));
 * ```
 */
export function pidAlive(pid: number): boolean {
  return check(s().shmq_pid_alive(pid), "kill", String(pid)) === 1;
}

/**
 * A handle on process `pid` that keeps naming it after it dies, whatever becomes of the pid
 * (a pidfd: close it with {@linkcode closeFd}); undefined when there is none to have: the
 * process is gone and reaped, or the kernel (before Linux 5.3) or a seccomp filter gives none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { awaitProcessExit, closeFd, openProcess } from "./native.ts";
 * const self = openProcess(Deno.pid);
 * if (self !== undefined) {
 *   assert.equal(awaitProcessExit(self, 0), false);
 *   closeFd(self);
 * }
 * ```
 */
export function openProcess(pid: number): number | undefined {
  const fd = s().shmq_pidfd_open(pid);
  return fd >= 0 ? fd : undefined;
}

/**
 * Waits up to `ms` for the process behind `handle` (from {@linkcode openProcess}) to have
 * exited entirely, every thread of it, so that the fd locks it held are released; true once
 * it has. Its children are handed on sooner, as the first of its exiting threads finishes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { awaitProcessExit, closeFd, openProcess } from "./native.ts";
 * const child = new Deno.Command("true").spawn();
 * const handle = openProcess(child.pid);
 * await child.status;
 * if (handle !== undefined) {
 *   assert.equal(awaitProcessExit(handle, 1000), true);
 *   closeFd(handle);
 * }
 * ```
 */
export function awaitProcessExit(handle: number, ms: number): boolean {
  return check(s().shmq_pidfd_wait_exit(handle, ms), "poll", `pidfd ${handle}`) === 1;
}

/**
 * Ends this process, with SIGTERM and then `_exit(0)` after `graceMs`, once its parent is no
 * longer `parent` (checked every 100 ms by a native thread, so a busy main thread does not
 * delay it); `parent` 0 stops the watch. Returns false when the parent is gone already.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { watchParent } from "./native.ts";
 * assert.equal(watchParent(Deno.ppid, 1000), true);
 * watchParent(0, 0); // stops watching
 * ```
 */
export function watchParent(parent: number, graceMs: number): boolean {
  const rc = s().shmq_watch_parent(parent, graceMs);
  if (rc === -3) return false; // ESRCH: the parent is gone already
  check(rc, "watch_parent", String(parent));
  return true;
}

/** Who a thread is, as far as the kernel can later tell it apart from its successors. */
export interface ThreadIdentity {
  /** Its tid (equal to the pid for a process's main thread). */
  tid: number;
  /** Its start time in clock ticks since boot: a tid reused later starts later. */
  start: number;
  /** The inode of its pid namespace: tids mean something only inside one. */
  pidNamespace: number;
  /** The inode of its time namespace (0 without them): start times compare within one. */
  timeNamespace: number;
}

/**
 * The calling thread's identity, or `undefined` where `/proc` cannot give it (the ends
 * then count as alive for as long as their process lives, as before).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { threadAlive, threadIdentity } from "./native.ts";
 * const me = threadIdentity()!;
 * assert.ok(threadAlive(Deno.pid, me));
 * ```
 */
export function threadIdentity(): ThreadIdentity | undefined {
  const out = new Float64Array(4);
  if (s().shmq_thread_identity(out) !== 0) return undefined;
  return { tid: out[0], start: out[1], pidNamespace: out[2], timeNamespace: out[3] };
}

/**
 * Whether the thread `identity` names, in process `pid`, still runs. True when that cannot
 * be told from here (other pid or time namespaces, no `/proc`): only an ended thread is
 * reported.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { threadAlive, threadIdentity } from "./native.ts";
 * const me = threadIdentity()!;
 * assert.ok(!threadAlive(Deno.pid, { ...me, start: me.start + 1 })); // a successor
 * ```
 */
export function threadAlive(pid: number, identity: ThreadIdentity): boolean {
  return threadStatus(pid, identity) !== 0;
}

/**
 * Whether the thread `identity` names, in process `pid`, is stopped: by a signal (SIGSTOP,
 * Ctrl-Z) or at a debugger's stop. Such a thread keeps what it holds until resumed. False
 * when it runs, has ended, or that cannot be told from here (as {@linkcode threadAlive}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { threadIdentity, threadStopped } from "./native.ts";
 * assert.equal(threadStopped(Deno.pid, threadIdentity()!), false); // it runs this very code
 * ```
 */
export function threadStopped(pid: number, identity: ThreadIdentity): boolean {
  return threadStatus(pid, identity) === 2;
}

/** shmq_thread_alive: 0 ended, 1 runs (or cannot be told), 2 stopped. */
function threadStatus(pid: number, identity: ThreadIdentity): number {
  return s().shmq_thread_alive(
    pid,
    identity.tid,
    identity.start,
    identity.pidNamespace,
    identity.timeNamespace,
  );
}

/**
 * A random integer in [1, 2^52) shared by every Worker of this process and practically
 * never by another process: it tells whether an fd number found in shared memory is ours.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { processToken } from "./native.ts";
 * assert.ok(processToken() === processToken() && processToken() >= 1);
 * ```
 */
export function processToken(): number {
  return s().shmq_process_token();
}

/**
 * Records that `fd`, and `mapping` of it, belong to an end the calling thread opened, in a
 * table private to this process: {@linkcode closeOrphans} acts only on fds recorded so.
 * False when the table is full or `/proc` cannot name the thread (the fd is then never
 * closed as an orphan). Close the fd ({@linkcode closeFd} forgets it) before unmapping.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adoptFd, closeFd, map, shmCreate, shmUnlink, unmap } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-adopt", 4096);
 * const ptr = map(fd, 4096);
 * assert.ok(adoptFd(fd, { pointer: ptr, size: 4096 }));
 * shmUnlink("/shmq-doc-adopt");
 * closeFd(fd); // also forgets it
 * unmap(ptr, 4096);
 * ```
 */
export function adoptFd(
  fd: number,
  mapping?: { pointer: Deno.PointerObject; size: number },
): boolean {
  return s().shmq_fd_adopt(fd, mapping?.pointer ?? null, BigInt(mapping?.size ?? 0)) === 0;
}

/**
 * Records one more mapping of the end whose adopted fd is `ownerFd` (an extension
 * segment's), so that {@linkcode closeOrphans} unmaps it too. False when the table is full
 * (that memory then stays mapped until the process exits, should the end become an orphan).
 * Call {@linkcode forgetMapping} before unmapping it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adoptFd, adoptMapping, closeFd, forgetMapping, map, shmCreate, shmUnlink, unmap } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-adopt-map", 4096);
 * adoptFd(fd);
 * const ptr = map(fd, 4096);
 * assert.ok(adoptMapping(fd, { pointer: ptr, size: 4096 }));
 * assert.ok(forgetMapping(ptr));
 * unmap(ptr, 4096);
 * shmUnlink("/shmq-doc-adopt-map");
 * closeFd(fd);
 * ```
 */
export function adoptMapping(
  ownerFd: number,
  mapping: { pointer: Deno.PointerObject; size: number },
): boolean {
  return s().shmq_map_adopt(ownerFd, mapping.pointer, BigInt(mapping.size)) === 0;
}

/**
 * The view count the native table keeps for a mapping recorded by {@linkcode adoptMapping}:
 * store in it how many views (leases, drafts) are open over the mapping, so that should this
 * thread end with views open, {@linkcode closeOrphans} quarantines the mapping instead of
 * unmapping it. Undefined when the mapping is not recorded; valid until it is forgotten.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adoptFd, adoptMapping, closeFd, map, mapViews, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-views", 4096);
 * shmUnlink("/shmq-doc-views");
 * adoptFd(fd);
 * const pointer = map(fd, 4096);
 * adoptMapping(fd, { pointer, size: 4096 });
 * const views = mapViews(pointer)!;
 * Atomics.store(views, 0, 1); // one view open now
 * closeFd(fd); // forgets the mapping too
 * assert.equal(mapViews(pointer), undefined);
 * ```
 */
export function mapViews(pointer: Deno.PointerObject): Int32Array | undefined {
  const counter = s().shmq_map_views(pointer);
  return counter === null
    ? undefined
    : new Int32Array(Deno.UnsafePointerView.getArrayBuffer(counter, 4));
}

/**
 * Forgets a mapping recorded by {@linkcode adoptFd} or {@linkcode adoptMapping}, before it
 * is unmapped, so the table never names memory that is gone. Returns whether it was
 * recorded.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { forgetMapping } from "./native.ts";
 * const ptr = Deno.UnsafePointer.of(new Uint8Array(8))!;
 * assert.ok(!forgetMapping(ptr)); // never recorded
 * ```
 */
export function forgetMapping(pointer: Deno.PointerObject): boolean {
  return s().shmq_map_forget(pointer) === 1;
}

/**
 * Closes what the ends of ended threads (terminated Workers) left in this process: every fd
 * {@linkcode adoptFd} recorded from a thread that no longer runs and that refers to the same
 * file as `sameAs` (to any file when `sameAs` is left out). The mappings recorded with it
 * are unmapped, except those with views still counted (see {@linkcode mapViews}), which are
 * quarantined (see {@linkcode quarantine}): the ended thread may have transferred a buffer
 * over them to a thread that lives on. Their fd locks go with them. Decided from the private
 * table alone, whatever shared memory says. Returns how many fds it closed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adoptFd, closeFd, closeOrphans, shmCreate, shmUnlink } from "./native.ts";
 * const fd = shmCreate("/shmq-doc-orphans", 64);
 * shmUnlink("/shmq-doc-orphans");
 * adoptFd(fd);
 * assert.ok(closeOrphans(fd) === 0); // its thread, this one, still runs
 * assert.ok(closeOrphans() === 0); // nor any other orphan of another queue here
 * closeFd(fd);
 * ```
 */
export function closeOrphans(sameAs?: number): number {
  const fd = sameAs ?? -1;
  return check(
    s().shmq_close_orphans(fd),
    "close_orphans",
    sameAs === undefined ? "any" : String(fd),
  );
}
