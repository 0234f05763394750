//! Reading a process's CPU time and memory from /proc (Linux).

use std::time::Duration;

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux).
const HZ: f64 = 100.0;

/// CPU time (user + system) a process has used so far.
pub(crate) fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat; index 11 and 12 after ')'.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / HZ)
}

/// Resident set size of a process, in bytes.
pub(crate) fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Pins a process to one CPU core (best effort, with `taskset`).
pub(crate) fn pin(pid: u32, core: usize) -> bool {
    std::process::Command::new("taskset")
        .args(["-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// TCP segments this host has sent so far (`/proc/net/snmp`, `Tcp:`
/// `OutSegs`): on loopback, the server's and the generator's together.
pub(crate) fn tcp_out_segs() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
