/*
 * shmq native core. See shmq.h for the contract of every function.
 *
 * shm_open/shm_unlink are done by hand on /dev/shm (exactly what glibc does) so the library
 * needs nothing beyond libc.so.6, whatever the glibc version (older ones keep shm_open in
 * librt).
 */
#define _GNU_SOURCE
#include "shmq.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SHM_DIR "/dev/shm/"
#define SHM_DIR_LEN (sizeof(SHM_DIR) - 1)

uint32_t shmq_abi_version(void) { return SHMQ_ABI_VERSION; }

int32_t shmq_pin_self(void) {
  /* Zig's linker cannot mark the library NODELETE; a reload under our own name with
   * RTLD_NOLOAD|RTLD_NODELETE promotes the loaded copy instead, for any build of it. */
  Dl_info info;
  if (dladdr((void *)shmq_pin_self, &info) == 0 || info.dli_fname == NULL) return -ENOENT;
  return dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) == NULL ? -ENOENT : 0;
}

/*
 * Builds "/dev/shm/<name without its slash>" into path (size PATH_MAX).
 * Returns 0, -EINVAL for a malformed name, -ENAMETOOLONG for a too long one.
 */
static int shm_path(const uint8_t *name, char *path) {
  if (name == NULL || name[0] != '/') return -EINVAL;
  const char *rest = (const char *)name + 1;
  size_t len = strlen(rest);
  if (len == 0 || strchr(rest, '/') != NULL) return -EINVAL;
  if (strcmp(rest, ".") == 0 || strcmp(rest, "..") == 0) return -EINVAL;
  if (len > NAME_MAX) return -ENAMETOOLONG;
  memcpy(path, SHM_DIR, SHM_DIR_LEN);
  memcpy(path + SHM_DIR_LEN, rest, len + 1);
  return 0;
}

int32_t shmq_shm_create(const uint8_t *name, uint64_t size) {
  char path[PATH_MAX];
  int rc = shm_path(name, path);
  if (rc < 0) return rc;
  if (size > (uint64_t)INT64_MAX) return -EINVAL;
  int fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return -errno;
  /* O_CREAT honours the umask; make sure the mode is exactly 0600. */
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0) {
    int err = errno;
    unlink(path);
    close(fd);
    return -err;
  }
  return fd;
}

/* Whether `st` is a segment as shmq makes them: a regular file of user `euid` with no group or
 * other permission. Another user's file, even one left writable, could be truncated under a
 * mapping (SIGBUS) or read by others, and is no segment to map or unlink. */
static bool made_as_segment(const struct stat *st, uid_t euid) {
  return S_ISREG(st->st_mode) && st->st_uid == euid && (st->st_mode & 077) == 0;
}

int32_t shmq_shm_open(const uint8_t *name) {
  char path[PATH_MAX];
  int rc = shm_path(name, path);
  if (rc < 0) return rc;
  /* What is no segment of ours is refused before it is opened: opening another user's file
   * can block (a lease its owner holds makes open(2) wait /proc/sys/fs/lease-break-time, 45 s
   * by default), and every sweep opens every "shmq-" entry. Checked again on the fd below. */
  struct stat st;
  if (lstat(path, &st) != 0) return -errno;
  if (!made_as_segment(&st, geteuid())) return -EPERM;
  /* O_NONBLOCK: a lease put on the file since fails the open (EWOULDBLOCK) instead of
   * blocking it; regular files ignore the flag otherwise. */
  int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    /* A symlink, a directory, or another user's file closed to us: not a segment of ours
     * either, which the caller tells apart from a missing one. */
    int err = errno;
    return err == ELOOP || err == EISDIR || err == EACCES || err == EWOULDBLOCK ? -EPERM : -err;
  }
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  if (!made_as_segment(&st, geteuid())) {
    close(fd);
    return -EPERM;
  }
  return fd;
}

int32_t shmq_shm_unlink(const uint8_t *name) {
  char path[PATH_MAX];
  int rc = shm_path(name, path);
  if (rc < 0) return rc;
  return unlink(path) == 0 ? 0 : -errno;
}

int32_t shmq_yield(void) {
  return sched_yield() == 0 ? 0 : -errno;
}

/* Bytes of /dev/shm from statvfs: its whole size (`whole`), or what is free for this user. */
static int64_t shm_bytes(int whole) {
  struct statvfs st;
  if (statvfs(SHM_DIR, &st) != 0) return -errno;
  uint64_t blocks = whole ? (uint64_t)st.f_blocks : (uint64_t)st.f_bavail;
  uint64_t bytes = blocks * (uint64_t)st.f_frsize;
  return bytes > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)bytes;
}

int64_t shmq_shm_free_bytes(void) {
  return shm_bytes(0);
}

int64_t shmq_shm_total_bytes(void) {
  return shm_bytes(1);
}

/* Reads the small text file at `path` (procfs, cgroupfs) into buf, NUL-terminated. Returns
 * its length, or -1 when it cannot be read or fills buf. */
static ssize_t read_text(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      if (n < 0) return -1;
      buf[len] = '\0';
      return (ssize_t)len;
    }
    len += (size_t)n;
    if (len == cap - 1) {
      close(fd);
      return -1; /* cut short: its figures cannot be trusted */
    }
  }
}

/* The number after `key` at the start of a line of `text` (a "key value" file), times
 * `unit`, or -1 when no line has it. */
static int64_t field_of(const char *text, const char *key, int64_t unit) {
  size_t key_len = strlen(key);
  for (const char *line = text; *line != '\0';) {
    if (strncmp(line, key, key_len) == 0) {
      char *end;
      errno = 0;
      unsigned long long v = strtoull(line + key_len, &end, 10);
      if (errno != 0 || end == line + key_len || v > (unsigned long long)(INT64_MAX / unit)) {
        return -1;
      }
      return (int64_t)v * unit;
    }
    const char *next = strchr(line, '\n');
    if (next == NULL) break;
    line = next + 1;
  }
  return -1;
}

/* The single number in the file at dir/name, or -1 ("max", unreadable, not a number). */
static int64_t number_in(const char *dir, const char *name) {
  char path[PATH_MAX];
  char text[64];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return -1;
  if (read_text(path, text, sizeof text) <= 0) return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || (*end != '\n' && *end != '\0')) return -1;
  return v > (unsigned long long)INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* Page cache the cgroup at `dir` could give back at its limit, from its memory.stat: clean,
 * unmapped file pages, active ones too (a file read twice is active, and the kernel reclaims
 * those before it calls the OOM killer). Dirty, under writeback or mapped (running code) ones
 * count as used, as does shmem, the queues' own segments among it. The mapped figure counts
 * mapped shmem too, which is no file page: only what it has beyond the shmem is taken off,
 * or every segment a process maps would hide as much cache. 0 when unknown. */
static int64_t reclaimable_cache(const char *dir, bool v2) {
  char path[PATH_MAX];
  char stat[8192];
  if (snprintf(path, sizeof path, "%s/memory.stat", dir) >= (int)sizeof path ||
      read_text(path, stat, sizeof stat) <= 0) {
    return 0;
  }
  static const char *const keys[2][6] = {
      {"total_active_file ", "total_inactive_file ", "total_dirty ", "total_writeback ",
       "total_mapped_file ", "total_shmem "},
      {"active_file ", "inactive_file ", "file_dirty ", "file_writeback ", "file_mapped ",
       "shmem "},
  };
  int64_t v[6];
  for (int i = 0; i < 6; i++) {
    v[i] = field_of(stat, keys[v2][i], 1);
    if (v[i] < 0) return 0;
  }
  int64_t mapped_files = v[4] > v[5] ? v[4] - v[5] : 0;
  int64_t clean = v[0] + v[1] - v[2] - v[3] - mapped_files;
  return clean > 0 ? clean : 0;
}

/* The memory limit of the cgroup at `dir`, or -1 when it sets none. v1 reports no limit as
 * a number near 2^63. */
static int64_t cgroup_limit(const char *dir, bool v2) {
  int64_t limit = number_in(dir, v2 ? "memory.max" : "memory.limit_in_bytes");
  return limit < 0 || limit >= ((int64_t)1 << 62) ? -1 : limit;
}

/* Memory the cgroup at `dir` has left below its limit `limit`, or -1 when unknown. */
static int64_t cgroup_room(const char *dir, bool v2, int64_t limit) {
  int64_t used = number_in(dir, v2 ? "memory.current" : "memory.usage_in_bytes");
  if (used < 0) return -1;
  int64_t cache = reclaimable_cache(dir, v2);
  used = cache < used ? used - cache : 0;
  return limit > used ? limit - used : 0;
}

