/**
 * Child process for tests/native_test.ts: the other side of each cross-process check.
 * Usage: deno run --allow-ffi tests/native_child.ts <mode> <shm name> [args]
 *
 * Modes (each prints one JSON line, except `lock`, which prints "locked" then sleeps):
 * - read <name> <len>: open, map, print the first len bytes.
 * - wake <name> <offset>: futex-wake the word at offset until one waiter was woken.
 * - add <name> <offset> <count>: atomically add 1 to the u64 at offset, count times.
 * - lock <name> <offset>: take an exclusive byte lock, print "locked", sleep forever.
 * - identity <name>: print this process's pid, token and main thread identity.
 *
 * @module
 */

import {
  atomicAddU64,
  closeFd,
  fdSize,
  futexWake,
  lockByte,
  map,
  processToken,
  shmOpen,
  threadIdentity,
  unmap,
} from "../ffi/native.ts";

const [mode, name, a, b] = Deno.args;
const fd = shmOpen(name);
const size = fdSize(fd);
const ptr = map(fd, size);

function out(value: unknown): void {
  console.log(JSON.stringify(value));
}

switch (mode) {
  case "read": {
    const view = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ptr, size));
    out({ size, bytes: Array.from(view.subarray(0, Number(a))) });
    break;
  }
  case "wake": {
    const word = Deno.UnsafePointer.offset(ptr, Number(a))!;
    const deadline = Date.now() + 10_000;
    let woken = 0;
    while (woken === 0 && Date.now() < deadline) {
      woken = futexWake(word, 1);
      if (woken === 0) await new Promise((r) => setTimeout(r, 5));
    }
    out({ woken });
    break;
  }
  case "add": {
    const word = Deno.UnsafePointer.offset(ptr, Number(a))!;
    const n = Number(b);
    for (let i = 0; i < n; i++) atomicAddU64(word, 1n);
    out({ added: n });
    break;
  }
  case "lock": {
    if (!lockByte(fd, Number(a), "exclusive")) {
      out({ error: "lock busy" });
      Deno.exit(1);
    }
    console.log("locked");
    await new Promise(() => setInterval(() => {}, 1_000_000));
    break;
  }
  case "identity": {
    out({ pid: Deno.pid, token: processToken(), thread: threadIdentity() });
    break;
  }
  default:
    throw new Error(`unknown mode ${mode}`);
}
unmap(ptr, size);
closeFd(fd);
