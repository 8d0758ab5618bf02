/**
 * Finds, verifies and opens the shmq native library, once per process.
 *
 * Resolution order:
 * 1. the environment variable `SHMQ_NATIVE_LIB`, a path to a `libshmq.so` you built
 *    yourself (read only when `--allow-env` grants it: a missing env permission is not an
 *    error, the variable is then simply not consulted);
 * 2. when this module was loaded from a `file:` URL, the shipped binary beside it,
 *    `ffi/lib/<arch>-linux/libshmq.so`;
 * 3. when it was loaded over http(s) (JSR or a plain URL), the binary beside it is fetched,
 *    its SHA-256 checked against the digest compiled into `ffi/digests.ts`, stored in a
 *    per-user cache (`$DENO_DIR/shmq/<digest>/`, else `$XDG_CACHE_HOME/shmq/<digest>/`,
 *    else `~/.cache/shmq/<digest>/`, created 0700), and the cached file is opened at once. A
 *    digest mismatch is an error, never a fallback. Without env permission to find a cache
 *    directory, or when the cache cannot be filled or another user could change it, the
 *    verified binary goes to a private temporary file that is removed right after opening
 *    (an actor gets a copy of its own, see `spawnActor`).
 *
 * Supported platforms: Linux on x86_64 and aarch64. The library's `shmq_abi_version()`
 * must equal {@linkcode ABI_VERSION}, or loading fails with a message saying how to
 * rebuild.
 *
 * @module
 */

import { ABI_VERSION, type ShmqLibrary, symbols } from "./symbols.ts";
import { DIGESTS } from "./digests.ts";

export { ABI_VERSION };

/**
 * The environment variable that names a native library path to use instead of the
 * shipped one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NATIVE_LIB_ENV } from "./loader.ts";
 * assert.ok(NATIVE_LIB_ENV === "SHMQ_NATIVE_LIB");
 * ```
 */
export const NATIVE_LIB_ENV = "SHMQ_NATIVE_LIB";

/**
 * The platforms a binary is shipped for, as `<os> <arch>` in `Deno.build` terms.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SUPPORTED_PLATFORMS } from "./loader.ts";
 * assert.ok(SUPPORTED_PLATFORMS.includes("linux x86_64"));
 * ```
 */
export const SUPPORTED_PLATFORMS: readonly string[] = ["linux x86_64", "linux aarch64"];

/** Where the loaded library came from. */
export type NativeSource = "env" | "local" | "remote";

/**
 * The opened native core.
 *
 * @example
 * ```ts ignore
 * import { native } from "./loader.ts";
 * const core = native();
 * console.log(core.path, core.source, core.symbols.shmq_abi_version());
 * ```
 */
export interface NativeCore {
  /** The dynamic library handle (never closed: it lives as long as the process). */
  readonly lib: ShmqLibrary;
  /** Shortcut for `lib.symbols`. */
  readonly symbols: ShmqLibrary["symbols"];
  /** The file that was opened. */
  readonly path: string;
  /** How the file was found. */
  readonly source: NativeSource;
}

/**
 * Returns `<arch>-linux` for a supported platform (the directory under `ffi/lib/` and the
 * key in `DIGESTS`), or throws an error that names the supported platforms.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { platformKey } from "./loader.ts";
 * assert.ok(platformKey("linux", "aarch64") === "aarch64-linux");
 * assert.throws(() => platformKey("darwin", "aarch64"), /linux x86_64/);
 * ```
 */
export function platformKey(
  os: string = Deno.build.os,
  arch: string = Deno.build.arch,
): string {
  if (os === "linux" && (arch === "x86_64" || arch === "aarch64")) return `${arch}-linux`;
  throw new Error(
    `shmq: unsupported platform ${os} ${arch}: the native core is shipped for ` +
      `${SUPPORTED_PLATFORMS.join(" and ")} only (it uses Linux futexes and /dev/shm). ` +
      `On another Linux architecture, build it with \`zig build\` and set ${NATIVE_LIB_ENV}.`,
  );
}

