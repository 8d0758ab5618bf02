/*
 * shmq native core: the few things TypeScript cannot do itself — POSIX shared memory,
 * futexes on shared words, 64-bit atomics, open-file-description locks, and process and
 * thread liveness. Linux only (x86_64, aarch64), C11 with <stdatomic.h>, built by `zig build`.
 *
 * Conventions
 *  - Every function that can fail returns a negative errno value (-EEXIST, ...) on failure.
 *  - Names are NUL-terminated byte strings of the form "/name" (one leading slash, no other
 *    slash, at most NAME_MAX bytes), exactly as for shm_open(3).
 *  - Addresses are passed as pointers and returned as int64 (user-space addresses are
 *    below 2^63, so a negative result is always an errno).
 *  - Functions keep no state between calls, except shmq_process_token and the process's
 *    namespaces (found once), the table of adopted fds (under a lock) and the pre-fault
 *    helpers (claimed atomically), so all of them are safe to call from any thread (Deno
 *    runs `nonblocking` FFI calls on a worker thread).
 *
 * The ABI version is bumped whenever a signature or a behaviour the TypeScript side relies
 * on changes; the loader refuses a binary whose shmq_abi_version() differs.
 */
#ifndef SHMQ_H
#define SHMQ_H

#include <stdint.h>

#define SHMQ_ABI_VERSION 25

#if defined(__GNUC__) || defined(__clang__)
#define SHMQ_API __attribute__((visibility("default")))
#else
#define SHMQ_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Returns SHMQ_ABI_VERSION of the compiled library. */
SHMQ_API uint32_t shmq_abi_version(void);

/*
 * Keeps this library loaded until the process exits, as `ld -z nodelete` would, whatever
 * flags it was linked with: Deno closes an isolate's handle when a Worker ends, and the last
 * close would unmap code a runtime thread (a nonblocking futex wait) or a copy helper still
 * runs, and the process-wide tables with it. Returns 0, or -ENOENT when the dynamic loader
 * does not know this library (never expected).
 */
SHMQ_API int32_t shmq_pin_self(void);

/*
 * Creates a new shared-memory object `name` exclusively (O_CREAT|O_EXCL|O_RDWR|O_CLOEXEC,
 * mode 0600) and sizes it to `size` bytes with ftruncate. Returns the fd, or -errno
 * (-EEXIST when the name exists, -EINVAL for a malformed name). When ftruncate fails the
 * name is unlinked and the fd closed before returning -errno.
 */
SHMQ_API int32_t shmq_shm_create(const uint8_t *name, uint64_t size);

/*
 * Opens an existing shared-memory object read-write (O_RDWR|O_CLOEXEC|O_NOFOLLOW|O_NONBLOCK).
 * Returns the fd, or -errno: -EPERM for anything but a regular file of this effective user
 * with no group or other permission (what shmq_shm_create makes), which another user could
 * truncate under a mapping of it, including a symlink, a directory, or another user's file
 * this one may not open at all; -ENOENT when the name does not exist. Such a file is refused
 * before it is opened, and the open does not block: a lease on it would make it wait out the
 * lease break time (45 s by default).
 */
SHMQ_API int32_t shmq_shm_open(const uint8_t *name);

/* Removes the name of a shared-memory object (existing mappings stay valid). 0 or -errno. */
SHMQ_API int32_t shmq_shm_unlink(const uint8_t *name);

/*
 * Lists the shared-memory objects (regular files in /dev/shm) whose names start with
 * `prefix` (NUL-terminated, with or without its leading slash; "" lists all). Writes the
 * names, without a leading slash and each followed by a NUL byte, into buf (up to cap
 * bytes; only whole names are written). Returns the number of bytes the complete list
 * needs, which exceeds cap when buf was too small (call again with a bigger one), or
 * -errno. Exists because Deno refuses to read /dev without --allow-all.
 */
SHMQ_API int64_t shmq_shm_list(const uint8_t *prefix, uint8_t *buf, uint64_t cap);

/*
 * Bytes of /dev/shm an unprivileged process may still fill (statvfs(2): f_bavail *
 * f_frsize), or -errno. Lets a caller refuse a segment that cannot fit before filling
 * /dev/shm trying, which would starve every other user of shared memory meanwhile.
 */
SHMQ_API int64_t shmq_shm_free_bytes(void);

