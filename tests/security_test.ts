// Descriptors from untrusted text or objects, what a descriptor can make the library touch,
// segment modes, and the randomness of queue names. The trust model is in SECURITY.md.
import assert from "node:assert/strict";
import {
  ClosedError,
  createSharedMemoryPair,
  openReceiver,
  openSender,
  type QueueDescriptor,
  sweepStaleQueues,
} from "../mod.ts";
import * as native from "../ffi/native.ts";
import { CHILD_PERMISSIONS, eventually, fixture, withoutLeaks } from "./helpers.ts";

const invalid = /invalid queue descriptor/;

Deno.test("descriptor text: no prototype pollution, extra fields dropped, huge input bounded", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ arenaBytes: 64 << 10 });
    const { name } = s.descriptor;
    const text =
      `{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": 1}},` +
      ` "shmq": 1, "end": "sender", "name": "${name}", "extra": "${"x".repeat(1000)}"}`;
    const opened = openReceiver(text);
    assert.equal(({} as Record<string, unknown>).polluted, undefined, "Object.prototype intact");
    assert.deepEqual(opened.descriptor, { shmq: 1, end: "receiver", name });
    opened.close();

    // Huge or deeply nested input: a clear TypeError, with a message of bounded size.
    const huge = [
      JSON.stringify({ shmq: 1, end: "sender", name: `/shmq-${"a".repeat(20 << 20)}` }),
      JSON.stringify({ shmq: 1, end: "x".repeat(20 << 20), name }),
      JSON.stringify({ shmq: "9".repeat(20 << 20), end: "sender", name }),
      "[".repeat(1 << 20) + "]".repeat(1 << 20),
      " ".repeat(20 << 20),
      `"${"a".repeat(20 << 20)}"`,
    ];
    for (const input of huge) {
      assert.throws(() => openSender(input), (e: Error) => {
        assert.ok(e instanceof TypeError, `${e}`);
        assert.match(e.message, invalid);
        assert.ok(e.message.length < 400, `a ${e.message.length}-character message`);
        return true;
      });
    }
    // Names that are not ours, whatever their spelling.
    for (
      const bad of [
        `${name}\0`,
        `${name}/../../etc/passwd`,
        name.toUpperCase(),
        ` ${name}`,
        `${name}-x0-1`,
        "/shmq-" + "g".repeat(32),
        "shmq-" + "0".repeat(32),
        "/dev/shm/shmq-" + "0".repeat(32),
        "\u202e/shmq-" + "0".repeat(32),
      ]
    ) {
      assert.throws(() => openSender({ shmq: 1, end: "sender", name: bad }), invalid, bad);
    }
    s.close();
    r.close();
  }));

Deno.test("extension names cannot be squatted from the queue's listed name: they carry a secret", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ arenaBytes: 64 << 10 });
    const name = s.descriptor.name;
    // What anyone who lists /dev/shm can derive: before the salt, these were the names of
    // the queue's first extension segments, and a large put failed with "exists already".
    const squatted = [0, 1].flatMap((i) => [1, 2, 3].map((gen) => `${name}-x${i}-${gen}`));
    for (const planted of squatted) native.closeFd(native.shmCreate(planted, 4096));
    try {
      const big = new Uint8Array(200 << 10).fill(7);
      await s.put(big, { timeout: 5000 });
      assert.deepEqual(await r.get({ timeout: 5000 }), big);
      const extensions = native.shmList(`${name}-x`);
      assert.ok(extensions.some((n) => /-x0-\d+-[0-9a-f]{16}$/.test(n)), `${extensions}`);
    } finally {
      for (const planted of squatted) native.shmUnlink(planted, { missingOk: true });
      s.close();
      r.close();
    }
  }));

