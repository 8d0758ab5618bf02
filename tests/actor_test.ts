/**
 * Subprocess actors, with real processes: descriptor handoff, permissions, output capture,
 * start-up failures, an actor killed mid-stream, and actors outliving a killed parent.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ActorError,
  type ActorHandle,
  ClosedError,
  createSharedMemoryPair,
  encode,
  NdArray,
  spawnActor,
  spawnWorker,
  sweepStaleQueues,
} from "../mod.ts";
import { native } from "../ffi/loader.ts";
import { pidAlive } from "../ffi/native.ts";
import { type ActorPermissions, permissionFlags } from "../actor/spawn.ts";
import { HANDOFF_VERSION } from "../actor/protocol.ts";
import {
  type Echo,
  FIXTURE,
  killedAtScopeEnd,
  leaksSince,
  shmSnapshot,
  sleep,
  waitGone,
} from "./actor_fixture_test.ts";
import { killedWhenDisposed, shmEntries } from "./helpers.ts";

/** Runs a test body and asserts that it leaves nothing in /dev/shm. */
function clean(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    const before = shmSnapshot();
    await fn();
    assert.deepEqual(await leaksSince(before), [], "left in /dev/shm");
  };
}

/** Resolves with what the promise gives, or rejects if it takes longer than `ms`. */
async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The pid a child prints as its first line of stdout (an actor's, passed on); the rest of its
 * stdout is not read. */
async function printedPid(child: Deno.ChildProcess): Promise<number> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await within(30_000, reader.read(), "the printed pid");
      if (done) break;
      text += value;
    }
  } finally {
    await reader.cancel();
  }
  const pid = Number(text.trim());
  assert.ok(pid > 0, `no pid printed: ${JSON.stringify(text)}`);
  return pid;
}

Deno.test(
  "spawnActor hands named queue ends and args to a real actor process",
  clean(async () => {
    const [toActor, actorIn] = createSharedMemoryPair({ capacity: 4 });
    const [actorOut, fromActor] = createSharedMemoryPair({ capacity: 4 });
    const args = {
      scale: 2,
      big: 1n << 70n,
      tags: new Map([["a", new Set([1, 2])]]),
      weights: new NdArray("float32", [2, 3], new Float32Array([1, 2, 3, 4, 5, 6])),
    };
    await using actor = await spawnActor(FIXTURE, {
      argv: ["echo"],
      queues: { in: actorIn, out: actorOut },
      args,
      transfer: true,
    });
    // transfer: our copies are closed, the actor holds its own.
    assert.ok(actorIn.closed && actorOut.closed);
    // A second handoff of a transferred end says why it is closed (before: "is a closed
    // receiver"), before any process starts.
    await assert.rejects(
      () => spawnActor(FIXTURE, { argv: ["echo"], queues: { in: actorIn } }),
      (e) =>
        e instanceof TypeError &&
        /queue "in" is a receiver an earlier spawnActor\(\) or spawnWorker\(\) with transfer: true handed over, and closed/
          .test(e.message),
    );
    assert.ok(actor.pid > 0 && actor.running);

    const echoes: Echo[] = [];
    const reading = (async () => {
      for await (const m of fromActor) echoes.push(m as Echo);
    })();
    for (let i = 0; i < 20; i++) await toActor.put({ i, data: new Float64Array([i, i / 2]) });
    toActor.close(); // the actor's loop ends once drained; it closes `out`
    await reading;
    fromActor.close();
    assert.equal(echoes.length, 20);
    echoes.forEach((e, i) => {
      const got = e.got as { i: number; data: Float64Array };
      assert.equal(got.i, i);
      assert.deepEqual([...got.data], [i, i / 2]);
      assert.equal(e.by, "actor");
    });
    const back = echoes[0].args as typeof args;
    assert.equal(back.big, 1n << 70n);
    assert.deepEqual(back.tags, args.tags);
    assert.ok(back.weights instanceof NdArray);
    assert.deepEqual(back.weights.shape, [2, 3]);
    assert.deepEqual([...back.weights.data], [1, 2, 3, 4, 5, 6]);
    assert.deepEqual({ ...await actor.status }, { success: true, code: 0, signal: null });
  }),
);

Deno.test(
  "an actor gets the permissions named, plus --allow-ffi and read access to the library",
  clean(async () => {
    const [out, results] = createSharedMemoryPair({ capacity: 2 });
    const library = native().path;
    await using actor = await spawnActor(FIXTURE, {
      argv: ["permissions"],
      queues: { out },
      args: { library },
      permissions: { net: ["127.0.0.1"], env: ["HOME"] },
      transfer: true,
    });
    const states = await results.get<Record<string, string>>({ timeout: 10_000 });
    results.close();
    assert.deepEqual(states, {
      readLibrary: "granted",
      readEtc: "prompt",
      write: "prompt",
      netLocal: "granted",
      netOther: "prompt",
      envHome: "granted",
      envPath: "prompt",
      run: "prompt",
      sys: "prompt",
      ffi: "granted",
    });
    assert.equal((await actor.status).code, 0);
  }),
);

Deno.test("an actor handed only args must start too: one that fails rejects spawnActor", async () => {
  // Before: spawnActor resolved at once, and the failed actor went unnoticed.
  const error = await spawnActor(FIXTURE, { argv: ["exit3"], args: { n: 1 }, readyTimeout: 10_000 })
    .then(() => undefined, (e) => e);
  assert.ok(error instanceof ActorError, String(error));
  assert.match(error.message, /exited \(code 3\)/);
  const worker = await spawnWorker(FIXTURE, { name: "throws", args: { n: 1 } })
    .then(() => undefined, (e) => e);
  assert.ok(worker instanceof ActorError, String(worker));
  assert.match(worker.message, /this Worker fails on load/);
});

