/**
 * Marks shared libraries NODELETE, as `ld -z nodelete` would: Run by `deno task build` on the
 * native core after `zig build` (whose build API has no switch for it).
 *
 * Why: Deno closes a library's handle when the isolate that opened it goes away. When a
 * terminated Worker held the process's only handle, glibc unmapped libshmq.so while a thread
 * of the runtime still ran its code (a nonblocking futex wait, a copy helper): SIGSEGV. It
 * also wiped the process-wide tables the core keeps. A NODELETE library stays mapped until
 * the process exits.
 *
 * How: the flag is a bit (DF_1_NODELETE) of the DT_FLAGS_1 entry of the dynamic section,
 * which the linker already writes (with DF_1_NOW); this sets that bit in place. ELF64,
 * little-endian only (x86_64 and aarch64).
 *
 * Usage: deno run --allow-read --allow-write tools/elf_nodelete.ts <file.so>...
 *
 * @module
 */

const PT_DYNAMIC = 2;
const DT_NULL = 0n;
const DT_FLAGS_1 = 0x6ffffffbn;
const DF_1_NODELETE = 0x8n;

/** The byte offset of the DT_FLAGS_1 value in an ELF64 little-endian shared library. */
export function flags1Offset(elf: Uint8Array): number {
  const view = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const magic = elf[0] === 0x7f && elf[1] === 0x45 && elf[2] === 0x4c && elf[3] === 0x46;
  if (!magic || elf[4] !== 2 || elf[5] !== 1) {
    throw new Error("not a 64-bit little-endian ELF file");
  }
  const phoff = Number(view.getBigUint64(0x20, true));
  const phentsize = view.getUint16(0x36, true);
  const phnum = view.getUint16(0x38, true);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (view.getUint32(ph, true) !== PT_DYNAMIC) continue;
    const offset = Number(view.getBigUint64(ph + 0x08, true));
    const size = Number(view.getBigUint64(ph + 0x20, true));
    for (let at = offset; at + 16 <= offset + size; at += 16) {
      const tag = view.getBigUint64(at, true);
      if (tag === DT_NULL) break;
      if (tag === DT_FLAGS_1) return at + 8;
    }
    throw new Error("the dynamic section has no DT_FLAGS_1 entry to set NODELETE in");
  }
  throw new Error("no dynamic section (not a shared library)");
}

/** Whether a shared library is marked NODELETE. */
export function isNodelete(elf: Uint8Array): boolean {
  const view = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  return (view.getBigUint64(flags1Offset(elf), true) & DF_1_NODELETE) !== 0n;
}

/** Sets DF_1_NODELETE in place; returns whether anything changed. */
export function setNodelete(elf: Uint8Array): boolean {
  const view = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const at = flags1Offset(elf);
  const flags = view.getBigUint64(at, true);
  if ((flags & DF_1_NODELETE) !== 0n) return false;
  view.setBigUint64(at, flags | DF_1_NODELETE, true);
  return true;
}

if (import.meta.main) {
  if (Deno.args.length === 0) {
    console.error("usage: elf_nodelete.ts <file.so>...");
    Deno.exit(2);
  }
  for (const path of Deno.args) {
    const elf = await Deno.readFile(path);
    if (setNodelete(elf)) await Deno.writeFile(path, elf);
  }
}
