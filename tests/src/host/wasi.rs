//! The WASI preview 1 subset a Rust `wasm32-wasip1` cdylib imports, with Envoy's choices:
//! stdout/stderr become log lines (info / error), clocks read the host's settable time, random
//! bytes come from a seeded deterministic generator, there are no files, arguments or
//! environment variables. Anything else is left to the "unimplemented import" trap.

use wasmtime::{Caller, Linker, Result};

use super::abi::{count, memory_and_state};
use super::memory::{self, addr};
use super::state::{log_level, HostCall, HostState};

pub const MODULE: &str = "wasi_snapshot_preview1";

/// WASI errno values used here.
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
    pub const NOTSUP: i32 = 58;
}

/// Most iovecs accepted by one `fd_write` (POSIX `IOV_MAX` is commonly 1024).
const MAX_IOVECS: u32 = 1024;

/// Largest `random_get` request, as in proxy-wasm-cpp-host (64 KiB): larger asks are EINVAL.
const MAX_RANDOM_BYTES: u32 = 64 * 1024;

/// `__WASI_RIGHTS_FD_WRITE`: the only right stdout/stderr report.
const RIGHTS_FD_WRITE: u64 = 1 << 6;

/// Every WASI function this host implements, by field name.
pub const IMPLEMENTED: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_seek",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "clock_time_get",
    "clock_res_get",
    "random_get",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "proc_exit",
    "sched_yield",
];

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, HostState>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32| -> Result<i32> {
            count(&mut caller, HostCall::FdWrite);
            let level = match fd {
                1 => log_level::INFO,
                2 => log_level::ERROR,
                _ => return Ok(errno::BADF),
            };
            let iovs_len = addr(iovs_len);
            if iovs_len > MAX_IOVECS {
                return Ok(errno::INVAL);
            }
            let (mem, state) = memory_and_state(&mut caller)?;
            let mut text = Vec::new();
            for index in 0..iovs_len {
                // index < MAX_IOVECS, so index * 8 fits; the add is checked.
                let iovec = addr(iovs)
                    .checked_add(index * 8)
                    .ok_or_else(|| wasmtime::format_err!("fd_write iovec array wraps around memory"))?;
                let buf = memory::read_u32(mem, iovec)?;
                let len = memory::read_u32(mem, iovec.saturating_add(4))?;
                text.extend_from_slice(memory::read(mem, buf, len)?);
            }
            let written = u32::try_from(text.len()).unwrap_or(u32::MAX);
            if text.last() == Some(&b'\n') {
                text.pop();
            }
            if !text.is_empty() {
                state.push_log(level, String::from_utf8_lossy(&text).into_owned());
            }
            memory::write_u32(mem, addr(nwritten), written)?;
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_read",
        |mut caller: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32| -> i32 {
            count(&mut caller, HostCall::FdRead);
            errno::NOSYS
        },
    )?;
    linker.func_wrap(MODULE, "fd_close", |mut caller: Caller<'_, HostState>, _fd: i32| -> i32 {
        count(&mut caller, HostCall::FdClose);
        errno::BADF
    })?;
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |mut caller: Caller<'_, HostState>, _fd: i32, _offset: i64, _whence: i32, _new_offset: i32| -> i32 {
            count(&mut caller, HostCall::FdSeek);
            errno::BADF
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut caller: Caller<'_, HostState>, fd: i32, stat: i32| -> Result<i32> {
            count(&mut caller, HostCall::FdFdstatGet);
            if fd != 1 && fd != 2 {
                return Ok(errno::BADF);
            }
            // struct fdstat { u8 filetype; u16 flags; u64 rights_base; u64 rights_inheriting }:
            // 24 bytes, everything zero but the write right, as proxy-wasm-cpp-host reports.
            let mut fdstat = [0u8; 24];
            fdstat[8..16].copy_from_slice(&RIGHTS_FD_WRITE.to_le_bytes());
            let (mem, _) = memory_and_state(&mut caller)?;
            memory::write(mem, addr(stat), &fdstat)?;
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(MODULE, "fd_prestat_get", |mut caller: Caller<'_, HostState>, _fd: i32, _out: i32| -> i32 {
        count(&mut caller, HostCall::FdPrestatGet);
        errno::BADF
    })?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |mut caller: Caller<'_, HostState>, _fd: i32, _path: i32, _len: i32| -> i32 {
            count(&mut caller, HostCall::FdPrestatDirName);
            errno::BADF
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut caller: Caller<'_, HostState>, clock: i32, _precision: i64, out: i32| -> Result<i32> {
            count(&mut caller, HostCall::ClockTimeGet);
            match clock {
                // realtime and monotonic both read the host's settable clock.
                0 | 1 => {}
                2 | 3 => return Ok(errno::NOTSUP),
                _ => return Ok(errno::INVAL),
            }
            let (mem, state) = memory_and_state(&mut caller)?;
            memory::write_u64(mem, addr(out), state.now_nanos)?;
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut caller: Caller<'_, HostState>, clock: i32, out: i32| -> Result<i32> {
            count(&mut caller, HostCall::ClockResGet);
            if !(0..=1).contains(&clock) {
                return Ok(errno::NOTSUP);
            }
            let (mem, _) = memory_and_state(&mut caller)?;
            memory::write_u64(mem, addr(out), 1)?;
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(MODULE, "random_get", |mut caller: Caller<'_, HostState>, buf: i32, len: i32| -> Result<i32> {
        count(&mut caller, HostCall::RandomGet);
        let len = addr(len);
        if len > MAX_RANDOM_BYTES {
            return Ok(errno::INVAL);
        }
        let (mem, state) = memory_and_state(&mut caller)?;
        let range = memory::guest_range(mem.len(), addr(buf), u64::from(len))?;
        let target =
            mem.get_mut(range).ok_or_else(|| wasmtime::format_err!("random_get buffer outside guest memory"))?;
        state.random.fill(target);
        Ok(errno::SUCCESS)
    })?;
    linker.func_wrap(MODULE, "environ_get", |mut caller: Caller<'_, HostState>, _environ: i32, _buf: i32| -> i32 {
        count(&mut caller, HostCall::EnvironGet);
        errno::SUCCESS
    })?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut caller: Caller<'_, HostState>, count_out: i32, size_out: i32| -> Result<i32> {
            count(&mut caller, HostCall::EnvironSizesGet);
            let (mem, _) = memory_and_state(&mut caller)?;
            memory::write_u32(mem, addr(count_out), 0)?;
            memory::write_u32(mem, addr(size_out), 0)?;
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(MODULE, "args_get", |mut caller: Caller<'_, HostState>, _argv: i32, _buf: i32| -> i32 {
        count(&mut caller, HostCall::ArgsGet);
        errno::SUCCESS
    })?;
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut caller: Caller<'_, HostState>, count_out: i32, size_out: i32| -> Result<i32> {
            count(&mut caller, HostCall::ArgsSizesGet);
            let (mem, _) = memory_and_state(&mut caller)?;
            memory::write_u32(mem, addr(count_out), 0)?;
            memory::write_u32(mem, addr(size_out), 0)?;
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(MODULE, "proc_exit", |mut caller: Caller<'_, HostState>, code: i32| -> Result<()> {
        count(&mut caller, HostCall::ProcExit);
        caller.data_mut().exit_code = Some(code);
        Err(wasmtime::format_err!("guest called proc_exit({code})"))
    })?;
    linker.func_wrap(MODULE, "sched_yield", |mut caller: Caller<'_, HostState>| -> i32 {
        count(&mut caller, HostCall::SchedYield);
        errno::SUCCESS
    })?;
    Ok(())
}
