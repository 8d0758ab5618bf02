#!/usr/bin/env bash
# Installs the pinned toolchain into .tools/ (idempotent): Deno from the npm package `deno`,
# Zig from the PyPI package `ziglang`. Afterwards put .tools/bin on PATH:
#   export PATH="$PWD/.tools/bin:$PATH"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$root/tools/versions.env"
tools="$root/.tools"
mkdir -p "$tools/bin"

# The version must be the pinned one exactly: "deno 2.9.6" is no match for "deno 2.9.60".
have_version() { [ -x "$1" ] && "$1" $2 2>/dev/null | head -n 1 | grep -qE "^${3//./\\.}( |$)"; }

if ! have_version "$tools/bin/deno" --version "deno $DENO_VERSION"; then
  echo "setup: installing deno $DENO_VERSION from npm" >&2
  rm -rf "$tools/deno"
  npm install --silent --no-audit --no-fund --prefix "$tools/deno" "deno@$DENO_VERSION" >&2
  bin="$(find "$tools/deno/node_modules/@deno" -maxdepth 2 -type f -name deno | head -n 1)"
  [ -n "$bin" ] || { echo "setup: the npm package deno@$DENO_VERSION has no binary for this platform" >&2; exit 1; }
  chmod +x "$bin"
  ln -sf "$bin" "$tools/bin/deno"
fi

if ! have_version "$tools/bin/zig" version "$ZIG_VERSION"; then
  echo "setup: installing zig $ZIG_VERSION from PyPI" >&2
  rm -rf "$tools/zig"
  python3 -m pip install --quiet --disable-pip-version-check --target "$tools/zig" "ziglang==$ZIG_VERSION" >&2
  cat > "$tools/bin/zig" <<ZIG
#!/usr/bin/env bash
exec env PYTHONPATH="$tools/zig" python3 -m ziglang "\$@"
ZIG
  chmod +x "$tools/bin/zig"
fi
"$tools/bin/deno" --version | head -n 1 >&2
echo "zig $("$tools/bin/zig" version)" >&2
