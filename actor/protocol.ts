/**
 * What the parent and its actors or Workers exchange when queue ends are handed over: which
 * queue ends to open, typed by a spec on the receiving side, and the structured `args`.
 *
 * @module
 */

import { parseDescriptor, type QueueDescriptor } from "../queue/descriptor.ts";
import { openReceiver, openSender } from "../queue/pair.ts";
import type { Receiver } from "../queue/receiver.ts";
import type { Sender } from "../queue/sender.ts";
import { ActorError } from "./errors.ts";
import { encode } from "../codec/encode.ts";
import { shown } from "../queue/shown.ts";

/** Version of the handoff format between a parent and its actors or Workers. */
export const HANDOFF_VERSION = 1;

/** How an actor's handoff line starts (`shmqActor` is its first key): an actor whose stdin
 * starts otherwise is refused after its first bytes, not after reading up to the limit. */
export const HANDOFF_PREFIX = '{"shmqActor":';
/** Largest encoded `args` an actor is started with. Its base64 travels in a JSON line and is
 * parsed as one string, which V8 caps near 512 MiB; data that large belongs in a queue. */
export const MAX_ACTOR_ARGS_BYTES = 64 * 1024 * 1024;
/** Longest handoff line an actor reads: base64 `args` of the largest size plus descriptors. */
export const MAX_HANDOFF_BYTES = 2 * MAX_ACTOR_ARGS_BYTES;

/**
 * One end of a queue: a {@linkcode Sender} or a {@linkcode Receiver}.
 *
 * @example
 * ```ts
 * import { createSharedMemoryPair, type QueueEnd } from "../mod.ts";
 * const ends: QueueEnd[] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
 * for (const end of ends) end.close();
 * ```
 */
export type QueueEnd = Sender | Receiver;

/**
 * Which end of a queue: `"sender"` or `"receiver"`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { EndKind } from "../mod.ts";
 * const kind: EndKind = "receiver";
 * assert.ok(kind === "receiver");
 * ```
 */
export type EndKind = "sender" | "receiver";

/**
 * A queue end handed to an actor or Worker. A `Sender` or `Receiver` makes the other side open
 * an end of the same kind on the same queue; a {@linkcode QueueDescriptor} makes it open the end
 * the descriptor names in its `end` field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createSharedMemoryPair, type QueueHandoff } from "../mod.ts";
 * const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
 * const queues: Record<string, QueueHandoff> = {
 *   out: sender, // the actor opens a sender
 *   tap: { ...sender.descriptor, end: "receiver" }, // the actor opens a receiver
 * };
 * assert.ok(Object.keys(queues).length === 2);
 * sender.close();
 * receiver.close();
 * ```
 */
export type QueueHandoff = Sender | Receiver | QueueDescriptor;

/**
 * The queues an actor or Worker expects, by name: `{ obs: "sender", cmds: "receiver" }`. Given
 * to `actorContext`/`workerContext`, it types the opened ends and is checked at run time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { QueueSpec } from "../mod.ts";
 * const spec = { obs: "sender", cmds: "receiver" } as const satisfies QueueSpec;
 * assert.ok(spec.obs === "sender");
 * ```
 */
export type QueueSpec = Readonly<Record<string, EndKind>>;

/**
 * The end class for an {@linkcode EndKind}: `Sender` for `"sender"`, `Receiver` for `"receiver"`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { EndOf, Sender } from "../mod.ts";
 * const pick = (end: EndOf<"sender">): Sender => end;
 * assert.ok(typeof pick === "function");
 * ```
 */
export type EndOf<K> = K extends "sender" ? Sender : K extends "receiver" ? Receiver : never;

/**
 * The opened queue ends for a {@linkcode QueueSpec}, by name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { OpenedQueues, Receiver } from "../mod.ts";
 * type Queues = OpenedQueues<{ obs: "sender"; cmds: "receiver" }>;
 * const commands = (queues: Queues): Receiver => queues.cmds;
 * assert.ok(typeof commands === "function");
 * ```
 */
export type OpenedQueues<S extends QueueSpec> = { readonly [K in keyof S]: EndOf<S[K]> };

/**
 * What an actor or Worker gets from `actorContext()` / `workerContext()`: the queue ends its
 * parent handed over, opened in this process, and the `args` value. Closing the context closes
 * every end; `using` does that at the end of the scope.
 *
 * @example
 * ```ts ignore
 * import { actorContext } from "../mod.ts";
 * using context = await actorContext({ queues: { out: "sender" } });
 * await context.queues.out.put(context.args);
 * // leaving the scope closes `out`
 * ```
 */