/*
 * Size of the /dev/shm file system (statvfs(2): f_blocks * f_frsize), or -errno: what a
 * default that must fit a container's small /dev/shm is sized by, the same whatever else
 * happens to be in it at the moment.
 */
SHMQ_API int64_t shmq_shm_total_bytes(void);

/*
 * Memory a new segment may still take, in bytes: out[0] for the machine (MemAvailable plus
 * SwapFree, /proc/meminfo), out[1] for this process's memory cgroup (v2, or v1's memory
 * controller: the least, over it and its ancestors that set a limit, of the limit less what
 * the cgroup uses but for clean page cache, which the kernel would reclaim), and out[2] the
 * least of those limits themselves, each -1 when unknown or unlimited. A tmpfs page is charged
 * to whoever faults it in and can only go to swap, so pre-faulting a segment past either
 * figure does not fail: the OOM killer ends a process, most often the one faulting, or
 * another. Returns 0, or -EINVAL for a NULL out.
 */
SHMQ_API int32_t shmq_memory_room(int64_t *out);

/*
 * sched_yield(2): lets another runnable thread on this CPU run. A waiter that spins calls
 * it between checks, so on a machine with more busy processes than cores the peer it waits
 * for gets the CPU instead of losing it to the spin. 0 or -errno.
 */
SHMQ_API int32_t shmq_yield(void);

/* close(2); also forgets fd and the mappings recorded with it (see shmq_fd_adopt): close it
 * before unmapping them. 0 or -errno (-EBADF for a negative fd); 0 on EINTR, after which
 * Linux has closed the fd all the same. */
SHMQ_API int32_t shmq_close(int32_t fd);

/* fstat(2) st_size of the fd, or -errno. */
SHMQ_API int64_t shmq_fd_size(int32_t fd);

/* Bytes of memory backing the fd's object (fstat(2) st_blocks × 512), or -errno. A tmpfs
 * segment takes its memory only as its pages are first touched, so a segment just made holds
 * less than its size: /dev/shm's free space does not count the rest yet. */
SHMQ_API int64_t shmq_fd_allocated(int32_t fd);

/* fstat(2) st_nlink of the fd: 1 while the name exists, 0 once it was unlinked; or -errno. */
SHMQ_API int32_t shmq_fd_links(int32_t fd);

/* Milliseconds since the fd's last status change (fstat(2) st_ctim, on CLOCK_REALTIME): for a
 * segment, since it was created and sized. 0 when the clock reads earlier than that; -errno. */
SHMQ_API int64_t shmq_fd_age_ms(int32_t fd);

/*
 * Maps `size` bytes of fd's file from offset 0, PROT_READ|PROT_WRITE, MAP_SHARED, through a
 * fresh open file description of it (reopened by /proc/self/fd, else fd itself), so the
 * mapping never keeps fd's record locks alive. Returns the address as an int64, or -errno.
 */
SHMQ_API int64_t shmq_map(int32_t fd, uint64_t size);

/* munmap(2). 0 or -errno. */
SHMQ_API int32_t shmq_unmap(void *addr, uint64_t size);

/*
 * Replaces a mapping with private, zero-filled, unreserved pages at the same address, in one
 * mmap(MAP_FIXED) call, and keeps them for the process's life. Under strict overcommit
 * writable pages may be refused: then the old mapping is kept if it is still there (-errno),
 * and a hole the kernel left is filled with read-only zero pages (0). For shared memory that a
 * JavaScript buffer moved out of the library's hands (ArrayBuffer.prototype.transfer) may
 * still reach: unmapping would let that buffer crash the process, keeping the shared pages
 * would let it see later messages. 0 or -errno.
 */
SHMQ_API int32_t shmq_quarantine(void *addr, uint64_t size);

/*
 * Pre-faults [addr, addr+len) for writing so later first writes do not page-fault:
 * madvise(MADV_POPULATE_WRITE), widened to whole pages. On kernels without it (EINVAL or
 * ENOSYS) it falls back to touching one byte per page with an atomic OR of 0, which never
 * changes data; on a kernel with it, EINVAL (a read-only range, say) is returned. Returns 0
 * or -errno; when the backing tmpfs is full MADV_POPULATE_WRITE reports an error
 * (-ENOMEM/-EFAULT) instead of a later SIGBUS.
 * (The fallback path cannot detect a full tmpfs: it would raise SIGBUS.)
 */