Deno.test("an actor may import the package's preload module from where the library came from", () => {
  const defaults = "deno.land:443,jsr.io:443,esm.sh:443,raw.esm.sh:443,cdn.jsdelivr.net:443," +
    "raw.githubusercontent.com:443,gist.githubusercontent.com:443";
  const library = { path: "/cache/libshmq.so", source: "remote" };
  const imports = (permissions: ActorPermissions | undefined, preload: string) =>
    permissionFlags(permissions, library, "t", preload).filter((f) => f.startsWith("--allow-imp"));
  const jsr = "https://jsr.io/@shmq/shmq/0.1.0/actor/preload.ts";
  const local = "http://127.0.0.1:8765/actor/preload.ts";
  // Deno's default list covers jsr.io, and a file needs no import permission.
  assert.deepEqual(imports(undefined, jsr), []);
  assert.deepEqual(imports(undefined, "file:///src/shmq/actor/preload.ts"), []);
  // Another host: granted, with the default list the flag would otherwise take away.
  assert.deepEqual(imports(undefined, local), [`--allow-import=127.0.0.1:8765,${defaults}`]);
  assert.deepEqual(imports(undefined, "http://example.org/actor/preload.ts"), [
    `--allow-import=example.org:80,${defaults}`,
  ]);
  // The caller's list replaces the default one: the library's host joins it, default or not.
  // Before: jsr.io was left out, and every actor was refused its preload module.
  assert.deepEqual(imports({ import: ["example.com"] }, jsr), [
    "--allow-import=example.com,jsr.io:443",
  ]);
  assert.deepEqual(imports({ import: ["example.com"] }, local), [
    "--allow-import=example.com,127.0.0.1:8765",
  ]);
  assert.deepEqual(imports({ import: true }, local), ["--allow-import"]);
});

Deno.test("piped output is captured; no queues means no wait for the actor", async () => {
  const actor = await spawnActor(FIXTURE, {
    argv: ["print"],
    args: { n: 7 },
    stdout: "piped",
    stderr: "piped",
  });
  const { status, stdout, stderr } = await actor.output();
  assert.equal(status.code, 0);
  assert.equal(stdout, 'stdout: {"n":7}\n');
  assert.equal(stderr, "stderr: hello\n");
  await actor[Symbol.asyncDispose]();
});

Deno.test("args as large as an actor takes arrive whole; larger ones are refused", async () => {
  const limit = 64 * 1024 * 1024;
  const largest = new Uint8Array(limit - 64).fill(7, -1);
  assert.ok(encode(largest).length <= limit, "the codec's framing grew: pick a smaller array");
  const actor = await spawnActor(FIXTURE, { argv: ["argsLength"], args: largest, stdout: "piped" });
  const { status, stdout } = await actor.output();
  assert.equal(status.code, 0);
  assert.equal(stdout, `${largest.length} 7\n`);
  await assert.rejects(
    () => spawnActor(FIXTURE, { argv: ["argsLength"], args: new Uint8Array(limit) }),
    {
      name: "RangeError",
      message: /^spawnActor: args encode to \d+ bytes, more than the 67108864 .* through a queue$/,
    },
  );
});

/** Runs the fixture's "print" actor module by hand, with `env` added and its stdin a pipe the
 * test holds open; without `--allow-env` when `allowEnv` is false. */
function runByHand(env: Record<string, string> = {}, allowEnv = true): Deno.ChildProcess {
  const permissions = ["--allow-ffi", "--allow-read", ...(allowEnv ? ["--allow-env"] : [])];
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, FIXTURE.pathname, "print"],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
    env,
  }).spawn();
}

Deno.test("actorContext() in a process spawnActor did not start fails at once, though its stdin stays open", async () => {
  // An IDE or a CI step runs the module with a pipe that never ends: the read would hang.
  for (const allowEnv of [true, false]) {
    const child = runByHand({}, allowEnv);
    try {
      const stderr = await within(30_000, new Response(child.stderr).text(), "the refusal");
      assert.match(
        stderr,
        allowEnv
          ? /actorContext: this process was not started by spawnActor \(SHMQ_ACTOR_PARENT is not set\)/
          : /actorContext: this process was not started by spawnActor \(it may not read SHMQ_ACTOR_PARENT, which spawnActor grants\)/,
      );
      assert.notEqual((await child.status).code, 0);
    } finally {
      await child.stdin.close().catch(() => {});
    }
  }
});

