/**
 * Importing the package over http: this test serves the package directory on 127.0.0.1,
 * runs child `deno` processes that import it from that URL with a private cache, and
 * checks that the native binary is fetched, verified against ffi/digests.ts, cached and
 * used, and that a tampered binary is refused.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DIGESTS } from "../ffi/digests.ts";
import { ABI_VERSION, platformKey, sha256Hex } from "../ffi/loader.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const KEY = platformKey();
const SHIPPED = `${ROOT}ffi/lib/${KEY}/libshmq.so`;

/** Serves ROOT under /good/ as is, under /bad/ with every libshmq.so altered, and under /noso/
 * with every libshmq.so unavailable (as offline). */
function serve() {
  const soRequests: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      const m = /^\/(good|bad|noso)\/(.*)$/.exec(path);
      if (!m || m[2].split("/").some((p) => p === ".." || p === "." || p === "")) {
        return new Response("not found", { status: 404 });
      }
      const [, variant, rel] = m;
      let bytes: Uint8Array<ArrayBuffer>;
      try {
        bytes = await Deno.readFile(`${ROOT}${rel}`);
      } catch {
        return new Response("not found", { status: 404 });
      }
      if (rel.endsWith(".so")) {
        if (variant === "noso") return new Response("offline", { status: 503 });
        soRequests.push(path);
        if (variant === "bad") bytes[bytes.length - 1] ^= 0x5a; // one flipped byte
      }
      const type = rel.endsWith(".ts")
        ? "application/typescript; charset=utf-8"
        : rel.endsWith(".json")
        ? "application/json"
        : "application/octet-stream";
      return new Response(bytes, { headers: { "content-type": type } });
    },
  );
  const { port } = server.addr as Deno.NetAddr;
  return { server, port, base: `http://127.0.0.1:${port}`, soRequests };
}

/** The child program: imports the package from a URL and uses the native core. */
const CHILD = `
const base = Deno.args[0];
const withMod = Deno.args[1] === "mod";
if (withMod) await import(base + "mod.ts");
const loader = await import(base + "ffi/loader.ts");
const n = await import(base + "ffi/native.ts");
const core = loader.native();
const name = "/shmq-test-remote-" + Deno.pid;
const fd = n.shmCreate(name, 4096);
n.shmUnlink(name);
n.closeFd(fd);
console.log(JSON.stringify({
  abi: core.symbols.shmq_abi_version(),
  path: core.path,
  source: core.source,
}));
`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a child program (default CHILD) from `dir` with a private HOME, network and import
 * access to the test server only, and `base` as its first argument (then `opts.args`, or
 * "mod" with `opts.mod`).
 */
async function runChild(
  dir: string,
  base: string,
  port: number,
  env: Record<string, string>,
  opts: {
    allowEnv?: boolean;
    allowRun?: boolean;
    /** Where the child may write (default: anywhere). */
    write?: string;
    mod?: boolean;
    program?: string;
    args?: string[];
  } = {},
): Promise<Run> {
  const script = `${dir}/child.ts`;
  await Deno.writeTextFile(script, opts.program ?? CHILD);
  const host = `127.0.0.1:${port}`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--no-config",
      "--no-lock",
      `--allow-import=${host}`,
      `--allow-net=${host}`,
      "--allow-read",
      opts.write === undefined ? "--allow-write" : `--allow-write=${opts.write}`,
      "--allow-ffi",
      ...(opts.allowEnv === false ? [] : ["--allow-env"]),
      ...(opts.allowRun ? ["--allow-run"] : []),
      script,
      base,
      ...(opts.args ?? (opts.mod ? ["mod"] : [])),
    ],
    cwd: dir,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: dir, NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs `fn` with the test server up and a fresh temp dir, and removes both afterwards. */
