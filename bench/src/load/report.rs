//! The run's report: a table for people, the same figures as JSON for
//! scripts, and the peak memory of the processes the run was told to watch.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::cpu::CpuUse;
use super::options::{LagProbe, Mode, Scenario};
use super::stats::{OpSummary, Percentiles};

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub mode: Mode,
    pub users: usize,
    pub duration_s: f64,
    pub elapsed_s: f64,
    /// Open loop: requests the rate planned over the duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_requests: Option<u64>,
    pub total: OpSummary,
    pub ops: BTreeMap<String, OpSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<LagReport>,
    pub rss: BTreeMap<String, Rss>,
    /// CPU of each watched process tree over the measured window (`--cpu`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu: BTreeMap<String, CpuUse>,
    /// Their sum per acknowledged request, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_per_ok_us: Option<f64>,
    /// `nproc`, CPU model and load average when the run ended.
    pub machine: Machine,
}

#[derive(Debug, Serialize)]
pub struct LagReport {
    pub probe: LagProbe,
    pub lag_ms: Percentiles,
    /// Writes whose projection was never observed before the run gave up.
    pub unresolved: usize,
    /// Header probe: polls made and their mean spacing (the measurement's resolution).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polls: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<f64>,
}

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
pub struct Rss {
    pub pid: u32,
    /// Peak resident set since the process started (VmHWM).
    pub peak_kib: u64,
    /// Resident set at the end of the run (VmRSS).
    pub now_kib: u64,
}

#[derive(Debug, Serialize, Default)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub loadavg: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Self {
            nproc: std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
            cpu,
            loadavg,
        }
    }
}

/// VmHWM and VmRSS from the text of /proc/<pid>/status.
pub fn parse_status(pid: u32, text: &str) -> Option<Rss> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Rss {
        pid,
        peak_kib: field("VmHWM")?,
        now_kib: field("VmRSS")?,
    })
}

pub fn read_rss(pid: u32) -> Option<Rss> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(pid, &text)
}

fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "-".into();
    }
    errors
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn row(out: &mut String, name: &str, s: &OpSummary) {
    let l = &s.latency_ms;
    let _ = writeln!(
        out,
        "{name:<15} {:>9} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>9}  {}",
        s.requests,
        s.throughput_per_s,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        s.expected_conflicts,
        errors_text(&s.errors)
    );
}

impl Report {
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mode = match self.mode {
            Mode::Closed { connections } => format!("closed loop, {connections} connections"),
            Mode::Open {
                rate,
                max_in_flight,
            } => format!(
                "open loop at {rate} req/s ({} planned, at most {max_in_flight} in flight)",
                self.planned_requests.unwrap_or(0)
            ),
        };
        let _ = writeln!(
            out,
            "scenario {:?}, {mode}, {} users, {:.1} s planned, {:.1} s elapsed",
            self.scenario, self.users, self.duration_s, self.elapsed_s
        );
        let _ = writeln!(
            out,
            "{:<15} {:>9} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9}  errors",
            "operation", "requests", "ok/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "expected"
        );
        for (name, s) in &self.ops {
            row(&mut out, name, s);
        }
        row(&mut out, "total", &self.total);
        if let Some(lag) = &self.lag {
            let l = &lag.lag_ms;
            let _ = write!(
                out,
                "projection lag ({:?} probe): {} writes, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} unresolved",
                lag.probe, l.count, l.p50, l.p90, l.p99, l.max, lag.unresolved
            );
            if let (Some(polls), Some(every)) = (lag.polls, lag.poll_interval_ms) {
                let _ = write!(out, "; {polls} polls, one every {every:.2} ms");
            }
            out.push('\n');
        }
        for (name, rss) in &self.rss {
            #[allow(clippy::cast_precision_loss)]
            let mib = |kib: u64| kib as f64 / 1024.0;
            let _ = writeln!(
                out,
                "memory {name} (pid {}): peak {:.1} MiB, now {:.1} MiB",
                rss.pid,
                mib(rss.peak_kib),
                mib(rss.now_kib)
            );
        }
        for (name, cpu) in &self.cpu {
            let _ = writeln!(
                out,
                "cpu {name} (pid {} and its children): {} ms, {:.0} us per ok request",
                cpu.pid, cpu.cpu_ms, cpu.per_ok_us
            );
        }
        if let Some(total) = self.cpu_per_ok_us {
            let _ = writeln!(
                out,
                "cpu of the watched processes: {total:.0} us per ok request"
            );
        }
        let _ = writeln!(
            out,
            "machine: {} cpus, {}, load {}",
            self.machine.nproc, self.machine.cpu, self.machine.loadavg
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\ttasklog-command\nVmPeak:\t  400000 kB\nVmSize:\t  380000 kB\n\
VmHWM:\t   41234 kB\nVmRSS:\t   39000 kB\nThreads:\t4\n";

    #[test]
    fn peak_and_current_rss_come_from_proc_status() {
        assert_eq!(
            parse_status(7, STATUS),
            Some(Rss {
                pid: 7,
                peak_kib: 41234,
                now_kib: 39000
            })
        );
        assert_eq!(parse_status(7, "Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_a_readable_peak() {
        let me = std::process::id();
        let rss = read_rss(me).unwrap_or_else(|| panic!("/proc/self/status readable"));
        assert!(rss.peak_kib >= rss.now_kib);
        assert!(rss.now_kib > 0);
    }
}