Deno.test("a stop request read with the handoff is seen as one (stop() right after spawnActor)", async () => {
  // Before: the stop byte came in the handoff's read and was taken for trailing space; the
  // watchdog then saw stdin end with nothing read, took its parent for gone, and waited up to
  // 0.5 s for a parent that lived on.
  const context = JSON.stringify(new URL("../actor/context.ts", import.meta.url).href);
  const line = JSON.stringify({ shmqActor: HANDOFF_VERSION, queues: {} }) + "\n";
  for (const [input, asked] of [[line, false], [line + "\n", true]] as const) {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { readHandoff } from ${context};
        const { handoff, stopAsked } = await readHandoff("t");
        console.log(JSON.stringify({ version: handoff.shmqActor, stopAsked }));`,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input)); // one write: one read
    await writer.close();
    const { code, stdout } = await child.output();
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(stdout)), {
      version: HANDOFF_VERSION,
      stopAsked: asked,
    });
  }
});

Deno.test("actorContext() refuses a stdin that is no handoff after its first bytes", async () => {
  // Without the early check it would read on until a newline or the handoff's size limit.
  const child = runByHand({ SHMQ_ACTOR_PARENT: String(Deno.pid) }); // as spawnActor sets it
  const writer = child.stdin.getWriter();
  writer.write(new Uint8Array(1 << 20).fill(0x78)).catch(() => {}); // no newline; stays open
  const stderr = await within(
    30_000,
    new Response(child.stderr).text(),
    "the actor's refusal",
  );
  assert.match(stderr, /actorContext: stdin did not carry a spawnActor handoff/);
  assert.notEqual((await child.status).code, 0);
  await writer.close().catch(() => {});
});

Deno.test(
  "spawnActor rejects, leaving no process, when the actor exits before opening its queues",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    const error = await spawnActor(FIXTURE, { argv: ["exit3"], queues: { inbox: receiver } })
      .then(() => undefined, (e) => e);
    assert.ok(error instanceof ActorError, String(error));
    assert.match(error.message, /exited \(code 3\) before it called actorContext\(\)/);
    assert.equal(error.status?.code, 3);
    assert.ok(!receiver.closed, "without transfer nothing is closed");
    sender.close();
    receiver.close();
  }),
);

Deno.test(
  "spawnActor rejects with the actor's reason when it expects other queues",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    const error = await spawnActor(FIXTURE, {
      argv: ["mismatch"],
      queues: { inbox: receiver },
      stderr: "null",
      transfer: true,
    }).then(() => undefined, (e) => e);
    assert.ok(error instanceof ActorError, String(error));
    assert.match(
      error.message,
      /expected "inbox" to be a sender, but the parent handed a receiver/,
    );
    assert.ok(!receiver.closed, "a failed transfer closes nothing");
    // One its spec does not name. Before, it was opened and held unused: a receiver nobody
    // read, which kept the parent's puts waiting for room instead of refused.
    const extra = await spawnActor(FIXTURE, {
      argv: ["mismatch"],
      queues: { inbox: sender, results: receiver },
      stderr: "null",
    }).then(() => undefined, (e) => e);
    assert.ok(extra instanceof ActorError, String(extra));
    assert.match(
      extra.message,
      /the parent handed "results" \(a receiver\), which options\.queues does not name/,
    );
    sender.close();
    receiver.close();
  }),
);

Deno.test(
  "spawnActor kills an actor that does not open its queues within readyTimeout",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    const started = performance.now();
    const error = await spawnActor(FIXTURE, {
      argv: ["slow"],
      queues: { inbox: receiver },
      readyTimeout: 500,
    }).then(() => undefined, (e) => e);
    assert.ok(error instanceof ActorError, String(error));
    assert.match(error.message, /within 500 ms/);
    assert.equal(error.status?.signal, "SIGKILL");
    assert.ok(performance.now() - started < 10_000);
    sender.close();
    receiver.close();
  }),
);

Deno.test(
  "an actor that dies of an uncaught error holding the queue's last end: the queue goes when it exits",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
    const name = sender.descriptor.name.slice(1);
    const actor = await spawnActor(FIXTURE, {
      argv: ["uncaught"],
      queues: { out: sender },
      transfer: true,
      stderr: "null",
    });
    receiver.close(); // the actor's sender is now the queue's only end
    const status = await actor.status;
    assert.equal(status.success, false);
    // Nothing else made or opened a queue meanwhile (which would sweep too): the parent did,
    // on seeing its actor fail.
    assert.deepEqual(shmEntries().filter((n) => n.startsWith(name)), []);
    await actor[Symbol.asyncDispose]();
  }),
);

Deno.test("bad options are refused before any process starts", async () => {
  const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
  sender.close();
  await assert.rejects(() => spawnActor(FIXTURE, { queues: { out: sender } }), /closed sender/);
  await assert.rejects(
    () => spawnActor(FIXTURE, { denoArgs: ["--allow-all"] }),
    /use options.permissions/,
  );
  await assert.rejects(
    () => spawnActor(FIXTURE, { permissions: { hrtime: true } as never }),
    /unknown permission "hrtime"/,
  );
  await assert.rejects(
    () => spawnActor(FIXTURE, { queues: { x: { shmq: 1, end: "sender", name: "/etc/passwd" } } }),
    /invalid queue descriptor/,
  );
  await assert.rejects(
    () => spawnActor(FIXTURE, { stdout: "file" as "null" }),
    { name: "TypeError", message: /spawnActor: stdout must be "inherit", "piped" or "null"/ },
  );
  // The args' path is named from `args`, not from the codec's `value`.
  await assert.rejects(
    () => spawnActor(FIXTURE, { args: { job: { run: () => {} } } }),
    { name: "TypeError", message: /^spawnActor: args\.job\.run: functions are not supported/ },
  );
  await assert.rejects(
    () => spawnWorker("./relative.ts", { args: 1 }),
    { name: "TypeError", message: /new URL\("\.\/relative\.ts", import\.meta\.url\)/ },
  );
  await assert.rejects(
    () => spawnWorker(FIXTURE, { args: [Symbol("s")] }),
    { name: "TypeError", message: /^spawnWorker: args\[0\]/ },
  );
  // Before, each was taken: a Map as no queues at all (the actor failed later, for a queue
  // "the parent handed no queues"), a URL of another scheme by its path (`--allow-read=/`
  // for https://example.com/), and an http: cwd failed in Deno's words, naming no option.
  await assert.rejects(
    () => spawnActor(FIXTURE, { queues: new Map([["out", receiver]]) as never }),
    { name: "TypeError", message: /^spawnActor: queues must be an object of queue ends by name/ },
  );
  await assert.rejects(
    () => spawnActor(FIXTURE, { permissions: { read: [new URL("https://example.com/")] } }),
    { name: "TypeError", message: /permissions\.read entries may be file: URLs only/ },
  );
  await assert.rejects(
    () => spawnActor(FIXTURE, { cwd: new URL("http://example.com/") }),
    { name: "TypeError", message: /^spawnActor: cwd must be a path or a file: URL/ },
  );
  // Short permission flags, alone, grouped or with values, grant as much as the long ones.
  for (
    const flag of ["-A", "-R", "-W", "-N", "-E", "-S", "-I", "-P", "-RW", "-qN", "-N=x.org"]
      .concat([
        "--permission-set",
        "--permission-set=all",
        "--allow-read=/",
        "--unsafely-ignore-certificate-errors",
        "--allow-scripts", // npm lifecycle scripts, which run unsandboxed
      ])
  ) {
    await assert.rejects(
      () => spawnActor(FIXTURE, { denoArgs: [flag] }),
      { name: "TypeError", message: /may not grant permissions/ },
      flag,
    );
  }
  receiver.close();
});

Deno.test("closing a Worker that never called workerContext() terminates it at once", async () => {
  const handle = await spawnWorker(FIXTURE, { name: "plain" });
  // Nothing in it can answer the request to close its ends: no wait for the timeout.
  await within(5000, handle.close({ timeout: 60_000 }), "close()");
});

Deno.test("denoArgs that grant nothing are passed to the actor", async () => {
  await using actor = await spawnActor(FIXTURE, {
    argv: ["print"],
    denoArgs: ["-q", "-L=info", "--v8-flags=--stack-size=2000"],
    stdout: "piped",
    stderr: "null",
  });
  const { status, stdout } = await actor.output();
  assert.equal(status.code, 0);
  assert.equal(stdout, "stdout: undefined\n");
});

Deno.test(
  "a process an actor starts, with its env and stdin, is told it is no actor: the actor's handoff stays the actor's",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
    await using actor = await spawnActor(FIXTURE, {
      argv: ["grandchild"],
      queues: { out: sender },
      transfer: true,
      permissions: { run: [Deno.execPath()] },
      stdout: "piped",
      readyTimeout: 20_000,
    });
    // Before: the grandchild read the handoff, opened the queues and reported in the actor's
    // stead, and the actor's own actorContext() waited on a stdin with nothing left for it.
    assert.equal(await receiver.get({ timeout: 10_000 }), "ok");
    const { status, stdout } = await actor.output();
    assert.equal(status.code, 0);
    assert.match(
      stdout,
      /not started by spawnActor \(SHMQ_ACTOR_PARENT names process \d+, not its parent \d+/,
    );
    receiver.close();
  }),
);

Deno.test('a module path that starts with "-" is run as a path, never taken for a flag of deno run', async () => {
  const dir = await Deno.makeTempDir({ prefix: "shmq-test-dash-" });
  try {
    await Deno.writeTextFile(`${dir}/-actor.ts`, `console.log("ran");\n`);
    await Deno.writeTextFile(
      `${dir}/writes.ts`,
      `Deno.writeTextFileSync(${JSON.stringify(`${dir}/written`)}, "x");\n`,
    );
    // Before: "deno run -actor.ts", which printed deno's help and exited 0.
    const named = await spawnActor("-actor.ts", { cwd: dir, stdout: "piped", stderr: "null" });
    const out = await named.output();
    assert.deepEqual([out.status.code, out.stdout], [0, "ran\n"]);
    // Before: "deno run -W writes.ts", write access that denoArgs: ["-W"] is refused.
    const flag = await spawnActor("-W", {
      cwd: dir,
      argv: [`${dir}/writes.ts`],
      stdout: "null",
      stderr: "null",
    });
    assert.notEqual((await flag.status).code, 0, "no module ./-W");
    assert.equal(await Deno.stat(`${dir}/written`).then(() => true, () => false), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SHMQ_NATIVE_LIB given relative to the parent's directory is found by an actor working in another", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shmq-test-cwd-" });
  try {
    const lib = `ffi/lib/${Deno.build.arch}-linux/libshmq.so`;
    const parent = `import { createSharedMemoryPair, spawnActor } from ${
      JSON.stringify(new URL("../mod.ts", import.meta.url).href)
    };
      const [sender, receiver] = createSharedMemoryPair();
      await using actor = await spawnActor(${JSON.stringify(FIXTURE.href)}, {
        argv: ["greeter"], queues: { inbox: receiver }, transfer: true,
        cwd: ${JSON.stringify(dir)}, stdout: "null",
      });
      await sender.put("x");
      sender.close();
      console.log("status", (await actor.status).code);`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", parent],
      cwd: new URL("..", import.meta.url),
      env: { SHMQ_NATIVE_LIB: `./${lib}` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    // Before: the actor got "./ffi/lib/...", looked for it in its own directory, and exited
    // before it called actorContext().
    assert.equal(
      new TextDecoder().decode(out.stdout),
      "status 0\n",
      new TextDecoder().decode(out.stderr),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(
  "an actor that prints more than a pipe holds before opening its queues still starts",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
    await using actor = await within(
      30_000,
      spawnActor(FIXTURE, {
        argv: ["chatty"],
        queues: { out: sender },
        transfer: true,
        stdout: "piped",
        readyTimeout: 20_000,
      }),
      "spawnActor",
    );
    assert.equal(await receiver.get({ timeout: 10_000 }), "ok");
    const { status, stdout } = await actor.output();
    assert.equal(status.code, 0);
    assert.equal(stdout, "a".repeat(256 * 1024) + "\nready\n", "output lost or reordered");
    receiver.close();
  }),
);

Deno.test(
  "what an actor printed while starting can be read before it prints again",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    await using actor = await spawnActor(FIXTURE, {
      argv: ["greeter"],
      queues: { inbox: receiver },
      transfer: true,
      stdout: "piped",
    });
    // The actor waits for a message, which this test sends only once it has read the line.
    const reader = actor.stdout!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    while (!text.includes("\n")) {
      const { done, value } = await within(5000, reader.read(), "reading the first line");
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    assert.equal(text, "hello before ready\n");
    await sender.put("x");
    sender.close();
    while (!text.includes("got x\n")) {
      const { done, value } = await within(5000, reader.read(), "reading the second line");
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    assert.equal(text, "hello before ready\ngot x\n");
    reader.releaseLock();
    assert.equal((await actor.status).code, 0);
  }),
);

/** The ActorError of the fixture actor run as `mode` with a sender end, which fails to start. */
async function failedStart(
  mode: string,
  stderr: "piped" | "null",
  stdout: "piped" | "inherit" = "inherit",
): Promise<ActorError> {
  const [sender, receiver] = createSharedMemoryPair();
  try {
    const error = await spawnActor(FIXTURE, {
      argv: [mode],
      queues: { out: sender },
      stderr,
      stdout,
    }).then(() => undefined, (e) => e);
    assert.ok(error instanceof ActorError, String(error));
    return error;
  } finally {
    sender.close();
    receiver.close();
  }
}

Deno.test(
  "a failed start quotes the end of the actor's piped stderr",
  clean(async () => {
    const error = await failedStart("crash", "piped");
    assert.match(error.message, /exited \(code 1\) before it called actorContext\(\)/);
    assert.match(error.message, /its stderr ended with:\n.*actor\.toml is missing/s);
    assert.match(error.message, /start-up failed/);
    assert.ok(!error.message.includes("\x1b["), "terminal colours left in the message");
  }),
);

Deno.test(
  "an actor that lacks a permission: the error says to grant it through options.permissions",
  clean(async () => {
    const error = await failedStart("needsRead", "piped");
    assert.match(error.message, /NotCapable: Requires read access/);
    assert.match(error.message, /options\.permissions, e\.g\. \{ read: \["\.\/data"\] \}/);
    // Its stderr not captured: the hint still comes, as a possibility.
    const unseen = await failedStart("needsRead", "null");
    assert.match(unseen.message, /its stderr was not captured: if it asks for a permission/);
    // Captured and empty: said so, with no guess about permissions.
    const quiet = await failedStart("quietExit", "piped");
    assert.match(
      quiet.message,
      /exited \(code 7\) before it called actorContext\(\), or before that call reported back; it wrote nothing to stderr$/,
    );
    // What it said on a piped stdout is quoted too.
    const told = await failedStart("saysOnStdout", "piped", "piped");
    assert.match(
      told.message,
      /; it wrote nothing to stderr; its stdout ended with:\nno GPU found: giving up$/,
    );
  }),
);

Deno.test(
  "timeouts longer than a timer holds, and Infinity, do not fire at once",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    const actor = await spawnActor(FIXTURE, {
      argv: ["holder", "async"],
      queues: { inbox: receiver },
      readyTimeout: 2 ** 31,
    });
    // Killed at once, this would end with SIGKILL: stopped cleanly, it exits with code 0.
    const status = await actor.stop({ timeout: Infinity });
    assert.deepEqual([status.code, status.signal], [0, null]);
    await assert.rejects(() => actor.stop({ timeout: -1 }), RangeError);
    sender.close();
    receiver.close();
  }),
);

Deno.test(
  "disposing a running actor that holds a queue's last end removes the queue",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
    const name = sender.descriptor.name.slice(1);
    {
      await using actor = await spawnActor(FIXTURE, {
        argv: ["holder", "async"],
        queues: { inbox: receiver },
        transfer: true,
      });
      sender.close(); // the actor's receiver is the queue's last end now
      assert.ok(shmEntries().includes(name));
      assert.equal(actor.pid > 0, true);
    }
    // Stopped as stop() does, it closed its end on the way out: killed, it could not have.
    assert.ok(!shmEntries().includes(name), "the queue is gone with its last end");
  }),
);

Deno.test(
  "a parent that ends without disposing its actor exits, and so does the actor",
  clean(async () => {
    // Both ended however the test ends: a failed check left the actor running for good. Its
    // pid is read as printed, not at the parent's exit, which may never come.
    await using parent = killedWhenDisposed(
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", FIXTURE.pathname, "forgetful"],
        stdout: "piped",
        stderr: "inherit",
      }).spawn(),
    );
    const actorPid = await printedPid(parent);
    await using _actor = killedAtScopeEnd(actorPid);
    assert.equal((await within(15_000, parent.status, "the parent's exit")).code, 0);
    assert.ok(await waitGone(actorPid, 10_000), "the actor outlived its parent");
  }),
);

Deno.test("an actor that never reaches actorContext() exits with its parent, gone or killed", async () => {
  for (const [how, argv] of [["ends", []], ["is killed mid-start", ["queues"]]] as const) {
    const before = shmSnapshot();
    // Both ended however the check ends: a failed one left the parent running.
    await using parent = killedWhenDisposed(
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", FIXTURE.pathname, "abandonsBusy", ...argv],
        stdout: "piped",
        stderr: "inherit",
      }).spawn(),
    );
    const actorPid = await printedPid(parent);
    await using _actor = killedAtScopeEnd(actorPid);
    if (how !== "ends") parent.kill("SIGKILL");
    await within(15_000, parent.status, "the parent's exit");
    // Before the preload's watch, it ran on with init as its parent, busy for good.
    assert.ok(await waitGone(actorPid, 5000), `the actor outlived a parent that ${how}`);
    // What the killed parent held is stale now: the sweep removes it.
    sweepStaleQueues();
    assert.deepEqual(await leaksSince(before, [parent.pid, actorPid]), [], "left in /dev/shm");
  }
});

Deno.test("an actor on another copy of the library stops the start-up watch all the same", async () => {
  // Another copy of the package (another version, or the same files at another URL) has a
  // native core of its own: the watch its preload started must still be stopped, or an actor
  // that asked to outlive its parent would be ended with it.
  const dir = await Deno.makeTempDir({ prefix: "shmq-test-copy-" });
  const root = new URL("../", import.meta.url).pathname;
  const before = shmSnapshot();
  let actorPid = 0;
  let middle: Deno.ChildProcess | undefined;
  try {
    for (const part of ["mod.ts", "actor", "codec", "ffi", "queue"]) {
      const cp = await new Deno.Command("cp", { args: ["-r", `${root}${part}`, dir] }).output();
      assert.ok(cp.success, part);
    }
    await Deno.writeTextFile(
      `${dir}/actor.ts`,
      `import { actorContext } from "./mod.ts";
      await actorContext({ queues: { inbox: "receiver" }, exitWithParent: false });
      console.log(Deno.pid);
      setInterval(() => {}, 1000);`,
    );
    await Deno.writeTextFile(
      `${dir}/middle.ts`,
      `import { createSharedMemoryPair, spawnActor } from ${JSON.stringify(`${root}mod.ts`)};
      const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
      await spawnActor(${JSON.stringify(`${dir}/actor.ts`)}, { queues: { inbox: receiver } });
      setInterval(() => sender, 1000);`,
    );
    middle = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${dir}/middle.ts`],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    actorPid = await printedPid(middle);
    middle.kill("SIGKILL");
    await middle.status;
    // The watch checks every 0.1 s: a stale one would have ended the actor by now.
    await sleep(1500);
    assert.ok(pidAlive(actorPid), "the actor was ended with its parent, as it asked not to be");
  } finally {
    if (middle !== undefined) {
      try {
        middle.kill("SIGKILL");
      } catch { /* exited */ }
      await middle.status;
    }
    if (actorPid > 0 && pidAlive(actorPid)) Deno.kill(actorPid, "SIGKILL");
    if (actorPid > 0) await waitGone(actorPid, 5000);
    await Deno.remove(dir, { recursive: true });
    sweepStaleQueues(); // what the killed processes held
  }
  assert.deepEqual(await leaksSince(before, [middle!.pid, actorPid]), [], "left in /dev/shm");
});