/* This process's memory cgroup path (from /proc/self/cgroup) into path: v1's memory
 * controller when it has one (a hybrid system keeps memory there), else v2's unified one. */
static bool memory_cgroup(char *path, size_t cap, bool *v2) {
  char text[4096];
  if (read_text("/proc/self/cgroup", text, sizeof text) < 0) return false;
  bool found = false;
  for (char *line = text; *line != '\0';) {
    char *next = strchr(line, '\n');
    if (next != NULL) *next = '\0';
    /* hierarchy-ID:controller-list:path */
    char *controllers = strchr(line, ':');
    char *where = controllers == NULL ? NULL : strchr(controllers + 1, ':');
    if (where != NULL && strlen(where + 1) < cap) {
      *controllers = '\0';
      *where = '\0';
      bool memory = false;
      for (char *c = controllers + 1; *c != '\0';) {
        size_t n = strcspn(c, ",");
        if (n == 6 && strncmp(c, "memory", 6) == 0) memory = true;
        c += n + (c[n] == ',');
      }
      if (memory) {
        strcpy(path, where + 1);
        *v2 = false;
        return true;
      }
      if (strcmp(line, "0") == 0 && controllers[1] == '\0' && !found) {
        strcpy(path, where + 1);
        *v2 = true;
        found = true;
      }
    }
    if (next == NULL) break;
    line = next + 1;
  }
  return found;
}

/* Keeps the least of `*least` (-1: none yet) and `v` (-1: none). */
static void keep_least(int64_t *least, int64_t v) {
  if (v >= 0 && (*least < 0 || v < *least)) *least = v;
}

/* The least room and the least limit (out[0], out[1]) of the memory cgroup and its
 * ancestors, -1 when none sets a limit. A level missing under the mount is skipped: without
 * a cgroup namespace, a container sees its own cgroup's path but has that cgroup mounted as
 * the root. */
static void memory_cgroup_room(int64_t *out) {
  out[0] = out[1] = -1;
  char rel[PATH_MAX];
  bool v2;
  if (!memory_cgroup(rel, sizeof rel, &v2)) return;
  const char *mount = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
  for (;;) {
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s%s", mount, strcmp(rel, "/") == 0 ? "" : rel) <
        (int)sizeof dir) {
      int64_t limit = cgroup_limit(dir, v2);
      if (limit >= 0) {
        keep_least(&out[0], cgroup_room(dir, v2, limit));
        keep_least(&out[1], limit);
      }
    }
    char *slash = strrchr(rel, '/');
    if (slash == NULL || strcmp(rel, "/") == 0) break;
    if (slash == rel) {
      rel[1] = '\0';
    } else {
      *slash = '\0';
    }
  }
}

int32_t shmq_memory_room(int64_t *out) {
  if (out == NULL) return -EINVAL;
  char text[8192];
  out[0] = -1;
  if (read_text("/proc/meminfo", text, sizeof text) > 0) {
    int64_t available = field_of(text, "MemAvailable:", 1024);
    int64_t swap = field_of(text, "SwapFree:", 1024);
    if (available >= 0) out[0] = available + (swap > 0 ? swap : 0);
  }
  memory_cgroup_room(out + 1);
  return 0;
}

int64_t shmq_shm_list(const uint8_t *prefix, uint8_t *buf, uint64_t cap) {
  const char *pre = prefix == NULL ? "" : (const char *)prefix;
  if (pre[0] == '/') pre++;
  size_t pre_len = strlen(pre);
  DIR *dir = opendir(SHM_DIR);
  if (dir == NULL) return -errno;
  uint64_t need = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(dir);
    if (e == NULL) {
      int err = errno;
      closedir(dir);
      if (err != 0) return -err;
      break;
    }
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
    if (strncmp(e->d_name, pre, pre_len) != 0) continue;
    size_t len = strlen(e->d_name) + 1;
    if (buf != NULL && need + len <= cap) memcpy(buf + need, e->d_name, len);
    need += len;
  }
  return (int64_t)need;
}

/*
 * The fds of this process's ends, with the thread that opened each (see shmq_fd_adopt), and
 * their mappings. fd + 1 is stored, so a zeroed entry is free. One spin lock guards both;
 * its holders yield while they wait. Most critical sections are table scans; the longest,
 * shmq_close_orphans, also reads /proc (once per other thread with ends) and unmaps, and
 * runs only when an end opens or closes.
 */
#define MAX_ADOPTED 1024
#define MAX_ADOPTED_MAPS 4096
static struct {
  int32_t fd_plus_one;
  pid_t tid;
  unsigned long long start;
} adopted[MAX_ADOPTED];
static struct {
  int32_t owner_plus_one;
  /* Views its end has open over it, kept by that end (see shmq_map_views). */
  _Atomic int32_t views;
  void *addr;
  uint64_t size;
} adopted_maps[MAX_ADOPTED_MAPS];
static atomic_flag adopted_lock = ATOMIC_FLAG_INIT;

/* Takes the table lock, yielding the CPU while another thread holds it. */
static void lock_adopted(void) {
  while (atomic_flag_test_and_set_explicit(&adopted_lock, memory_order_acquire)) sched_yield();
}

/* Releases the table lock. */
static void unlock_adopted(void) {
  atomic_flag_clear_explicit(&adopted_lock, memory_order_release);
}

/* Index of fd in the table (-1: a free entry), or -1. Call with the table locked. */
static int find_adopted(int32_t fd) {
  if (fd < -1 || fd == INT32_MAX) return -1; /* never stored; and fd + 1 must not overflow */
  for (int i = 0; i < MAX_ADOPTED; i++) {
    if (adopted[i].fd_plus_one == fd + 1) return i;
  }
  return -1;
}

/* Index of a free mapping entry, or -1. Call with the table locked. */
static int free_adopted_map(void) {
  for (int i = 0; i < MAX_ADOPTED_MAPS; i++) {
    if (adopted_maps[i].owner_plus_one == 0) return i;
  }
  return -1;
}

/*
 * Forgets fd and its mappings; when asked to reclaim them too (an ended thread's), unmaps
 * those without views and quarantines those with: the ended thread may have transferred a
 * view's buffer to a thread that lives on, which must never fault. Call with the table
 * locked.
 */
static void drop_adopted(int i, int reclaim) {
  for (int m = 0; m < MAX_ADOPTED_MAPS; m++) {
    if (adopted_maps[m].owner_plus_one != adopted[i].fd_plus_one) continue;
    if (reclaim && atomic_load(&adopted_maps[m].views) > 0) {
      shmq_quarantine(adopted_maps[m].addr, adopted_maps[m].size);
    } else if (reclaim) {
      munmap(adopted_maps[m].addr, (size_t)adopted_maps[m].size);
    }
    adopted_maps[m].owner_plus_one = 0;
  }
  adopted[i].fd_plus_one = 0;
}

int32_t shmq_close(int32_t fd) {
  if (fd < 0) return -EBADF; /* and -1 would name a free table entry */
  lock_adopted();
  int i = find_adopted(fd);
  if (i >= 0) drop_adopted(i, 0);
  unlock_adopted();
  /* Linux releases the fd whatever close returns: an EINTR is no failure to retry (that
   * could close another thread's new fd) nor to report (the caller would keep the mappings
   * it unmaps after a close). */
  if (close(fd) == 0 || errno == EINTR) return 0;
  return -errno;
}

int64_t shmq_fd_size(int32_t fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  return (int64_t)st.st_size;
}

int64_t shmq_fd_allocated(int32_t fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  return (int64_t)st.st_blocks * 512;
}

int32_t shmq_fd_links(int32_t fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  return (int32_t)st.st_nlink;
}

int64_t shmq_fd_age_ms(int32_t fd) {
  struct stat st;
  struct timespec now;
  if (fstat(fd, &st) != 0 || clock_gettime(CLOCK_REALTIME, &now) != 0) return -errno;
  int64_t ms = ((int64_t)now.tv_sec - (int64_t)st.st_ctim.tv_sec) * 1000 +
               ((int64_t)now.tv_nsec - (int64_t)st.st_ctim.tv_nsec) / 1000000;
  return ms > 0 ? ms : 0;
}

int64_t shmq_map(int32_t fd, uint64_t size) {
  if (size == 0 || size > (uint64_t)INT64_MAX) return -EINVAL;
  /* A mapping holds its open file description, and with it the description's locks: mapped
   * through `fd` itself, a process's liveness locks would last as long as its mappings, and
   * the exit sweeper shares (so keeps) this process's mappings after it dies. A second
   * description of the same file carries none. Without /proc, `fd` itself. */
  char path[32];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int own = open(path, O_RDWR | O_CLOEXEC);
  void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, own >= 0 ? own : fd, 0);
  int err = errno;
  if (own >= 0) close(own);
  if (p == MAP_FAILED) return -err;
  return (int64_t)(intptr_t)p;
}

