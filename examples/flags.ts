/**
 * Reading the examples' numeric command-line flags.
 *
 * @module
 */

/** The value of `--name` as a whole number of at least `min`, or a RangeError naming it. */
export function wholeFlag(value: string | undefined, name: string, min: number): number {
  const n = Number(value);
  if (value === undefined || value.trim() === "" || !Number.isSafeInteger(n) || n < min) {
    throw new RangeError(
      `--${name} must be a whole number >= ${min}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}