/**
 * The URL of the shipped binary for a platform key, relative to a module URL (by default
 * this loader's own URL).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { libraryUrl } from "./loader.ts";
 * const url = libraryUrl("x86_64-linux", "https://example.com/pkg/ffi/loader.ts");
 * assert.ok(url.href === "https://example.com/pkg/ffi/lib/x86_64-linux/libshmq.so");
 * ```
 */
export function libraryUrl(key: string, base: string = import.meta.url): URL {
  return new URL(`./lib/${key}/libshmq.so`, base);
}

/**
 * Reads an env var only if permission is already granted: never prompts, never throws.
 *
 * @example
 * ```ts
 * import { envGet } from "./loader.ts";
 * console.log(envGet("HOME") ?? "(not granted, or unset)");
 * ```
 */
export function envGet(name: string): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return undefined;
    }
    const v = Deno.env.get(name);
    return v === undefined || v === "" ? undefined : v;
  } catch {
    return undefined;
  }
}

/**
 * The per-user cache directory for fetched binaries (`$DENO_DIR/shmq`, else
 * `$XDG_CACHE_HOME/shmq`, else `$HOME/.cache/shmq`), or `undefined` when none of those
 * variables can be read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cacheRoot } from "./loader.ts";
 * const dir = cacheRoot();
 * assert.ok(dir === undefined || dir.endsWith("/shmq"));
 * ```
 */
export function cacheRoot(): string | undefined {
  const denoDir = envGet("DENO_DIR");
  if (denoDir) return `${denoDir}/shmq`;
  const xdg = envGet("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/shmq`;
  const home = envGet("HOME");
  if (home) return `${home}/.cache/shmq`;
  return undefined;
}

/**
 * Lowercase hex SHA-256 of some bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256Hex } from "./loader.ts";
 * const hex = await sha256Hex(new Uint8Array(0));
 * assert.ok(hex.startsWith("e3b0c442"));
 * ```
 */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  let hex = "";
  for (const b of digest) hex += b.toString(16).padStart(2, "0");
  return hex;
}

/** Whether `path` is known to name nothing (false when this process may not look). */
function missing(path: string): boolean {
  try {
    Deno.statSync(path);
    return false;
  } catch (e) {
    return e instanceof Deno.errors.NotFound;
  }
}

/** ELF e_machine values of the architectures Deno names. */
const ELF_MACHINES: Record<number, string> = { 62: "x86_64", 183: "aarch64" };

/**
 * What makes the local file `path` no library to dlopen here, as far as its ELF header tells,
 * or undefined (also when this process may not read it: dlopen then says what it finds).
 * dlopen would say no better: a library of another architecture is "No such file", and one
 * cut short kills the process with SIGBUS as it maps what is not there.
 */
function elfProblem(path: string): string | undefined {
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
  let head: Uint8Array;
  let size: number;
  try {
    using file = Deno.openSync(path);
    size = file.statSync().size;
    head = new Uint8Array(4096); // the ELF header and, in a build, its program headers
    head = head.subarray(0, file.readSync(head) ?? 0);
  } catch {
    return undefined;
  }
  const elf = head.length >= 64 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c &&
    head[3] === 0x46;
  // 64-bit (EI_CLASS 2), little-endian (EI_DATA 1): what both supported platforms run.
  if (!elf || head[4] !== 2 || head[5] !== 1) {
    return `it is no 64-bit little-endian ELF shared library (${size} bytes)`;
  }
  const header = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const machine = header.getUint16(18, true);
  const arch = ELF_MACHINES[machine] ?? `ELF machine ${machine}`;
  if (arch !== Deno.build.arch) return `it is built for ${arch}, and this is ${Deno.build.arch}`;
  const phoff = Number(header.getBigUint64(32, true));
  const phentsize = header.getUint16(54, true);
  const phnum = header.getUint16(56, true);
  // The program and section header tables: a build ends with the latter.
  const end = Math.max(
    phoff + phentsize * phnum,
    Number(header.getBigUint64(40, true)) + header.getUint16(58, true) * header.getUint16(60, true),
  );
  let loaded = 0; // what its PT_LOAD segments map: without section headers, the end
  for (let k = 0; k < phnum; k++) {
    const at = phoff + k * phentsize;
    if (at + 56 > head.byteLength) break; // beyond what was read: dlopen reads it
    if (header.getUint32(at, true) !== 1) continue; // PT_LOAD
    const filesz = header.getBigUint64(at + 32, true);
    if (filesz === 0n) continue; // maps nothing of the file
    loaded = Math.max(loaded, Number(header.getBigUint64(at + 8, true) + filesz));
  }
  const need = Math.max(end, loaded);
  if (size < need) return `it is cut short: ${size} bytes, where its header needs ${need}`;
  return undefined;
}

