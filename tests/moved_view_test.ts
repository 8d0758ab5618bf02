/**
 * Leases and drafts hand out buffers over shared memory, and revoke them by detaching. A
 * buffer the user moved out first (`transfer()`, a `postMessage` transfer) is beyond that:
 * these check that such a buffer can never crash the process, and never shows a later
 * message of an extension segment. Each case runs in its own process: a failure there is a
 * SIGSEGV.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runDeno, withoutLeaks } from "./helpers.ts";

const MOD = JSON.stringify(new URL("../mod.ts", import.meta.url).href);

/** For a child program: `libc.symbols.getrlimit` and `setrlimit`, to make memory run short. */
const LIBC_RLIMITS = `const libc = Deno.dlopen("libc.so.6", {
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
});`;

/** Runs `body` (with `createSharedMemoryPair` and `reserve` in scope) in a fresh process and
 * returns its stdout lines. */
async function runApart(body: string): Promise<string[]> {
  const code = `import { createSharedMemoryPair, reserve } from ${MOD};\n${body}`;
  return (await runDeno(["eval", code])).trim().split("\n");
}

Deno.test("a moved lease buffer of an extension segment: zeros after release, never the next message", () =>
  withoutLeaks(async () => {
    const lines = await runApart(`
      // 1 MiB is above a quarter of this arena: the message goes to an extension segment.
      const [sender, receiver] = createSharedMemoryPair({ capacity: 2, arenaBytes: 1 << 20 });
      sender.putSync(new Uint8Array(1 << 20).fill(7));
      const lease = receiver.borrowSync({ timeout: 1000 });
      const moved = new Uint8Array(lease.value.buffer.transfer());
      const last = moved.length - 1;
      console.log("before release", moved[last]);
      lease.release();
      sender.putSync(new Uint8Array(1 << 20).fill(9)); // the same segment, reused
      const next = receiver.getSync({ timeout: 1000 });
      console.log("after release", moved[last], "next", next[0], next[next.length - 1]);
      sender.close();
      receiver.close();
      moved.fill(5); // private pages now: harmless
      console.log("after close", moved[last]);
    `);
    assert.deepEqual(lines, [
      "before release 7",
      "after release 0 next 9 9",
      "after close 5",
    ]);
  }));

Deno.test("a moved lease buffer of the arena: zeros after release, and writing it harms no message", () =>
  withoutLeaks(async () => {
    const lines = await runApart(`
      const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
      sender.putSync(new Uint8Array(8192).fill(7)); // above the 2 KiB lent from a copy
      const lease = receiver.borrowSync({ timeout: 1000 });
      const moved = new Uint8Array(lease.value.buffer.transfer());
      const last = moved.length - 1;
      console.log("before release", moved[last]);
      lease.release();
      const released = moved[last];
      moved.fill(5); // into private pages now, not the arena
      sender.putSync(new Uint8Array(8192).fill(9)); // the same arena space, soon
      const next = receiver.borrowSync({ timeout: 1000 }); // over a fresh mapping
      console.log("after release", released, moved[last], "next", next.value.every((b) => b === 9));
      next.release();
      sender.close();
      receiver.close();
      console.log("after close", moved[last]);
    `);
    assert.deepEqual(lines, ["before release 7", "after release 0 5 next true", "after close 5"]);
  }));

Deno.test("a moved lease buffer that claims not to be detached is found out all the same", () =>
  withoutLeaks(async () => {
    // Before: the library took the buffer's own word, unmapped it, and the read faulted.
    const lines = await runApart(`
      const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
      sender.putSync(new Uint8Array(8192).fill(7)); // above the 2 KiB lent from a copy
      const lease = receiver.borrowSync({ timeout: 1000 });
      const buffer = lease.value.buffer;
      Object.defineProperty(buffer, "detached", { get: () => false });
      const moved = new Uint8Array(buffer.transfer());
      lease.release();
      sender.close();
      receiver.close();
      console.log("after close", moved[0]);
    `);
    assert.deepEqual(lines, ["after close 0"]);
  }));

Deno.test("a moved draft buffer written after send changes nothing, and after close does not fault", () =>
  withoutLeaks(async () => {
    const lines = await runApart(`
      const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20 });
      for (const n of [8192, 1 << 20]) { // the arena, then an extension segment
        const draft = sender.prepareSync({ data: reserve(Uint8Array, n) });
        const at = draft.value.data.byteOffset;
        const moved = new Uint8Array(draft.value.data.buffer.transfer(), at, n); // the data only
        moved.fill(3);
        draft.send();
        moved.fill(4); // after send: cut off from the message
        const got = receiver.getSync({ timeout: 1000 });
        console.log(n, got.data[0], got.data[n - 1]);
        setTimeout(() => moved.fill(6)); // once the ends below are closed
      }
      sender.close();
      receiver.close();
      await new Promise((ok) => setTimeout(ok, 10));
      console.log("done");
    `);
    assert.deepEqual(lines, ["8192 3 3", "1048576 3 3", "done"]);
  }));

