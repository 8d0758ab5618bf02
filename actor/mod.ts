/**
 * Actors and Workers that share queues: {@linkcode spawnActor} starts a Deno subprocess and
 * hands it queue ends, which it opens with {@linkcode actorContext};
 * {@linkcode spawnWorker} and {@linkcode workerContext} do the same for module Workers.
 *
 * @example
 * ```ts ignore
 * // parent.ts
 * import { createSharedMemoryPair, spawnActor } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair();
 * await using actor = await spawnActor(new URL("./child.ts", import.meta.url), {
 *   queues: { out: sender },
 *   transfer: true,
 * });
 * for await (const message of receiver) console.log(message);
 *
 * // child.ts
 * import { actorContext } from "../mod.ts";
 * using ctx = await actorContext({ queues: { out: "sender" } });
 * await ctx.queues.out.put("hello from the actor");
 * ```
 *
 * @module
 */

export { actorContext, type ActorContextOptions } from "./context.ts";
export { ActorError } from "./errors.ts";
export type {
  ActorContext,
  EndKind,
  EndOf,
  OpenedQueues,
  QueueEnd,
  QueueHandoff,
  QueueSpec,
} from "./protocol.ts";
export {
  ActorHandle,
  type ActorPermissions,
  type ActorResult,
  type ActorStdio,
  spawnActor,
  type SpawnActorOptions,
} from "./spawn.ts";
export {
  spawnWorker,
  type SpawnWorkerOptions,
  workerContext,
  type WorkerContextOptions,
  WorkerHandle,
} from "./worker.ts";
