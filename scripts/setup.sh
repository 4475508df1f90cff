#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine with Rust (rustup) installed.
#
#   scripts/setup.sh          what building and testing need: the wasm32-wasip1 Rust target, and the
#                             apt packages that build the JavaScript engine (QuickJS is C):
#                             clang, lld, llvm, wasi-libc, compiler-rt wasm32 builtins
#   scripts/setup.sh --all    also apt packages for inspecting modules and load tests: wabt, wrk
#
# Safe to run twice: it only installs what is missing, and says what it does. apt runs
# non-interactively, as root or through sudo.
set -euo pipefail

all=false
for arg in "$@"; do
  case "$arg" in
    --all) all=true ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { echo "setup: $*"; }

# --- Rust target ------------------------------------------------------------------------------------
target=wasm32-wasip1
if ! command -v rustup >/dev/null 2>&1; then
  echo "setup: rustup not found; install Rust from https://rustup.rs first" >&2
  exit 1
fi
if rustup target list --installed | grep -qx "$target"; then
  say "Rust target $target already installed"
else
  say "installing Rust target $target"
  rustup target add "$target"
fi

# --- apt packages -----------------------------------------------------------------------------------
# Required: clang compiles QuickJS (runtimes/js, built by scripts/build-js.sh from the loader's
# build script) to wasm32 against wasi-libc's headers, with llvm-ar (llvm) and compiler-rt's wasm32
# builtins; lld links examples/c. Optional (--all): wabt gives wasm-objdump and wasm2wat for
# inspecting modules; wrk drives the load tests.
packages=(clang lld llvm wasi-libc libclang-rt-dev-wasm32)
if $all; then
  packages+=(wabt wrk)
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get not found; install these yourself: ${packages[*]}" >&2
  exit 1
fi

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for p in "${packages[@]}"; do
  if installed "$p"; then
    say "apt package $p already installed"
  else
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "setup: not root and no sudo; run as root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
say "installing apt packages: ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