SHMQ_API int32_t shmq_prefault(void *addr, uint64_t len);

/*
 * Readies freshly allocated private memory (a new ArrayBuffer) to receive a large copy:
 * asks for transparent huge pages on its 2 MiB-aligned interior (MADV_HUGEPAGE; ignored
 * where THP is off) and pre-faults it as shmq_prefault does. Without this, copying out a
 * message of tens of MiB takes a page fault every 4 KiB and runs at a quarter of memcpy
 * speed. Contents are unchanged. Returns 0 or -errno.
 */
SHMQ_API int32_t shmq_prepare_copy_target(void *addr, uint64_t len);

/*
 * Starts pre-faulting a freshly allocated range for a large copy on a helper thread: huge
 * pages asked for on its 2 MiB-aligned interior, which the helper then pre-faults from the
 * end backwards in 2 MiB steps while the caller copies into the range from the front. The
 * kernel's zeroing of fresh pages, most of the cost of a large copy into new memory, then
 * runs on another core. Pages already present are left as they are, so no byte the caller
 * wrote changes. The partial 2 MiB pages at either end are left to the copy. Returns a
 * positive id for shmq_prefault_join; -EINVAL when the range holds no whole 2 MiB page,
 * -ENOSYS without MADV_POPULATE_WRITE (Linux < 5.14: use shmq_prepare_copy_target), -EBUSY
 * when 8 helpers are started and not yet joined, or -errno from pthread_create. A helper
 * whose starting thread ended without joining it (a Worker terminated mid-copy) is joined
 * and its slot reused when all 8 are taken.
 */
SHMQ_API int32_t shmq_prefault_start(void *addr, uint64_t len);

/*
 * Stops the helper of shmq_prefault_start (it finishes its current 2 MiB step) and waits for
 * it. Call it before the memory can be freed, and before the calling code can unload this
 * library. Returns the bytes the helper pre-faulted, or -EINVAL for an id that is not a
 * started, unjoined helper (each id is joined once, by one caller), or -errno.
 */
SHMQ_API int64_t shmq_prefault_join(int32_t id);

/*
 * Tunes glibc malloc for a process that copies large messages out into fresh buffers: a fixed
 * mmap threshold of 32 MiB (glibc's own ceiling for its sliding one) and a trim threshold of
 * 128 MiB, or an eighth of the memory there is when that is less (the machine's, or the least
 * memory cgroup limit over the process). Buffers a garbage collection frees in a batch then
 * stay in the heap for the next copies, instead of going back to the kernel and faulting in
 * again, zeroed, a page at a time. Leaves malloc alone when the environment the process
 * started with has SHMQ_TUNE_MALLOC=0, a glibc.malloc tunable in GLIBC_TUNABLES, a MALLOC_*
 * variable, or a non-empty LD_PRELOAD (which may replace malloc), or cannot be read. Tunes
 * once: a later call (another isolate's) changes nothing, so it keeps what shmq_malloc_keep
 * set. Returns the mmap threshold glibc was given (32 MiB), or 0 when malloc was left alone
 * (also when glibc refused the threshold). Never fails.
 */
SHMQ_API int64_t shmq_tune_malloc(void);

/*
 * With `on` nonzero, malloc maps no buffer on its own (M_MMAP_MAX 0), so buffers above the
 * mmap threshold come from the heap too, wherever glibc can grow it (it still maps when brk
 * is refused, or in a thread's arena, whose heaps hold 64 MiB at most); with `on` 0, glibc's
 * own count again. For one allocation at a time: glibc's mmap threshold cannot be set above
 * 32 MiB, and above it each buffer was mapped afresh and unmapped when freed, so every large
 * copy landed on pages fresh from the kernel (zeroed, faulted in, and on a VM that hands freed
 * memory back to its host, faulted in there too), where one from the heap reuses a freed
 * buffer's pages. Only once shmq_tune_malloc has tuned malloc. Returns 1 if it was, else 0
 * (nothing changed). Never fails.
 */
SHMQ_API int32_t shmq_malloc_from_heap(int32_t on);

