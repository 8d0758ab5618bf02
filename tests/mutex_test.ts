/**
 * The queue's lock (queue/mutex.ts) taken over from dead holders: here the ends are
 * ShmMutex objects over one word of this process's memory, and liveness is what the test
 * says, so that it can stop a waiter at the exact point where it has found the holder dead.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ClosedError } from "../mod.ts";
import { type MutexHooks, ShmMutex } from "../queue/mutex.ts";

/** One lock word in memory of its own, and the participants' liveness as the test sets it. */
function lockWord(): {
  words: Int32Array;
  alive: boolean[];
  recovered: number[];
  mutex: (index: number, isAlive?: (index: number) => boolean) => ShmMutex;
} {
  // Over an ArrayBuffer of its own: its memory never moves, and the futex calls use its address.
  const words = new Int32Array(new ArrayBuffer(64));
  const pointer = Deno.UnsafePointer.of(words)!;
  const alive: boolean[] = [];
  const recovered: number[] = [];
  const mutex = (index: number, isAlive = (i: number) => alive[i] === true) => {
    const hooks: MutexHooks = {
      isAlive,
      recover: (dead) => recovered.push(dead),
      stuckMs: () => 50,
    };
    return new ShmMutex(words, 0, pointer, index, hooks);
  };
  return { words, alive, recovered, mutex };
}

Deno.test("a dead holder's lock is taken over, and repaired, once", () => {
  const { words, alive, recovered, mutex } = lockWord();
  alive[0] = alive[1] = true;
  const dead = mutex(0);
  dead.lock();
  alive[0] = false; // killed holding it
  const waiter = mutex(1);
  waiter.lock();
  assert.deepEqual(recovered, [0]);
  waiter.unlock();
  assert.equal(words[0], 0, "free again");
});

Deno.test("a waiter that found the holder dead does not take the lock from the end that took the dead one's index since", () => {
  const { words, alive, recovered, mutex } = lockWord();
  alive[0] = alive[1] = alive[2] = true;
  const dead = mutex(0);
  dead.lock();
  const deadWord = words[0];
  alive[0] = false; // killed holding the lock

  let successor: ShmMutex | undefined;
  let stalled = false;
  // The late waiter finds participant 0 dead, and is preempted before it takes the lock over.
  // Meanwhile another waiter takes it over and lets go, a new end claims index 0 and takes
  // the lock, and a third waiter marks it contended: the word looks as the dead holder's did.
  const late = mutex(1, (index) => {
    if (index !== 0 || stalled) return alive[index] === true;
    stalled = true;
    const other = mutex(2);
    other.lock();
    other.unlock();
    alive[0] = true;
    for (let tries = 0;; tries++) {
      successor = mutex(0);
      successor.lock();
      if (words[0] !== deadWord || tries === 3) break;
      successor.unlock(); // the same tag by chance (1 in 2^18): another end
    }
    Atomics.or(words, 0, 0x40000000);
    return false; // what it found before it was preempted
  });

  assert.throws(() => late.lock(), (error: unknown) => {
    assert.ok(error instanceof ClosedError, String(error));
    assert.match(error.message, /held for over 50 ms/);
    return true;
  });
  assert.ok(stalled);
  assert.deepEqual(recovered, [0], "repaired once, by the waiter that took it over");
  assert.equal(words[0] & 0xfff, 1, "still held by index 0's new end");
  successor!.unlock();
  assert.equal(words[0], 0);
  late.lock(); // free now
  late.unlock();
});

Deno.test("lockWithin gives a live holder its patience, not the stuck limit, and takes a dead one's lock over", () => {
  const { words, alive, recovered, mutex } = lockWord();
  alive[0] = alive[1] = true;
  const holder = mutex(0);
  holder.lock();
  const polling = mutex(1);
  // Not the ClosedError a waiter's lock() throws after stuckMs (50 ms here).
  assert.equal(polling.lockWithin(2), false, "a live holder keeps it");
  assert.equal(words[0] & 0xfff, 1, "still the holder's");
  alive[0] = false; // killed holding it
  assert.equal(polling.lockWithin(2), true);
  assert.deepEqual(recovered, [0]);
  polling.unlock();
  assert.equal(polling.lockWithin(2), true, "a free lock is taken at once");
  polling.unlock();
  assert.equal(words[0], 0);
});