async function withServer(
  fn: (ctx: ReturnType<typeof serve> & { dir: string }) => Promise<void>,
): Promise<void> {
  const served = serve();
  const dir = await Deno.makeTempDir({ prefix: "shmq-test-remote-" });
  try {
    await fn({ ...served, dir });
  } finally {
    await served.server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

Deno.test("imported over http, the binary is fetched, verified, cached and used", () =>
  withServer(async ({ dir, port, base, soRequests }) => {
    const denoDir = `${dir}/deno`;
    const digest = DIGESTS[KEY];
    assert.equal(await sha256Hex(await Deno.readFile(SHIPPED)), digest, "stale ffi/digests.ts");
    const cached = `${denoDir}/shmq/${digest}/libshmq.so`;
    const hasMod = await exists(`${ROOT}mod.ts`);

    const first = await runChild(dir, `${base}/good/`, port, { DENO_DIR: denoDir }, {
      mod: hasMod,
    });
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(JSON.parse(first.stdout), {
      abi: ABI_VERSION,
      path: cached,
      source: "remote",
    });
    assert.deepEqual(soRequests, [`/good/ffi/lib/${KEY}/libshmq.so`]);
    assert.deepEqual(await Deno.readFile(cached), await Deno.readFile(SHIPPED));
    // Private to this user, whatever the umask: nobody else can swap the file.
    for (const level of [`${denoDir}/shmq`, `${denoDir}/shmq/${digest}`]) {
      assert.equal((await Deno.stat(level)).mode! & 0o777, 0o700, level);
    }
    assert.equal((await Deno.stat(cached)).mode! & 0o777, 0o600);

    // A second run uses the cache (verified again) and fetches nothing.
    const second = await runChild(dir, `${base}/good/`, port, { DENO_DIR: denoDir });
    assert.equal(second.code, 0, second.stderr);
    assert.equal(soRequests.length, 1);

    // A corrupted cache entry is not trusted: it is fetched and verified again.
    const bytes = await Deno.readFile(cached);
    bytes[100] ^= 0xff;
    await Deno.writeFile(cached, bytes);
    const third = await runChild(dir, `${base}/good/`, port, { DENO_DIR: denoDir });
    assert.equal(third.code, 0, third.stderr);
    assert.equal(soRequests.length, 2);
    assert.deepEqual(await Deno.readFile(cached), await Deno.readFile(SHIPPED));
  }));

Deno.test("a loose cache of this user is made private; one of another user is not used", () =>
  withServer(async ({ dir, port, base }) => {
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    const denoDir = `${dir}/deno`;
    const shared = `${denoDir}/shmq`;
    await Deno.mkdir(shared, { recursive: true });
    await Deno.chmod(shared, 0o777); // what a umask of 0, or an older version, left
    const run = await runChild(dir, `${base}/good/`, port, { DENO_DIR: denoDir, TMPDIR: tmp });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(JSON.parse(run.stdout).path, `${shared}/${DIGESTS[KEY]}/libshmq.so`);
    assert.equal((await Deno.stat(shared)).mode! & 0o777, 0o700, "not made private");

    if (Deno.uid() !== 0) return; // making another user's directory needs root
    const foreign = `${dir}/foreign`;
    await Deno.mkdir(`${foreign}/shmq`, { recursive: true });
    await Deno.chown(`${foreign}/shmq`, 65534, 65534);
    const other = await runChild(dir, `${base}/good/`, port, { DENO_DIR: foreign, TMPDIR: tmp });
    assert.equal(other.code, 0, other.stderr);
    const got = JSON.parse(other.stdout);
    assert.equal(got.source, "remote");
    assert.ok(got.path.startsWith(`${tmp}/shmq-native-`), got.path);
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "temp copy left behind");
    assert.deepEqual([...Deno.readDirSync(`${foreign}/shmq`)], [], "something made in it");

    // Another user's filled cache (0755, the file 0644), read by a process that may write
    // nowhere and has no --allow-sys=uid. Before, no probe file could tell its uid, only the
    // modes were checked, and the other user's file was opened (which its owner could swap
    // between the check and the opening).
    const filled = `${dir}/filled`;
    const level = `${filled}/shmq/${DIGESTS[KEY]}`;
    await Deno.mkdir(level, { recursive: true });
    await Deno.copyFile(`${shared}/${DIGESTS[KEY]}/libshmq.so`, `${level}/libshmq.so`);
    for (const path of [`${filled}/shmq`, level]) {
      await Deno.chmod(path, 0o755);
      await Deno.chown(path, 65534, 65534);
    }
    await Deno.chmod(`${level}/libshmq.so`, 0o644);
    await Deno.chown(`${level}/libshmq.so`, 65534, 65534);
    const readOnly = await runChild(dir, `${base}/good/`, port, {
      DENO_DIR: filled,
      TMPDIR: tmp,
    }, { write: `${dir}/nowhere` });
    assert.notEqual(readOnly.code, 0, readOnly.stdout);
    assert.match(
      readOnly.stderr,
      /belongs to uid 65534, and this process cannot tell its own uid \(grant --allow-sys=uid/,
    );
    assert.match(readOnly.stderr, /grant --allow-write/);
  }));

Deno.test("a filled cache that cannot be written, or under a shared sticky directory, is used", () =>
  withServer(async ({ dir, port, base, soRequests }) => {
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    const denoDir = `${dir}/deno`;
    const cached = `${denoDir}/shmq/${DIGESTS[KEY]}/libshmq.so`;
    const first = await runChild(dir, `${base}/good/`, port, { DENO_DIR: denoDir, TMPDIR: tmp });
    assert.equal(first.code, 0, first.stderr);
    // Writing only to TMPDIR (as with a read-only home): who owns the cache is learned there.
    const readOnly = await runChild(
      dir,
      `${base}/good/`,
      port,
      { DENO_DIR: denoDir, TMPDIR: tmp },
      {
        write: tmp,
      },
    );
    assert.equal(readOnly.code, 0, readOnly.stderr);
    assert.equal(JSON.parse(readOnly.stdout).path, cached, readOnly.stderr);
    assert.equal(soRequests.length, 1, "fetched again");
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "probe left behind");

    // A cache root shared as /tmp is (sticky, writable by all, owned by root) is used as it is.
    if (Deno.uid() !== 0) return;
    const sticky = `${dir}/shared`;
    await Deno.mkdir(`${sticky}/shmq`, { recursive: true });
    await Deno.chmod(`${sticky}/shmq`, 0o1777);
    const shared = await runChild(dir, `${base}/good/`, port, { DENO_DIR: sticky, TMPDIR: tmp });
    assert.equal(shared.code, 0, shared.stderr);
    assert.equal(JSON.parse(shared.stdout).path, `${sticky}/shmq/${DIGESTS[KEY]}/libshmq.so`);
    assert.equal((await Deno.stat(`${sticky}/shmq`)).mode! & 0o7777, 0o1777, "mode changed");
  }));

Deno.test("without DENO_DIR the cache goes to XDG_CACHE_HOME/shmq", () =>
  withServer(async ({ dir, port, base }) => {
    const xdg = `${dir}/xdg`;
    const run = await runChild(dir, `${base}/good/`, port, { XDG_CACHE_HOME: xdg });
    assert.equal(run.code, 0, run.stderr);
    const cached = `${xdg}/shmq/${DIGESTS[KEY]}/libshmq.so`;
    assert.equal(JSON.parse(run.stdout).path, cached);
    assert.ok(await exists(cached));
  }));

Deno.test("without env permission the verified binary is loaded from a removed temp file", () =>
  withServer(async ({ dir, port, base }) => {
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    const run = await runChild(
      dir,
      `${base}/good/`,
      port,
      { DENO_DIR: `${dir}/deno`, TMPDIR: tmp },
      { allowEnv: false },
    );
    assert.equal(run.code, 0, run.stderr);
    const got = JSON.parse(run.stdout);
    assert.equal(got.source, "remote");
    assert.ok(got.path.startsWith(`${tmp}/shmq-native-`), got.path);
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "temp copy left behind");
    assert.equal(await exists(`${dir}/deno/shmq`), false);

    // When the fetch fails (offline), the error says a filled cache could not be looked for.
    const offline = await runChild(
      dir,
      `${base}/noso/`,
      port,
      { DENO_DIR: `${dir}/deno`, TMPDIR: tmp },
      { allowEnv: false },
    );
    assert.notEqual(offline.code, 0);
    assert.match(offline.stderr, /HTTP 503\. \(Without --allow-env the per-user cache/);
  }));

/** A parent importing the package from a URL, without env permission: it starts an actor
 * (tests/fixtures/remote_actor.ts) that imports the package from there too. */
const ACTOR_PARENT = `
const base = Deno.args[0];
const { createSharedMemoryPair, spawnActor } = await import(base + "mod.ts");
const { native } = await import(base + "ffi/loader.ts");
const [sender, receiver] = createSharedMemoryPair({ capacity: 2 });
await using actor = await spawnActor(Deno.args[1], {
  queues: { out: sender },
  transfer: true,
  argv: [base],
  denoArgs: ["--no-config", "--no-lock"], // the fixture sits in this project: leave its files alone
  permissions: { import: [new URL(base).host] },
  readyTimeout: 30_000,
});
console.log(JSON.stringify({ parent: native().path, actor: await receiver.get({ timeout: 30_000 }) }));
receiver.close();
`;

Deno.test("without env permission, an actor gets a verified temp copy of its own, removed after", () =>
  withServer(async ({ dir, port, base, soRequests }) => {
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    const run = await runChild(dir, `${base}/good/`, port, { TMPDIR: tmp }, {
      allowEnv: false,
      allowRun: true,
      program: ACTOR_PARENT,
      args: [new URL("./fixtures/remote_actor.ts", import.meta.url).pathname],
    });
    assert.equal(run.code, 0, run.stderr);
    const got = JSON.parse(run.stdout);
    assert.ok(got.parent.startsWith(`${tmp}/shmq-native-`), got.parent);
    assert.ok(got.actor.startsWith(`${tmp}/shmq-native-`), got.actor);
    assert.notEqual(got.actor, got.parent, "the actor was pointed at the parent's removed copy");
    assert.equal(soRequests.length, 1, "the actor fetched the binary itself");
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "temp copy left behind");
  }));

