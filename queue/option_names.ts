/**
 * Refusing option names a call does not know. TypeScript only catches a misspelling in an
 * object literal; in an options object built elsewhere, `{ timout: 100 }` would be ignored
 * and the call would wait forever.
 *
 * @module
 */

import { shown } from "./shown.ts";

/**
 * Throws a TypeError when `options` is not an object (`null` included), or naming the first
 * own option of it that is not in `known`, with the known name it is closest to, if one is
 * near. An unknown option whose value is `undefined` changes nothing and passes: code that
 * forwards `{ signal: undefined }` to a call without that option keeps working.
 */
export function refuseUnknownOptions(
  options: unknown,
  known: readonly string[],
  where: string,
): void {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`${where}: options must be an object, got ${shown(options)}`);
  }
  // for-in over V8's enum cache, not Object.entries: this runs on every call with options.
  for (const name in options) {
    if (known.includes(name)) continue;
    // Its descriptor, not its value: a getter of an option refused is not run.
    const own = Object.getOwnPropertyDescriptor(options, name);
    if (own === undefined || ("value" in own && own.value === undefined)) continue;
    const near = known.find((k) => editDistance(k.toLowerCase(), name.toLowerCase()) <= 2);
    const hint = near === undefined ? "" : ` (did you mean \`${near}\`?)`;
    const list = known.length === 0 ? "none" : known.map((k) => `\`${k}\``).join(", ");
    throw new TypeError(
      `${where}: unknown option \`${name}\`${hint}; the options it takes: ${list}`,
    );
  }
}

/** Levenshtein distance: single-character insertions, deletions and substitutions. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length];
}