export interface ActorContext<Q = Readonly<Record<string, QueueEnd>>, A = unknown>
  extends Disposable {
  /** The opened queue ends, by the names the parent gave them. */
  readonly queues: Q;
  /** The `args` value the parent passed (`undefined` when it passed none). */
  readonly args: A;
  /** Closes every queue end of the context. Idempotent. */
  close(): void;
}

/** A queue end on the wire: which end to open and the queue's descriptor. */
export interface WireQueue {
  readonly open: EndKind;
  readonly descriptor: QueueDescriptor;
}

/** Queue ends on the wire, by name. */
export type WireQueues = Record<string, WireQueue>;

/** What a child reports on the control queue once it has opened its ends (or failed to). */
export type ControlMessage = { ok: true } | { ok: false; error: string };

/**
 * Encodes the `args` option with the library's codec. Its errors name the path from `args`
 * (`args.f: functions are not supported`), not from the codec's `value`.
 */
export function encodeArgs(args: unknown, caller: string): Uint8Array {
  try {
    return encode(args);
  } catch (error) {
    if (
      (error instanceof TypeError || error instanceof RangeError) &&
      error.message.startsWith("value")
    ) {
      const Kind = error instanceof TypeError ? TypeError : RangeError;
      throw new Kind(`${caller}: args${error.message.slice("value".length)}`, { cause: error });
    }
    throw error;
  }
}

/**
 * Turns the `queues` option into descriptors plus the end to open. Throws a `TypeError` for a
 * closed end or something that is neither an end nor a descriptor, before anything is started.
 */
export function toWire(
  queues: Readonly<Record<string, QueueHandoff>> | undefined,
  caller: string,
): WireQueues {
  const wire: WireQueues = {};
  if (queues === undefined) return wire;
  if (
    typeof queues !== "object" || queues === null || Array.isArray(queues) ||
    queues instanceof Map
  ) {
    throw new TypeError(`${caller}: queues must be an object of queue ends by name`);
  }
  for (const [name, value] of Object.entries(queues)) {
    if (value === undefined) continue;
    const end = value as { descriptor?: unknown; closed?: unknown };
    if (typeof value === "object" && value !== null && "descriptor" in end) {
      // A Sender or Receiver (duck-typed, so ends made by another copy of the library work).
      if (end.closed === true) {
        const why = transferred.has(end)
          ? `a ${kindName(end)} an earlier spawnActor() or spawnWorker() with transfer: true ` +
            "handed over, and closed: transfer an end once, or hand each its descriptor"
          : `a closed ${kindName(end)}`;
        throw new TypeError(`${caller}: queue "${name}" is ${why}`);
      }
      const descriptor = parseDescriptor(end.descriptor, `${caller}: queue "${name}"`);
      wire[name] = { open: descriptor.end, descriptor };
    } else {
      const descriptor = parseDescriptor(value, `${caller}: queue "${name}"`);
      wire[name] = { open: descriptor.end, descriptor };
    }
  }
  return wire;
}

function kindName(end: { descriptor?: unknown }): string {
  const d = end.descriptor as { end?: unknown } | undefined;
  return d?.end === "receiver" ? "receiver" : "sender";
}

/** The ends {@linkcode closeHanded} closed: a later handoff of one says why it is closed. */
const transferred = new WeakSet<object>();

/** Closes the Sender/Receiver objects among the handed-over ends (for `transfer: true`). */
export function closeHanded(queues: Readonly<Record<string, QueueHandoff>> | undefined): void {
  if (queues === undefined) return;
  for (const value of Object.values(queues)) {
    const end = value as { close?: unknown } | undefined;
    if (end && typeof end.close === "function") {
      (end as QueueEnd).close();
      transferred.add(end);
    }
  }
}

/** Checks a wire record that came from the parent. */
export function parseWireQueues(input: unknown, caller: string): WireQueues {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new TypeError(`${caller}: the handoff has no queue table`);
  }
  const wire: WireQueues = {};
  for (const [name, entry] of Object.entries(input as Record<string, unknown>)) {
    const e = entry as { open?: unknown; descriptor?: unknown } | null;
    if (e === null || typeof e !== "object" || (e.open !== "sender" && e.open !== "receiver")) {
      throw new TypeError(`${caller}: queue "${name}" of the handoff is malformed`);
    }
    wire[name] = {
      open: e.open,
      descriptor: parseDescriptor(e.descriptor, `${caller}: queue "${name}"`),
    };
  }
  return wire;
}

/**
 * Checks the handed-over queues against the spec the actor expects, before anything is opened:
 * every named queue must be there, as the named end. With `exact` (the first call, which opens
 * them), none may be there that the spec does not name: it would be opened and held unused (a
 * receiver nobody reads, which keeps the parent's puts waiting for room instead of refused).
 */