/*
 * Lets the heap keep up to `bytes` of free memory at its top (M_TRIM_THRESHOLD) instead of
 * giving it back to the kernel as soon as it is freed: a receiver of huge messages frees one
 * copy (at the top) while making the next, which then takes the same pages. At least what
 * shmq_tune_malloc set, at most an eighth of the memory there is (the machine's, or the least
 * memory cgroup limit over the process; INT_MAX bytes on any machine). It never lowers
 * what an earlier call set (another isolate's copies may need it). Only once shmq_tune_malloc
 * has tuned malloc. Returns the threshold now in effect, or 0 when malloc is left alone. Never
 * fails.
 */
SHMQ_API int64_t shmq_malloc_keep(uint64_t bytes);

/*
 * malloc_trim(0): gives the free memory of malloc's heaps back to the kernel: free chunks in
 * their middle (their pages discarded) and the free top of the main thread's heap. After a
 * garbage collection freed buffers that came from the heap (all of them once tuned), this
 * makes them count as memory left again; otherwise the heap keeps them (those at its top up to
 * the trim threshold: see shmq_tune_malloc and shmq_malloc_keep). Returns 1 if memory was given
 * back, else 0. Never fails.
 */
SHMQ_API int32_t shmq_malloc_trim(void);

/*
 * Copies len bytes from src to dst, for a copy too large to stay in the caches: the stores
 * bypass them (non-temporal), four 4 KiB strides interleaved with the loads prefetched ahead,
 * as glibc's memcpy does above its own threshold. glibc sets that threshold from the L3 size
 * the CPU reports, which on a VM can be the host's (480 MiB on the 2-vCPU VM this was
 * measured on: a threshold of 180 MiB), and below it copies with rep movsb, which ran 6.5
 * GB/s there at 64-160 MiB against 13 GB/s streamed. On targets other than x86_64 it is
 * memcpy. Ranges that overlap are copied with memmove, as TypedArray.prototype.set copies
 * them. Never fails.
 */
SHMQ_API void shmq_copy_streaming(void *dst, const void *src, uint64_t len);

/*
 * Shared (cross-process, not FUTEX_PRIVATE) FUTEX_WAIT on the 32-bit word at addr while it
 * equals `expected`. timeout_ns < 0 waits without a timeout. Returns 0 when woken (EINTR
 * counts as woken: the caller re-checks its condition), 1 on timeout, 2 when the word was
 * not `expected`, or another -errno.
 */
SHMQ_API int32_t shmq_futex_wait(void *addr, uint32_t expected, int64_t timeout_ns);

/*
 * Shared futex_waitv (Linux 5.16) on `count` (1..SHMQ_WAITV_MAX) 32-bit words: the address of
 * word i is words[i], and the wait lasts while it equals expected[i], until one is woken or
 * timeout_ns pass (< 0: no timeout). Lets one thread sleep for many waiters of a process.
 * Returns the index of the word woken, or -EAGAIN when a word did not hold its value at the
 * start, -ETIMEDOUT, -EINTR (re-check), -ENOSYS on older kernels, or another -errno. Words
 * are only read by the kernel: an address unmapped meanwhile gives -EFAULT, never a fault.
 */
#define SHMQ_WAITV_MAX 128
SHMQ_API int32_t shmq_futex_waitv(const uint64_t *words, const uint32_t *expected,
                                  uint32_t count, int64_t timeout_ns);

/* Shared FUTEX_WAKE of up to `count` waiters on addr. Returns the number woken or -errno. */
SHMQ_API int32_t shmq_futex_wake(void *addr, int32_t count);

/* 64-bit atomic load with acquire ordering. addr must be 8-byte aligned. */
SHMQ_API uint64_t shmq_atomic_load_u64(void *addr);

/* 64-bit atomic store with release ordering. addr must be 8-byte aligned. */
SHMQ_API void shmq_atomic_store_u64(void *addr, uint64_t v);

/* 64-bit atomic fetch-add (acq_rel); returns the previous value. */
SHMQ_API uint64_t shmq_atomic_add_u64(void *addr, uint64_t delta);

/* 64-bit strong compare-and-swap (acq_rel on success, acquire on failure); 1 if swapped, else 0. */
SHMQ_API int32_t shmq_atomic_cas_u64(void *addr, uint64_t expected, uint64_t desired);

/*
 * Open-file-description record lock (fcntl F_OFD_SETLK, non-blocking, l_len = 1) on byte
 * `offset` of fd: mode 0 = unlock, 1 = shared (F_RDLCK), 2 = exclusive (F_WRLCK).
 * Returns 0, -EAGAIN when another open file description holds a conflicting lock, or
 * -errno (-EINVAL for a bad mode). The kernel drops the lock when the last fd of the
 * open file description is closed, including when the holding process dies.
 */
