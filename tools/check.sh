#!/usr/bin/env bash
# `deno task check`: formatting, lint, type check (including the examples in JSDoc) and the
# JSDoc lint of the public modules. Only checks paths that exist, so it works while parts
# of the tree (mod.ts, bench/, examples/, actor/) are still being written.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

has_ts() { [ -e "$1" ] && [ -n "$(find "$1" -name '*.ts' -print -quit)" ]; }

deno fmt --check
deno lint

targets=()
for p in mod.ts ffi codec queue actor tests bench examples tools; do
  if has_ts "$p"; then targets+=("$p"); fi
done
deno check "${targets[@]}"

# The examples in the native layer's JSDoc must type-check too.
deno check --doc-only ffi

# Every exported symbol of the published entry points is documented.
lint_targets=(ffi/loader.ts ffi/native.ts ffi/symbols.ts ffi/digests.ts)
if [ -e mod.ts ]; then lint_targets=(mod.ts "${lint_targets[@]}"); fi
deno doc --lint "${lint_targets[@]}"

# The package as JSR would take it (its file list, on stderr, only when it fails).
if ! out="$(deno publish --dry-run --allow-dirty 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