Deno.test("an extension's name taken by a symlink or a file open to others: refused, made anew", () =>
  withoutLeaks(() => {
    const sh = (command: string) =>
      assert.ok(new Deno.Command("sh", { args: ["-c", command] }).outputSync().success, command);
    for (const replace of ["rm -f P && ln -s /dev/null P", "chmod 644 P"]) {
      const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 << 10 });
      const big = new Uint8Array(200 << 10).fill(7);
      try {
        s.putSync(big); // s and r keep the segment mapped: they go on using it
        assert.deepEqual(r.getSync(), big);
        s.putSync(big);
        const [segment] = native.shmList(`${s.descriptor.name}-x`);
        sh(replace.replaceAll("P", `/dev/shm/${segment}`));
        // An end that never mapped it. Before: NativeError "shm_open(…): EPERM" from every
        // get of it, and from every put of a new sender that it fits, for good.
        const r2 = openReceiver(s.descriptor);
        r.close();
        assert.throws(
          () => r2.getSync({ timeout: 2000 }),
          (e: unknown) =>
            e instanceof ClosedError && e.reason === "corrupt" &&
            /not this user's own/.test(e.message),
          replace,
        );
        const s2 = openSender(s.descriptor);
        s2.putSync(big, { timeout: 2000 });
        assert.deepEqual(r2.getSync({ timeout: 2000 }), big, replace);
        s2.close();
        r2.close();
      } finally {
        s.close();
        r.close();
      }
    }
  }));

Deno.test("an extension's name taken by a directory: refused, left, its name given up", () =>
  withoutLeaks(async () => {
    // A directory cannot be unlinked (EISDIR), nor removed by the library: it never made it,
    // and one that is not empty cannot go without deleting what is in it. Before: the drop of
    // the extension (a put, an idle drop, the last close) failed with a raw NativeError
    // "shm_unlink(…): EISDIR", a put of every message it fits for good, and the last close
    // left the queue's main segment in /dev/shm.
    const big = new Uint8Array(200 << 10).fill(7);
    const planted: string[] = [];
    // By sh: Deno wants --allow-all to write in /dev.
    const sh = (command: string) =>
      assert.ok(new Deno.Command("sh", { args: ["-c", command] }).outputSync().success, command);
    const plant = (queue: string) => {
      const [segment] = native.shmList(`${queue}-x`);
      const path = `/dev/shm/${segment}`;
      planted.push(path);
      // Not empty: not even an rmdir could remove it.
      sh(`rm ${path} && mkdir -m 700 ${path} && echo kept > ${path}/kept`);
    };
    try {
      // A get of the message in it: corrupt; a put that it fits: a new segment.
      {
        const [s, r] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 << 10 });
        try {
          s.putSync(big);
          assert.deepEqual(r.getSync(), big);
          s.putSync(big);
          plant(s.descriptor.name);
          const r2 = openReceiver(s.descriptor); // never mapped it
          r.close();
          assert.throws(
            () => r2.getSync({ timeout: 2000 }),
            (e: unknown) =>
              e instanceof ClosedError && e.reason === "corrupt" && /a directory/.test(e.message),
          );
          const s2 = openSender(s.descriptor);
          s2.putSync(big, { timeout: 2000 });
          assert.deepEqual(r2.getSync({ timeout: 2000 }), big);
          s2.close();
          r2.close();
        } finally {
          s.close();
          r.close();
        }
      }
      // An idle drop of it, then the last close of a queue whose live extension it took.
      {
        const [s, r] = createSharedMemoryPair({ arenaBytes: 64 << 10, keepIdleSegmentsMs: 50 });
        const { name } = s.descriptor;
        try {
          // Planted while a message is in it: idle, it could be dropped before the plant (under
          // load, more than the 50 ms passed between a get and the plant).
          s.putSync(big);
          assert.deepEqual(r.getSync(), big); // mapped by the receiver now
          s.putSync(big);
          plant(name);
          assert.deepEqual(r.getSync(), big);
          // Idle now, and dropped by the idle timer once 50 ms have passed (on a loaded machine
          // it took longer than a 100 ms sleep, and the later messages, reusing the sender's
          // mapping of it, never made a segment to plant).
          const held = s.stats().sharedBytes;
          assert.ok(await eventually(() => s.stats().sharedBytes < held), "the idle one dropped");
          s.putSync(new Uint8Array(8));
          assert.deepEqual(r.getSync(), new Uint8Array(8));
          s.putSync(big);
          assert.deepEqual(r.getSync(), big);
          s.putSync(big);
          plant(name);
        } finally {
          s.close();
          r.close();
        }
        // Checked at once: any other process's sweep would remove a leftover soon enough.
        assert.deepEqual(native.shmList(name), [], "the last close removes the main segment");
      }
      for (const path of planted) sh(`test -f ${path}/kept`); // left where it is
    } finally {
      for (const path of planted) sh(`rm -rf ${path}`);
    }
  }));

