#!/usr/bin/env python3
"""Runs a wasm32-wasip1 command (a test binary or an example of this crate) under wasmtime's
Python bindings: run.py <file.wasm> [args...]. Exits with the program's exit code."""
import sys

import wasmtime

path = sys.argv[1]
engine = wasmtime.Engine()
store = wasmtime.Store(engine)
wasi = wasmtime.WasiConfig()
wasi.argv = [path] + sys.argv[2:]
wasi.inherit_stdout()
wasi.inherit_stderr()
store.set_wasi(wasi)
linker = wasmtime.Linker(engine)
linker.define_wasi()
instance = linker.instantiate(store, wasmtime.Module.from_file(engine, path))
try:
    instance.exports(store)["_start"](store)
except wasmtime.ExitTrap as e:
    sys.exit(e.code)
