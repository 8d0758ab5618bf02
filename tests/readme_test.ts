/**
 * The README's TypeScript snippets, against this checkout: every complete one type-checks,
 * and the programs among them run as the README says. A snippet after the comment
 * `<!-- fragment: ... -->` (alternatives, or an excerpt using names it does not define) is
 * skipped; a snippet whose first line is `// name.ts` is written under that name, so the
 * files of a multi-file example find each other.
 *
 * @module
 */

import assert from "node:assert/strict";
import { leakedSince, shmEntries } from "./helpers.ts";

interface Snippet {
  /** Line of its opening fence in README.md. */
  line: number;
  /** Its file name: from its first line, else `snippet_<line>.ts`. */
  file: string;
  code: string;
  /** The flags of the `deno run` command its first line gives, if any. */
  runFlags?: string[];
}

const README = new URL("../README.md", import.meta.url);
const MOD = new URL("../mod.ts", import.meta.url).href;
/** Modules the README imports only from other snippets or runs through an actor or Worker. */
const NOT_PROGRAMS = new Set(["actor.ts", "worker.ts", "replay.ts"]);

/** The complete snippets of README.md, with the package import pointed at this checkout. */
function snippets(): Snippet[] {
  const lines = Deno.readTextFileSync(README).split("\n");
  const found: Snippet[] = [];
  let fragment = false;
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i];
    if (text.startsWith("<!-- fragment")) fragment = true;
    if (text !== "```ts") continue;
    const start = i;
    const body: string[] = [];
    while (lines[++i] !== "```") body.push(lines[i]);
    if (fragment) {
      fragment = false;
      continue;
    }
    const header = /^\/\/ (\w+\.ts)(?: — deno run (.*) \1)?$/.exec(body[0]);
    found.push({
      line: start + 1,
      file: header?.[1] ?? `snippet_${start + 1}.ts`,
      code: body.join("\n").replaceAll('"jsr:@shmq/shmq"', JSON.stringify(MOD)) + "\n",
      runFlags: header?.[2]?.split(" "),
    });
  }
  return found;
}

async function deno(args: string[], cwd: string): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, output: text };
}

Deno.test("the README's snippets type-check and its programs run", async () => {
  const all = snippets();
  assert.ok(all.length >= 8, `only ${all.length} snippets found: is the parser out of date?`);
  const dir = await Deno.makeTempDir({ prefix: "shmq-readme-" });
  const before = new Set(shmEntries());
  try {
    for (const s of all) await Deno.writeTextFile(`${dir}/${s.file}`, s.code);
    const check = await deno(["check", "--quiet", ...all.map((s) => s.file)], dir);
    const where = all.map((s) => `${s.file}: README.md line ${s.line}`).join("\n");
    assert.equal(check.code, 0, `${check.output}\n${where}`);

    for (const s of all) {
      if (NOT_PROGRAMS.has(s.file)) continue;
      // A snippet with no command of its own needs only the native core.
      const flags = s.runFlags ?? ["--allow-ffi"];
      const run = await deno(["run", "--quiet", ...flags, s.file], dir);
      assert.equal(run.code, 0, `${s.file} (README.md line ${s.line}):\n${run.output}`);
      if (s.file === "parent.ts") {
        const frames = run.output.match(/idx: \d+/g) ?? [];
        assert.equal(frames.length, 100, "every frame the actor put, printed");
        assert.equal(frames.at(-1), "idx: 99");
        assert.equal(run.output.trim().split("\n").at(-1), "actor exited with 0");
      }
    }
    assert.deepEqual(leakedSince(before), [], "left in /dev/shm");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