Deno.test(
  "an actor killed with SIGKILL mid-stream: the parent sees its status, and the stream ends",
  clean(async () => {
    const [out, stream] = createSharedMemoryPair({ capacity: 8, arenaBytes: 256 * 1024 });
    await using actor = await spawnActor(FIXTURE, {
      argv: ["streamer"],
      queues: { out },
      transfer: true,
    });
    let next = 0;
    for (; next < 200; next++) {
      assert.equal((await stream.get<{ seq: number }>({ timeout: 10_000 })).seq, next);
    }
    // A misspelled signal is the caller's mistake: it throws, and the actor runs on.
    assert.throws(() => actor.kill("SIGFOO" as Deno.Signal), {
      name: "TypeError",
      message: /^ActorHandle\.kill: Invalid signal: SIGFOO/,
    });
    assert.equal((await stream.get<{ seq: number }>({ timeout: 10_000 })).seq, next++);
    actor.kill("SIGKILL");
    const status = await within(5000, actor.status, "the actor's status");
    assert.equal(status.signal, "SIGKILL");
    assert.equal(status.success, false);

    // What it had put is still delivered, in order, then the queue is drained (the dead
    // sender is detected within about a second) instead of waiting forever.
    const killedAt = performance.now();
    await within(
      5000,
      (async () => {
        for await (const m of stream) assert.equal((m as { seq: number }).seq, next++);
      })(),
      "draining after the kill",
    );
    assert.ok(performance.now() - killedAt < 5000);
    await assert.rejects(() => stream.get(), (e) => e instanceof ClosedError);
    stream.close();
  }),
);