Deno.test("without env permission, an actor's own actor gets a copy too", () =>
  withServer(async ({ dir, port, base }) => {
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    // The actor may start actors, and write their copies into its TMPDIR.
    const program = ACTOR_PARENT
      .replace("argv: [base],", "argv: [base, ...Deno.args.slice(2)],")
      .replace(
        "permissions: { import: [new URL(base).host] },",
        "permissions: { import: [new URL(base).host], run: true, write: [Deno.args[3]] },",
      );
    const run = await runChild(dir, `${base}/good/`, port, { TMPDIR: tmp }, {
      allowEnv: false,
      allowRun: true,
      program,
      args: [new URL("./fixtures/remote_actor.ts", import.meta.url).pathname, "nested", tmp],
    });
    // Before: the actor handed its own actor the path of its copy, which its parent had
    // removed, and that actor failed to open it.
    assert.equal(run.code, 0, run.stderr);
    const [actor, grandchild] = JSON.parse(run.stdout).actor.split(" ");
    assert.ok(actor.startsWith(`${tmp}/shmq-native-actor-`), actor);
    assert.ok(grandchild.startsWith(`${tmp}/shmq-native-actor-`), grandchild);
    assert.notEqual(grandchild, actor);
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "temp copy left behind");
  }));

Deno.test("an actor of a package imported by URL may import it from there without being told", () =>
  withServer(async ({ dir, port, base }) => {
    // Before: the actor was refused the package's preload module ("Requires import access
    // to 127.0.0.1:…") unless its permissions named the host, and exited at once.
    const program = ACTOR_PARENT.replace("  permissions: { import: [new URL(base).host] },\n", "");
    assert.notEqual(program, ACTOR_PARENT);
    const run = await runChild(dir, `${base}/good/`, port, {}, {
      allowRun: true,
      program,
      args: [new URL("./fixtures/remote_actor.ts", import.meta.url).pathname],
    });
    assert.equal(run.code, 0, run.stderr);
    assert.ok(JSON.parse(run.stdout).actor.length > 0);
  }));

