/**
 * The FFI symbol table of the shmq native core (`ffi/shmq.c`), declared once. The
 * signatures mirror `ffi/shmq.h`; keep the two in step and bump {@linkcode ABI_VERSION}
 * (and `SHMQ_ABI_VERSION`) whenever either changes.
 *
 * @module
 */

/**
 * The ABI version this TypeScript expects the native library to report from
 * `shmq_abi_version()`. The loader refuses a library with any other version.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ABI_VERSION } from "./symbols.ts";
 * assert.ok(ABI_VERSION >= 1);
 * ```
 */
export const ABI_VERSION = 25;

/**
 * The native symbols. Names are `"buffer"` parameters (NUL-terminated UTF-8), addresses
 * are `"pointer"` parameters, 64-bit results arrive as `bigint`. Failures are negative
 * errno values. `shmq_futex_wait_nb` is `shmq_futex_wait` again, as a `nonblocking` call
 * that returns a Promise (it runs on a Deno worker thread; each call costs tens of
 * microseconds, so spin or poll before using it); `shmq_futex_waitv_nb` sleeps for many
 * waiters on one such thread.
 *
 * @example Open the library by hand
 * ```ts ignore
 * import { symbols } from "./symbols.ts";
 * const lib = Deno.dlopen("./ffi/lib/x86_64-linux/libshmq.so", symbols);
 * console.log(lib.symbols.shmq_abi_version());
 * lib.close();
 * ```
 */
export const symbols = {
  shmq_abi_version: { parameters: [], result: "u32" },
  shmq_pin_self: { parameters: [], result: "i32" },
  shmq_shm_create: { parameters: ["buffer", "u64"], result: "i32" },
  shmq_shm_open: { parameters: ["buffer"], result: "i32" },
  shmq_shm_unlink: { parameters: ["buffer"], result: "i32" },
  shmq_shm_list: { parameters: ["buffer", "buffer", "u64"], result: "i64" },
  shmq_shm_free_bytes: { parameters: [], result: "i64" },
  shmq_shm_total_bytes: { parameters: [], result: "i64" },
  shmq_memory_room: { parameters: ["buffer"], result: "i32" },
  shmq_yield: { parameters: [], result: "i32" },
  shmq_close: { parameters: ["i32"], result: "i32" },
  shmq_fd_size: { parameters: ["i32"], result: "i64" },
  shmq_fd_allocated: { parameters: ["i32"], result: "i64" },
  shmq_fd_links: { parameters: ["i32"], result: "i32" },
  shmq_fd_age_ms: { parameters: ["i32"], result: "i64" },
  shmq_map: { parameters: ["i32", "u64"], result: "i64" },
  shmq_unmap: { parameters: ["pointer", "u64"], result: "i32" },
  shmq_quarantine: { parameters: ["pointer", "u64"], result: "i32" },
  shmq_prefault: { parameters: ["pointer", "u64"], result: "i32" },
  shmq_prepare_copy_target: { parameters: ["pointer", "u64"], result: "i32" },
  shmq_prefault_start: { parameters: ["pointer", "u64"], result: "i32" },
  shmq_prefault_join: { parameters: ["i32"], result: "i64" },
  shmq_tune_malloc: { parameters: [], result: "i64" },
  shmq_malloc_trim: { parameters: [], result: "i32" },
  shmq_malloc_trim_nb: {
    name: "shmq_malloc_trim",
    parameters: [],
    result: "i32",
    nonblocking: true,
  },
  shmq_malloc_keep: { parameters: ["u64"], result: "i64" },
  shmq_malloc_from_heap: { parameters: ["i32"], result: "i32" },
  shmq_copy_streaming: { parameters: ["buffer", "buffer", "u64"], result: "void" },
  shmq_futex_wait: { parameters: ["pointer", "u32", "i64"], result: "i32" },
  shmq_futex_wait_nb: {
    name: "shmq_futex_wait",
    parameters: ["pointer", "u32", "i64"],
    result: "i32",
    nonblocking: true,
  },
  shmq_futex_waitv_nb: {
    name: "shmq_futex_waitv",
    parameters: ["buffer", "buffer", "u32", "i64"],
    result: "i32",
    nonblocking: true,
  },
  shmq_futex_wake: { parameters: ["pointer", "i32"], result: "i32" },
  shmq_atomic_load_u64: { parameters: ["pointer"], result: "u64" },
  shmq_atomic_store_u64: { parameters: ["pointer", "u64"], result: "void" },
  shmq_atomic_add_u64: { parameters: ["pointer", "u64"], result: "u64" },
  shmq_atomic_cas_u64: { parameters: ["pointer", "u64", "u64"], result: "i32" },
  shmq_lock_byte: { parameters: ["i32", "u64", "i32"], result: "i32" },
  shmq_lock_probe: { parameters: ["i32", "u64"], result: "i32" },
  shmq_pid_alive: { parameters: ["i32"], result: "i32" },
  shmq_pidfd_open: { parameters: ["i32"], result: "i32" },
  shmq_pidfd_wait_exit: { parameters: ["i32", "u32"], result: "i32" },
  shmq_watch_parent: { parameters: ["i32", "u32"], result: "i32" },
  shmq_thread_identity: { parameters: ["buffer"], result: "i32" },
  shmq_thread_alive: { parameters: ["i32", "i32", "f64", "f64", "f64"], result: "i32" },
  shmq_process_token: { parameters: [], result: "f64" },
  shmq_fd_adopt: { parameters: ["i32", "pointer", "u64"], result: "i32" },
  shmq_map_adopt: { parameters: ["i32", "pointer", "u64"], result: "i32" },
  shmq_map_forget: { parameters: ["pointer"], result: "i32" },
  shmq_map_views: { parameters: ["pointer"], result: "pointer" },
  shmq_close_orphans: { parameters: ["i32"], result: "i32" },
  shmq_sweeper_start: { parameters: [], result: "i32" },
  shmq_sweeper_track: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  shmq_sweeper_pid: { parameters: [], result: "i32" },
  shmq_errno_name: { parameters: ["i32"], result: "pointer" },
  shmq_strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * The type of the opened native library.
 *
 * @example
 * ```ts ignore
 * import type { ShmqLibrary } from "./symbols.ts";
 * function version(lib: ShmqLibrary): number {
 *   return lib.symbols.shmq_abi_version();
 * }
 * ```
 */
export type ShmqLibrary = Deno.DynamicLibrary<typeof symbols>;
