/**
 * Who runs this code: the process, by its token, and the thread, by its identity, each read
 * once per thread (every Worker loads its own copy of this module).
 *
 * @module
 */

import * as native from "../ffi/native.ts";

/** The process token, drawn once (see native.processToken). */
export const processToken = (): number => token ??= native.processToken();
let token: number | undefined;

/** The thread running this module (each Worker loads its own copy), null without /proc. */
export function thisThread(): native.ThreadIdentity | null {
  if (thread === undefined) thread = native.threadIdentity() ?? null;
  return thread;
}
let thread: native.ThreadIdentity | null | undefined;

/** Whether this is the process's main thread, whose unload is the process's exit. */
export function isMainThread(): boolean {
  return mainThread ??= native.threadIdentity()?.tid === Deno.pid;
}
let mainThread: boolean | undefined;