/** A parent importing the package from a URL, without env permission, and a Worker of it
 * that imports the package too: each prints the process token of the library it opened. */
const WORKER_PARENT = `
const base = Deno.args[0];
const native = await import(base + "ffi/native.ts");
const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
worker.postMessage(base);
const workerToken = await new Promise((resolve) => (worker.onmessage = (e) => resolve(e.data)));
worker.terminate();
console.log(JSON.stringify({ parent: native.processToken(), worker: workerToken }));
`;
const WORKER = `
self.onmessage = async (e) => {
  const native = await import(e.data + "ffi/native.ts");
  self.postMessage(native.processToken());
};
`;

Deno.test("without env permission, Workers share the parent's library, not a copy each", () =>
  withServer(async ({ dir, port, base }) => {
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    await Deno.writeTextFile(`${dir}/worker.ts`, WORKER); // beside the child program
    const run = await runChild(dir, `${base}/good/`, port, { TMPDIR: tmp }, {
      allowEnv: false,
      program: WORKER_PARENT,
    });
    assert.equal(run.code, 0, run.stderr);
    const got = JSON.parse(run.stdout);
    // One library per process: its process-wide tables see every isolate's ends.
    assert.equal(got.worker, got.parent);
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "temp copy left behind");
  }));

Deno.test("without env permission, a file already at the process's temporary library name is left alone", () =>
  withServer(async ({ dir, port, base }) => {
    // The name in the shared temporary directory can be foretold (it holds the pid). Before,
    // the copy was renamed over what was there, and what was there removed afterwards.
    const tmp = `${dir}/tmp`;
    await Deno.mkdir(tmp);
    const program = `
      const [base, tmp, digest] = Deno.args;
      const planted = tmp + "/shmq-native-" + digest + "-" + Deno.pid + ".so";
      Deno.writeTextFileSync(planted, "planted");
      const loader = await import(base + "ffi/loader.ts");
      await import(base + "ffi/native.ts");
      const core = loader.native();
      console.log(JSON.stringify({ path: core.path, planted: Deno.readTextFileSync(planted) }));
      Deno.removeSync(planted);
    `;
    const run = await runChild(dir, `${base}/good/`, port, { TMPDIR: tmp }, {
      allowEnv: false,
      program,
      args: [tmp, DIGESTS[KEY].slice(0, 16)],
    });
    assert.equal(run.code, 0, run.stderr);
    const got = JSON.parse(run.stdout);
    assert.equal(got.planted, "planted");
    assert.ok(got.path.startsWith(`${tmp}/shmq-native-`), got.path);
    assert.match(run.stderr, /exists and is not this process's: not used/);
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "temp copy left behind");
  }));

