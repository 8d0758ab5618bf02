/**
 * The native core across real processes: shared memory by name, futex wake-ups, timeouts,
 * errno errors, 64-bit atomics, OFD locks as liveness, the loader's ABI check.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  adoptFd,
  atomicAddU64,
  atomicCasU64,
  atomicLoadU64,
  atomicStoreU64,
  awaitProcessExit,
  closeFd,
  closeOrphans,
  copyStreaming,
  fdLinks,
  fdSize,
  futexWait,
  futexWaitAsync,
  futexWaitManyAsync,
  futexWake,
  lockByte,
  lockProbe,
  map,
  memoryRoom,
  NativeError,
  openProcess,
  pidAlive,
  prefault,
  prefaultJoin,
  prefaultStart,
  processToken,
  shmCreate,
  shmList,
  shmOpen,
  shmUnlink,
  sweeperPid,
  sweeperStart,
  sweeperTrack,
  threadAlive,
  type ThreadIdentity,
  threadIdentity,
  unmap,
} from "../ffi/native.ts";
import { ABI_VERSION, native, platformKey } from "../ffi/loader.ts";
import {
  CHILD_PERMISSIONS,
  fixture,
  heapKeepsAtMost,
  leakedSince,
  runDeno,
  shmEntries,
} from "./helpers.ts";

const CHILD = new URL("./native_child.ts", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;

let counter = 0;
/** A fresh segment name: tests only use /shmq-test-* names. */
function testName(): string {
  return `/shmq-test-${Deno.pid}-${++counter}-${crypto.randomUUID().slice(0, 8)}`;
}

/** A created, mapped segment that cleans itself up. */
function segment(size = 4096) {
  const name = testName();
  const fd = shmCreate(name, size);
  const ptr = map(fd, size);
  return {
    name,
    fd,
    ptr,
    size,
    bytes: new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ptr, size)),
    at: (offset: number) => Deno.UnsafePointer.offset(ptr, offset)!,
    [Symbol.dispose]() {
      unmap(ptr, size);
      shmUnlink(name, { missingOk: true });
      closeFd(fd);
    },
  };
}

function child(...args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-ffi", "--allow-read", CHILD, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function childJson(proc: Deno.ChildProcess): Promise<Record<string, unknown>> {
  const { code, stdout, stderr } = await proc.output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, `child failed: ${err}`);
  return JSON.parse(new TextDecoder().decode(stdout));
}

Deno.test("memoryRoom tells the machine's free memory, and the cgroup's room within its limit", () => {
  const room = memoryRoom();
  const info = Deno.systemMemoryInfo();
  // MemAvailable plus free swap, read a moment apart from Deno's own reading of them.
  const expected = info.available + info.swapFree;
  assert.ok(
    Math.abs(room.machine - expected) < 256 << 20,
    `machine ${room.machine}, /proc/meminfo says ${expected}`,
  );
  assert.ok(room.machine <= info.total + info.swapTotal);
  // A cgroup's room is a byte count within its limit, or both are Infinity when no level of
  // it sets a limit.
  if (room.cgroupLimit === Infinity) assert.equal(room.cgroup, Infinity);
  else {
    assert.ok(Number.isSafeInteger(room.cgroupLimit) && Number.isSafeInteger(room.cgroup));
    assert.ok(room.cgroup >= 0 && room.cgroup <= room.cgroupLimit);
  }
});

Deno.test("a child opens a segment by name and sees the bytes written here", async () => {
  using seg = segment(8192);
  for (let i = 0; i < 256; i++) seg.bytes[i] = (i * 7) & 0xff;
  seg.bytes[8191] = 42;
  const got = await childJson(child("read", seg.name, "256"));
  assert.equal(got.size, 8192);
  assert.deepEqual(got.bytes, Array.from(seg.bytes.subarray(0, 256)));
  assert.equal(fdSize(seg.fd), 8192);
});

Deno.test("a sync futex wait here is woken by another process", async () => {
  using seg = segment();
  const proc = child("wake", seg.name, "64");
  // Blocks this thread until the child's wake (the child retries until it woke someone).
  const result = futexWait(seg.at(64), 0, 10_000);
  const got = await childJson(proc);
  assert.equal(result, "woken");
  assert.equal(got.woken, 1);
});

Deno.test("an async futex wait here is woken by another process", async () => {
  using seg = segment();
  const proc = child("wake", seg.name, "128");
  const [result, got] = await Promise.all([
    futexWaitAsync(seg.at(128), 0, 10_000),
    childJson(proc),
  ]);
  assert.equal(result, "woken");
  assert.equal(got.woken, 1);
});

Deno.test("futex wait with a timeout times out in a sane time", async () => {
  using seg = segment();
  let t = performance.now();
  assert.equal(futexWait(seg.at(0), 0, 50), "timeout");
  let ms = performance.now() - t;
  assert.ok(ms >= 40 && ms <= 2000, `sync wait took ${ms} ms`);
  t = performance.now();
  assert.equal(await futexWaitAsync(seg.at(0), 0, 50), "timeout");
  ms = performance.now() - t;
  assert.ok(ms >= 40 && ms <= 2000, `async wait took ${ms} ms`);
});

