/**
 * Echo Worker of `latency_host.ts` (postMessage mode).
 *
 * @module
 */

/// <reference lib="deno.worker" />

self.onmessage = (e: MessageEvent) => self.postMessage(e.data);