function filePath(url: URL): string {
  return decodeURIComponent(url.pathname);
}

/** Opens `path`, checks its ABI version, and returns the full library. */
function open(path: string, source: NativeSource): NativeCore {
  const hint = source === "env"
    ? `unset ${NATIVE_LIB_ENV} or rebuild that library from this version's sources ` +
      "(`deno task build`, output in zig-out/lib/libshmq.so)"
    : "rebuild it with `deno task build`, or set " +
      `${NATIVE_LIB_ENV} to a libshmq.so built from this version's sources`;
  // A name without a slash is dlopen's to look up in the library path, not a file here.
  const problem = source === "remote" || !path.includes("/") ? undefined : elfProblem(path);
  if (problem !== undefined) {
    throw new Error(
      `shmq: cannot open the native library ${path} (from ${source}): ${problem}; ${hint}`,
    );
  }
  let probe: Deno.DynamicLibrary<{ shmq_abi_version: { parameters: []; result: "u32" } }>;
  try {
    probe = Deno.dlopen(path, { shmq_abi_version: { parameters: [], result: "u32" } });
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      throw new Error(
        `shmq: opening the native library ${path} needs --allow-ffi (${(e as Error).message})`,
        { cause: e },
      );
    }
    // A temporary directory mounted noexec (hardened hosts) refuses to map code from it.
    const why = /failed to map segment from shared object/.test((e as Error).message)
      ? "its filesystem may be mounted noexec: set TMPDIR to a directory code may run from, " +
        "or grant --allow-env so the per-user cache directory is used"
      : source === "env" && !path.includes("/")
      ? `a name without a slash is looked up in the system's library path, not in the ` +
        `working directory: give ${NATIVE_LIB_ENV} a path (./${path})`
      : source === "env" && missing(path)
      ? `no such file: set ${NATIVE_LIB_ENV} to the path of a libshmq.so`
      : hint;
    throw new Error(
      `shmq: cannot open the native library ${path} (from ${source}): ${(e as Error).message}; ` +
        why,
      { cause: e },
    );
  }
  const version = probe.symbols.shmq_abi_version();
  if (version !== ABI_VERSION) {
    probe.close();
    throw new Error(
      `shmq: the native library ${path} has ABI version ${version}, but this module needs ` +
        `ABI version ${ABI_VERSION}: ${hint}`,
    );
  }
  let lib: ShmqLibrary;
  try {
    lib = Deno.dlopen(path, symbols);
  } finally {
    probe.close();
  }
  const pinned = lib.symbols.shmq_pin_self();
  if (pinned !== 0) {
    lib.close();
    throw new Error(
      `shmq: the native library ${path} could not be kept loaded (error ${pinned}): a Worker ` +
        `that ends would unload it under running code`,
    );
  }
  return { lib, symbols: lib.symbols, path, source };
}

async function readIfExists(path: string): Promise<Uint8Array<ArrayBuffer> | undefined> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Fetches the binary at `url`, verifies its SHA-256 against `digest`, stores it under
 * `cacheDir/<digest>/libshmq.so` (atomically, via a temporary file and a rename) and
 * returns that path. An already cached file is verified again instead of being fetched.
 * Throws on a digest mismatch, leaving nothing in the cache.
 *
 * @example
 * ```ts ignore
 * import { fetchVerified } from "./loader.ts";
 * const path = await fetchVerified(
 *   new URL("https://example.com/pkg/ffi/lib/x86_64-linux/libshmq.so"),
 *   "db93f17c675287615ad13d88af551f825c937ed05a04762891b7bfd78d76f3d6",
 *   "/home/me/.cache/shmq",
 * );
 * ```
 */