Deno.test("a futex wait too long for the native i64 of nanoseconds waits until woken", async () => {
  using seg = segment();
  const word = new Int32Array(seg.bytes.buffer);
  /** What `waiting` settles with, or "still waiting" once `ms` have passed. */
  const within = async (waiting: Promise<string>, ms: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        waiting,
        new Promise<string>((ok) => timer = setTimeout(ok, ms, "still waiting")),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  // 1e30 ms once wrapped to 0 ns (at once "timeout"), 1e13 to a wait of a few minutes.
  for (const ms of [1e13, 1e30, Number.MAX_VALUE]) {
    Atomics.store(word, 0, 0);
    const waiting = futexWaitAsync(seg.at(0), 0, ms);
    try {
      const early = await within(waiting, 50);
      assert.equal(early, "still waiting", `${ms} ms: returned ${early} before it was woken`);
      Atomics.store(word, 0, 1);
      futexWake(seg.at(0));
      const result = await within(waiting, 10_000);
      assert.ok(result !== "timeout" && result !== "still waiting", `${ms} ms: ${result}`);
    } finally {
      // However the checks went, the wait ends here, within a bounded time: a wake missed
      // (or a wait that ignored it) held the test, and the whole run, for ~1e13 ms.
      Atomics.store(word, 0, 1);
      for (let tries = 0; tries < 1000 && await within(waiting, 10) === "still waiting";) {
        futexWake(seg.at(0));
        tries++;
      }
    }
  }
});

Deno.test("closing an fd that cannot be open gives EBADF", () => {
  for (const fd of [-1, 0x7fffffff]) {
    assert.throws(() => closeFd(fd), (e) => e instanceof NativeError && e.code === "EBADF");
  }
});

Deno.test("futex wait reports a changed value without blocking; wake with no waiter is 0", () => {
  using seg = segment();
  new Int32Array(seg.bytes.buffer)[1] = 5;
  const t = performance.now();
  assert.equal(futexWait(seg.at(4), 4, 5_000), "changed");
  assert.ok(performance.now() - t < 1000);
  assert.equal(futexWake(seg.at(4), 1), 0);
});

Deno.test("open of a missing name gives ENOENT, double create gives EEXIST", () => {
  const missing = testName();
  assert.throws(() => shmOpen(missing), (e: unknown) => {
    assert.ok(e instanceof NativeError);
    assert.equal(e.code, "ENOENT");
    assert.equal(e.errno, 2);
    assert.equal(e.message, `shm_open("${missing}"): ENOENT No such file or directory`);
    return true;
  });
  using seg = segment();
  assert.throws(() => shmCreate(seg.name, 4096), (e: unknown) => {
    assert.ok(e instanceof NativeError);
    assert.equal(e.code, "EEXIST");
    assert.equal(e.message, `shm_create("${seg.name}"): EEXIST File exists`);
    return true;
  });
  assert.throws(() => shmOpen("no-leading-slash"), { code: "EINVAL" });
  assert.throws(() => shmOpen("/a/b"), { code: "EINVAL" });
  assert.throws(() => shmUnlink(missing), { code: "ENOENT" });
  assert.equal(shmUnlink(missing, { missingOk: true }), false);
});

Deno.test("a created segment has mode 0600 and loses its link on unlink", async () => {
  using seg = segment();
  // Deno gates /dev paths behind --allow-all, so ask stat(1).
  const st = await new Deno.Command("stat", {
    args: ["-c", "%a", `/dev/shm${seg.name}`],
    stdout: "piped",
  }).output();
  assert.equal(new TextDecoder().decode(st.stdout).trim(), "600");
  assert.equal(fdLinks(seg.fd), 1);
  assert.equal(shmUnlink(seg.name), true);
  assert.equal(fdLinks(seg.fd), 0);
});

Deno.test("only a segment of this user, open to no other, is opened: others get EPERM", async () => {
  using seg = segment();
  const path = `/dev/shm${seg.name}`;
  // Deno gates /dev paths behind --allow-all: change the file with chmod(1) and chown(1).
  const run = async (cmd: string, ...args: string[]) =>
    assert.ok((await new Deno.Command(cmd, { args: [...args, path] }).output()).success, cmd);
  await run("chmod", "0644");
  // Another user could have made it so, and truncate it under our mapping: SIGBUS.
  assert.throws(() => shmOpen(seg.name), (e) => e instanceof NativeError && e.code === "EPERM");
  await run("chmod", "0600");
  closeFd(shmOpen(seg.name));
  if (Deno.uid() === 0) {
    await run("chown", "65534");
    assert.throws(() => shmOpen(seg.name), (e) => e instanceof NativeError && e.code === "EPERM");
  }
  // A symlink (even to a segment of ours) and a directory under a segment's name are not
  // segments of ours either: EPERM too, not ELOOP or EISDIR, so callers need one check.
  const planted = `${seg.name}-planted`;
  const plantedPath = `/dev/shm${planted}`;
  const plant = async (cmd: string, ...args: string[]) =>
    assert.ok((await new Deno.Command(cmd, { args: [...args, plantedPath] }).output()).success);
  try {
    await plant("ln", "-s", path);
    assert.throws(() => shmOpen(planted), (e) => e instanceof NativeError && e.code === "EPERM");
    await plant("rm");
    await plant("mkdir");
    assert.throws(() => shmOpen(planted), (e) => e instanceof NativeError && e.code === "EPERM");
  } finally {
    await new Deno.Command("rm", { args: ["-rf", plantedPath] }).output();
  }
});

Deno.test("shmList lists segments by prefix, without reading /dev/shm from Deno", () => {
  const prefix = `/shmq-test-${Deno.pid}-list-${crypto.randomUUID().slice(0, 8)}-`;
  assert.deepEqual(shmList(prefix), []);
  const names = Array.from({ length: 300 }, (_, i) => `${prefix}${String(i).padStart(3, "0")}`);
  const fds = names.map((n) => shmCreate(n, 64));
  try {
    const listed = shmList(prefix); // more than the initial 16 KiB buffer holds
    assert.deepEqual(listed, names.map((n) => n.slice(1)));
    assert.deepEqual(shmList(prefix.slice(1) + "29"), names.slice(290).map((n) => n.slice(1)));
    assert.ok(shmList("").includes(names[0].slice(1)));
  } finally {
    for (const n of names) shmUnlink(n, { missingOk: true });
    for (const fd of fds) closeFd(fd);
  }
  assert.deepEqual(shmList(prefix), []);
});

Deno.test("prefault keeps existing data", () => {
  using seg = segment(1 << 20);
  seg.bytes[0] = 1;
  seg.bytes[5000] = 2;
  seg.bytes[(1 << 20) - 1] = 3;
  prefault(seg.ptr, 1 << 20);
  prefault(seg.at(100), 10); // unaligned ranges are widened to whole pages
  assert.deepEqual([seg.bytes[0], seg.bytes[5000], seg.bytes[(1 << 20) - 1]], [1, 2, 3]);
  // Memory that cannot be written is an error, not written to: the library's read-only data.
  const readOnly = native().symbols.shmq_errno_name(1)!;
  assert.throws(
    () => prefault(readOnly, 1),
    (e) => e instanceof NativeError && e.code === "EINVAL",
  );
});

Deno.test("64-bit atomics: load/store/add/cas, and adds from two processes", async () => {
  using seg = segment();
  const w = seg.at(8);
  atomicStoreU64(w, 0xffff_ffff_ffffn);
  assert.equal(atomicLoadU64(w), 0xffff_ffff_ffffn);
  assert.equal(atomicAddU64(w, 1n), 0xffff_ffff_ffffn);
  assert.equal(atomicLoadU64(w), 0x1_0000_0000_0000n);
  assert.equal(atomicCasU64(w, 1n, 2n), false);
  assert.equal(atomicCasU64(w, 0x1_0000_0000_0000n, 0n), true);
  atomicStoreU64(w, 2n ** 64n - 1n);
  assert.equal(atomicAddU64(w, 1n), 2n ** 64n - 1n); // wraps
  assert.equal(atomicLoadU64(w), 0n);

  const n = 200_000;
  const proc = child("add", seg.name, "8", String(n));
  for (let i = 0; i < n; i++) atomicAddU64(w, 1n);
  await childJson(proc);
  assert.equal(atomicLoadU64(w), BigInt(2 * n));
});

Deno.test("a process handle (pidfd) tells when a killed child has exited, its locks released", async () => {
  using seg = segment();
  const proc = child("lock", seg.name, "5");
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const handle = openProcess(proc.pid);
  try {
    let text = "";
    while (!text.includes("locked")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    assert.ok(text.includes("locked"), `child said: ${text}`);
    assert.notEqual(handle, undefined, "this kernel gives pidfds (Linux 5.3+)");
    assert.equal(awaitProcessExit(handle!, 0), false);
    assert.equal(awaitProcessExit(handle!, 20), false, "a live child is waited for in full");
    assert.equal(lockProbe(seg.fd, 5), true);
    proc.kill("SIGKILL");
    // Before its status is taken (Deno reaps it on its own time): the handle tells at once.
    assert.equal(awaitProcessExit(handle!, 10_000), true);
    assert.equal(lockProbe(seg.fd, 5), false, "exited, every thread of it: its lock is gone");
    assert.equal(awaitProcessExit(handle!, 0), true);
  } finally {
    if (handle !== undefined) closeFd(handle);
    try {
      proc.kill("SIGKILL");
    } catch {
      // Killed above.
    }
    await reader.cancel();
    await proc.stderr.cancel();
  }
  assert.equal((await proc.status).signal, "SIGKILL");
  // Reaped: no process behind the pid any more, so no handle (were the pid reused this soon,
  // the new process would be the one named).
  if (!pidAlive(proc.pid)) assert.equal(openProcess(proc.pid), undefined);
  assert.throws(() => awaitProcessExit(-1, 0), /EBADF/);
});

Deno.test("an OFD lock held by a child is seen by probe and dropped when it is killed", async () => {
  using seg = segment();
  const proc = child("lock", seg.name, "3");
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("locked")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  try {
    assert.ok(text.includes("locked"), `child said: ${text}`);
    assert.equal(lockProbe(seg.fd, 3), true);
    assert.equal(lockProbe(seg.fd, 4), false);
    assert.equal(lockByte(seg.fd, 3, "exclusive"), false);
    assert.equal(lockByte(seg.fd, 3, "shared"), false);
    assert.equal(pidAlive(proc.pid), true);
  } finally {
    proc.kill("SIGKILL");
    await reader.cancel();
    await proc.stderr.cancel();
  }
  const status = await proc.status;
  assert.equal(status.signal, "SIGKILL");
  assert.equal(pidAlive(proc.pid), false);
  assert.equal(lockProbe(seg.fd, 3), false);
  assert.equal(lockByte(seg.fd, 3, "exclusive"), true);
  // Our own lock never shows up in our own probe.
  assert.equal(lockProbe(seg.fd, 3), false);
  // Another open file description in this process does see it.
  const other = shmOpen(seg.name);
  try {
    assert.equal(lockProbe(other, 3), true);
    assert.equal(lockByte(other, 3, "shared"), false);
    assert.equal(lockByte(seg.fd, 3, "shared"), true); // downgrade
    assert.equal(lockByte(other, 3, "shared"), true);
    assert.equal(lockByte(other, 3, "unlock"), true);
  } finally {
    closeFd(other);
  }
  assert.equal(lockByte(seg.fd, 3, "unlock"), true);
});

Deno.test("a mapping does not keep its fd's locks: they go when the fd closes", () => {
  using seg = segment();
  const fd = shmOpen(seg.name);
  assert.equal(lockByte(fd, 5, "exclusive"), true);
  const pointer = map(fd, 4096);
  try {
    assert.equal(lockProbe(seg.fd, 5), true);
    closeFd(fd);
    // The mapping stays, and so would the fd's open file description, with its lock, were the
    // mapping made through it: the exit sweeper keeps a dead process's mappings a while.
    assert.equal(lockProbe(seg.fd, 5), false, "the lock went with the fd");
    new Deno.UnsafePointerView(pointer).getUint8(0); // still mapped
  } finally {
    unmap(pointer, 4096);
  }
});

Deno.test("the exit sweeper starts once per process and its queue table counts ends", () => {
  const pid = sweeperStart();
  assert.ok(pid > 0 && pid !== Deno.pid);
  assert.equal(sweeperStart(), pid, "the same one");
  assert.equal(sweeperPid(), pid);
  assert.equal(sweeperTrack("/shmq-test-track", 0, 1), true);
  assert.equal(sweeperTrack("/shmq-test-track", 0, 1), true);
  assert.equal(sweeperTrack("/shmq-test-track", 0, -1), true);
  assert.equal(sweeperTrack("/shmq-test-track", 0, -1), true);
  assert.throws(() => sweeperTrack("/shmq-test-track", 0, -1), { code: "ENOENT" });
  // A full table (4096 queues counted) leaves the next queue to sweeps, and frees as ends close.
  const names = Array.from({ length: 5000 }, (_, i) => `/shmq-test-full-${i}`);
  let counted = 0;
  while (counted < names.length && sweeperTrack(names[counted], 0, 1)) counted++;
  try {
    assert.ok(counted >= 4000 && counted < names.length, `${counted} counted`);
    assert.equal(sweeperTrack(names[counted], 0, 1), false, "full");
    assert.equal(sweeperTrack(names[0], 0, 1), true, "a queue counted already counts again");
    assert.equal(sweeperTrack(names[0], 0, -1), true);
  } finally {
    for (let i = 0; i < counted; i++) sweeperTrack(names[i], 0, -1);
  }
  assert.equal(sweeperTrack(names[counted], 0, 1), true, "room again");
  assert.equal(sweeperTrack(names[counted], 0, -1), true);
  assert.throws(() => sweeperTrack("no-slash", 0, 1), { code: "EINVAL" });
  assert.throws(() => sweeperTrack(`/shmq-${"x".repeat(64)}`, 0, 1), { code: "EINVAL" });
});

Deno.test("a copy target pre-faulted by a helper keeps every byte written meanwhile", () => {
  const n = 32 << 20;
  const source = new Uint8Array(n);
  for (let i = 0; i < n; i++) source[i] = (i * 2654435761) >>> 24 || 1;
  const words = (b: Uint8Array) => new BigUint64Array(b.buffer, b.byteOffset, b.length / 8);
  for (let round = 0; round < 3; round++) {
    const target = new Uint8Array(n);
    const helper = prefaultStart(target.buffer);
    assert.notEqual(helper, undefined);
    // The helper works from the end, this copy from the front: they cross somewhere.
    target.set(source);
    prefaultJoin(helper!);
    const want = words(source);
    const got = words(target);
    let differ = 0;
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) differ++;
    assert.equal(differ, 0, `round ${round}: ${differ} words changed`);
  }
  assert.equal(prefaultStart(new ArrayBuffer(4096)), undefined, "no whole 2 MiB page");
  // Left alone, a helper pre-faults the whole 2 MiB-aligned interior of the buffer.
  const alone = new ArrayBuffer(8 << 20);
  const helper = prefaultStart(alone)!;
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300); // a helper takes ~5 ms
  const interior = prefaultJoin(helper);
  assert.ok(interior >= 6 << 20 && interior <= 8 << 20, `pre-faulted ${interior} bytes`);
  // At most 8 helpers are started and not yet joined; each id is joined once.
  const ids = Array.from({ length: 9 }, () => prefaultStart(new ArrayBuffer(6 << 20)));
  assert.deepEqual(ids.map((id) => id === undefined), [...Array(8).fill(false), true]);
  for (const id of ids) if (id !== undefined) prefaultJoin(id);
  assert.throws(() => prefaultJoin(ids[0]!), NativeError, "joined already");
  assert.throws(() => prefaultJoin(helper), NativeError, "a stale id misses a reused slot");
});