for (const mode of ["async", "sync"]) {
  Deno.test(`when its parent is killed, an actor (main thread ${mode}) exits`, async () => {
    const before = shmSnapshot();
    // Both ended however the test ends: a failed check left the actor running for good (a
    // middle that printed no pid ran on for its 120 s).
    await using middle = killedWhenDisposed(
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-ffi", "--allow-run", FIXTURE.pathname, "middle", mode],
        stdin: "null",
        stdout: "piped",
        stderr: "inherit",
      }).spawn(),
    );
    const actorPid = await printedPid(middle);
    await using _actor = killedAtScopeEnd(actorPid);

    middle.kill("SIGKILL");
    assert.equal((await middle.status).signal, "SIGKILL");
    assert.ok(await waitGone(actorPid, 5000), `actor ${actorPid} still running`);

    // An actor that could close its ends left nothing; one blocked in a sync wait was ended
    // by its watchdog, and the sweep removes what the dead processes held.
    if (mode === "sync") sweepStaleQueues();
    assert.deepEqual(await leaksSince(before, [middle.pid, actorPid]), [], "left in /dev/shm");
  });
}

/**
 * Starts a fixture role that spawns an actor and prints its pid (may write files, run
 * processes), in a process group of its own with `setsid`; returns the parent (killed when
 * disposed: `await using` it), its stderr to come, and the actor's pid.
 */