export async function fetchVerified(url: URL, digest: string, cacheDir: string): Promise<string> {
  const dir = `${cacheDir}/${digest}`;
  const path = `${dir}/libshmq.so`;
  // Made private, and checked: a file another user could swap between the check of its
  // digest and its opening would run as this user.
  await makeDir(cacheDir);
  const uid = await ownUid(cacheDir);
  await makePrivate(cacheDir, uid, 0o700);
  await makeDir(dir);
  await makePrivate(dir, uid, 0o700);
  const cached = await readIfExists(path);
  if (cached !== undefined) {
    await makePrivate(path, uid, 0o600);
    if ((await sha256Hex(cached)) === digest) return path;
  }
  const bytes = await fetchAndVerify(url, digest);
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeFile(tmp, bytes, { mode: 0o600 });
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  return path;
}

/** Makes a directory (0700) unless it exists: a filled cache needs no write permission. */
async function makeDir(path: string): Promise<void> {
  try {
    await Deno.lstat(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    await Deno.mkdir(path, { recursive: true, mode: 0o700 });
  }
}

/**
 * This process's uid, when it can be told without asking for a permission: `Deno.uid()`
 * needs `--allow-sys=uid`, else the owner of a file made in `dir`, else in the temporary
 * directory (where the fallback copy goes anyway). Undefined when none of these works.
 * (Not the owner of /proc/self: Deno lets only --allow-all stat it.)
 */
async function ownUid(dir: string): Promise<number | undefined> {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "uid" }).state === "granted") {
      return Deno.uid() ?? undefined;
    }
  } catch {
    // Go on with a probe.
  }
  for (const where of [dir, undefined]) {
    try {
      const probe = await Deno.makeTempFile({ dir: where, prefix: ".shmq-owner-" });
      try {
        return (await Deno.lstat(probe)).uid ?? undefined;
      } finally {
        await Deno.remove(probe).catch(() => {});
      }
    } catch {
      // Not writable here: try the next place.
    }
  }
  return undefined;
}

/**
 * Refuses a cache level that another user could change: a symlink, one owned by anyone but
 * this user (`uid`) or root, or one others may write to, unless root owns it with the sticky
 * bit (as /tmp), where they cannot rename what is ours. One of this user's own that others may
 * write to (as older versions, or a umask of 002, made them) is given `mode`. When `uid` is
 * unknown, only root's levels are used: another user's 0755 cache would pass every check of
 * the modes, and its owner could swap the file between its check and its opening.
 */
async function makePrivate(path: string, uid: number | undefined, mode: number): Promise<void> {
  const st = await Deno.lstat(path);
  const owner = st.uid ?? -1;
  const bits = st.mode ?? 0;
  const loose = (bits & 0o022) !== 0 && !(st.isDirectory && (bits & 0o1000) !== 0 && owner === 0);
  const refuse = (why: string): never => {
    throw new Error(`the native library cache ${path} ${why}`);
  };
  if (st.isSymlink) refuse("is a symlink");
  if (owner !== 0 && owner !== uid) {
    refuse(
      uid === undefined
        ? `belongs to uid ${owner}, and this process cannot tell its own uid (grant ` +
          "--allow-sys=uid, or --allow-write for it)"
        : `belongs to another user (uid ${owner})`,
    );
  }
  if (!loose) return;
  if (uid === undefined || owner !== uid) refuse("is writable by other users");
  await Deno.chmod(path, mode);
}

/** Fetching or verifying failed: another location would fetch the same. */
class FetchError extends Error {}

async function fetchAndVerify(url: URL, digest: string): Promise<Uint8Array<ArrayBuffer>> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new FetchError(`shmq: fetching the native library ${url.href} failed: ${errorText(e)}`, {
      cause: e,
    });
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new FetchError(
      `shmq: fetching the native library ${url.href} failed: HTTP ${res.status}`,
    );
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  const got = await sha256Hex(bytes);
  if (got !== digest) {
    throw new FetchError(
      `shmq: SHA-256 digest mismatch for the native library ${url.href}: got ${got}, ` +
        `expected ${digest} (ffi/digests.ts). Refusing to load it. The binary is not the one ` +
        `this version of the package was built with: a module cache older than the files ` +
        `served (a URL whose contents changed: reload it with \`deno cache --reload\`), or a ` +
        `tampered download`,
    );
  }
  return bytes;
}