/** The variables of this process among `names` that are set. */
function inherited(...names: string[]): Record<string, string> {
  return Object.fromEntries(
    names.flatMap((name) => {
      const value = Deno.env.get(name);
      return value === undefined ? [] : [[name, value]];
    }),
  );
}

/** What {@linkcode tunedIn} found. */
interface Tuning {
  /** What tuneMallocForCopies returned. */
  threshold: number | null;
  /** Whether ArrayBuffers of 1 MiB, 64 MiB, 64 MiB within mallocFromHeap and 64 MiB after it lie
   * in the brk heap. */
  inHeap: [boolean, boolean, boolean, boolean];
  /** What keepFreedHeap returned for 1 byte, 512 MiB, 1 TiB, then 1 byte again. */
  kept: [number | null, number | null, number | null, number | null];
  /** Whether, after tuneMallocForCopies ran again (as in another isolate), 200 MiB malloc'd
   * and freed stayed free at the heap's top: the threshold kept is still in effect. */
  topKept: boolean;
}

/**
 * In a fresh process started with `env` added: what tuneMallocForCopies returns, whether
 * ArrayBuffers allocated afterwards lie in the brk heap (at its default thresholds glibc maps
 * those of 128 KiB and more afresh, by themselves; once tuned, those of 32 MiB and more but
 * within mallocFromHeap), what keepFreedHeap then sets, and whether glibc keeps to it.
 */