int32_t shmq_unmap(void *addr, uint64_t size) {
  return munmap(addr, (size_t)size) == 0 ? 0 : -errno;
}

int32_t shmq_quarantine(void *addr, uint64_t size) {
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE;
  if (mmap(addr, (size_t)size, PROT_READ | PROT_WRITE, flags, -1, 0) != MAP_FAILED) return 0;
  int err = errno;
  /* Strict overcommit can refuse writable pages. Since Linux 6.12 the old mapping then
   * stays, still writable, and is better kept; before, it may be gone: msync fails with
   * ENOMEM on a hole, which read-only zero pages (never charged) then fill. */
  if (msync(addr, (size_t)size, MS_ASYNC) == 0) return -err;
  if (mmap(addr, (size_t)size, PROT_READ, flags, -1, 0) != MAP_FAILED) return 0;
  return -err;
}

static int populate_supported(void);

int32_t shmq_prefault(void *addr, uint64_t len) {
  if (len == 0) return 0;
  long page_l = sysconf(_SC_PAGESIZE);
  uintptr_t page = page_l > 0 ? (uintptr_t)page_l : 4096u;
  uintptr_t start = (uintptr_t)addr & ~(page - 1);
  uintptr_t end = (uintptr_t)addr + (uintptr_t)len;
  if (end < start) return -EINVAL;
  end = (end + page - 1) & ~(page - 1);
  if (madvise((void *)start, end - start, MADV_POPULATE_WRITE) == 0) return 0;
  int err = errno;
  /* EINVAL from a kernel that knows the advice means the range cannot be populated (read
   * only, say): an error, not a cue to write into it. */
  if (populate_supported() || (err != EINVAL && err != ENOSYS)) return -err;
  /* Old kernel: touch every page with a write that does not change its contents. A volatile
   * atomic OR, because the compiler drops a plain atomic add of 0 altogether. */
  for (uintptr_t p = start; p < end; p += page) {
    atomic_fetch_or_explicit((volatile _Atomic uint8_t *)p, 0, memory_order_relaxed);
  }
  return 0;
}

#define TUNED_MMAP_THRESHOLD (32 << 20)
#define TUNED_TRIM_THRESHOLD (128 << 20)
/* The most the heap keeps free, as a share of the memory there is: the machine's, or a memory
 * cgroup's limit when that is less. In a cgroup of 256 MiB, keeping 128 MiB of freed copies
 * left the program's own buffers too little, and the cgroup killed the process. */
#define KEPT_SHARE_OF_MEMORY 8
/* glibc's own M_MMAP_MAX, which shmq_malloc_from_heap(0) puts back. */
#define GLIBC_MMAP_MAX 65536

/* Guards the three below. Each isolate (the main one, every Worker's) tunes malloc before its
 * first large copy and asks for what its own copies need kept: one that comes later, or has
 * smaller copies, must not undo what another's large ones need. */
static pthread_mutex_t tuning_lock = PTHREAD_MUTEX_INITIALIZER;
/* Whether shmq_tune_malloc tuned malloc: shmq_malloc_keep leaves it alone otherwise. */
static bool malloc_tuned;
/* The trim threshold the tuning set, which shmq_malloc_keep never goes below. */
static uint64_t tuned_threshold;
/* The trim threshold in effect once tuned. */
static uint64_t kept_threshold;

/* The most the heap may keep free: KEPT_SHARE_OF_MEMORY of the machine's memory or of the
 * least memory cgroup limit over this process, within what mallopt takes (an int). */
static uint64_t kept_most(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  uint64_t memory = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page
                                          : (uint64_t)TUNED_TRIM_THRESHOLD * KEPT_SHARE_OF_MEMORY;
  int64_t cgroup[2];
  memory_cgroup_room(cgroup);
  if (cgroup[1] >= 0 && (uint64_t)cgroup[1] < memory) memory = (uint64_t)cgroup[1];
  uint64_t most = memory / KEPT_SHARE_OF_MEMORY;
  return most > INT_MAX ? INT_MAX : most; /* mallopt takes an int: 2 GiB less a byte at most */
}

/* Whether s begins with prefix. */
static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Whether one entry of the initial environment says the user tunes malloc, or may not be
 * using glibc's. glibc up to 2.38 cuts GLIBC_TUNABLES into pieces in place as it parses it,
 * so a tunable after the first shows as a piece of its own. */
static int user_tunes_malloc(const char *entry) {
  return strcmp(entry, "SHMQ_TUNE_MALLOC=0") == 0 ||
         (starts_with(entry, "GLIBC_TUNABLES=") && strstr(entry, "glibc.malloc.") != NULL) ||
         starts_with(entry, "glibc.malloc.") || starts_with(entry, "MALLOC_") ||
         (starts_with(entry, "LD_PRELOAD=") && strcmp(entry, "LD_PRELOAD=") != 0);
}

/* Whether malloc is to be left alone: see shmq_tune_malloc. Reads /proc rather than calling
 * getenv, which races with a Deno.env.set on another thread. An environment that cannot be
 * read leaves malloc alone too. */
static int malloc_left_alone(void) {
  int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  size_t cap = 1 << 16, len = 0;
  char *env = malloc(cap + 1);
  ssize_t got = 0;
  while (env != NULL) {
    got = read(fd, env + len, cap - len);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    len += (size_t)got;
    if (len < cap) continue;
    char *grown = realloc(env, 2 * cap + 1);
    if (grown == NULL) free(env);
    env = grown;
    cap *= 2;
  }
  close(fd);
  if (env == NULL || got < 0) {
    free(env);
    return 1;
  }
  env[len] = 0; /* entries are NUL-separated: the last one ends here too */
  int found = 0;
  for (char *entry = env; entry < env + len && !found; entry += strlen(entry) + 1) {
    found = user_tunes_malloc(entry);
  }
  free(env);
  return found;
}

/* shmq_tune_malloc's work, under tuning_lock: tunes malloc unless it is tuned already. */
static bool tune_malloc_once(void) {
  if (malloc_tuned) return true;
  if (malloc_left_alone()) return false;
  /* Refused (a glibc.malloc.hugetlb tunable lowers the ceiling): nothing was changed. */
  if (mallopt(M_MMAP_THRESHOLD, TUNED_MMAP_THRESHOLD) != 1) return false;
  /* Either call stops glibc sliding both thresholds, so the mmap one goes first: the other way
   * round, 1 MiB buffers would come from mmap meanwhile. */
  uint64_t most = kept_most();
  tuned_threshold = most < TUNED_TRIM_THRESHOLD ? most : TUNED_TRIM_THRESHOLD;
  (void)mallopt(M_TRIM_THRESHOLD, (int)tuned_threshold);
  kept_threshold = tuned_threshold;
  malloc_tuned = true;
  return true;
}

int64_t shmq_tune_malloc(void) {
  pthread_mutex_lock(&tuning_lock);
  bool tuned = tune_malloc_once();
  pthread_mutex_unlock(&tuning_lock);
  return tuned ? TUNED_MMAP_THRESHOLD : 0;
}

int32_t shmq_malloc_from_heap(int32_t on) {
  pthread_mutex_lock(&tuning_lock);
  bool tuned = malloc_tuned;
  /* glibc reads the count at each allocation, without a lock: another thread's allocation
   * meanwhile sees either value, and both serve it. */
  if (tuned) (void)mallopt(M_MMAP_MAX, on ? 0 : GLIBC_MMAP_MAX);
  pthread_mutex_unlock(&tuning_lock);
  return tuned ? 1 : 0;
}

int64_t shmq_malloc_keep(uint64_t bytes) {
  uint64_t most = kept_most();
  uint64_t keep = bytes < most ? bytes : most;
  pthread_mutex_lock(&tuning_lock);
  if (!malloc_tuned) {
    keep = 0;
  } else {
    if (keep < tuned_threshold) keep = tuned_threshold;
    if (keep > kept_threshold && mallopt(M_TRIM_THRESHOLD, (int)keep) == 1) kept_threshold = keep;
    keep = kept_threshold;
  }
  pthread_mutex_unlock(&tuning_lock);
  return (int64_t)keep;
}

int32_t shmq_malloc_trim(void) {
  return malloc_trim(0) == 1 ? 1 : 0;
}

