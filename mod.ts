/**
 * Shared-memory queues for Deno: pass large arrays and structured messages between
 * processes and Workers at memory speed.
 *
 * ```ts
 * import { createSharedMemoryPair } from "./mod.ts";
 * const [sender, receiver] = createSharedMemoryPair({ capacity: 5 });
 * await sender.put({ idx: 12345, source: "actor_3", data: new Float32Array(1024) });
 * const message = await receiver.get();
 * sender.close();
 * receiver.close();
 * ```
 *
 * @module
 */

export {
  createSharedMemoryPair,
  openReceiver,
  openSender,
  type SharedMemoryPair,
} from "./queue/pair.ts";
export type { QueueOptions } from "./queue/options.ts";
export { Sender } from "./queue/sender.ts";
export {
  type GetOptions,
  type NowaitGetOptions,
  Receiver,
  type SyncGetOptions,
} from "./queue/receiver.ts";
export { Draft, Lease } from "./queue/lease.ts";
export type { SyncWaitOptions, WaitOptions } from "./queue/wait.ts";
export type { QueueDescriptor } from "./queue/descriptor.ts";
export type { QueueStats } from "./queue/stats.ts";
export {
  ClosedError,
  type ClosedReason,
  DecodeError,
  EmptyError,
  FullError,
  QueueError,
} from "./queue/errors.ts";
export { type SweepResult, sweepStaleQueues } from "./queue/sweep.ts";
export { NativeError } from "./ffi/native.ts";
export { decode, DType, dtype, encode, NdArray, Reservation, reserve } from "./codec/mod.ts";
export type {
  DecodeOptions,
  DTypeArrayMap,
  DTypeName,
  DTypeNameFor,
  ReservableConstructor,
  TypedArray,
  TypedArrayConstructor,
} from "./codec/mod.ts";
export {
  type ActorContext,
  actorContext,
  type ActorContextOptions,
  ActorError,
  ActorHandle,
  type ActorPermissions,
  type ActorResult,
  type ActorStdio,
  type EndKind,
  type EndOf,
  type OpenedQueues,
  type QueueEnd,
  type QueueHandoff,
  type QueueSpec,
  spawnActor,
  type SpawnActorOptions,
  spawnWorker,
  type SpawnWorkerOptions,
  workerContext,
  type WorkerContextOptions,
  WorkerHandle,
} from "./actor/mod.ts";