async function tunedIn(env: Record<string, string>): Promise<Tuning> {
  const script =
    `import { keepFreedHeap, mallocFromHeap, tuneMallocForCopies } from "${ROOT}ffi/native.ts";
    const threshold = tuneMallocForCopies() ?? null;
    const buffers = [new ArrayBuffer(1 << 20), new ArrayBuffer(64 << 20)];
    mallocFromHeap(true);
    buffers.push(new ArrayBuffer(64 << 20));
    mallocFromHeap(false);
    buffers.push(new ArrayBuffer(64 << 20));
    const heap = Deno.readTextFileSync("/proc/self/maps").split("\\n").find((l) => l.endsWith("[heap]"));
    const [lo, hi] = (heap ?? "0-0").split(" ")[0].split("-").map((x) => BigInt("0x" + x));
    const inHeap = buffers.map((buffer) => {
      const address = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
      return address >= lo && address < hi;
    });
    const kept = [1, 512 << 20, 2 ** 40, 1].map((n) => keepFreedHeap(n) ?? null);
    tuneMallocForCopies();
    const libc = Deno.dlopen("libc.so.6", {
      malloc: { parameters: ["usize"], result: "pointer" },
      free: { parameters: ["pointer"], result: "void" },
      mallinfo2: { parameters: [], result: { struct: Array(10).fill("usize") } },
    });
    mallocFromHeap(true);
    const p = libc.symbols.malloc(200 << 20);
    mallocFromHeap(false);
    libc.symbols.free(p);
    // keepcost, the last field of struct mallinfo2: the free top of the main heap.
    const top = Number(new BigUint64Array(libc.symbols.mallinfo2().buffer)[9]);
    console.log(JSON.stringify({ threshold, inHeap, kept, topKept: top >= 200 << 20 }));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    // Whatever the environment of the test run (a MALLOC_ARENA_MAX, say), each case starts
    // from the default.
    clearEnv: true,
    env: { ...inherited("PATH", "HOME", "DENO_DIR"), ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("the streaming copy writes exactly its range, at any alignment and length", () => {
  // Lengths around its steps: the head that aligns the target to 64 bytes, the 16 KiB blocks
  // of four strides, whole lines after them, and the tail.
  const lengths = [0, 1, 63, 64, 65, 200, 16383, 16384, 16384 + 64 * 3 + 5, (3 << 20) + 17];
  const source = new Uint8Array((3 << 20) + 256);
  for (let i = 0; i < source.length; i++) source[i] = (i * 131 + (i >> 13)) & 255;
  const target = new Uint8Array(source.length + 256);
  for (const n of lengths) {
    for (const [from, to] of [[0, 0], [1, 0], [0, 7], [13, 64 + 29], [64, 3]]) {
      target.fill(0xee);
      copyStreaming(target.subarray(to, to + n), source.subarray(from, from + n));
      for (let i = 0; i < target.length; i++) {
        const want = i >= to && i < to + n ? source[from + i - to] : 0xee;
        if (target[i] !== want) {
          assert.fail(`length ${n}, from ${from} to ${to}: byte ${i} is ${target[i]}, not ${want}`);
        }
      }
    }
  }
  assert.throws(
    () => copyStreaming(new Uint8Array(8), new Uint8Array(9)),
    /copyStreaming: the target holds 8 bytes, the source 9/,
  );
});

Deno.test("the streaming copy copies overlapping ranges as memmove does", () => {
  // TypedArray.prototype.set copies within one buffer as if through a temporary, and the
  // codec's large copies take its place: a value's array may lie in the region it is encoded
  // into. The strides of the streaming copy read ahead of what it has written, so it must not
  // run on such ranges.
  const n = (1 << 20) + 4096 + 64 * 3 + 5;
  const pattern = new Uint8Array(n + 4096 * 3);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 131 + (i >> 13)) & 255;
  for (const [from, to] of [[320, 0], [0, 320], [8, 0], [0, 8], [4096 * 3, 0], [0, 4096 * 3]]) {
    const buffer = pattern.slice();
    copyStreaming(buffer.subarray(to, to + n), buffer.subarray(from, from + n));
    for (let i = 0; i < n; i++) {
      if (buffer[to + i] !== pattern[from + i]) {
        assert.fail(
          `from ${from} to ${to}: byte ${i} is ${buffer[to + i]}, not ${pattern[from + i]}`,
        );
      }
    }
  }
});

Deno.test("malloc is tuned for large copies unless the user opted out or tuned it", async () => {
  const tuned = await tunedIn({});
  // At most an eighth of the memory there is (the machine's, or the cgroup's limit), and what
  // mallopt takes (an int); tuned to 128 MiB, or that eighth when less.
  const most = heapKeepsAtMost();
  const least = Math.min(128 << 20, most);
  assert.deepEqual(tuned, {
    threshold: 32 << 20,
    // 1 MiB below the mmap threshold; 64 MiB from the heap only within mallocFromHeap, so the
    // program's own large buffers stay mapped alone.
    inHeap: [true, false, true, false],
    kept: [least, Math.max(least, Math.min(512 << 20, most)), most, most], // never lowered
    topKept: most > 200 << 20,
  });
  // A 100 KiB variable sorts first in the child's environment: the scan reads past 64 KiB.
  const big = { AAAA_SHMQ_TEST_FILLER: "x".repeat(100_000) };
  const threshold = async (env: Record<string, string>) => (await tunedIn(env)).threshold;
  assert.equal(await threshold({ ...big, GLIBC_TUNABLES: "glibc.rtld.nns=4" }), 32 << 20);
  const optedOut = await tunedIn({ ...big, SHMQ_TUNE_MALLOC: "0" });
  assert.deepEqual(optedOut, {
    threshold: null,
    inHeap: [false, false, false, false],
    kept: [null, null, null, null],
    topKept: false,
  });
  for (
    const tunables of ["glibc.malloc.trim_threshold=0", "glibc.rtld.nns=4:glibc.malloc.check=0"]
  ) {
    assert.equal(await threshold({ ...big, GLIBC_TUNABLES: tunables }), null, tunables);
  }
  assert.equal(await threshold({ MALLOC_TRIM_THRESHOLD_: "1048576" }), null, "MALLOC_*");
});

Deno.test("a thread identity tells a thread from its successor and from an ended one", async () => {
  const me = threadIdentity()!;
  assert.ok(me.tid > 0 && me.start > 0 && me.pidNamespace > 0);
  assert.equal(threadAlive(Deno.pid, me), true);
  // The same tid started later is another thread: this one has ended.
  assert.equal(threadAlive(Deno.pid, { ...me, start: me.start + 1 }), false);
  // In another pid namespace the numbers mean nothing here, and in another time namespace
  // start times are shifted: never reported ended.
  assert.equal(threadAlive(Deno.pid, { ...me, start: 1, pidNamespace: me.pidNamespace + 1 }), true);
  assert.equal(
    threadAlive(Deno.pid, { ...me, start: 1, timeNamespace: me.timeNamespace + 1 }),
    true,
  );

  const token = processToken();
  assert.ok(Number.isInteger(token) && token >= 1 && token < 2 ** 52);
  assert.equal(processToken(), token);
  using seg = segment();
  const other = await childJson(child("identity", seg.name)) as {
    pid: number;
    token: number;
    thread: ThreadIdentity;
  };
  assert.notEqual(other.token, token, "each process draws its own token");
  assert.equal(other.thread.pidNamespace, me.pidNamespace);
  assert.equal(threadAlive(other.pid, other.thread), false, "the child has exited");
});

Deno.test("closeOrphans closes only what ended threads adopted: mappings with views quarantined", async () => {
  const size = 3 * 4096; // an unusual size, so the freed range is unlikely to be reused at once
  using a = segment(size);
  const extra = shmOpen(a.name);
  try {
    assert.equal(closeOrphans(a.fd), 0, "not adopted: never closed");
    assert.equal(adoptFd(extra), true);
    assert.equal(closeOrphans(a.fd), 0, "adopted by this thread, which runs");
    assert.equal(fdSize(extra), size, "still open");
  } finally {
    closeFd(extra);
  }
  // A closed fd is refused: recorded, its number would be closed again at this thread's end,
  // by then maybe another file's.
  assert.equal(adoptFd(extra), false);
  // Adopted by a Worker's thread that has since ended: closed, its main mapping unmapped, and
  // its extension mapping, which had a view open, quarantined.
  using b = segment(size);
  const native = JSON.stringify(new URL("../ffi/native.ts", import.meta.url).href);
  const source = `
    import { adoptFd, adoptMapping, closeFd, map, mapViews, shmOpen, threadIdentity } from ${native};
    const fd = shmOpen(${JSON.stringify(a.name)});
    const main = map(fd, ${size});
    adoptFd(fd, { pointer: main, size: ${size} });
    const other = shmOpen(${JSON.stringify(b.name)});
    const extension = map(other, ${size});
    closeFd(other);
    adoptMapping(fd, { pointer: extension, size: ${size} });
    Atomics.store(mapViews(extension), 0, 1); // a lease open over it
    postMessage({
      thread: threadIdentity(),
      mappings: [Deno.UnsafePointer.value(main), Deno.UnsafePointer.value(extension)],
    });`;
  const worker = new Worker(`data:application/javascript,${encodeURIComponent(source)}`, {
    type: "module",
  });
  const { thread, mappings } = await new Promise<{
    thread: ThreadIdentity;
    mappings: bigint[];
  }>((ok) => worker.onmessage = (e) => ok(e.data));
  const left = mappings.map((value) => Deno.UnsafePointer.create(value)!);
  assert.equal(closeOrphans(a.fd), 0, "its thread still runs");
  worker.terminate();
  for (let i = 0; i < 250 && threadAlive(Deno.pid, thread); i++) {
    await new Promise((ok) => setTimeout(ok, 20));
  }
  assert.equal(threadAlive(Deno.pid, thread), false, "the Worker's thread ended");
  assert.equal(closeOrphans(b.fd), 0, "only fds of the same file");
  // Still the shared segments: a byte written through each shows in this thread's mapping.
  const [mainLeft, extensionLeft] = left;
  const seen = new Deno.UnsafePointerView(extensionLeft);
  b.bytes[100] = 7;
  assert.equal(seen.getUint8(100), 7, "still shared");
  prefault(mainLeft, size); // mapped
  assert.equal(closeOrphans(), 1, "left out, sameAs is any file");
  // Unmapped: madvise on memory that is not mapped fails with ENOMEM.
  assert.throws(
    () => prefault(mainLeft, size),
    (e: unknown) => e instanceof NativeError && /ENOMEM/.test(e.message),
  );
  // Quarantined: still readable and writable (a transferred buffer must not fault), but
  // private zero pages now, cut off from the segment.
  assert.equal(seen.getUint8(100), 0, "private now");
  new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(extensionLeft, size)).fill(9);
  assert.equal(b.bytes[100], 7, "the segment is untouched");
  assert.equal(closeOrphans(a.fd), 0, "forgotten once closed");
});

Deno.test("unsupported platforms get an error naming the supported ones", () => {
  assert.equal(platformKey("linux", "x86_64"), "x86_64-linux");
  assert.equal(platformKey("linux", "aarch64"), "aarch64-linux");
  for (const [os, arch] of [["darwin", "aarch64"], ["windows", "x86_64"], ["linux", "riscv64"]]) {
    assert.throws(() => platformKey(os, arch), (e: unknown) => {
      const msg = (e as Error).message;
      assert.match(msg, new RegExp(`unsupported platform ${os} ${arch}`));
      assert.match(msg, /linux x86_64 and linux aarch64/);
      return true;
    });
  }
});

Deno.test("the loader opens the shipped binary beside the module", () => {
  const core = native();
  assert.equal(core.source === "local" || core.source === "env", true);
  assert.equal(core.symbols.shmq_abi_version(), ABI_VERSION);
  if (core.source === "local") {
    assert.equal(core.path, `${ROOT}ffi/lib/${platformKey()}/libshmq.so`);
  }
});

async function runLoader(
  env: Record<string, string>,
  cwd?: string,
): Promise<Deno.CommandOutput> {
  const code = `import { native } from ${JSON.stringify(`${ROOT}ffi/loader.ts`)};
    const c = native();
    console.log(JSON.stringify({ path: c.path, source: c.source, abi: c.symbols.shmq_abi_version() }));`;
  return await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    env,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test("SHMQ_NATIVE_LIB overrides the library; a wrong ABI version is refused", async () => {
  const shipped = `${ROOT}ffi/lib/${platformKey()}/libshmq.so`;
  const ok = await runLoader({ SHMQ_NATIVE_LIB: shipped });
  assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(ok.stdout)), {
    path: shipped,
    source: "env",
    abi: ABI_VERSION,
  });

  const missing = await runLoader({ SHMQ_NATIVE_LIB: "/nonexistent/libshmq.so" });
  assert.notEqual(missing.code, 0);
  assert.match(new TextDecoder().decode(missing.stderr), /cannot open the native library/);
  // Before, both were told to rebuild the library, which was not the matter.
  assert.match(
    new TextDecoder().decode(missing.stderr),
    /no such file: set SHMQ_NATIVE_LIB to the path of a libshmq\.so/,
  );
  const bare = await runLoader({ SHMQ_NATIVE_LIB: "libshmq.so" });
  assert.notEqual(bare.code, 0);
  assert.match(
    new TextDecoder().decode(bare.stderr),
    /a name without a slash is looked up in the system's library path, not in the working directory: give SHMQ_NATIVE_LIB a path \(\.\/libshmq\.so\)/,
  );
});

Deno.test("SHMQ_NATIVE_LIB naming a library of another architecture, one cut short, or no library at all: each said so", async () => {
  const shipped = `${ROOT}ffi/lib/${platformKey()}/libshmq.so`;
  const [other, otherArch] = Deno.build.arch === "x86_64"
    ? ["aarch64-linux", "aarch64"]
    : ["x86_64-linux", "x86_64"];
  const stderrOf = async (path: string) => {
    const out = await runLoader({ SHMQ_NATIVE_LIB: path });
    assert.equal(out.code, 1, `an error, not a signal (exit ${out.code})`);
    return new TextDecoder().decode(out.stderr);
  };
  // Before: glibc's "No such file or directory", about a file that is there.
  assert.match(
    await stderrOf(`${ROOT}ffi/lib/${other}/libshmq.so`),
    new RegExp(`it is built for ${otherArch}, and this is ${Deno.build.arch}`),
  );
  const dir = await Deno.makeTempDir({ prefix: "shmq-test-elf-" });
  try {
    const bytes = await Deno.readFile(shipped);
    // Before: killed by SIGBUS in dlopen (exit 135).
    await Deno.writeFile(`${dir}/cut.so`, bytes.subarray(0, 20_000));
    assert.match(
      await stderrOf(`${dir}/cut.so`),
      /it is cut short: 20000 bytes, where its header needs \d+/,
    );
    // Without section headers (as sstrip leaves it), its loaded segments tell how long it is.
    const stripped = bytes.slice(0, 20_000);
    const header = new DataView(stripped.buffer);
    header.setBigUint64(40, 0n, true); // e_shoff
    header.setUint16(60, 0, true); // e_shnum
    await Deno.writeFile(`${dir}/stripped.so`, stripped);
    assert.match(
      await stderrOf(`${dir}/stripped.so`),
      /it is cut short: 20000 bytes, where its header needs \d+/,
    );
    await Deno.writeTextFile(`${dir}/text.so`, "not a library\n");
    assert.match(
      await stderrOf(`${dir}/text.so`),
      /it is no 64-bit little-endian ELF shared library \(14 bytes\)/,
    );
    // A name without a slash is dlopen's to look up in the library path: a file of that name
    // in the working directory is not the one loaded, and not checked.
    await Deno.copyFile(`${dir}/text.so`, `${dir}/libshmq.so`);
    const bare = await runLoader(
      { SHMQ_NATIVE_LIB: "libshmq.so", LD_LIBRARY_PATH: `${ROOT}ffi/lib/${platformKey()}` },
      dir,
    );
    assert.equal(bare.code, 0, new TextDecoder().decode(bare.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const zig = (() => {
  try {
    return new Deno.Command("zig", { args: ["version"], stdout: "null", stderr: "null" })
        .outputSync().success
      ? "zig"
      : undefined;
  } catch {
    return undefined;
  }
})();

Deno.test({
  name: "a library with another ABI version is refused with a rebuild hint",
  ignore: zig === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "shmq-test-abi-" });
    try {
      await Deno.writeTextFile(
        `${dir}/fake.c`,
        "unsigned shmq_abi_version(void) { return 99; }\n",
      );
      const cc = await new Deno.Command(zig!, {
        args: ["cc", "-shared", "-fPIC", "-nostdlib", "-o", `${dir}/libfake.so`, `${dir}/fake.c`],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.ok(cc.success, new TextDecoder().decode(cc.stderr));
      const out = await runLoader({ SHMQ_NATIVE_LIB: `${dir}/libfake.so` });
      assert.notEqual(out.code, 0);
      const err = new TextDecoder().decode(out.stderr);
      assert.match(
        err,
        new RegExp(`has ABI version 99, but this module needs ABI version ${ABI_VERSION}`),
      );
      assert.match(err, /deno task build/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the library pins itself: a terminated Worker cannot unload running code", async () => {
  // The binaries carry no NODELETE flag (Zig cannot set it). Before shmq_pin_self, Deno's
  // closing the Worker's handle unmapped the library while a runtime thread still waited in
  // it, and the process died of SIGSEGV.
  const out = await runDeno(["run", ...CHILD_PERMISSIONS, fixture("worker_only_native.ts")]);
  assert.equal(out.trim(), "survived");
});

Deno.test({
  name: "under a /proc of another pid namespace, no end is adopted as a possible orphan",
  ignore: Deno.uid() !== 0, // unshare --pid needs root here
  async fn() {
    const run = (args: string[]) =>
      new Deno.Command(args[0], { args: args.slice(1), stdout: "piped", stderr: "piped" })
        .output();
    const script = [Deno.execPath(), "run", ...CHILD_PERMISSIONS, fixture("foreign_proc.ts")];
    const own = await run(script);
    assert.equal(own.code, 0, new TextDecoder().decode(own.stderr));
    assert.equal(JSON.parse(new TextDecoder().decode(own.stdout)).adopted, true);
    // A new pid namespace, /proc not remounted: pid 1 there, another process's in /proc.
    const foreign = await run(["unshare", "--pid", "--fork", ...script]);
    assert.equal(foreign.code, 0, new TextDecoder().decode(foreign.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(foreign.stdout)), {
      pid: 1,
      adopted: false,
    });
  },
});

Deno.test("futexWaitManyAsync: the index of the word woken, EAGAIN for one that moved, ETIMEDOUT", async () => {
  const words = new Uint32Array(new ArrayBuffer(4096));
  const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(words)));
  const addresses = new BigUint64Array([base, base + 4n, base + 8n]);
  const expected = new Uint32Array(3);
  const [EAGAIN, ETIMEDOUT] = [11, 110];
  assert.equal(await futexWaitManyAsync(addresses, expected, 3, 5), -ETIMEDOUT);
  words[1] = 7;
  assert.equal(await futexWaitManyAsync(addresses, expected, 3, 5000), -EAGAIN);
  words[1] = 0;
  // Wakes word 2 until the wait returns: the call may not have reached the kernel yet.
  const waiting = futexWaitManyAsync(addresses, expected, 3, 10_000);
  let done = false;
  waiting.finally(() => (done = true));
  while (!done) {
    futexWake(Deno.UnsafePointer.create(base + 8n)!, 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.equal(await waiting, 2);
  assert.equal(await futexWaitManyAsync(addresses, expected, 0, 5), -22, "EINVAL for no words");
  // Before: the native side read past the arrays' ends (a SIGSEGV at a page's end).
  await assert.rejects(futexWaitManyAsync(addresses, expected.subarray(0, 2), 3, 5), RangeError);
  await assert.rejects(futexWaitManyAsync(addresses.subarray(1), expected, 3, 5), RangeError);
});

Deno.test("--allow-ffi scoped to the library's path: the first queue says to pass it unscoped", async () => {
  const core = native();
  const before = new Set(shmEntries());
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { createSharedMemoryPair } from ${JSON.stringify(`${ROOT}mod.ts`)};
      try {
        createSharedMemoryPair();
      } catch (e) {
        console.log(JSON.stringify({ name: e.name, message: e.message }));
      }`,
    );
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", `--allow-ffi=${core.path}`, "--allow-read", "--allow-env", script],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const got = JSON.parse(new TextDecoder().decode(stdout));
    assert.equal(got.name, "NotCapable");
    assert.match(got.message, /^shmq needs --allow-ffi without a path: the library loaded/);
    assert.deepEqual(leakedSince(before), [], "nothing left in /dev/shm");
  } finally {
    await Deno.remove(script);
  }
});
