// The shared-memory layout's version must move whenever the layout does: ends of two versions
// refuse each other's queues only if the versions differ. A change left unversioned let an
// end of the last build join a queue and break a rule it did not know (the receiver epoch of
// 94b32a1, under version 17 as 2b0e999 was). So every name, value and offset function that
// queue/layout.ts exports is fingerprinted here, with the version it was recorded at.
import assert from "node:assert/strict";
import * as L from "../queue/layout.ts";

/** Recorded with LAYOUT_VERSION: when the layout changes, bump the version, then record both. */
const RECORDED = {
  version: 23,
  fingerprint: "4f897f2273810d18e3bbf43c64e61ba5ef239dfe0049e94564b2abf040cc8d58",
};

/** A function's results on a few inputs (each argument the same): what it computes, not how
 * its source reads after Deno transpiled it. */
function results(f: (...args: never[]) => unknown): string {
  return JSON.stringify([0, 1, 2, 3, 7, 16, 100, 4096, 65537].map((x) => {
    try {
      return f(...(Array(f.length).fill(x) as never[]));
    } catch {
      return "throws";
    }
  }));
}

async function fingerprint(): Promise<string> {
  const { LAYOUT_VERSION: _, ...layout } = L;
  const shape = Object.entries(layout)
    .sort(([a], [b]) => a < b ? -1 : 1)
    .map(([name, value]) =>
      `${name}=${typeof value === "function" ? results(value) : JSON.stringify(value)}`
    )
    .join("\n");
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(shape));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("the layout version was bumped with the last change of queue/layout.ts", async () => {
  const now = await fingerprint();
  if (now !== RECORDED.fingerprint) {
    assert.notEqual(
      L.LAYOUT_VERSION,
      RECORDED.version,
      "queue/layout.ts changed since version " + RECORDED.version + " was recorded: bump " +
        "LAYOUT_VERSION, then record the new version and fingerprint " + now + " in " +
        "tests/layout_version_test.ts",
    );
    assert.fail(
      `LAYOUT_VERSION is ${L.LAYOUT_VERSION}: record it and fingerprint ${now} in ` +
        "tests/layout_version_test.ts",
    );
  }
  assert.equal(L.LAYOUT_VERSION, RECORDED.version, "record the new LAYOUT_VERSION");
});