SHMQ_API int32_t shmq_lock_byte(int32_t fd, uint64_t offset, int32_t mode);

/*
 * Asks (F_OFD_GETLK, for an exclusive lock) whether ANOTHER open file description holds
 * any lock on byte `offset` of fd. Returns 1 if so, 0 if none, or -errno. Locks held
 * through the same open file description never count. Used as a liveness test.
 */
SHMQ_API int32_t shmq_lock_probe(int32_t fd, uint64_t offset);

/*
 * Thread liveness. fd locks die with a process, but a Worker's thread can end (terminate())
 * while its process, and so its fds and their locks, live on. An end records the identity
 * of the thread that opened it, and others ask the kernel whether that thread still runs.
 *
 * shmq_thread_identity writes four values into out: the calling thread's tid, its start
 * time (clock ticks since boot, from /proc/self/task/<tid>/stat), and the inodes of its pid
 * namespace (tids mean something only inside one) and of its time namespace (start times
 * are shifted into the reader's; 0 without time namespaces). Returns 0, or -ENOENT when
 * /proc is missing or belongs to another pid namespace.
 */
SHMQ_API int32_t shmq_thread_identity(double *out);

/*
 * 0 when thread `tid` of process `pid`, started at `start` (as shmq_thread_identity gave
 * it), has ended: no such thread, or a later one reusing its tid. 2 when it is stopped, by
 * a signal (SIGSTOP, SIGTSTP) or at a tracer's stop (state T or t): alive, but holding what
 * it holds until resumed. 1 when it runs otherwise, or when that cannot be told from here:
 * other pid or time namespaces than `pid_ns` and `time_ns`, a `start` that is no start time
 * (it comes from shared memory), or no /proc. Never -errno.
 */
SHMQ_API int32_t shmq_thread_alive(int32_t pid, int32_t tid, double start, double pid_ns,
                                   double time_ns);

/*
 * A random integer in [1, 2^52) drawn once per loaded copy of this library: every Worker
 * of a process shares it, and two processes practically never do. Marks which process an
 * fd number recorded in shared memory belongs to.
 */
SHMQ_API double shmq_process_token(void);

/*
 * Records, in a table private to this process, that fd, and the mapping of it at addr
 * (size bytes), belong to an end the calling thread opened. shmq_close_orphans acts only on
 * fds recorded so, whatever shared memory says. 0, -ENOSPC when the table (1024 fds) is
 * full (or, with an addr, the mapping table: 4096), -EBADF for a negative or closed fd,
 * -ENOENT when /proc is not of this process's pid namespace (nothing is recorded then: an end
 * of such a process is never taken for an orphan), or -errno when /proc cannot name the
 * thread.
 */
SHMQ_API int32_t shmq_fd_adopt(int32_t fd, void *addr, uint64_t size);

/*
 * Records one more mapping (addr, size bytes) of the end whose adopted fd is owner_fd: an
 * extension segment's, so that an orphan's memory goes too. 0, -ENOENT when owner_fd is not
 * adopted, -ENOSPC when the table (4096 mappings) is full, -EBADF or -EINVAL for a negative
 * fd or a NULL addr.
 */
SHMQ_API int32_t shmq_map_adopt(int32_t owner_fd, void *addr, uint64_t size);

/*
 * Forgets the mapping at addr recorded by shmq_fd_adopt or shmq_map_adopt, if any. Call it
 * before unmapping that memory, so the table never names memory that is gone. Returns 1 if
 * it was recorded, else 0.
 */
SHMQ_API int32_t shmq_map_forget(void *addr);

/*
 * The count of views open over the mapping at addr recorded by shmq_map_adopt, or NULL when
 * none is recorded there. The end that owns the mapping keeps it current (a plain atomic
 * store from JavaScript, no call per view); shmq_close_orphans reads it to tell mappings a
 * transferred buffer may still reach (quarantined) from the rest (unmapped). Valid until the
 * mapping is forgotten.
 */
SHMQ_API _Atomic int32_t *shmq_map_views(void *addr);

