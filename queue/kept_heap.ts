/**
 * How much freed memory malloc's heap keeps for a receiver's huge copies, and when it gives it
 * back.
 *
 * Once malloc is tuned (ffi/native.ts, tuneMallocForCopies), a receiver's copies on the main
 * thread come from its heap, the huge ones when the heap can keep them (receiver.ts, heapBuffer),
 * and glibc trims the heap back to the kernel whenever more than its trim threshold lies free at
 * the top. A receiver of huge messages frees one copy (the collector does) while it makes the
 * next: with 128 MiB kept, a freed gigabyte went back each time and the next copy took fresh
 * pages, zeroed and faulted in one by one (on a VM with free page reporting, a host fault each
 * too). Keeping twice the largest copy lets the next one reuse those pages. Measured on a 2-vCPU
 * VM, two processes, 1 GiB Uint8Arrays at capacity 1, `getSync`, runs taken in turn: 4.30-4.62
 * GB/s keeping 128 MiB, 5.32-5.59 keeping 2 GiB.
 *
 * What is kept goes back (malloc_trim, for the whole process) once this isolate has made no
 * huge copy for {@linkcode IDLE_MS} and one of its waits finds nothing for a slice, when any
 * receiver of this isolate closes, and when memory runs short for a new segment or a copy
 * (segment.ts, freeDroppedMemory). The state here is this isolate's; malloc's is the
 * process's: another isolate's trim takes back what this one keeps, which then costs its next
 * copy fresh pages, nothing more.
 *
 * @module
 */

import { keepFreedHeap, mallocTrim, mallocTrimAsync } from "../ffi/native.ts";

/** A heap that made no huge copy for this long gives back what it keeps, at the next wait that
 * finds nothing for a slice. Long enough that a stream's gaps keep it (a gigabyte takes a
 * fifth of a second), short enough that memory comes back soon after the stream stops. */
export const IDLE_MS = 1000;

/** Room a freed copy needs at the heap's top beyond its own size to stay below the trim
 * threshold: its chunk header, and the free space already there (glibc leaves 128 KiB). */
const TOP_SLACK = 1 << 20;

/** The most this isolate asked the heap to keep (0: nothing yet). */
let askedBytes = 0;
/** What the heap keeps, as it answered that ask (a user's own call may have raised it since). */
let keptBytes = 0;
/** When this isolate last made a huge copy, which raised what the heap keeps (performance.now),
 * or undefined when it has given back everything since. */
let lastCopyAt: number | undefined;

/**
 * Before a huge copy of `byteLength` bytes, once malloc is tuned: lets the heap keep twice that
 * once it is freed, so the next copy reuses it. True when the heap keeps at least one such copy,
 * and the copy is to come from it. The native side keeps an eighth of the memory there is at
 * most (the machine's, or a memory cgroup's limit; 2 GiB on any machine): a copy larger than the
 * heap keeps would gain nothing there, and stay resident once freed until a trim, where a copy
 * mapped alone goes back to the kernel as soon as the collector frees it. In a cgroup of 256
 * MiB, three freed copies of 40 MiB kept in the heap, then the program's own 120 MiB, had the
 * process killed.
 */
export function keepHeapFor(byteLength: number): boolean {
  if (2 * byteLength > askedBytes) {
    askedBytes = 2 * byteLength;
    keptBytes = keepFreedHeap(askedBytes) ?? 0;
  }
  // Even a copy mapped alone raised the threshold: what the heap keeps meanwhile (the codec's
  // smaller copies) goes back at the next idle wait all the same.
  lastCopyAt = performance.now();
  return byteLength + TOP_SLACK <= keptBytes;
}

/** Whether the heap is due to give back what it keeps at a wait slice that found nothing at
 * `now`; if so, it is counted as given back. */
function idleDue(now: number): boolean {
  if (lastCopyAt === undefined || now - lastCopyAt < IDLE_MS) return false;
  lastCopyAt = undefined;
  return true;
}

/** At a blocking wait's slice that found nothing: gives back what the heap keeps when this
 * isolate made no huge copy for {@linkcode IDLE_MS} before `now` (performance.now). True if
 * it gave memory back. */
export function releaseIdleHeap(now: number = performance.now()): boolean {
  return idleDue(now) && mallocTrim();
}

/** {@linkcode releaseIdleHeap} for an async wait: the trim runs off the event loop's thread.
 * Undefined when nothing is due. */
export function releaseIdleHeapAsync(
  now: number = performance.now(),
): Promise<boolean> | undefined {
  return idleDue(now) ? mallocTrimAsync() : undefined;
}

/** Gives back what the heap keeps now, if this isolate made a huge copy since it last gave
 * back (as a receiver of this isolate closes). True if it gave memory back. */
export function releaseKeptHeap(): boolean {
  return releaseIdleHeap(Infinity); // idle for as long as can be: due whenever it keeps any
}