Deno.test("buffers a terminated Worker moved out of its leases stay readable after its ends are reclaimed", () =>
  withoutLeaks(async () => {
    const native = JSON.stringify(new URL("../ffi/native.ts", import.meta.url).href);
    const lines = await runApart(`
      import { threadAlive, threadIdentity } from ${native};
      const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20 });
      const worker = new Worker("data:application/javascript," + encodeURIComponent(\`
        import { openReceiver } from ${MOD};
        import { threadIdentity } from ${native};
        const r = openReceiver(\${JSON.stringify(receiver.descriptor)});
        const arena = r.borrowSync({ timeout: 5000 }); // 8 KiB: in the arena
        const extension = r.borrowSync({ timeout: 5000 }); // 1 MiB: an extension segment
        const a = arena.value.buffer;
        const e = extension.value.buffer;
        postMessage({ a, e, thread: threadIdentity() }, [a, e]); // leases never released
      \`), { type: "module" });
      sender.putSync(new Uint8Array(8192).fill(7));
      sender.putSync(new Uint8Array(1 << 20).fill(8));
      const { a, e, thread } = await new Promise((ok) => worker.onmessage = (m) => ok(m.data));
      const arena = new Uint8Array(a);
      const extension = new Uint8Array(e);
      console.log("moved", arena[arena.length - 1], extension[extension.length - 1]);
      worker.terminate();
      while (threadAlive(Deno.pid, thread)) await new Promise((ok) => setTimeout(ok, 10));
      receiver.close(); // reclaims what the ended Worker's end left
      sender.close();
      console.log("after", arena[arena.length - 1], extension[extension.length - 1]);
    `);
    assert.deepEqual(lines, ["moved 7 8", "after 0 0"]);
  }));

Deno.test("a quarantine refused for lack of memory leaves the moved buffer writable", () =>
  withoutLeaks(async () => {
    // RLIMIT_DATA refuses private writable pages as strict overcommit would.
    const lines = await runApart(`
      ${LIBC_RLIMITS}
      const RLIMIT_DATA = 2;
      const old = new BigUint64Array(2);
      libc.symbols.getrlimit(RLIMIT_DATA, old);
      const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 1 << 20 });
      sender.putSync(new Uint8Array(8192).fill(7));
      const lease = receiver.borrowSync({ timeout: 1000 });
      const moved = new Uint8Array(lease.value.buffer.transfer());
      libc.symbols.setrlimit(RLIMIT_DATA, new BigUint64Array([4096n, old[1]]));
      lease.release(); // the quarantine fails: the shared mapping stays
      libc.symbols.setrlimit(RLIMIT_DATA, old);
      sender.close();
      receiver.close();
      moved[100] = 1;
      console.log("written", moved[100]);
    `);
    assert.deepEqual(lines, ["written 1"]);
  }));

Deno.test("moved lease buffers cost address space, not memory mappings, which run out sooner", () =>
  withoutLeaks(async () => {
    // Each moved buffer's mapping becomes private zero pages as a whole: neighbouring ones merge
    // into a few kernel mappings. Quarantining only the moved pages left one mapping per move,
    // and past vm.max_map_count (~65,000) the quarantine failed and left a moved buffer over
    // live shared memory.
    const lines = await runApart(`
      const maps = () => Deno.readTextFileSync("/proc/self/maps").split("\\n").length;
      const [sender, receiver] = createSharedMemoryPair({ capacity: 4 }); // a 64 MiB arena
      const moved = [];
      const before = maps();
      for (let i = 0; i < 300; i++) {
        sender.putSync(new Uint8Array(8192).fill(i % 250 + 1)); // above the 2 KiB lent from a copy
        const lease = receiver.borrowSync({ timeout: 1000 });
        moved.push(new Uint8Array(lease.value.buffer.transfer()));
        lease.release(); // its mapping retired, and quarantined with its last view
      }
      sender.putSync(new Uint8Array(8192).fill(255));
      const last = receiver.borrowSync({ timeout: 1000 });
      console.log("next", last.value[0], "moved", moved.every((m) => m.every((b) => b === 0)));
      last.release();
      sender.close();
      receiver.close();
      const grown = maps() - before;
      console.log(grown < 50 ? "few mappings" : "mappings grown by " + grown);
    `);
    assert.deepEqual(lines, ["next 255 moved true", "few mappings"]);
  }));

Deno.test("a lease that cannot be mapped (no address space) keeps its message first in line", () =>
  withoutLeaks(async () => {
    // RLIMIT_AS a little above what the process has refuses the arena's 64 MiB lend mapping.
    const lines = await runApart(`
      ${LIBC_RLIMITS}
      const RLIMIT_AS = 9;
      const old = new BigUint64Array(2);
      libc.symbols.getrlimit(RLIMIT_AS, old);
      const [sender, receiver] = createSharedMemoryPair({ capacity: 4 });
      sender.putSync(new Uint8Array(8192).fill(7));
      sender.putSync(new Uint8Array(8192).fill(8));
      const vm = Number(/VmSize:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]) * 1024;
      libc.symbols.setrlimit(RLIMIT_AS, new BigUint64Array([BigInt(vm + (16 << 20)), old[1]]));
      let failed;
      try {
        receiver.borrowSync({ timeout: 1000 }).release();
      } catch (error) {
        failed = error.message;
      }
      libc.symbols.setrlimit(RLIMIT_AS, old);
      console.log(/ENOMEM/.test(failed) ? "refused" : "not refused: " + failed);
      const first = receiver.getSync({ timeout: 1000 });
      const second = receiver.borrowSync({ timeout: 1000 });
      console.log("then", first[0], second.value[0]);
      second.release();
      sender.close();
      receiver.close();
    `);
    assert.deepEqual(lines, ["refused", "then 7 8"]);
  }));