Deno.test("a segment grown behind the queue's back is not mapped and pre-faulted whole", () =>
  withoutLeaks(async () => {
    const [s, r] = createSharedMemoryPair({ arenaBytes: 64 << 10 });
    const corrupt = (pattern: RegExp) => (e: unknown) =>
      e instanceof ClosedError && e.reason === "corrupt" && pattern.test(e.message);
    // What a same-user peer could do: grow a segment by a sparse GiB, which an end that maps
    // and pre-faults the whole file would turn into a GiB of /dev/shm. (Deno asks for
    // --allow-all to touch /dev paths itself, so libc does it.)
    const libc = Deno.dlopen(
      "libc.so.6",
      {
        ftruncate: { parameters: ["i32", "i64"], result: "i32" },
      } as const,
    );
    const resize = (name: string, size: number) => {
      const fd = native.shmOpen(name);
      try {
        assert.equal(libc.symbols.ftruncate(fd, BigInt(size)), 0);
      } finally {
        native.closeFd(fd);
      }
    };
    const sizeOf = (name: string) => {
      const fd = native.shmOpen(name);
      try {
        return native.fdSize(fd);
      } finally {
        native.closeFd(fd);
      }
    };
    const GIB = 1 << 30;
    // Far less than the GiB a pre-fault would take, far more than other tests' noise.
    const assertNotFilled = (freeBefore: number) =>
      assert.ok(native.shmFreeBytes() > freeBefore - GIB / 2, "/dev/shm was filled");
    try {
      const main = s.descriptor.name;
      const size = sizeOf(main);
      resize(main, size + GIB);
      let free = native.shmFreeBytes();
      // A new end refuses a main segment of another size than its header's (the ends that
      // have it open go on).
      assert.throws(() => openReceiver(s.descriptor), corrupt(/arena of .* in a \d+-byte segment/));
      assertNotFilled(free);
      resize(main, size);

      const big = new Uint8Array(200 << 10).fill(7);
      await s.put(big, { timeout: 5000 });
      const extension = `/${native.shmList(`${main}-x`)[0]}`; // listed without the slash
      resize(extension, sizeOf(extension) + GIB);
      free = native.shmFreeBytes();
      // The extension's end maps what its record says, and the message arrives whole.
      assert.deepEqual(await r.get({ timeout: 5000 }), big);
      assertNotFilled(free);
      await s.put("small", { timeout: 5000 });
      assert.equal(await r.get({ timeout: 5000 }), "small");
    } finally {
      libc.close();
      s.close();
      r.close();
    }
  }));

Deno.test("descriptor objects are read once: a getter or proxy cannot swap the name after the check", () =>
  withoutLeaks(() => {
    const [s, r] = createSharedMemoryPair({ arenaBytes: 64 << 10 });
    // A file outside the naming scheme that the library must never open.
    const foreign = `/shmq-test-foreign-${crypto.randomUUID()}`;
    native.closeFd(native.shmCreate(foreign, 64 << 10));
    try {
      let reads = 0;
      const shifty = {
        shmq: 1,
        end: "sender",
        get name() {
          return reads++ < 2 ? s.descriptor.name : foreign;
        },
      };
      const proxied = new Proxy({ shmq: 1, end: "sender", name: s.descriptor.name }, {
        get(target, key) {
          return key === "name" && reads++ > 4 ? foreign : target[key as keyof typeof target];
        },
      });
      for (const d of [shifty, proxied]) {
        let end;
        try {
          end = openSender(d as unknown as QueueDescriptor);
        } catch (error) {
          assert.doesNotMatch(String(error), /foreign/, "it opened the foreign file");
          throw error;
        }
        assert.equal(end.descriptor.name, s.descriptor.name);
        end.close();
      }
    } finally {
      native.shmUnlink(foreign);
      s.close();
      r.close();
    }
  }));