#if defined(__x86_64__)
/* One 64-byte line from s to d, d 64-aligned, the store bypassing the caches. */
static inline void stream_line(char *d, const char *s) {
  __m128i a = _mm_loadu_si128((const __m128i *)s);
  __m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
  __m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
  __m128i e = _mm_loadu_si128((const __m128i *)(s + 48));
  _mm_stream_si128((__m128i *)d, a);
  _mm_stream_si128((__m128i *)(d + 16), b);
  _mm_stream_si128((__m128i *)(d + 32), c);
  _mm_stream_si128((__m128i *)(d + 48), e);
}

#define STRIDE 4096
#define STRIDES 4
/* How far ahead of the line being copied its stride's loads are prefetched. */
#define PREFETCH_AHEAD 256
#endif

void shmq_copy_streaming(void *dst, const void *src, uint64_t len) {
  /* Ranges that overlap (an array inside the region it is encoded into) are copied as
   * TypedArray.prototype.set, which this stands in for, copies them: the strides below read
   * source bytes after storing over them. */
  if ((uintptr_t)dst - (uintptr_t)src < len || (uintptr_t)src - (uintptr_t)dst < len) {
    memmove(dst, src, len);
    return;
  }
#if defined(__x86_64__)
  char *d = dst;
  const char *s = src;
  size_t head = (64 - ((uintptr_t)d & 63)) & 63;
  if (head > len) head = len;
  memcpy(d, s, head);
  d += head, s += head, len -= head;
  /* Four strides at a time, a line of each in turn: four streams the prefetchers follow,
   * and write-combining buffers that fill whole lines. */
  for (; len >= STRIDE * STRIDES; d += STRIDE * STRIDES, s += STRIDE * STRIDES,
                                  len -= STRIDE * STRIDES) {
    for (size_t line = 0; line < STRIDE; line += 64) {
      for (size_t k = 0; k < STRIDES; k++) {
        const char *from = s + k * STRIDE + line;
        _mm_prefetch(from + PREFETCH_AHEAD, _MM_HINT_T0);
        stream_line(d + k * STRIDE + line, from);
      }
    }
  }
  for (; len >= 64; d += 64, s += 64, len -= 64) stream_line(d, s);
  /* Streaming stores are weakly ordered: fence them before the caller publishes the copy. */
  _mm_sfence();
  memcpy(d, s, len);
#else
  memcpy(dst, src, len);
#endif
}

#define HUGE_PAGE ((uintptr_t)2 << 20)