async function startParent(
  args: string[],
  setsid?: "setsid",
): Promise<{ parent: Deno.ChildProcess; errors: Promise<string>; actorPid: number }> {
  const deno = [Deno.execPath(), "run", "--allow-ffi", "--allow-run", "--allow-write"];
  const command = [...(setsid ? ["setsid"] : []), ...deno, FIXTURE.pathname, ...args];
  const parent = killedWhenDisposed(
    new Deno.Command(command[0], {
      args: command.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  const errors = new Response(parent.stderr).text();
  try {
    return { parent, errors, actorPid: await printedPid(parent) };
  } catch (error) {
    await parent[Symbol.asyncDispose]();
    throw error;
  }
}

for (const [mode, leaves] of [["async", "end"], ["sync", "end"], ["async", "exit"]] as const) {
  Deno.test(
    `an actor (${mode}) whose parent leaves (${leaves}) mid-stream exits cleanly, not on the error that causes`,
    async () => {
      const before = shmSnapshot();
      const marker = await Deno.makeTempFile();
      const started = await startParent(["leaver", mode, leaves, marker]);
      await using parent = started.parent;
      const { errors, actorPid } = started;
      try {
        await within(15_000, parent.status, "the parent's exit");
        assert.ok(await waitGone(actorPid, 5000), `actor ${actorPid} still running`);
        // Before: "Uncaught (in promise) ClosedError: every receiver of the queue has closed",
        // exit code 1 without unload, and the queue left in /dev/shm.
        const stderr = await errors;
        assert.doesNotMatch(stderr, /Uncaught/, stderr);
        assert.equal(
          await Deno.readTextFile(marker),
          "unloaded",
          "the actor's unload listeners ran",
        );
        assert.deepEqual(await leaksSince(before, [parent.pid, actorPid]), [], "left in /dev/shm");
      } finally {
        if (pidAlive(actorPid)) Deno.kill(actorPid, "SIGKILL");
        await Deno.remove(marker);
      }
    },
  );
}

for (const dies of ["crash", "kill"] as const) {
  Deno.test(
    `an actor (async) whose parent dies (${dies}) mid-stream closes its ends once the parent is gone: nothing stays in /dev/shm`,
    async () => {
      const before = shmSnapshot();
      const marker = await Deno.makeTempFile();
      // Five parents: the leak was a race (the parent's exit closes the actor's stdin before
      // the kernel releases the parent's queue files and their locks).
      for (let run = 0; run < 5; run++) {
        const started = await startParent(["leaver", "async", dies, marker]);
        await using parent = started.parent;
        const { errors, actorPid } = started;
        try {
          await within(15_000, parent.status, "the parent's exit");
          await errors;
          assert.ok(await waitGone(actorPid, 5000), `actor ${actorPid} still running`);
          assert.equal(await Deno.readTextFile(marker), "unloaded", "the actor closed its ends");
          // Before: the actor closed its end while the dying parent's still looked alive, so
          // neither removed the queue (4-5 runs of 5 left it until a sweep).
          assert.deepEqual(
            await leaksSince(before, [parent.pid, actorPid]),
            [],
            `left in /dev/shm (run ${run})`,
          );
        } finally {
          if (pidAlive(actorPid)) Deno.kill(actorPid, "SIGKILL");
          await Deno.writeTextFile(marker, "");
        }
      }
      await Deno.remove(marker);
    },
  );
}

for (const when of ["mid-stream", "at-once"] as const) {
  Deno.test(
    `Ctrl-C (SIGINT to the process group, ${when}) ends a parent and its actor and leaves nothing in /dev/shm`,
    async () => {
      const before = shmSnapshot();
      const marker = await Deno.makeTempFile();
      // setsid: a process group of its own, as a shell gives a command run in a terminal.
      const started = await startParent(["interruptible", marker, when], "setsid");
      await using parent = started.parent;
      const { errors, actorPid } = started;
      try {
        if (when === "mid-stream") {
          const kill = await new Deno.Command("kill", { args: ["-INT", "--", `-${parent.pid}`] })
            .output();
          assert.ok(kill.success, "kill -INT the group");
        }
        const status = await within(15_000, parent.status, "the parent's exit");
        assert.equal(status.code, 130, await errors);
        assert.ok(await waitGone(actorPid, 5000), `actor ${actorPid} still running`);
        assert.equal(await Deno.readTextFile(marker), "unloaded", "the actor left with its parent");
        // Before: the actor died of the SIGINT too, and the parent's exit, beside it, did not
        // find itself the last end: the queue stayed (3 runs of 3).
        assert.deepEqual(await leaksSince(before, [parent.pid, actorPid]), [], "left in /dev/shm");
      } finally {
        if (pidAlive(actorPid)) Deno.kill(actorPid, "SIGKILL");
        await Deno.remove(marker);
      }
    },
  );
}

Deno.test(
  "an actor's error of a queue the parent left, while the parent lives on, still ends it with code 1",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
    const marker = await Deno.makeTempFile();
    const actor = await spawnActor(FIXTURE, {
      queues: { out: sender },
      argv: ["putsToParent", "async", marker],
      permissions: { write: [marker] },
      stderr: "piped",
      transfer: true,
    });
    for (let i = 0; i < 5; i++) await receiver.get({ timeout: 10_000 });
    receiver.close();
    const { status, stderr } = await within(10_000, actor.output(), "the actor's exit");
    await Deno.remove(marker);
    assert.equal(status.code, 1);
    assert.match(
      stderr,
      /Uncaught \(in promise\) ClosedError: Sender\.put: every receiver of the queue has closed/,
    );
    await actor[Symbol.asyncDispose]();
  }),
);

Deno.test(
  "an actor's own rejection listener still handles an error of a queue its live parent left",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ capacity: 4, arenaBytes: 64 * 1024 });
    const actor = await spawnActor(FIXTURE, {
      queues: { out: sender },
      argv: ["putsWithOwnHandler"],
      stdout: "piped",
      transfer: true,
    });
    for (let i = 0; i < 5; i++) await receiver.get({ timeout: 10_000 });
    receiver.close();
    // Before (with the error held back and thrown again): exit 1, "Uncaught ClosedError".
    const { status, stdout } = await within(10_000, actor.output(), "the actor's exit");
    assert.equal(stdout, "handled no-receivers\nwork done\n");
    assert.equal(status.code, 0);
    await actor[Symbol.asyncDispose]();
  }),
);