Deno.test("the sweep removes nothing outside the naming scheme", () => {
  const names = [
    `/shmq-test-${crypto.randomUUID()}`,
    `/shmq-${"0".repeat(31)}`, // 31 hex digits
    `/shmq-${"0".repeat(32)}-y0-1`,
    `/shmq-${"A".repeat(32)}`,
  ];
  for (const n of names) native.closeFd(native.shmCreate(n, 4096));
  try {
    const { removed } = sweepStaleQueues();
    for (const n of names) {
      assert.ok(!removed.includes(n.slice(1)), `${n} swept`);
      assert.ok(native.shmList(n).includes(n.slice(1)), `${n} still there`);
    }
  } finally {
    for (const n of names) native.shmUnlink(n, { missingOk: true });
  }
});

Deno.test("the sweep passes over a queue's name it may not open, and leaves it", () => {
  // A file named like a queue that shm_open refuses (EPERM: open to others here; another
  // user's, a symlink elsewhere). Before the catch: sweepStaleQueues() threw a NativeError
  // (shm_open EPERM), the queues after it unswept; the sweep a new end makes swallowed it.
  const id = `0000${crypto.randomUUID().replaceAll("-", "").slice(4)}`; // listed early
  const name = `/shmq-${id}`;
  native.closeFd(native.shmCreate(name, 4096));
  try {
    chmodShm(name, "644");
    assert.throws(
      () => native.shmOpen(name),
      (e: unknown) => (e as { code?: string }).code === "EPERM",
    );
    assertSweepLeaves(name);
  } finally {
    native.shmUnlink(name, { missingOk: true });
  }
});

Deno.test("the sweep leaves an extension without its queue that is not this user's to open", () => {
  // Another user's orphan, or one open to others (as here): shm_open refuses it. Before, the
  // sweep unlinked orphans unchecked, which root may do to any user's entry.
  const id = crypto.randomUUID().replaceAll("-", "");
  const name = `/shmq-${id}-x3-1-0123456789abcdef`;
  native.closeFd(native.shmCreate(name, 4096));
  try {
    chmodShm(name, "644");
    assertSweepLeaves(name);
    // This user's own orphan goes.
    chmodShm(name, "600");
    assert.ok(sweepStaleQueues().removed.includes(name.slice(1)), "its own orphan swept");
  } finally {
    native.shmUnlink(name, { missingOk: true });
  }
});

/** Takes a read lease on the file argv[1], says "leased", and keeps it until stdin ends. A
 * lease break sends SIGIO, which would end the holder (and its lease) at once: ignored, the
 * opener waits out /proc/sys/fs/lease-break-time. */
const LEASE_HOLDER = `
import fcntl, os, signal, sys
signal.signal(signal.SIGIO, signal.SIG_IGN)
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
print("leased", flush=True)
sys.stdin.read()
`;