/* The whole 2 MiB pages inside [addr, addr + len), as [*lo, *hi); 0 when there are none. */
static int huge_interior(void *addr, uint64_t len, uintptr_t *lo, uintptr_t *hi) {
  *lo = ((uintptr_t)addr + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
  *hi = ((uintptr_t)addr + (uintptr_t)len) & ~(HUGE_PAGE - 1);
  return *hi > *lo;
}

int32_t shmq_prepare_copy_target(void *addr, uint64_t len) {
  uintptr_t lo, hi;
  /* Advice only: EINVAL where THP is compiled out changes nothing. */
  if (huge_interior(addr, len, &lo, &hi)) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
  return shmq_prefault(addr, len);
}

/*
 * Helpers of shmq_prefault_start: a fixed few. A slot's claim holds the token of its
 * current helper (nonzero, with a generation, so a stale id misses), and a join swaps it
 * for JOINING first, so only one caller ever joins a thread.
 */
#define MAX_PREFAULTERS 8
#define JOINING (-1)
/* Claimed, fields being written: no one may join or reclaim it yet. */
#define STARTING (-2)
static struct {
  pthread_t thread;
  uintptr_t lo, hi;
  _Atomic int stop;
  _Atomic uint64_t done; /* bytes pre-faulted so far */
  /* The thread that started it: a Worker terminated mid-copy never joins (V8 skips its
   * finally), and once that thread has ended its slot is reclaimed (see reclaim_orphans). */
  pid_t starter;
  unsigned long long starter_start;
} prefaulters[MAX_PREFAULTERS];
static _Atomic int32_t prefaulter_claim[MAX_PREFAULTERS];
static _Atomic uint32_t prefaulter_generation;

/* A helper thread: populates its slot's range in 2 MiB steps from the end down (the copy
 * runs from the start up, so the two meet), until done or told to stop. */
static void *prefault_backwards(void *arg) {
  int slot = (int)(intptr_t)arg;
  uintptr_t lo = prefaulters[slot].lo, end = prefaulters[slot].hi;
  while (end > lo && !atomic_load_explicit(&prefaulters[slot].stop, memory_order_relaxed)) {
    uintptr_t start = end - lo > HUGE_PAGE ? end - HUGE_PAGE : lo;
    if (madvise((void *)start, end - start, MADV_POPULATE_WRITE) != 0) break;
    atomic_fetch_add_explicit(&prefaulters[slot].done, end - start, memory_order_relaxed);
    end = start;
  }
  return NULL;
}

/* Whether this kernel knows MADV_POPULATE_WRITE (5.14+): the advice is checked before the
 * length, so an empty range asks without touching anything. */
static int populate_supported(void) {
  static _Atomic int known; /* 0 unknown, 1 yes, 2 no */
  int k = atomic_load_explicit(&known, memory_order_relaxed);
  if (k == 0) {
    static char probe[1] __attribute__((aligned(65536))); /* page aligned on any page size */
    k = madvise(probe, 0, MADV_POPULATE_WRITE) == 0 ? 1 : 2;
    atomic_store_explicit(&known, k, memory_order_relaxed);
  }
  return k == 1;
}

static int thread_start(pid_t pid, pid_t tid, unsigned long long *start, char *state);
static int thread_ended(pid_t pid, pid_t tid, unsigned long long start);
static int proc_is_ours(void);

/* Joins and frees the helpers whose starting thread has ended without joining them; returns
 * how many. Only when every slot is taken: the check reads /proc. */
static int reclaim_orphans(void) {
  int freed = 0;
  for (int slot = 0; slot < MAX_PREFAULTERS; slot++) {
    int32_t token = atomic_load_explicit(&prefaulter_claim[slot], memory_order_acquire);
    if (token <= 0 || prefaulters[slot].starter == 0) continue;
    if (thread_ended(getpid(), prefaulters[slot].starter, prefaulters[slot].starter_start) != 1) {
      continue;
    }
    if (!atomic_compare_exchange_strong(&prefaulter_claim[slot], &token, JOINING)) continue;
    atomic_store(&prefaulters[slot].stop, 1);
    (void)pthread_join(prefaulters[slot].thread, NULL);
    prefaulters[slot].starter = 0;
    atomic_store(&prefaulter_claim[slot], 0);
    freed++;
  }
  return freed;
}

/* Claims a free helper slot (as STARTING) and picks its new token, which the caller
 * publishes once the slot's fields are written; -1 when all are taken. */
static int claim_slot(int32_t *token_out) {
  for (int slot = 0; slot < MAX_PREFAULTERS; slot++) {
    int32_t expected = 0;
    if (atomic_compare_exchange_strong(&prefaulter_claim[slot], &expected, STARTING)) {
      uint32_t gen = atomic_fetch_add(&prefaulter_generation, 1) + 1;
      int32_t token = (int32_t)(((gen & 0x0fffffffu) << 3) | (uint32_t)slot);
      if (token <= 0) token = MAX_PREFAULTERS + slot; /* never 0, JOINING or STARTING */
      *token_out = token;
      return slot;
    }
  }
  return -1;
}

int32_t shmq_prefault_start(void *addr, uint64_t len) {
  uintptr_t lo, hi;
  if (!huge_interior(addr, len, &lo, &hi)) return -EINVAL;
  if (!populate_supported()) return -ENOSYS;
  int32_t token = 0;
  int slot = claim_slot(&token);
  if (slot < 0 && reclaim_orphans() > 0) slot = claim_slot(&token);
  if (slot < 0) return -EBUSY;
  pid_t self = (pid_t)syscall(SYS_gettid);
  unsigned long long started = 0;
  /* Without a /proc of its own the starter cannot be judged later: record none, so the
   * slot is never reclaimed under a live starter. */
  prefaulters[slot].starter =
    proc_is_ours() && thread_start(getpid(), self, &started, NULL) == 1 ? self : 0;
  prefaulters[slot].starter_start = started;
  (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
  prefaulters[slot].lo = lo;
  prefaulters[slot].hi = hi;
  atomic_store(&prefaulters[slot].stop, 0);
  atomic_store(&prefaulters[slot].done, 0);
  int rc =
    pthread_create(&prefaulters[slot].thread, NULL, prefault_backwards, (void *)(intptr_t)slot);
  if (rc != 0) {
    atomic_store(&prefaulter_claim[slot], 0);
    return -rc;
  }
  atomic_store_explicit(&prefaulter_claim[slot], token, memory_order_release);
  return token;
}

int64_t shmq_prefault_join(int32_t id) {
  if (id <= 0) return -EINVAL;
  int slot = id % MAX_PREFAULTERS;
  int32_t expected = id;
  if (!atomic_compare_exchange_strong(&prefaulter_claim[slot], &expected, JOINING)) return -EINVAL;
  atomic_store(&prefaulters[slot].stop, 1);
  int rc = pthread_join(prefaulters[slot].thread, NULL);
  int64_t done = (int64_t)atomic_load(&prefaulters[slot].done);
  prefaulters[slot].starter = 0;
  atomic_store(&prefaulter_claim[slot], 0);
  return rc != 0 ? -rc : done;
}

int32_t shmq_futex_wait(void *addr, uint32_t expected, int64_t timeout_ns) {
  struct timespec ts;
  struct timespec *tsp = NULL;
  if (timeout_ns >= 0) {
    ts.tv_sec = (time_t)(timeout_ns / 1000000000);
    ts.tv_nsec = (long)(timeout_ns % 1000000000);
    tsp = &ts;
  }
  /* Relative timeout; no FUTEX_PRIVATE_FLAG, so it works across processes. */
  long rc = syscall(SYS_futex, addr, FUTEX_WAIT, expected, tsp, NULL, 0);
  if (rc == 0) return 0;
  switch (errno) {
    case EINTR:
      return 0;
    case ETIMEDOUT:
      return 1;
    case EAGAIN:
      return 2;
    default:
      return -errno;
  }
}

/* struct futex_waitv, FUTEX2_SIZE_U32 and the syscall number (the same on every
 * architecture), declared here because older kernel headers lack them. */
struct shmq_futex_waitv {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
};
#define SHMQ_FUTEX2_SIZE_U32 0x02u
#define SHMQ_SYS_FUTEX_WAITV 449

int32_t shmq_futex_waitv(const uint64_t *words, const uint32_t *expected, uint32_t count,
                         int64_t timeout_ns) {
  if (count == 0 || count > SHMQ_WAITV_MAX) return -EINVAL;
  struct shmq_futex_waitv waiters[SHMQ_WAITV_MAX];
  for (uint32_t i = 0; i < count; i++) {
    /* No FUTEX2_PRIVATE: the words are shared with other processes. */
    waiters[i] = (struct shmq_futex_waitv){
        .val = expected[i], .uaddr = words[i], .flags = SHMQ_FUTEX2_SIZE_U32, .reserved = 0};
  }
  struct timespec deadline;
  struct timespec *deadline_p = NULL;
  if (timeout_ns >= 0) {
    /* futex_waitv takes an absolute deadline only. */
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(timeout_ns / 1000000000);
    deadline.tv_nsec += (long)(timeout_ns % 1000000000);
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000;
    }
    deadline_p = &deadline;
  }
  long rc = syscall(SHMQ_SYS_FUTEX_WAITV, waiters, count, 0, deadline_p, CLOCK_MONOTONIC);
  return rc >= 0 ? (int32_t)rc : -errno;
}

int32_t shmq_futex_wake(void *addr, int32_t count) {
  if (count < 0) return -EINVAL;
  long rc = syscall(SYS_futex, addr, FUTEX_WAKE, count, NULL, NULL, 0);
  return rc < 0 ? -errno : (int32_t)rc;
}

uint64_t shmq_atomic_load_u64(void *addr) {
  return atomic_load_explicit((_Atomic uint64_t *)addr, memory_order_acquire);
}

void shmq_atomic_store_u64(void *addr, uint64_t v) {
  atomic_store_explicit((_Atomic uint64_t *)addr, v, memory_order_release);
}

uint64_t shmq_atomic_add_u64(void *addr, uint64_t delta) {
  return atomic_fetch_add_explicit((_Atomic uint64_t *)addr, delta, memory_order_acq_rel);
}

int32_t shmq_atomic_cas_u64(void *addr, uint64_t expected, uint64_t desired) {
  return atomic_compare_exchange_strong_explicit((_Atomic uint64_t *)addr, &expected, desired,
                                                 memory_order_acq_rel, memory_order_acquire)
             ? 1
             : 0;
}

/* Fills fl to lock one byte at offset with an OFD lock of type. */
static void byte_lock(struct flock *fl, short type, uint64_t offset) {
  memset(fl, 0, sizeof(*fl));
  fl->l_type = type;
  fl->l_whence = SEEK_SET;
  fl->l_start = (off_t)offset;
  fl->l_len = 1;
  fl->l_pid = 0; /* required by F_OFD_* */
}

int32_t shmq_lock_byte(int32_t fd, uint64_t offset, int32_t mode) {
  short type;
  switch (mode) {
    case 0:
      type = F_UNLCK;
      break;
    case 1:
      type = F_RDLCK;
      break;
    case 2:
      type = F_WRLCK;
      break;
    default:
      return -EINVAL;
  }
  if (offset > (uint64_t)INT64_MAX) return -EINVAL;
  struct flock fl;
  byte_lock(&fl, type, offset);
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return 0;
  int err = errno;
  return (err == EACCES || err == EAGAIN) ? -EAGAIN : -err;
}

int32_t shmq_lock_probe(int32_t fd, uint64_t offset) {
  if (offset > (uint64_t)INT64_MAX) return -EINVAL;
  struct flock fl;
  byte_lock(&fl, F_WRLCK, offset);
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return -errno;
  return fl.l_type == F_UNLCK ? 0 : 1;
}

int32_t shmq_pid_alive(int32_t pid) {
  if (pid <= 0) return -EINVAL;
  if (kill((pid_t)pid, 0) == 0) return 1;
  if (errno == EPERM) return 1;
  if (errno == ESRCH) return 0;
  return -errno;
}

/* Not in every libc's headers; the generic syscall table gives it one number everywhere. */
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

int32_t shmq_pidfd_open(int32_t pid) {
  if (pid <= 0) return -EINVAL;
  long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
  return fd < 0 ? -errno : (int32_t)fd;
}

static int64_t monotonic_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int32_t shmq_pidfd_wait_exit(int32_t pidfd, uint32_t timeout_ms) {
  if (pidfd < 0) return -EBADF; /* poll would skip it and time out */
  int64_t deadline = monotonic_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - monotonic_ms();
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int rc = poll(&p, 1, left > 0 ? (int)(left < INT_MAX ? left : INT_MAX) : 0);
    if (rc > 0) return (p.revents & POLLNVAL) ? -EBADF : 1;
    if (rc == 0) return 0;
    if (errno != EINTR) return -errno;
  }
}

/* The parent watch (shmq_watch_parent): one thread per process at most, which stopping lets
 * end on its own rather than being joined, so a stop never blocks the caller. */
static _Atomic int32_t watched_parent; /* 0: not watching */
static _Atomic uint32_t watch_grace_ms;
static atomic_bool watcher_running;

static void sleep_ms(uint32_t ms) {
  struct timespec t = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

static void *watch_parent_loop(void *arg) {
  (void)arg;
  for (;;) {
    sleep_ms(100);
    int32_t parent = atomic_load(&watched_parent);
    if (parent == 0) {
      /* Stopped: end, unless a watch started again in between (it found us still running). */
      atomic_store(&watcher_running, false);
      if (atomic_load(&watched_parent) == 0 || atomic_exchange(&watcher_running, true)) {
        return NULL;
      }
      continue;
    }
    if (getppid() != (pid_t)parent) {
      kill(getpid(), SIGTERM);
      sleep_ms(atomic_load(&watch_grace_ms));
      _exit(0);
    }
  }
}

int32_t shmq_watch_parent(int32_t parent, uint32_t grace_ms) {
  if (parent < 0) return -EINVAL;
  atomic_store(&watch_grace_ms, grace_ms);
  atomic_store(&watched_parent, parent);
  if (parent == 0) return 0;
  if (getppid() != (pid_t)parent) return -ESRCH;
  if (atomic_exchange(&watcher_running, true)) return 0;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* No signal of the process is handled on this thread: Deno's handlers run elsewhere. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  int rc = pthread_create(&thread, &attr, watch_parent_loop, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    atomic_store(&watcher_running, false);
    return -rc;
  }
  return 0;
}

/*
 * Start time (field 22, clock ticks since boot) of thread tid of process pid, and its state
 * (field 3) into `state` unless NULL: 1 found, 0 when the thread is gone, -errno when /proc
 * cannot tell. Fields are counted from the last ')', since the command name (field 2) may
 * hold spaces and parentheses.
 */
