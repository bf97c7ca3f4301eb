//! Process-level plumbing: the open-file limit, optional CPU pinning, and reading a process's
//! memory, CPU time and open descriptors from /proc.

use std::io;
use std::path::Path;

/// Raises RLIMIT_NOFILE to at least `wanted` when allowed (root may raise the hard limit), else to
/// the hard limit. Returns the soft limit in force afterwards. Children inherit it.
pub fn raise_nofile(wanted: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= wanted {
        return Ok(lim.rlim_cur);
    }
    if lim.rlim_max < wanted {
        let more = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted,
        };
        // SAFETY: plain syscall on a struct we own; fails with EPERM without CAP_SYS_RESOURCE.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &more) } == 0 {
            return Ok(wanted);
        }
    }
    let capped = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above; raising the soft limit up to the hard limit is always allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_max)
}

/// Pins the calling thread (or, in a child before exec, the process) to one CPU.
pub fn pin_current(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET only writes inside it; pid 0 means "this thread".
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Resident set size of `pid` in KiB (VmRSS in /proc/PID/status).
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line"))
}

/// User plus system CPU time of `pid`, in seconds (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_secs(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // After ')' the fields start at "state" (field 3), so utime (14) is index 11, stime (15) 12.
    let (Some(user), Some(sys)) = (parse(11), parse(12)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "short /proc/PID/stat"));
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((user + sys) as f64 / ticks)
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd"))?.count())
}

/// The 1-minute load average (/proc/loadavg), NaN when unreadable.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(f64::NAN)
}