let loaded: NativeCore | undefined;
let remoteError: unknown;
let transientBytes: Uint8Array | undefined;

function remoteKey(): { url: URL; digest: string } {
  const key = platformKey();
  const digest = DIGESTS[key];
  if (digest === undefined) {
    throw new Error(`shmq: no digest for ${key} in ffi/digests.ts; run \`deno task build\``);
  }
  return { url: libraryUrl(key), digest };
}

/**
 * Loads the native core (see the module doc for the resolution order), or returns it if
 * already loaded. Works for every source, including http(s) imports that were not
 * prepared yet.
 *
 * @example
 * ```ts ignore
 * import { loadNative } from "./loader.ts";
 * const core = await loadNative();
 * console.log(core.symbols.shmq_abi_version());
 * ```
 */
export async function loadNative(): Promise<NativeCore> {
  if (loaded) return loaded;
  const env = envGet(NATIVE_LIB_ENV);
  if (env !== undefined || !isRemote()) return native();
  await prepareRemote();
  return native();
}

/**
 * For an http(s) import: opens the verified binary from the cache, or, without a usable
 * cache, from a private temporary copy.
 */
async function prepareRemote(): Promise<void> {
  if (loaded) return;
  const { url, digest } = remoteKey();
  const dir = cacheRoot();
  if (dir !== undefined) {
    let path: string | undefined;
    try {
      path = await fetchVerified(url, digest, dir);
    } catch (e) {
      // A cache that cannot be written (permissions, a read-only home) or that is shared:
      // the temporary copy below serves as well. A failed fetch would fail again there.
      if (e instanceof FetchError) throw e;
      console.warn(`shmq: ${errorText(e)}: trying a temporary copy of the native library`);
    }
    // Opened at once: the longer a checked file waits, the longer it could be swapped.
    if (path !== undefined) {
      loaded ??= open(path, "remote");
      return;
    }
  }
  // No usable cache location: a private temporary copy, removed once opened. The verified
  // bytes are kept, for the copies actors get (see transientLibraryBytes).
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await fetchAndVerify(url, digest);
  } catch (e) {
    // Offline, a cache filled by an earlier run may be there, unseen for want of permission.
    if (dir !== undefined) throw e;
    throw new FetchError(
      `${errorText(e)}. (Without --allow-env the per-user cache, which an earlier run may ` +
        `have filled, cannot be found, so the library is fetched on every run.)`,
      { cause: e },
    );
  }
  // Without permission to write the cache or a temporary file, nothing can be opened: say
  // which permissions would do.
  const storeError = (e: unknown): unknown => {
    if (!(e instanceof Deno.errors.NotCapable)) return e;
    const cache = dir === undefined ? "(found with --allow-env)" : dir;
    return new Deno.errors.NotCapable(
      `shmq: the native library of a remote import must be stored before it is opened: ` +
        `grant --allow-write and --allow-read for its cache ${cache}, or for the temporary ` +
        `directory (${errorText(e)})`,
      { cause: e },
    );
  };
  let tmp: string;
  try {
    tmp = await Deno.makeTempFile({ prefix: "shmq-native-", suffix: ".so" });
  } catch (e) {
    throw storeError(e);
  }
  // Every isolate of this process (each Worker imports anew) opens it under one name: the
  // dynamic loader then hands them the library already loaded, so they share its
  // process-wide state (the orphan tables, the process token) as they do from a cache.
  const shared = `${tmp.slice(0, tmp.lastIndexOf("/") + 1)}shmq-native-${
    digest.slice(0, 16)
  }-${Deno.pid}.so`;
  let linked = false;
  try {
    await Deno.writeFile(tmp, bytes);
    linked = await linkShared(tmp, shared);
    loaded ??= open(linked ? shared : tmp, "remote");
    transientBytes = bytes;
  } catch (e) {
    throw storeError(e);
  } finally {
    await Deno.remove(tmp).catch(() => {});
    if (linked) await Deno.remove(shared).catch(() => {});
  }
}