static int thread_start(pid_t pid, pid_t tid, unsigned long long *start, char *state) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ESRCH ? 0 : -errno;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int err = errno;
  close(fd);
  if (n < 0) return err == ESRCH ? 0 : -err;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (p == NULL || p[1] != ' ' || p[2] == '\0') return -EINVAL;
  if (state != NULL) *state = p[2];
  /* After ')' come field 3 (state) ... field 22 (starttime): 20 spaces to skip. */
  for (int field = 3; field <= 22; field++) {
    p = strchr(p + 1, ' ');
    if (p == NULL) return -EINVAL;
  }
  *start = strtoull(p + 1, NULL, 10);
  return 1;
}

/*
 * Inodes of the calling process's pid and time namespaces (0 for a kernel without time
 * namespaces). The pid namespace is 0, unknown, when the /proc mounted here belongs to
 * another one: its numbers would name other threads. Start times are shifted into the
 * reader's time namespace, so they compare only within one.
 */
static void namespaces(unsigned long long *pid_ns, unsigned long long *time_ns) {
  /* Looked up once: a process's own namespaces never change (setns and unshare of these
   * two apply to its children), and every liveness probe would otherwise pay 3 syscalls. */
  static _Atomic unsigned long long cached_pid_ns, cached_time_ns;
  static _Atomic int cached;
  if (atomic_load_explicit(&cached, memory_order_acquire)) {
    *pid_ns = atomic_load_explicit(&cached_pid_ns, memory_order_relaxed);
    *time_ns = atomic_load_explicit(&cached_time_ns, memory_order_relaxed);
    return;
  }
  struct stat st;
  char self[32];
  ssize_t n = readlink("/proc/self", self, sizeof self - 1);
  *pid_ns = 0;
  *time_ns = stat("/proc/self/ns/time", &st) == 0 ? (unsigned long long)st.st_ino : 0;
  if (n > 0) {
    self[n] = 0;
    if (strtol(self, NULL, 10) == (long)getpid() && stat("/proc/self/ns/pid", &st) == 0) {
      *pid_ns = (unsigned long long)st.st_ino;
    }
  }
  /* Racing threads compute the same values. */
  atomic_store_explicit(&cached_pid_ns, *pid_ns, memory_order_relaxed);
  atomic_store_explicit(&cached_time_ns, *time_ns, memory_order_relaxed);
  atomic_store_explicit(&cached, 1, memory_order_release);
}

/* Whether /proc shows this process's own pid namespace: else its pids name other
 * processes' threads, and nothing may be judged from them. */
static int proc_is_ours(void) {
  unsigned long long pid_ns, time_ns;
  namespaces(&pid_ns, &time_ns);
  return pid_ns != 0;
}

/*
 * 0 when thread tid of process pid, started at `start`, has ended (no such thread, or a
 * later one reusing its tid); 2 when it is stopped, by a signal or at a tracer's stop (state
 * T or t); 1 when it runs otherwise; -errno when /proc cannot tell.
 */
static int thread_status(pid_t pid, pid_t tid, unsigned long long start) {
  /* Cheap first, and needs no fd: no such thread in that process at all. */
  if (syscall(SYS_tgkill, pid, tid, 0) != 0 && errno == ESRCH) return 0;
  unsigned long long now = 0;
  char state = 0;
  int rc = thread_start(pid, tid, &now, &state);
  if (rc <= 0) return rc;
  if (now != start) return 0;
  return state == 'T' || state == 't' ? 2 : 1;
}

/* 1 when thread tid of process pid, started at `start`, has ended, 0 while it runs (stopped
 * or not), -errno when that cannot be told. */
static int thread_ended(pid_t pid, pid_t tid, unsigned long long start) {
  int status = thread_status(pid, tid, start);
  return status < 0 ? status : status == 0;
}

int32_t shmq_thread_identity(double *out) {
  pid_t tid = (pid_t)syscall(SYS_gettid);
  unsigned long long start = 0, pid_ns, time_ns;
  namespaces(&pid_ns, &time_ns);
  int rc = thread_start(getpid(), tid, &start, NULL);
  if (rc <= 0) return rc == 0 ? -ENOENT : rc;
  if (pid_ns == 0) return -ENOENT;
  out[0] = (double)tid;
  out[1] = (double)start;
  out[2] = (double)pid_ns;
  out[3] = (double)time_ns;
  return 0;
}

int32_t shmq_thread_alive(int32_t pid, int32_t tid, double start, double pid_ns,
                          double time_ns) {
  unsigned long long my_pid_ns, my_time_ns;
  namespaces(&my_pid_ns, &my_time_ns);
  if (pid <= 0 || tid <= 0 || my_pid_ns == 0) return 1;
  if (pid_ns != (double)my_pid_ns || time_ns != (double)my_time_ns) return 1;
  if (!(start >= 0 && start < 0x1p64)) return 1; /* read from shared memory: cannot tell */
  int status = thread_status(pid, tid, (unsigned long long)start);
  return status < 0 ? 1 : status;
}

