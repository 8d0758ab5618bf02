#!/usr/bin/env bash
# Runs tools/native_smoke.c against each shipped binary: natively for the host's
# architecture, under qemu-user for the other one when qemu and that architecture's glibc
# are installed (Debian: qemu-user libc6-arm64-cross / libc6-amd64-cross); skipped otherwise.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
host="$(uname -m)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0
for arch in x86_64 aarch64; do
  lib="ffi/lib/$arch-linux"
  runner=()
  if [ "$arch" != "$host" ]; then
    sysroot="/usr/$arch-linux-gnu"
    if ! command -v "qemu-$arch" >/dev/null || [ ! -e "$sysroot/lib/libc.so.6" ]; then
      echo "cross_smoke: $arch: skipped (no qemu-$arch or $sysroot)"
      continue
    fi
    runner=("qemu-$arch" -L "$sysroot")
  fi
  zig cc -target "$arch-linux-gnu" -std=c11 -O1 -o "$out/smoke-$arch" tools/native_smoke.c \
    -L"$lib" -lshmq -Wl,-rpath,"$root/$lib"
  if result="$(LD_LIBRARY_PATH="$root/$lib" "${runner[@]}" "$out/smoke-$arch" 2>&1)" &&
    [ "$result" = "ok" ]; then
    echo "cross_smoke: $arch: ok"
  else
    echo "cross_smoke: $arch: FAILED: $result"
    status=1
  fi
done
exit "$status"