for (
  const [watchdog, ended] of [
    ["with", "its watchdog ends it (code 0)"],
    ["without", "SIGTERM ends it"],
  ] as const
) {
  Deno.test(
    `disposing a handle ends a running actor blocked in a sync call, ${watchdog} a watchdog: ${ended}`,
    clean(async () => {
      const [sender, receiver] = createSharedMemoryPair();
      let handle: ActorHandle;
      {
        await using actor = await spawnActor(FIXTURE, {
          argv: ["holder", "sync", ...(watchdog === "with" ? [] : ["no-watchdog"])],
          queues: { inbox: receiver },
          transfer: true,
        });
        handle = actor;
        assert.ok(actor.running);
      }
      assert.ok(!handle.running);
      const status = await handle.status;
      if (watchdog === "with") assert.deepEqual([status.code, status.signal], [0, null]);
      else assert.equal(status.signal, "SIGTERM");
      assert.ok(await waitGone(handle.pid, 1000));
      // The dead receiver is noticed: with no receiver left, put fails instead of hanging.
      await within(
        5000,
        assert.rejects(async () => {
          for (;;) await sender.put(1);
        }, (e) => e instanceof ClosedError && e.reason === "no-receivers"),
        "put after the receiver died",
      );
      sender.close();
    }),
  );
}

