/**
 * How a wrong argument appears in an error message, shared by every check of user options.
 *
 * @module
 */

/** A value for an error message: numbers and booleans as they are, anything else with its
 * type. */
export function shown(value: unknown): string {
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  if (typeof value === "bigint") return `the bigint ${value}n`;
  if (Array.isArray(value)) return "an array";
  return value === null ? "null" : typeof value;
}