double shmq_process_token(void) {
  static _Atomic uint64_t token;
  uint64_t t = atomic_load_explicit(&token, memory_order_acquire);
  if (t != 0) return (double)t;
  uint64_t r = 0;
  if (syscall(SYS_getrandom, &r, sizeof r, 0) != (long)sizeof r) {
    /* No getrandom (pre-3.17 kernel): the clock and pid still differ between processes. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32);
  }
  r &= ((uint64_t)1 << 52) - 1;
  if (r == 0) r = 1;
  uint64_t expected = 0;
  /* Two threads drawing at once agree on the first value stored. */
  if (!atomic_compare_exchange_strong(&token, &expected, r)) r = expected;
  return (double)r;
}

int32_t shmq_fd_adopt(int32_t fd, void *addr, uint64_t size) {
  /* A closed fd recorded here would be closed again at the thread's end, by then maybe
   * another file's. */
  if (fd < 0 || fd == INT32_MAX || fcntl(fd, F_GETFD) < 0) return -EBADF;
  /* A foreign /proc would record another process's thread, whose end would then close a
   * live end's fd and unmap its memory. */
  if (!proc_is_ours()) return -ENOENT;
  pid_t tid = (pid_t)syscall(SYS_gettid);
  unsigned long long start = 0;
  int rc = thread_start(getpid(), tid, &start, NULL);
  if (rc <= 0) return rc == 0 ? -ESRCH : rc;
  lock_adopted();
  int i = find_adopted(fd);
  if (i >= 0) drop_adopted(i, 0); /* a stale record: fds are only adopted while open */
  i = find_adopted(-1); /* a free entry */
  int m = addr != NULL ? free_adopted_map() : -1;
  if (i >= 0 && (addr == NULL || m >= 0)) {
    adopted[i].fd_plus_one = fd + 1;
    adopted[i].tid = tid;
    adopted[i].start = start;
    if (m >= 0) {
      adopted_maps[m].owner_plus_one = fd + 1;
      atomic_store(&adopted_maps[m].views, 0);
      adopted_maps[m].addr = addr;
      adopted_maps[m].size = size;
    }
  } else {
    i = -1;
  }
  unlock_adopted();
  return i >= 0 ? 0 : -ENOSPC;
}

int32_t shmq_map_adopt(int32_t owner_fd, void *addr, uint64_t size) {
  if (owner_fd < 0 || owner_fd == INT32_MAX) return -EBADF;
  if (addr == NULL) return -EINVAL;
  int rc = -ENOENT;
  lock_adopted();
  if (find_adopted(owner_fd) >= 0) {
    int m = free_adopted_map();
    rc = m < 0 ? -ENOSPC : 0;
    if (m >= 0) {
      adopted_maps[m].owner_plus_one = owner_fd + 1;
      atomic_store(&adopted_maps[m].views, 0);
      adopted_maps[m].addr = addr;
      adopted_maps[m].size = size;
    }
  }
  unlock_adopted();
  return rc;
}

int32_t shmq_map_forget(void *addr) {
  int found = 0;
  lock_adopted();
  for (int m = 0; m < MAX_ADOPTED_MAPS && !found; m++) {
    if (adopted_maps[m].owner_plus_one != 0 && adopted_maps[m].addr == addr) {
      adopted_maps[m].owner_plus_one = 0;
      found = 1;
    }
  }
  unlock_adopted();
  return found;
}

_Atomic int32_t *shmq_map_views(void *addr) {
  _Atomic int32_t *views = NULL;
  lock_adopted();
  for (int m = 0; m < MAX_ADOPTED_MAPS && views == NULL; m++) {
    if (adopted_maps[m].owner_plus_one != 0 && adopted_maps[m].addr == addr) {
      views = &adopted_maps[m].views;
    }
  }
  unlock_adopted();
  return views;
}

/* How many threads' verdicts one shmq_close_orphans call remembers. */
#define ORPHAN_VERDICTS 32

int32_t shmq_close_orphans(int32_t same_as) {
  struct stat ref, st;
  int any_file = same_as == -1;
  if (!any_file && fstat(same_as, &ref) != 0) return -errno;
  /* The calling thread runs: its own entries are skipped without reading /proc (so is an
   * ended thread's whose tid it reuses: another thread's call reclaims that). */
  pid_t self = (pid_t)syscall(SYS_gettid);
  /* Each other thread is judged once per call, not once per end it has open: a /proc read
   * each, under the table lock, which every end's open and close take. */
  struct {
    pid_t tid;
    unsigned long long start;
    int ended;
  } verdicts[ORPHAN_VERDICTS];
  int judged = 0;
  int32_t closed = 0;
  lock_adopted();
  for (int i = 0; i < MAX_ADOPTED; i++) {
    int32_t fd = adopted[i].fd_plus_one - 1;
    if (fd < 0 || adopted[i].tid == self) continue;
    if (!any_file &&
        (fstat(fd, &st) != 0 || st.st_dev != ref.st_dev || st.st_ino != ref.st_ino)) {
      continue;
    }
    int ended = -1;
    for (int v = 0; v < judged && ended < 0; v++) {
      if (verdicts[v].tid == adopted[i].tid && verdicts[v].start == adopted[i].start) {
        ended = verdicts[v].ended;
      }
    }
    if (ended < 0) {
      ended = thread_ended(getpid(), adopted[i].tid, adopted[i].start) == 1;
      if (judged < ORPHAN_VERDICTS) {
        verdicts[judged].tid = adopted[i].tid;
        verdicts[judged].start = adopted[i].start;
        verdicts[judged++].ended = ended;
      }
    }
    if (!ended) continue;
    /* Nothing of the ended thread uses them: its isolate went with it. */
    drop_adopted(i, 1);
    if (close(fd) == 0) closed++;
  }
  unlock_adopted();
  return closed;
}

/*
 * The exit sweeper. Queues whose last end dies with its process (SIGKILL, a crash, an
 * uncaught error, which skips every exit handler) would stay in /dev/shm until some later
 * sweep. So a process that opens queues starts one small process of its own, cloned with
 * CLONE_VM: it shares this process's memory, so it costs no copy and reads the table of
 * queues below directly. It waits on a pidfd of this process; once every thread is gone
 * (all fds closed, so every lock released), it sweeps the queues in the table that no live
 * end holds, as shmq's own sweep would, and exits, which frees the memory it shared.
 *
 * It runs on the thread pointer of the thread that started it: beside this process's
 * threads, with their errno, and, once that thread has ended (a Worker's), over TLS that may
 * be unmapped. So it makes raw syscalls only, never libc calls that may touch TLS (errno,
 * cancellation, the locale), touches only its own stack and the table, and blocks every
 * signal, so none of this process's handlers ever runs on it.
 */
#define SWEPT_MAX 4096
#define SWEPT_NAME 64
#define SWEEPER_STACK (64 * 1024)
#define SHM_QUEUE_PREFIX "shmq-"
#define QUEUE_ID_HEX 32

struct swept_queue {
  _Atomic uint32_t uses; /* ends of this process open in the queue; 0: a free entry */
  uint32_t alive_byte;   /* the byte every live end holds a shared lock on */
  char name[SWEPT_NAME]; /* "/shmq-…", complete before uses turns nonzero */
};
static struct swept_queue swept[SWEPT_MAX];
/* Guards the table's writers and the sweeper's start; the sweeper itself takes no lock. */
static pthread_mutex_t swept_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int32_t sweeper; /* 0: none; > 0: its pid; < 0: why it can never start */
static void *sweeper_stack;     /* the running sweeper's, unmapped once it is reaped */
static struct {
  int pidfd;  /* of this process, the sweeper's copy of which it waits on */
  int max_fd; /* fds to close where close_range is missing (Linux before 5.9) */
} sweeper_args;

static long raw_syscall(long nr, long a, long b, long c, long d, long e) {
#if defined(__x86_64__)
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                   : "rcx", "r11", "memory");
  return ret;
#elif defined(__aarch64__)
  register long x8 __asm__("x8") = nr;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
  return x0;
#else
#error "shmq supports x86_64 and aarch64 only"
#endif
}

static int raw_open(int dir, const char *path, int flags) {
  return (int)raw_syscall(SYS_openat, dir, (long)path, flags | O_CLOEXEC, 0, 0);
}

static void raw_close(int fd) { raw_syscall(SYS_close, fd, 0, 0, 0, 0); }

/* Reads hex digits at *p, moving *p past them (strtoull reads the locale, from TLS). */
static uintptr_t parse_hex(const char **p) {
  uintptr_t v = 0;
  for (;; (*p)++) {
    char c = **p;
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return v;
    v = v * 16 + (uintptr_t)digit;
  }
}

/* Past a queue's name ("shmq-" and 32 lowercase hex digits) at the start of `s`, or NULL. */
static const char *past_queue_name(const char *s) {
  size_t pre = sizeof SHM_QUEUE_PREFIX - 1;
  if (strncmp(s, SHM_QUEUE_PREFIX, pre) != 0) return NULL;
  for (size_t i = pre; i < pre + QUEUE_ID_HEX; i++) {
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return NULL;
  }
  return s + pre + QUEUE_ID_HEX;
}

/* Whether a line of /proc/self/maps is a shared mapping of a queue's segment: its main one
 * (maybe " (deleted)") or an extension ("-x…"). */
static bool maps_queue_segment(const char *line) {
  const char *perms = strchr(line, ' ');
  const char *path = strchr(line, '/');
  if (perms == NULL || perms[4] != 's' || path == NULL) return false;
  if (strncmp(path, SHM_DIR, SHM_DIR_LEN) != 0) return false;
  const char *rest = past_queue_name(path + SHM_DIR_LEN);
  return rest != NULL && (*rest == '\0' || *rest == ' ' || *rest == '-');
}

/* Unmaps every mapping of a queue's segment in this (shared) memory, so their memory goes
 * back before the sweep rather than when the sweeper exits, and locks a mapping might hold
 * (shmq_map without /proc) go. Ranges are gathered first and unmapped after: the maps file
 * shifts under a reader as mappings go. */
static void unmap_segments(void) {
  for (int round = 0; round < 64; round++) {
    uintptr_t ranges[256][2];
    int found = 0;
    bool more = false;
    int fd = raw_open(AT_FDCWD, "/proc/self/maps", O_RDONLY);
    if (fd < 0) return;
    char buf[8192];
    size_t have = 0;
    for (;;) {
      long n = raw_syscall(SYS_read, fd, (long)(buf + have), (long)(sizeof buf - 1 - have), 0, 0);
      if (n <= 0) break;
      have += (size_t)n;
      buf[have] = '\0';
      char *line = buf;
      char *end;
      while ((end = strchr(line, '\n')) != NULL) {
        *end = '\0';
        if (maps_queue_segment(line)) { /* "start-end perms offset dev inode path" */
          if (found < 256) {
            const char *at = line;
            ranges[found][0] = parse_hex(&at);
            at++;
            ranges[found][1] = parse_hex(&at);
            found++;
          } else {
            more = true;
          }
        }
        line = end + 1;
      }
      have = (size_t)(buf + have - line);
      memmove(buf, line, have);
      if (have == sizeof buf - 1) have = 0; /* a line longer than the buffer: no path of ours */
    }
    raw_close(fd);
    for (int i = 0; i < found; i++) {
      raw_syscall(SYS_munmap, (long)ranges[i][0], (long)(ranges[i][1] - ranges[i][0]), 0, 0, 0);
    }
    if (!more) return;
  }
}

/* Whether `name` in directory `dir` is this user's segment (made_as_segment, by raw
 * syscalls). */
static bool own_segment(int dir, const char *name) {
  struct stat st;
  if (raw_syscall(SYS_newfstatat, dir, (long)name, (long)&st, AT_SYMLINK_NOFOLLOW, 0) != 0) {
    return false;
  }
  return made_as_segment(&st, (uid_t)raw_syscall(SYS_geteuid, 0, 0, 0, 0, 0));
}

/* Removes queue `queue` ("shmq-…", no slash) from the shm directory `dir` if no live end
 * holds it: its extensions ("<queue>-…"), then its name, as the sweep does. */
