/**
 * How `console.log` (Deno.inspect) shows a queue end.
 *
 * @module
 */

/** The `inspect` function Deno hands a `Deno.customInspect` method, and its options. */
export type Inspect = (value: unknown, options?: unknown) => string;

/** An end as `console.log` shows it: its class, its queue's name and whether it is closed. */
export function inspectEnd(
  className: string,
  end: { readonly descriptor: { readonly name: string }; readonly closed: boolean },
  inspect: Inspect,
  options: unknown,
): string {
  return `${className} ${inspect({ queue: end.descriptor.name, closed: end.closed }, options)}`;
}
