/*
 * Smoke test of a shipped libshmq.so from C, so the binary of another architecture can be
 * exercised under qemu-user (see tools/cross_smoke.sh). Links against the library given
 * at link time; prints "ok" and exits 0, or names the failed check and exits 1.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../ffi/shmq.h"

/* The segment under test, unlinked on the way out whatever failed, so a failed run leaves
 * nothing in /dev/shm. */
static const uint8_t *segment_name;

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "native_smoke: failed: %s (line %d)\n", #cond, __LINE__); \
      if (segment_name != NULL) shmq_shm_unlink(segment_name);   \
      return 1;                                                  \
    }                                                            \
  } while (0)

int main(void) {
  char name[64];
  snprintf(name, sizeof name, "/shmq-test-smoke-%d", (int)getpid());
  const uint8_t *n = (const uint8_t *)name;
  CHECK(shmq_abi_version() == SHMQ_ABI_VERSION);
  int32_t fd = shmq_shm_create(n, 8192);
  CHECK(fd >= 0);
  segment_name = n;
  CHECK(shmq_shm_create(n, 8192) == -EEXIST);
  CHECK(strcmp(shmq_errno_name(EEXIST), "EEXIST") == 0);
  CHECK(shmq_fd_size(fd) == 8192);
  CHECK(shmq_fd_allocated(fd) == 0); /* tmpfs: backed only once touched */
  CHECK(shmq_fd_links(fd) == 1);
  int64_t room[3];
  CHECK(shmq_memory_room(room) == 0 && room[0] > 0 && room[1] >= -1 && room[2] >= room[1]);
  CHECK(shmq_memory_room(NULL) == -EINVAL);
  int64_t addr = shmq_map(fd, 8192);
  CHECK(addr > 0);
  uint8_t *p = (uint8_t *)(intptr_t)addr;
  p[100] = 7;
  CHECK(shmq_prefault(p, 8192) == 0);
  CHECK(shmq_prepare_copy_target(p, 8192) == 0);
  CHECK(p[100] == 7);
  int32_t fd2 = shmq_shm_open(n);
  CHECK(fd2 >= 0);
  int64_t addr2 = shmq_map(fd2, 8192);
  CHECK(addr2 > 0 && ((uint8_t *)(intptr_t)addr2)[100] == 7);
  CHECK(shmq_futex_wait(p, 1, 1000000) == 2);
  CHECK(shmq_futex_wait(p, 0, 1000000) == 1);
  CHECK(shmq_futex_wake(p, 1) == 0);
  shmq_atomic_store_u64(p + 8, 41);
  CHECK(shmq_atomic_add_u64(p + 8, 1) == 41);
  CHECK(shmq_atomic_load_u64(p + 8) == 42);
  CHECK(shmq_atomic_cas_u64(p + 8, 42, 1) == 1);
  CHECK(shmq_atomic_cas_u64(p + 8, 42, 1) == 0);
  CHECK(shmq_lock_byte(fd, 0, 2) == 0);
  CHECK(shmq_lock_probe(fd2, 0) == 1);
  CHECK(shmq_lock_byte(fd2, 0, 1) == -EAGAIN);
  CHECK(shmq_lock_byte(fd, 0, 0) == 0);
  CHECK(shmq_lock_probe(fd2, 0) == 0);
  uint8_t list[4096];
  int64_t need = shmq_shm_list((const uint8_t *)name, list, sizeof list);
  CHECK(need == (int64_t)strlen(name));
  CHECK(strcmp((char *)list, name + 1) == 0);
  CHECK(shmq_shm_free_bytes() >= 0);
  CHECK(shmq_shm_total_bytes() >= shmq_shm_free_bytes());
  CHECK(shmq_yield() == 0);
  CHECK(shmq_pid_alive((int32_t)getpid()) == 1);
  int32_t self = shmq_pidfd_open((int32_t)getpid()); /* qemu-user may not pass it on */
  CHECK(self == -ENOSYS || (self >= 0 && shmq_pidfd_wait_exit(self, 0) == 0 && shmq_close(self) == 0));
  CHECK(shmq_pidfd_wait_exit(-1, 0) == -EBADF);
  double me[4];
  CHECK(shmq_thread_identity(me) == 0 && me[0] == (double)getpid() && me[1] > 0);
  CHECK(shmq_thread_alive((int32_t)getpid(), (int32_t)me[0], me[1], me[2], me[3]) == 1);
  CHECK(shmq_thread_alive((int32_t)getpid(), (int32_t)me[0], me[1] + 1, me[2], me[3]) == 0);
  CHECK(shmq_thread_alive((int32_t)getpid(), (int32_t)me[0], me[1] + 1, me[2], me[3] + 1) == 1);
  double token = shmq_process_token();
  CHECK(token >= 1 && token == shmq_process_token());
  int32_t fd3 = shmq_shm_open(n);
  CHECK(fd3 >= 0 && shmq_fd_adopt(fd3, NULL, 0) == 0);
  CHECK(shmq_close_orphans(fd) == 0); /* adopted by this thread, which runs */
  CHECK(shmq_close_orphans(-1) == 0); /* nor is anything else here an orphan */
  CHECK(shmq_map_adopt(-1, p, 8192) == -EBADF && shmq_map_forget(p) == 0);
  CHECK(shmq_map_views(p) == NULL && shmq_map_adopt(fd3, p, 8192) == 0);
  _Atomic int32_t *views = shmq_map_views(p);
  CHECK(views != NULL && *views == 0);
  CHECK(shmq_map_forget(p) == 1 && shmq_map_views(p) == NULL);
  CHECK(shmq_close(fd3) == 0);
  CHECK(shmq_fd_adopt(fd3, NULL, 0) == -EBADF); /* closed: never recorded */
  static char big[8 << 20];
  int32_t helper = shmq_prefault_start(big, sizeof big);
  CHECK(helper >= 0);
  memset(big, 7, sizeof big);
  CHECK(shmq_prefault_join(helper) >= 0 && big[sizeof big - 1] == 7);
  CHECK(shmq_prefault_join(helper) == -EINVAL);
  volatile unsigned char *shared = (volatile unsigned char *)(intptr_t)addr2;
  ((volatile unsigned char *)p)[100] = 5;
  CHECK(shared[100] == 5);
  CHECK(shmq_quarantine(p, 8192) == 0);
  CHECK(((volatile unsigned char *)p)[100] == 0 && shared[100] == 5); /* private now */
  CHECK(shmq_unmap(p, 8192) == 0);
  CHECK(shmq_unmap((void *)(intptr_t)addr2, 8192) == 0);
  segment_name = NULL;
  CHECK(shmq_shm_unlink(n) == 0);
  CHECK(shmq_fd_links(fd) == 0);
  CHECK(shmq_shm_open(n) == -ENOENT);
  CHECK(shmq_close(fd) == 0 && shmq_close(fd2) == 0);
  puts("ok");
  return 0;
}