export function checkSpec(
  wire: WireQueues,
  spec: QueueSpec | undefined,
  caller: string,
  exact = false,
): void {
  if (spec === undefined) return;
  if (typeof spec !== "object" || spec === null) {
    throw new TypeError(`${caller}: options.queues must be an object like { obs: "sender" }`);
  }
  for (const [name, kind] of Object.entries(spec)) {
    if (kind !== "sender" && kind !== "receiver") {
      throw new TypeError(
        `${caller}: options.queues.${name} must be "sender" or "receiver", got ${
          JSON.stringify(kind)
        }`,
      );
    }
    const got = Object.hasOwn(wire, name) ? wire[name] : undefined;
    if (got === undefined) {
      const handed = Object.keys(wire);
      throw new TypeError(
        `${caller}: expected a ${kind} named "${name}", but the parent handed ` +
          (handed.length ? `only ${handed.map((n) => `"${n}"`).join(", ")}` : "no queues"),
      );
    }
    if (got.open !== kind) {
      throw new TypeError(
        `${caller}: expected "${name}" to be a ${kind}, but the parent handed a ${got.open}`,
      );
    }
  }
  if (!exact) return;
  const unnamed = Object.keys(wire).filter((name) => !Object.hasOwn(spec, name));
  if (unnamed.length > 0) {
    throw new TypeError(
      `${caller}: the parent handed ${
        unnamed.map((name) => `"${name}" (a ${wire[name].open})`).join(", ")
      }, which options.queues does not name: name it there, or do not hand it over`,
    );
  }
}

/** Opens every handed-over end; on failure closes those already opened and rethrows. */
export function openAll(wire: WireQueues, caller: string): Record<string, QueueEnd> {
  const opened: Record<string, QueueEnd> = {};
  try {
    for (const [name, { open, descriptor }] of Object.entries(wire)) {
      try {
        opened[name] = open === "sender" ? openSender(descriptor) : openReceiver(descriptor);
      } catch (error) {
        throw new ActorError(
          `${caller}: opening the ${open} "${name}" failed: ${errorText(error)}`,
          { cause: error },
        );
      }
    }
  } catch (error) {
    for (const end of Object.values(opened)) end.close();
    throw error;
  }
  return opened;
}

/** Makes the context object over opened ends. */
export function makeContext<Q, A>(queues: Record<string, QueueEnd>, args: A): ActorContext<Q, A> {
  const frozen = Object.freeze({ ...queues });
  return {
    queues: frozen as Q,
    args,
    close(): void {
      for (const end of Object.values(frozen)) end.close();
    },
    [Symbol.dispose](): void {
      this.close();
    },
  };
}

/** The text of an error, for reporting it to the parent. */
export function errorText(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/** Calls `handle` with each error this thread leaves uncaught (a throw, or a rejection no one
 * handles) before Deno reports it; `event.preventDefault()` there stops the report. */
export function onUncaughtError(handle: (event: Event, error: unknown) => void): void {
  globalThis.addEventListener("unhandledrejection", (event) => handle(event, event.reason));
  globalThis.addEventListener("error", (event) => handle(event, event.error));
}

/**
 * Reasons of the errors a parent's exit causes in its actor or Worker. A parent closes its
 * queue ends as it exits: a call of the child's can fail for want of them ("every receiver of
 * the queue has closed") before the child learns that the parent exits.
 *
 * An actor learns it from its stdin, closed a moment later. Left uncaught, that error ended
 * the actor with code 1, no `unload`, and its queues left in /dev/shm; such an error, uncaught,
 * makes the actor wait (up to PARENT_EXIT_WAIT_MS, blocking) for its watchdog: if the
 * parent is gone, the actor exits with code 0 as documented; else the error goes on to any
 * other listener, and ends the process as it would have.
 *
 * A Worker learns it from its stop word, raised (STOP_EXITING) before the parent's ends close;
 * such an error, uncaught, is then not printed (it was, in a process exiting with code 0).
 */
export const PARENT_EXIT_REASONS: readonly string[] = ["no-receivers", "drained", "gone"];

/** The cause of a failed start of an actor or Worker: the caller's reason when its signal
 * aborted the start (as `fetch()` rejects with it), else what failed. */
export function startFailureCause(error: unknown, signal: AbortSignal | undefined): unknown {
  return signal?.aborted ? signal.reason : error;
}

/** A boolean option, or `fallback` when left out: a string such as "false" is refused, not
 * taken for true. */
export function booleanOption(
  value: unknown,
  fallback: boolean,
  name: string,
  caller: string,
): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new TypeError(`${caller}: ${name} must be true or false, got ${shown(value)}`);
  }
  return value;
}
