#!/usr/bin/env bash
# Builds the JavaScript engine guest (runtimes/js, QuickJS-ng through rquickjs) to wasm32-wasip1:
#   target/guests/wasm32-wasip1/release/tenantry_js.wasm
# QuickJS is C, compiled by Debian's clang against wasi-libc (rquickjs is told not to download the
# wasi-sdk). Needs the Rust target wasm32-wasip1 (scripts/setup.sh) and the apt packages
# clang lld wasi-libc libclang-rt-dev-wasm32 (scripts/setup.sh --all installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v wasm-ld >/dev/null 2>&1 || command -v wasm-ld-14 >/dev/null 2>&1 || missing+=(lld)
command -v llvm-ar >/dev/null 2>&1 || missing+=("llvm (for llvm-ar)")
# wasi-libc's headers and the wasm32 compiler-rt builtins, where Debian puts them.
if [[ ! -e /usr/include/wasm32-wasi/stdio.h ]]; then
  missing+=(wasi-libc)
fi
if ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
  missing+=(libclang-rt-dev-wasm32)
fi
if ((${#missing[@]} > 0)); then
  echo "build-js.sh: missing: ${missing[*]}" >&2
  echo "build-js.sh: install with: apt-get install ${missing[*]}   (or: scripts/setup.sh --all)" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip1; then
  echo "build-js.sh: the Rust target wasm32-wasip1 is missing; run scripts/setup.sh" >&2
  exit 1
fi

export RQUICKJS_SYS_NO_WASI_SDK=1
export CC_wasm32_wasip1=clang
export AR_wasm32_wasip1=llvm-ar
export CFLAGS_wasm32_wasip1="--target=wasm32-wasi"
exec cargo build --quiet --release --target wasm32-wasip1 \
  --manifest-path runtimes/js/Cargo.toml --target-dir target/guests "$@"
