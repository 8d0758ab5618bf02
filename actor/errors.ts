/**
 * The error of the actor layer.
 *
 * @module
 */

/**
 * Thrown when an actor or Worker cannot be started or handed its queues: it exited or failed
 * before opening them, did not open them within `readyTimeout`, or its context does not match
 * what the parent handed over. `status` is the actor's exit status when it is known.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ActorError } from "./errors.ts";
 * const e = new ActorError("actor exited with code 1 before it called actorContext()");
 * assert.ok(e.name === "ActorError" && e.status === undefined);
 * ```
 */
export class ActorError extends Error {
  /** The exit status of the actor process, when it had exited. */
  readonly status?: Deno.CommandStatus;

  /** Creates the error; `status` is the actor's exit status when known. */
  constructor(message: string, options?: ErrorOptions & { status?: Deno.CommandStatus }) {
    super(message, options);
    this.name = "ActorError";
    if (options?.status !== undefined) this.status = options.status;
  }
}