Deno.test("without write permission for a cache or a temporary file, the error names both", () =>
  withServer(async ({ dir, port, base }) => {
    const run = await runChild(dir, `${base}/good/`, port, {}, { write: `${dir}/elsewhere` });
    assert.notEqual(run.code, 0);
    // Before: a warning that "a temporary copy is used", then Deno's bare refusal of the copy.
    assert.match(run.stderr, /grant --allow-write and --allow-read for its cache \S+, or for the/);
  }));

Deno.test("a tampered binary served over http is refused with a digest error", () =>
  withServer(async ({ dir, port, base, soRequests }) => {
    const denoDir = `${dir}/deno`;
    const run = await runChild(dir, `${base}/bad/`, port, { DENO_DIR: denoDir });
    assert.notEqual(run.code, 0, `a tampered binary was accepted: ${run.stdout}`);
    assert.match(run.stderr, /SHA-256 digest mismatch/);
    assert.match(run.stderr, /deno cache --reload/, "the likely cause, and its cure");
    assert.match(run.stderr, new RegExp(`expected ${DIGESTS[KEY]}`));
    assert.deepEqual(soRequests, [`/bad/ffi/lib/${KEY}/libshmq.so`]);
    // Nothing unverified was cached.
    const cacheDir = `${denoDir}/shmq/${DIGESTS[KEY]}`;
    const left = (await exists(cacheDir)) ? [...Deno.readDirSync(cacheDir)] : [];
    assert.deepEqual(left, []);
  }));
