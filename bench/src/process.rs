//! Child processes: waiting with `wait4` to get the child's own resource use
//! (peak RSS, CPU time), and reading a running process's CPU time from /proc.

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How a child ended and what it used, from `wait4`.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// The exit code, or `128 + signal` when a signal ended it.
    pub code: i32,
    /// From start to reap, seconds.
    pub wall_s: f64,
    /// User plus system CPU time, seconds.
    pub cpu_s: f64,
    /// Peak resident set size, KiB (`ru_maxrss` on Linux).
    pub max_rss_kib: u64,
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Waits for `child` (started at `started`) with `wait4`, polling every
/// millisecond so that a child still running after `timeout` can be killed.
/// The rusage is the child's own, not that of other children of this
/// process. `child` must not be waited for by anything else.
pub fn wait_rusage(child: &mut Child, started: Instant, timeout: Duration) -> Result<Finished> {
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let mut killed = false;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; all-zero is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if killed { 0 } else { libc::WNOHANG };
        // SAFETY: valid pointers to locals; pid is our own unreaped child.
        let reaped = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if reaped == pid {
            if killed {
                bail!("pid {pid} still running after {timeout:?}; killed");
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                -1
            };
            return Ok(Finished {
                code,
                wall_s: started.elapsed().as_secs_f64(),
                cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
                max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
            });
        }
        if reaped == -1 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(anyhow!(error).context(format!("wait4 for pid {pid}")));
        }
        if !killed && started.elapsed() > timeout {
            // Not reaped yet, so the pid is still ours.
            child
                .kill()
                .with_context(|| format!("cannot kill pid {pid}"))?;
            killed = true;
            continue;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// CPU time (user + system) a running process has used so far, seconds,
/// from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Result<f64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("bad field {n} in /proc/{pid}/stat"))
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    Ok((field(14)? + field(15)?) / ticks as f64)
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(anyhow!(std::io::Error::last_os_error()).context(format!("kill {pid}")));
    }
    Ok(())
}
