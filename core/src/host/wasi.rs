//! The `wasi_snapshot_preview1` subset of docs/worker-abi.md, enough for Rust `std` and wasi-libc
//! to start, print, read clocks and get random bytes. There are no files, sockets or preopens:
//! every other preview 1 import is an `ENOSYS` stub ([`super::linker_for`]).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::{HostState, LogLevel, ProcExit, charge_copy, charge_log, parts};
use crate::abi::{WASI_P1, errno};
use crate::guest_mem::{read_u32, slice, slice_mut, write_u32, write_u64};
use crate::limits::MAX_LOG_LINE_BYTES;

type Ctx<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

const CLOCK_REALTIME: i32 = 0;
const CLOCK_MONOTONIC: i32 = 1;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(WASI_P1, "fd_write", fd_write)?;
    linker.func_wrap(
        WASI_P1,
        "environ_sizes_get",
        empty_sizes("environ_sizes_get"),
    )?;
    linker.func_wrap(WASI_P1, "args_sizes_get", empty_sizes("args_sizes_get"))?;
    // Empty lists: there is nothing to write.
    linker.func_wrap(WASI_P1, "environ_get", |_: Ctx<'_>, _: i32, _: i32| {
        errno::SUCCESS
    })?;
    linker.func_wrap(WASI_P1, "args_get", |_: Ctx<'_>, _: i32, _: i32| {
        errno::SUCCESS
    })?;
    linker.func_wrap(WASI_P1, "clock_time_get", clock_time_get)?;
    linker.func_wrap(WASI_P1, "clock_res_get", clock_res_get)?;
    linker.func_wrap(WASI_P1, "random_get", random_get)?;
    linker.func_wrap(
        WASI_P1,
        "proc_exit",
        |_: Ctx<'_>, code: i32| -> wasmtime::Result<()> { Err(ProcExit(code).into()) },
    )?;
    linker.func_wrap(WASI_P1, "sched_yield", |_: Ctx<'_>| errno::SUCCESS)?;
    // wasi-libc and Rust `std` walk the preopens from fd 3 until `EBADF` at start-up; `ENOSYS`
    // would make them abort, so say there are none.
    linker.func_wrap(WASI_P1, "fd_prestat_get", |_: Ctx<'_>, _: i32, _: i32| {
        errno::BADF
    })?;
    Ok(())
}

/// `environ_sizes_get` / `args_sizes_get`: zero entries, zero bytes.
fn empty_sizes(call: &'static str) -> impl Fn(Ctx<'_>, i32, i32) -> R + Send + Sync + 'static {
    move |mut caller, count_ptr, size_ptr| {
        let (mem, _) = parts(&mut caller)?;
        write_u32(mem, count_ptr, 0, call)?;
        write_u32(mem, size_ptr, 0, call)?;
        Ok(errno::SUCCESS)
    }
}

/// `fd_write(fd, iovs, iovs_len, nwritten)`: stdout and stderr become log lines (info and warn),
/// one per call, cut at [`MAX_LOG_LINE_BYTES`] and counted against the invocation's log
/// allowance like `log`; every byte still counts as written.
fn fd_write(mut caller: Ctx<'_>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> R {
    const CALL: &str = "fd_write";
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Warn,
        _ => return Ok(errno::BADF),
    };
    // The iovec array is walked before anything else: pay for it first.
    charge_copy(&mut caller, (iovs_len as u32 as usize).saturating_mul(8))?;
    let (line, total) = {
        let (mem, _) = parts(&mut caller)?;
        // The whole iovec array must be in memory (8 bytes each: ptr, len).
        let array_len = (iovs_len as u32)
            .checked_mul(8)
            .ok_or(crate::guest_mem::BadPointer { call: CALL })?;
        slice(mem, iovs, array_len as i32, CALL)?;
        let mut line = Vec::new();
        let mut total: u64 = 0;
        for i in 0..iovs_len as u32 {
            let entry = iovs.wrapping_add((i * 8) as i32);
            let ptr = read_u32(mem, entry, CALL)? as i32;
            let len = read_u32(mem, entry.wrapping_add(4), CALL)? as i32;
            let bytes = slice(mem, ptr, len, CALL)?;
            total += bytes.len() as u64;
            let room = (MAX_LOG_LINE_BYTES + 1).saturating_sub(line.len());
            line.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        (line, total)
    };
    let Ok(total32) = u32::try_from(total) else {
        return Ok(errno::INVAL);
    };
    // The bytes themselves were only looked at up to the cap.
    charge_log(&mut caller, line.len())?;
    let (mem, state) = parts(&mut caller)?;
    write_u32(mem, nwritten, total32, CALL)?;
    state.log(level, &line);
    Ok(errno::SUCCESS)
}

/// Nanoseconds on the monotonic clock, from an arbitrary process-wide origin.
fn monotonic_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn clock_time_get(mut caller: Ctx<'_>, id: i32, _precision: i64, out: i32) -> R {
    let now = match id {
        CLOCK_REALTIME => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        CLOCK_MONOTONIC => monotonic_ns(),
        // Process and thread CPU clocks are not offered.
        _ => return Ok(errno::INVAL),
    };
    let (mem, _) = parts(&mut caller)?;
    write_u64(mem, out, now, "clock_time_get")?;
    Ok(errno::SUCCESS)
}

fn clock_res_get(mut caller: Ctx<'_>, id: i32, out: i32) -> R {
    if !matches!(id, CLOCK_REALTIME | CLOCK_MONOTONIC) {
        return Ok(errno::INVAL);
    }
    let (mem, _) = parts(&mut caller)?;
    write_u64(mem, out, 1, "clock_res_get")?;
    Ok(errno::SUCCESS)
}

fn random_get(mut caller: Ctx<'_>, buf: i32, len: i32) -> R {
    charge_copy(&mut caller, len as u32 as usize)?;
    let (mem, _) = parts(&mut caller)?;
    let out = slice_mut(mem, buf, len, "random_get")?;
    Ok(match getrandom::fill(out) {
        Ok(()) => errno::SUCCESS,
        Err(_) => errno::IO,
    })
}
