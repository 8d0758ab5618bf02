/**
 * The runnable examples, at small sizes, run exactly as the README says (`deno run` with the
 * same flags), each as a real process tree.
 *
 * @module
 */

import assert from "node:assert/strict";
import { leaksSince, shmSnapshot } from "./actor_fixture_test.ts";

const ROOT = new URL("../", import.meta.url);

/** Runs `deno run <flags> examples/<file> <args>` from the repository root. */
async function runExample(
  flags: string[],
  file: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const before = shmSnapshot();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, `examples/${file}`, ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const { code, stdout, stderr } = await child.output();
  const result = {
    code,
    stdout: new TextDecoder().decode(stdout),
    stderr: new TextDecoder().decode(stderr),
  };
  assert.equal(result.code, 0, `${file} failed:\n${result.stdout}\n${result.stderr}`);
  // The example creates every queue (its actors and Workers only open them).
  assert.deepEqual(await leaksSince(before, [child.pid]), [], `${file} left entries in /dev/shm`);
  return result;
}

Deno.test("examples/usage.ts: the Python reference's producer and consumer", async () => {
  const { stdout } = await runExample(["--allow-ffi", "--allow-run"], "usage.ts", [
    "--count=8",
    "--size=4096",
  ]);
  assert.match(stdout, /^producer: put 8 messages of 4096 bytes .*; all of them received$/m);
  assert.match(stdout, /^consumer: no message within 200 ms \(EmptyError\)$/m);
  assert.match(stdout, /^consumer: received 8 messages, 32768 bytes; the producer has closed$/m);
  assert.match(stdout, /^producer exited with 0, consumer with 0$/m);
});

Deno.test("examples/usage.ts with one message: the consumer's timed gets meet the drained queue", async () => {
  const { stdout } = await runExample(["--allow-ffi", "--allow-run"], "usage.ts", [
    "--count=1",
    "--size=4",
  ]);
  assert.match(stdout, /^consumer: received 1 messages, 4 bytes; the producer has closed$/m);
  assert.match(stdout, /^producer exited with 0, consumer with 0$/m);
});

Deno.test("examples/usage.ts without --allow-run fails with its reason and leaves no queue behind", async () => {
  const before = shmSnapshot();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-ffi", "examples/usage.ts", "--count=1", "--size=4"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const { code, stderr } = await child.output();
  assert.equal(code, 1);
  assert.match(new TextDecoder().decode(stderr), /ActorError: .*--allow-run/);
  // The uncaught error skips the exit's cleanup: the example closes its ends itself.
  assert.deepEqual(await leaksSince(before, [child.pid]), [], "usage.ts left its queue");
});

Deno.test("examples/rl_pipeline.ts: actors, replay buffer and learner", async () => {
  const { stdout } = await runExample(["--allow-ffi", "--allow-run"], "rl_pipeline.ts", [
    "--actors=2",
    "--batches=3",
    "--batch=2",
    "--sample=3",
    "--buffer=8",
  ]);
  // 6 batches in; a sample is served after each batch once 3 observations are buffered.
  assert.match(stdout, /^actor_0: put 3 batches/m);
  assert.match(stdout, /^actor_1: put 3 batches/m);
  assert.match(stdout, /^replay: took in 6 batches, served 5 samples$/m);
  assert.match(stdout, /^learner: 5 samples, 0 mismatches/m);
  assert.match(stdout, /^pipeline: 2 actors put 6 batches .* the learner got 5 samples/m);
  assert.match(stdout, /^pipeline: ok$/m);
});

Deno.test("examples/workers.ts: Workers in one process sharing a queue", async () => {
  const { stdout } = await runExample(["--allow-ffi", "--allow-read"], "workers.ts", [
    "--workers=2",
    "--jobs=30",
    "--size=16",
  ]);
  // Which Worker takes which job is up to them (with tiny jobs one may take them all).
  assert.match(stdout, /^workers: 30 of 30 jobs done in .* by worker_\d: \d+(, worker_\d: \d+)?$/m);
  assert.match(stdout, /^workers: ok$/m);
});

Deno.test("the examples answer --help, and refuse a bad flag with status 2 and no stack trace", async () => {
  const run = async (file: string, ...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-ffi", "--allow-run", "--allow-read", `examples/${file}`, ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
  };
  for (const file of ["usage.ts", "rl_pipeline.ts", "workers.ts"]) {
    const help = await run(file, "--help");
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, new RegExp(`^Usage: deno run .*examples/${file} \\[--`));
    const unknown = await run(file, "--bogus");
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^Unknown option '--bogus'\n\nUsage: /);
    const [flag] = help.stdout.match(/--[a-z]+(?==)/)!;
    const bad = await run(file, `${flag}=x`);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, `${flag} must be a whole number >= 1, got "x" (--help says more)\n`);
  }
});