/**
 * Gives the private copy `tmp` the process-wide name `shared`, never over a file of that name:
 * the temporary directory is everyone's, and the name can be foretold (a rename replaced what
 * another user had put there, and, as root, then removed it). A Worker of this process that
 * loads at the same moment holds the name for a few milliseconds: waited for. False when the
 * name stays taken (someone else's file), or the file system has no hard links: `tmp` is
 * opened under its own name then, and Workers that load later each get a copy of their own.
 */
async function linkShared(tmp: string, shared: string): Promise<boolean> {
  for (let attempt = 0;; attempt++) {
    try {
      await Deno.link(tmp, shared);
      return true;
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable) throw e;
      // A file system without hard links: the copy goes under its own name.
      if (!(e instanceof Deno.errors.AlreadyExists)) return false;
      if (attempt === 20) {
        console.warn(`shmq: ${shared} exists and is not this process's: not used`);
        return false;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

/**
 * The verified bytes of the native library when the file this process opened was a private
 * temporary copy, removed since (an http(s) import without env permission, or an actor of
 * such a parent): a child that must open the same library needs a copy of its own.
 * Undefined otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { transientLibraryBytes } from "./loader.ts";
 * assert.ok(transientLibraryBytes() === undefined); // imported from files
 * ```
 */
export function transientLibraryBytes(): Uint8Array | undefined {
  return transientBytes;
}

/** How the private copies of the library that actors get (actor/spawn.ts) are named. */
export const ACTOR_LIBRARY_PREFIX = "shmq-native-actor-";

/**
 * Keeps the bytes of the library this process opened when it was an actor's private copy:
 * its parent removes that once the actor is up, and the actor's own actors need copies too.
 */
function keepActorCopy(path: string): void {
  if (!path.slice(path.lastIndexOf("/") + 1).startsWith(ACTOR_LIBRARY_PREFIX)) return;
  try {
    transientBytes = Deno.readFileSync(path);
  } catch {
    // Removed already (a Worker of the actor, which the loaded library serves by its name):
    // only that Worker's own actors go without.
  }
}

/** A relative `path` made absolute, since it is handed on to actors, which may run in another
 * working directory (as it is when this process may not know its own). A name without a slash
 * stays one: dlopen looks it up in the system's library path. */
function fromCwd(path: string | undefined): string | undefined {
  if (path === undefined || path.startsWith("/") || !path.includes("/")) return path;
  // Deno.cwd() wants read access to it, and would prompt for it.
  if (Deno.permissions.querySync({ name: "read", path: "." }).state !== "granted") return path;
  try {
    return `${Deno.cwd()}/${path}`;
  } catch {
    return path;
  }
}

function isRemote(): boolean {
  return import.meta.url.startsWith("https:") || import.meta.url.startsWith("http:");
}

/**
 * Returns the native core, opening it on first use (then cached for the process).
 * Synchronous: for a module imported over http(s), the binary was fetched and verified
 * while this module was being imported, and an error from that step is thrown here.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ABI_VERSION, native } from "./loader.ts";
 * const core = native();
 * assert.equal(core.symbols.shmq_abi_version(), ABI_VERSION);
 * ```
 */
export function native(): NativeCore {
  if (loaded) return loaded;
  const env = fromCwd(envGet(NATIVE_LIB_ENV));
  if (env !== undefined) {
    loaded = open(env, "env");
    keepActorCopy(env);
    return loaded;
  }
  const url = import.meta.url;
  if (url.startsWith("file:")) {
    return loaded = open(filePath(libraryUrl(platformKey())), "local");
  }
  if (isRemote()) {
    if (remoteError !== undefined) {
      throw new Error(`shmq: loading the native library failed: ${errorText(remoteError)}`, {
        cause: remoteError,
      });
    }
    throw new Error("shmq: the native library was not prepared; call `await loadNative()` first");
  }
  throw new Error(
    `shmq: cannot locate the native library for a module loaded from ${url}; ` +
      `set ${NATIVE_LIB_ENV} to the path of libshmq.so`,
  );
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// An http(s) import cannot fetch synchronously, so the verified binary is made ready while
// the module is imported; errors are kept and reported by native().
if (isRemote() && envGet(NATIVE_LIB_ENV) === undefined) {
  try {
    await prepareRemote();
  } catch (e) {
    remoteError = e;
  }
}