Deno.test("an entry not this user's to open, leased by its owner, is refused at once, not after the lease break time", async () => {
  // Another user's file named like a queue, with a read lease on it, made open(2) for writing
  // wait /proc/sys/fs/lease-break-time (45 s): every sweep, so the first createSharedMemoryPair
  // of a process, opened it. Here the file is open to others, which makes it as much not ours,
  // and the lease holder is this user (a lease is its file's owner's, or root's, to take).
  const id = crypto.randomUUID().replaceAll("-", "");
  const name = `/shmq-${id}`;
  native.closeFd(native.shmCreate(name, 4096));
  chmodShm(name, "666");
  const holder = new Deno.Command("python3", {
    args: ["-c", LEASE_HOLDER, `/dev/shm${name}`],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const lines = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    assert.equal((await lines.read()).value?.trim(), "leased");
    const started = performance.now();
    assert.throws(
      () => native.shmOpen(name),
      (e: unknown) => (e as { code?: string }).code === "EPERM",
    );
    assertSweepLeaves(name);
    const ms = performance.now() - started;
    assert.ok(ms < 5_000, `refused after ${ms.toFixed(0)} ms`);
  } finally {
    await holder.stdin.close();
    await holder.status;
    await lines.cancel();
    native.shmUnlink(name, { missingOk: true });
  }
});

/** Sets the mode of /dev/shm entry `name` with chmod(1): Deno wants --allow-all to chmod in
 * /dev, which the suite's permissions do not give. */
function chmodShm(name: string, mode: string): void {
  const chmod = new Deno.Command("chmod", { args: [mode, `/dev/shm${name}`] }).outputSync();
  assert.ok(chmod.success, `chmod ${mode}`);
}

/** A sweep leaves entry `name` where it is. */
function assertSweepLeaves(name: string): void {
  assert.ok(!sweepStaleQueues().removed.includes(name.slice(1)), "swept");
  assert.deepEqual(native.shmList(name), [name.slice(1)], "left where it is");
}

/** Mode bits of /dev/shm entries, through stat(1): Deno wants --allow-all to stat /dev. */
async function modes(names: string[]): Promise<string[]> {
  const out = await new Deno.Command("stat", {
    args: ["-c", "%a", ...names.map((n) => `/dev/shm/${n}`)],
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim().split("\n");
}

Deno.test("segments are 0600 whatever the umask, and made exclusively", async () => {
  // A child with umask 0 makes a queue with an extension segment and reports their modes.
  const script = `umask 0; exec "$0" "$@"`;
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      script,
      Deno.execPath(),
      "run",
      ...CHILD_PERMISSIONS,
      "--allow-run",
      fixture("fault_child.ts"),
      "modes",
    ],
    stdout: "piped",
  }).spawn();
  const out = new TextDecoder().decode((await child.output()).stdout).trim().split("\n").pop()!;
  const report = JSON.parse(out);
  assert.equal(report.umask, 0);
  assert.equal(report.entries.length, 2, "queue and extension");
  assert.deepEqual(report.modes, ["600", "600"]);
  // Exclusive: making a segment whose name exists fails instead of sharing it.
  const name = `/shmq-test-excl-${crypto.randomUUID()}`;
  native.closeFd(native.shmCreate(name, 4096));
  try {
    assert.throws(() => native.shmCreate(name, 4096), /EEXIST/);
    assert.deepEqual(await modes([name.slice(1)]), ["600"]);
  } finally {
    native.shmUnlink(name);
  }
});

Deno.test("queue names carry 128 random bits: every bit varies, no repeats", () =>
  withoutLeaks(() => {
    const count = 600;
    const ones = new Array(128).fill(0);
    const seen = new Set<string>();
    for (let i = 0; i < count; i++) {
      const [s, r] = createSharedMemoryPair({ capacity: 1, arenaBytes: 64 << 10 });
      const name = s.descriptor.name;
      s.close();
      r.close();
      assert.match(name, /^\/shmq-[0-9a-f]{32}$/);
      assert.ok(!seen.has(name), "no repeated name");
      seen.add(name);
      const hex = name.slice(6);
      for (let bit = 0; bit < 128; bit++) {
        if ((parseInt(hex[bit >> 2], 16) >> (3 - (bit & 3))) & 1) ones[bit]++;
      }
    }
    // Each bit is set in about half the names (binomial, sd ~12 for 600: allow 6 sd).
    for (let bit = 0; bit < 128; bit++) {
      assert.ok(Math.abs(ones[bit] - count / 2) < 75, `bit ${bit} set ${ones[bit]} of ${count}`);
    }
  }));
