/**
 * Reading the examples' command-line flags.
 *
 * @module
 */

import { parseArgs } from "node:util";

/**
 * The example's flags, each a string with its default, from `Deno.args`. `--help` (or `-h`)
 * prints `usage` and exits; an unknown flag prints what was wrong and `usage`, and exits with
 * status 2, as command-line tools do (no stack trace; see flagError).
 */
export function exampleFlags<K extends string>(
  usage: string,
  defaults: Record<K, string>,
): Record<K, string> {
  const options: Record<string, { type: "string" | "boolean"; default?: string; short?: string }> =
    { help: { type: "boolean", short: "h" } };
  for (const [name, value] of Object.entries<string>(defaults)) {
    options[name] = { type: "string", default: value };
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: Deno.args, options }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  return Object.fromEntries(
    Object.keys(defaults).map((name) => [name, String(values[name])]),
  ) as Record<K, string>;
}

/** Says what is wrong with the flags and exits with status 2, as command-line tools do. */
export function flagError(message: string): never {
  console.error(`${message} (--help says more)`);
  Deno.exit(2);
}

/** The value of `--name` as a whole number of at least `min`; anything else is a flagError. */
export function wholeFlag(value: string | undefined, name: string, min: number): number {
  const n = Number(value);
  if (value === undefined || value.trim() === "" || !Number.isSafeInteger(n) || n < min) {
    flagError(`--${name} must be a whole number >= ${min}, got ${JSON.stringify(value)}`);
  }
  return n;
}