static void sweep_queue(int dir, const char *queue, uint32_t alive_byte) {
  if (!own_segment(dir, queue)) return;
  int fd = raw_open(dir, queue, O_RDWR | O_NOFOLLOW);
  if (fd < 0) return;
  struct flock fl;
  byte_lock(&fl, F_WRLCK, alive_byte);
  /* Every live end holds a shared lock on this byte: winning it exclusively proves none is
   * left, and keeps late openers out until the names are gone. */
  if (raw_syscall(SYS_fcntl, fd, F_OFD_SETLK, (long)&fl, 0, 0) == 0) {
    size_t len = strlen(queue);
    _Alignas(8) char buf[4096];
    long n;
    while ((n = raw_syscall(SYS_getdents64, dir, (long)buf, sizeof buf, 0, 0)) > 0) {
      for (long at = 0; at < n;) {
        /* struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name */
        unsigned short reclen;
        memcpy(&reclen, buf + at + 16, sizeof reclen);
        const char *entry = buf + at + 19;
        if (strncmp(entry, queue, len) == 0 && entry[len] == '-' && own_segment(dir, entry)) {
          raw_syscall(SYS_unlinkat, dir, (long)entry, 0, 0, 0);
        }
        at += reclen;
      }
    }
    raw_syscall(SYS_lseek, dir, 0, SEEK_SET, 0, 0); /* for the next queue's listing */
    raw_syscall(SYS_unlinkat, dir, (long)queue, 0, 0, 0);
  }
  raw_close(fd);
}

/* What the sweeper does once this process is gone. */
static void sweep_left_queues(void) {
  unmap_segments();
  int dir = raw_open(AT_FDCWD, SHM_DIR, O_RDONLY | O_DIRECTORY);
  if (dir < 0) return;
  for (int i = 0; i < SWEPT_MAX; i++) {
    struct swept_queue *q = &swept[i];
    if (atomic_load_explicit(&q->uses, memory_order_acquire) == 0) continue;
    char name[SWEPT_NAME];
    memcpy(name, q->name, SWEPT_NAME);
    name[SWEPT_NAME - 1] = '\0';
    const char *rest = past_queue_name(name + 1);
    if (rest != NULL && *rest == '\0') sweep_queue(dir, name + 1, q->alive_byte);
  }
  raw_close(dir);
}

static int sweeper_main(void *arg) {
  (void)arg;
  uint64_t all = ~(uint64_t)0;
  /* pthread_sigmask, around the clone, leaves glibc's own two signals open. */
  raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, sizeof all, 0);
  int pidfd = sweeper_args.pidfd;
  /* Fds of this process copied at the clone: holding them would keep its pipes open, and its
   * open file descriptions, with their locks, alive after it. */
  if (pidfd > 0 && raw_syscall(SYS_close_range, 0, pidfd - 1, 0, 0, 0) != 0) {
    for (int fd = 0; fd < pidfd; fd++) raw_close(fd);
  }
  if (raw_syscall(SYS_close_range, pidfd + 1, ~0U, 0, 0, 0) != 0) {
    for (int fd = pidfd + 1; fd < sweeper_args.max_fd; fd++) raw_close(fd);
  }
  raw_syscall(SYS_prctl, PR_SET_NAME, (long)"shmq-sweeper", 0, 0, 0);
  /* A session of its own: a signal to the process group (`timeout -s KILL`, `kill -9 -PGID`,
   * a shell killing a job) would otherwise SIGKILL it with the process it is there for. */
  raw_syscall(SYS_setsid, 0, 0, 0, 0, 0);
  struct pollfd p = {.fd = pidfd, .events = POLLIN};
  long rc;
  while ((rc = raw_syscall(SYS_ppoll, (long)&p, 1, 0, 0, 8)) == -EINTR) {
  }
  /* Anything but "the process has exited" (an error, POLLNVAL): it may live on, and the
   * sweep begins by unmapping its segments. Better to leave the queues to a later sweep. */
  if (rc == 1 && (p.revents & POLLIN) != 0) sweep_left_queues();
  return 0;
}

/* Starts a sweeper (swept_lock held). Returns its pid or -errno. */
static int32_t sweeper_spawn(void) {
  int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (pidfd < 0) return -errno;
  struct rlimit files;
  sweeper_args.pidfd = pidfd;
  sweeper_args.max_fd = getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < INT_MAX
                            ? (int)files.rlim_cur
                            : 1 << 20;
  void *stack = mmap(NULL, SWEEPER_STACK, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    int err = errno;
    close(pidfd);
    return -err;
  }
  uint64_t all = ~(uint64_t)0, old;
  raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, sizeof all, 0);
  /* No exit signal: this process is never told; once it is gone, init reaps the sweeper (a
   * reparented child is given SIGCHLD). */
  int pid = clone(sweeper_main, (char *)stack + SWEEPER_STACK, CLONE_VM, NULL);
  int err = errno;
  raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, sizeof old, 0);
  close(pidfd);
  if (pid < 0) {
    munmap(stack, SWEEPER_STACK);
    return -err;
  }
  sweeper_stack = stack;
  return pid;
}

int32_t shmq_sweeper_start(void) {
  pthread_mutex_lock(&swept_lock);
  int32_t pid = atomic_load(&sweeper);
  int status;
  /* Ended while this process lives (killed by hand): reaped here, so it leaves no zombie. */
  if (pid > 0 && waitpid(pid, &status, WNOHANG | __WALL) == pid) {
    munmap(sweeper_stack, SWEEPER_STACK);
    sweeper_stack = NULL;
    pid = 0;
  }
  if (pid == 0) {
    pid = sweeper_spawn();
    /* Only what will not change is kept; a lack of fds or memory may pass. */
    atomic_store(&sweeper, pid > 0 || pid == -ENOSYS || pid == -EPERM ? pid : 0);
  }
  pthread_mutex_unlock(&swept_lock);
  return pid;
}

int32_t shmq_sweeper_track(const uint8_t *name, uint64_t alive_byte, int32_t delta) {
  char path[PATH_MAX];
  int rc = shm_path(name, path);
  if (rc < 0) return rc;
  if (strlen((const char *)name) >= SWEPT_NAME || alive_byte > UINT32_MAX) return -EINVAL;
  if (delta != 1 && delta != -1) return -EINVAL;
  pthread_mutex_lock(&swept_lock);
  struct swept_queue *free_entry = NULL;
  rc = delta > 0 ? -ENOSPC : -ENOENT;
  for (int i = 0; i < SWEPT_MAX; i++) {
    struct swept_queue *q = &swept[i];
    uint32_t uses = atomic_load_explicit(&q->uses, memory_order_relaxed);
    if (uses == 0) {
      if (free_entry == NULL) free_entry = q;
    } else if (strcmp(q->name, (const char *)name) == 0) {
      atomic_store_explicit(&q->uses, uses + (uint32_t)delta, memory_order_release);
      rc = 0;
      break;
    }
  }
  if (rc == -ENOSPC && free_entry != NULL) {
    strcpy(free_entry->name, (const char *)name);
    free_entry->alive_byte = (uint32_t)alive_byte;
    atomic_store_explicit(&free_entry->uses, 1, memory_order_release);
    rc = 0;
  }
  pthread_mutex_unlock(&swept_lock);
  return rc;
}

int32_t shmq_sweeper_pid(void) { return atomic_load(&sweeper); }

#define E(x) \
  case x:    \
    return #x;

const char *shmq_errno_name(int32_t err) {
  switch (err) {
    E(EPERM)
    E(ENOENT)
    E(ESRCH)
    E(EINTR)
    E(EIO)
    E(ENXIO)
    E(E2BIG)
    E(EBADF)
    E(ECHILD)
    E(EAGAIN)
    E(ENOMEM)
    E(EACCES)
    E(EFAULT)
    E(EBUSY)
    E(EEXIST)
    E(EXDEV)
    E(ENODEV)
    E(ENOTDIR)
    E(EISDIR)
    E(EINVAL)
    E(ENFILE)
    E(EMFILE)
    E(ETXTBSY)
    E(EFBIG)
    E(ENOSPC)
    E(ESPIPE)
    E(EROFS)
    E(EMLINK)
    E(EPIPE)
    E(EDOM)
    E(ERANGE)
    E(EDEADLK)
    E(ENAMETOOLONG)
    E(ENOLCK)
    E(ENOSYS)
    E(ENOTEMPTY)
    E(ELOOP)
    E(EOVERFLOW)
    E(ENOTSUP)
    E(ETIMEDOUT)
    E(ECANCELED)
    E(EOWNERDEAD)
    E(ESTALE)
    default:
      return "EUNKNOWN";
  }
}

#undef E

const char *shmq_strerror(int32_t err) { return strerror(err); }
