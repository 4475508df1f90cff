//! The `wasi_snapshot_preview1` subset of docs/worker-abi.md, enough for Rust `std` and wasi-libc
//! to start, print, read clocks and get random bytes. There are no files, sockets or preopens:
//! every other preview 1 import is an `ENOSYS` stub ([`super::linker_for`]).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::{DeadlineExceeded, HostState, LogLevel, ProcExit, charge_copy, charge_log, parts};
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
    linker.func_wrap_async(
        WASI_P1,
        "poll_oneoff",
        |caller: Ctx<'_>, (subs, events, count, nevents): (i32, i32, i32, i32)| {
            Box::new(poll_oneoff(caller, subs, events, count, nevents))
        },
    )?;
    Ok(())
}

/// Size of a preview 1 `subscription` and of an `event`.
const SUBSCRIPTION_BYTES: u32 = 48;
const EVENT_BYTES: u32 = 32;
/// `eventtype::clock`, and the `subclockflags` bit for an absolute time.
const EVENTTYPE_CLOCK: u8 = 0;
const SUBSCRIPTION_CLOCK_ABSTIME: u16 = 1;

/// `poll_oneoff(in, out, nsubscriptions, nevents)` for clock subscriptions only (there are no
/// files or sockets to wait on): sleeps until the earliest one is due, without blocking the
/// core, then reports every subscription due by then. This is how `std::thread::sleep`, wasi-libc's
/// `nanosleep` and the JavaScript engine's timers wait. A sleep past the invocation's wall-clock
/// deadline ends the invocation there with the wall-clock fault. A subscription of another kind
/// makes the call return `ENOSYS`.
async fn poll_oneoff(mut caller: Ctx<'_>, subs: i32, events: i32, count: i32, nevents: i32) -> R {
    const CALL: &str = "poll_oneoff";
    let count = count as u32;
    let Some(sub_bytes) = count.checked_mul(SUBSCRIPTION_BYTES) else {
        return Ok(errno::INVAL);
    };
    if count == 0 {
        return Ok(errno::INVAL);
    }
    charge_copy(&mut caller, sub_bytes as usize)?;
    // (userdata, wake time) of each subscription.
    let mut clocks = Vec::with_capacity(count as usize);
    {
        let (mem, _) = parts(&mut caller)?;
        let table = slice(mem, subs, sub_bytes as i32, CALL)?;
        // Both clocks are read once, so every subscription is measured from the same instant.
        let now = Instant::now();
        let (real_now, mono_now) = (realtime_ns(), monotonic_ns());
        for sub in table.chunks_exact(SUBSCRIPTION_BYTES as usize) {
            let field = |at: usize, n: usize| &sub[at..at + n];
            let userdata = u64::from_le_bytes(field(0, 8).try_into().unwrap_or_default());
            if sub[8] != EVENTTYPE_CLOCK {
                return Ok(errno::NOSYS);
            }
            let clock = u32::from_le_bytes(field(16, 4).try_into().unwrap_or_default()) as i32;
            let timeout = u64::from_le_bytes(field(24, 8).try_into().unwrap_or_default());
            let flags = u16::from_le_bytes(field(40, 2).try_into().unwrap_or_default());
            let wait_ns = if flags & SUBSCRIPTION_CLOCK_ABSTIME == 0 {
                timeout
            } else {
                match clock {
                    CLOCK_REALTIME => timeout.saturating_sub(real_now),
                    CLOCK_MONOTONIC => timeout.saturating_sub(mono_now),
                    _ => return Ok(errno::INVAL),
                }
            };
            if !matches!(clock, CLOCK_REALTIME | CLOCK_MONOTONIC) {
                return Ok(errno::INVAL);
            }
            let wake = now
                .checked_add(std::time::Duration::from_nanos(wait_ns))
                .unwrap_or(now + std::time::Duration::from_secs(86_400 * 365));
            clocks.push((userdata, wake));
        }
    }
    let Some(first) = clocks.iter().map(|&(_, wake)| wake).min() else {
        return Ok(errno::INVAL);
    };
    let deadline = caller.data().deadline;
    if first > Instant::now() {
        if first >= deadline {
            // Nothing can wake the guest before its time is up: wait for the deadline, then end.
            let _ = crate::nested::spawn_until(std::future::pending::<()>(), deadline).await;
            return Err(DeadlineExceeded.into());
        }
        let _ = crate::nested::spawn_until(std::future::pending::<()>(), first).await;
    }
    let now = Instant::now();
    let due: Vec<u64> = clocks
        .iter()
        .filter(|&&(_, wake)| wake <= now)
        .map(|&(userdata, _)| userdata)
        .collect();
    // `first` has passed, so at least one is due; the events fit, as there are no more of them
    // than subscriptions.
    let n = due.len() as u32;
    charge_copy(&mut caller, (n * EVENT_BYTES) as usize)?;
    let (mem, _) = parts(&mut caller)?;
    let out = slice_mut(mem, events, (n * EVENT_BYTES) as i32, CALL)?;
    for (event, userdata) in out.chunks_exact_mut(EVENT_BYTES as usize).zip(due) {
        event.fill(0);
        event[0..8].copy_from_slice(&userdata.to_le_bytes());
        event[10] = EVENTTYPE_CLOCK;
    }
    write_u32(mem, nevents, n, CALL)?;
    Ok(errno::SUCCESS)
}

/// Nanoseconds since the Unix epoch.
fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
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
        CLOCK_REALTIME => realtime_ns(),
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

/// From the serving thread's CSPRNG (`rand`'s `ThreadRng`: ChaCha12, seeded and reseeded from
/// the OS), not a `getrandom` system call per call: the JavaScript engine seeds `Math.random`
/// from here on every request, and the system call was ~2% of a JavaScript hello.
fn random_get(mut caller: Ctx<'_>, buf: i32, len: i32) -> R {
    use rand::RngCore;
    charge_copy(&mut caller, len as u32 as usize)?;
    let (mem, _) = parts(&mut caller)?;
    let out = slice_mut(mem, buf, len, "random_get")?;
    rand::rng().fill_bytes(out);
    Ok(errno::SUCCESS)
}