/*
 * Closes what ends whose thread has ended (terminated Workers) left behind in this process
 * while it lives on: every adopted fd that refers to the same file as fd `same_as` (any file
 * when `same_as` is -1) and whose recorded thread has ended, with the mappings recorded with
 * it: unmapped, or quarantined (shmq_quarantine) when their view count (shmq_map_views) says
 * views were open, since the ended thread may have transferred a buffer over them to one
 * that lives on. The fd locks it holds go with the last reference to its open file
 * description, the shared mappings included. Decided from the private table alone, whatever
 * shared memory says; each other thread is judged once a call. Returns how many fds it
 * closed, or -errno when same_as is bad (not -1 nor an open fd).
 */
SHMQ_API int32_t shmq_close_orphans(int32_t same_as);

/* kill(pid, 0): 1 when the process exists (also on EPERM), 0 when gone (ESRCH), or -errno. */
SHMQ_API int32_t shmq_pid_alive(int32_t pid);

/*
 * A pidfd for process `pid` (close-on-exec): unlike the pid, it keeps naming that process
 * after it dies, so a wait on it cannot be fooled by the pid's reuse. Returns the fd, or
 * -errno: -ESRCH when no such process exists (it may have been reaped already), -ENOSYS
 * before Linux 5.3, -EPERM where a seccomp filter refuses the call.
 */
SHMQ_API int32_t shmq_pidfd_open(int32_t pid);

/*
 * Waits, for at most `timeout_ms`, until the process behind `pidfd` has exited entirely:
 * every thread of it gone, and with the last its files, mappings and the fd locks they held.
 * Its children are handed on sooner, as the first of its exiting threads finishes, while
 * another may still be tearing down its memory (milliseconds for a large heap) and so still
 * hold its locks. Returns 1 once exited, 0 on timeout, or -errno.
 */
SHMQ_API int32_t shmq_pidfd_wait_exit(int32_t pidfd, uint32_t timeout_ms);

/*
 * Ends this process once its parent is no longer `parent` (the parent exited or died, and the
 * process was handed to init or a subreaper): a thread checks getppid() every 100 ms, then
 * sends this process SIGTERM, and _exit(0)s it `grace_ms` later if it still runs (its main
 * thread may be busy, or ignore the signal). For an actor not yet started: nothing else watches
 * its parent then, and nothing of it needs closing. `parent` 0 stops the watch. Returns 0;
 * -ESRCH when the parent is not `parent` already (the caller should exit itself); or -errno
 * when the thread cannot be started.
 */
SHMQ_API int32_t shmq_watch_parent(int32_t parent, uint32_t grace_ms);

/*
 * Starts this process's exit sweeper, once: a process cloned with CLONE_VM (so it copies no
 * memory), in a session of its own, that waits for every thread of this one to be gone,
 * however it ends (a SIGKILL to the whole process group included), and then
 * removes the queues recorded with shmq_sweeper_track that no live end holds any more, as
 * shmq's own sweep would. Returns its pid; the same pid at later calls while it runs; a new
 * one if it was killed (it is reaped here); or -errno when it cannot start: -ENOSYS without
 * pidfds (before Linux 5.3) and -EPERM (a seccomp filter) are kept and returned again, while
 * a lack of fds or memory is tried again at the next call.
 */
SHMQ_API int32_t shmq_sweeper_start(void);

/*
 * Counts an end of queue `name` ("/shmq-…", under 64 bytes) opened (`delta` 1) or closed
 * (-1) in this process, with the byte of its main segment every live end holds a shared lock
 * on (`alive_byte`): the exit sweeper looks at the queues counted above zero. Returns 0;
 * -ENOSPC when 4096 queues are counted already (that one is then left to later sweeps);
 * -ENOENT when closing one not counted; -EINVAL for a bad name or delta.
 */
SHMQ_API int32_t shmq_sweeper_track(const uint8_t *name, uint64_t alive_byte, int32_t delta);

/* The exit sweeper's pid, 0 before shmq_sweeper_start, or the -errno that start returned. */
SHMQ_API int32_t shmq_sweeper_pid(void);

/* Symbolic name ("EEXIST") of a positive errno value, or "EUNKNOWN". Static storage. */
SHMQ_API const char *shmq_errno_name(int32_t err);

/* strerror(3) text of a positive errno value. Static storage. */
SHMQ_API const char *shmq_strerror(int32_t err);

#ifdef __cplusplus
}
#endif

#endif /* SHMQ_H */