Deno.test(
  "stop() closes the actor's stdin: it closes its ends and exits with code 0",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    const actor = await spawnActor(FIXTURE, {
      argv: ["holder", "async"],
      queues: { inbox: receiver },
      transfer: true,
    });
    await sleep(100);
    const status = await within(5000, actor.stop(), "stop()");
    assert.deepEqual({ ...status }, { success: true, code: 0, signal: null });
    // It closed its receiver on the way out, so put fails at once.
    await assert.rejects(() => sender.put(1), (e) => e instanceof ClosedError);
    sender.close();
    await actor[Symbol.asyncDispose]();
  }),
);

Deno.test(
  "aborting the signal while the actor starts rejects spawnActor and kills the actor",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair({ arenaBytes: 64 * 1024 });
    const controller = new AbortController();
    const starting = spawnActor(FIXTURE, {
      argv: ["slow"],
      queues: { inbox: receiver },
      signal: controller.signal,
      readyTimeout: Infinity,
    });
    await sleep(200);
    const reason = new Error("the user pressed cancel");
    controller.abort(reason);
    const error = await within(5000, starting.then(() => undefined, (e) => e), "the abort");
    assert.ok(error instanceof ActorError, String(error));
    assert.match(error.message, /aborted/);
    assert.equal(error.cause, reason, "the signal's reason is kept");
    assert.ok(error.status !== undefined && !error.status.success);
    sender.close();
    receiver.close();
  }),
);

Deno.test(
  "a process that cannot be started at all is an ActorError that says what to do",
  clean(async () => {
    const [sender, receiver] = createSharedMemoryPair();
    try {
      const missing = await spawnActor(FIXTURE, {
        argv: ["x"],
        queues: { in: receiver },
        cwd: "/nonexistent-shmq-test-dir",
      }).then(() => undefined, (e) => e);
      assert.ok(missing instanceof ActorError, String(missing));
      assert.match(
        missing.message,
        /: could not start .* in options\.cwd \/nonexistent-shmq-test-dir \(is it a directory\?\)/,
      );
      assert.equal(receiver.closed, false, "nothing handed over");
    } finally {
      sender.close();
      receiver.close();
    }
    // Without --allow-run, Deno's own advice would name a flag; an actor's comes from its
    // parent's permissions, which the message names too.
    const mod = new URL("../mod.ts", import.meta.url).href;
    const program = `
      import { createSharedMemoryPair, spawnActor } from ${JSON.stringify(mod)};
      const [s, r] = createSharedMemoryPair();
      try {
        await spawnActor(${JSON.stringify(FIXTURE.href)}, { argv: ["x"], queues: { in: r } });
      } catch (e) {
        console.log(e.name + ": " + e.message);
      }
      s.close();
      r.close();`;
    const script = await Deno.makeTempFile({ prefix: "shmq-no-run-", suffix: ".ts" });
    let said: string;
    try {
      await Deno.writeTextFile(script, program);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-config", "--allow-ffi", "--allow-read", "--allow-env", script],
        stdout: "piped",
        stderr: "piped",
      }).output();
      said = new TextDecoder().decode(out.stdout);
    } finally {
      await Deno.remove(script);
    }
    assert.match(said, /^ActorError: spawnActor\(.*\): this process may not start .*--allow-run/);
    assert.match(said, /permissions: \{ run: true \} from its parent/);
  }),
);
