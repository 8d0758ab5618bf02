/**
 * How the codec copies array payloads: with `TypedArray.prototype.set`, and copies too large
 * to stay in the caches with a streaming copy that the queue installs once it has its native
 * library (the codec itself needs no FFI permission).
 *
 * @module
 */

/**
 * A copy of `source` into `target` of the same length, correct when the two overlap (as
 * `TypedArray.prototype.set`, which it stands in for: an array may lie where it is encoded to,
 * as a draft's arrays do. Not elsewhere in the region: what is written before the array's turn
 * may write over it).
 */
export type StreamingCopy = (target: Uint8Array, source: Uint8Array) => void;

/**
 * Copies this large go through the streaming copy when one is installed. glibc's memcpy
 * switches to streaming stores only above a threshold it sets from the L3 size the CPU
 * reports, 180 MiB on a 2-vCPU VM that reports its host's 480 MiB, and below it copied at
 * 6.5 GB/s there from 64 MiB on, against 13 GB/s streamed.
 */
export const STREAMING_COPY_BYTES = 32 << 20;

let streamingCopy: StreamingCopy | undefined;

/** Installs the copy used for payloads of {@linkcode STREAMING_COPY_BYTES} and more. */
export function useStreamingCopy(copy: StreamingCopy): void {
  streamingCopy = copy;
}

/** Copies `source` into `target` at byte `at`. */
export function copyBytes(target: Uint8Array, at: number, source: Uint8Array): void {
  const n = source.byteLength;
  if (n >= STREAMING_COPY_BYTES && streamingCopy !== undefined) {
    streamingCopy(target.subarray(at, at + n), source);
  } else target.set(source, at);
}
