#!/usr/bin/env bash
# Builds the C example Worker(s) in examples/c with clang into target/guests/c/<name>.wasm
# (or into the directory given as $1).
#
# With wasi-libc installed (Debian: `scripts/setup.sh --all`) the module is a WASI reactor linked
# against wasi-libc; without it, a freestanding module (-nostdlib) that needs no sysroot at all.
# Environment: CLANG (default clang), WASI_TARGET (default wasm32-wasi; clang >= 18 also
# accepts wasm32-wasip1), WASI_SYSROOT (default: clang's own search path, e.g. /usr/lib/wasm32-wasi).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/target/guests/c}"
clang="${CLANG:-clang}"
target="${WASI_TARGET:-wasm32-wasi}"

if ! command -v "$clang" >/dev/null 2>&1; then
  echo "examples/c/build.sh: '$clang' not found; install clang and lld (scripts/setup.sh --all)" >&2
  exit 1
fi
if ! command -v wasm-ld >/dev/null 2>&1 && ! command -v "wasm-ld-$("$clang" -dumpversion | cut -d. -f1)" >/dev/null 2>&1; then
  echo "examples/c/build.sh: wasm-ld not found; install lld (scripts/setup.sh --all)" >&2
  exit 1
fi

mkdir -p "$out"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
sysroot=()
[[ -n "${WASI_SYSROOT:-}" ]] && sysroot=(--sysroot="$WASI_SYSROOT")
common=(-O2 -Wall -Wextra -Werror -I"$root/sdk/c")

for src in "$here"/*.c; do
  name="$(basename "$src" .c)"
  wasm="$out/$name.wasm"
  # The reactor build needs wasi-libc (crt1-reactor.o, libc.a) and compiler-rt's wasm32 builtins.
  if "$clang" --target="$target" "${sysroot[@]}" "${common[@]}" -mexec-model=reactor \
       -Wl,--export=tenantry_fetch -o "$wasm" "$src" 2>"$log"; then
    echo "built $wasm (wasi-libc reactor)"
  else
    echo "wasi-libc build failed ($(head -n1 "$log")); building freestanding" >&2
    "$clang" --target=wasm32 "${common[@]}" -ffreestanding -nostdlib -Wl,--no-entry \
      -Wl,--export=tenantry_fetch -o "$wasm" "$src"
    echo "built $wasm (freestanding)"
  fi
done
