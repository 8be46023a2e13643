//! The standard `process_*` metrics, read from `/proc` when `/metrics` is scraped: no
//! thread and no state of their own. Off Linux (no `/proc`) they are left out.

use std::fmt::Write;

/// The process's own figures, as Prometheus client libraries name them.
#[derive(Debug, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

impl Process {
    /// Read `/proc/self`; `None` where there is no `/proc`.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as u64;
        let (utime, stime, start) = parse_stat(&stat)?;
        let btime: u64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / ticks,
            resident_bytes: resident_pages * page,
            // The directory listing held one descriptor open while it was counted.
            open_fds: open_fds.saturating_sub(1),
            max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
            start_time_seconds: btime as f64 + start as f64 / ticks,
        })
    }

    pub fn render(&self, out: &mut String) {
        let mut one = |name: &str, kind: &str, help: &str, v: &dyn std::fmt::Display| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            &self.cpu_seconds,
        );
        one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            &self.resident_bytes,
        );
        one(
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            &self.open_fds,
        );
        if let Some(max) = self.max_fds {
            one("process_max_fds", "gauge", "The open-file limit.", &max);
        }
        one(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the UNIX epoch, in seconds.",
            &self.start_time_seconds,
        );
    }
}

/// `(utime, stime, starttime)` in clock ticks from `/proc/self/stat`. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its
/// last `)`: field 3 is the first after it.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)?, field(15)?, field(22)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1 2 3 4 150 25 0 0 20 0 9 0 123456 1000 10 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((150, 25, 123456)));
    }

    #[test]
    fn the_process_reads_its_own_figures() {
        let p = Process::read().expect("/proc is there on Linux");
        assert!(p.resident_bytes > 0 && p.open_fds > 0 && p.start_time_seconds > 1.0e9);
    }
}
