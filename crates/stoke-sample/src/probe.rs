//! What this machine lets stoke do: the sysctls and capabilities that
//! decide it, and whether perf events and ptrace actually work here, found by
//! trying them on stoke's own process and on a child of its own.
//!
//! Every fact is read or tried once; nothing here touches another process.
//! A fact that cannot be read is `None`, never a guess.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::perf::attr::{AttrSpec, Counter};
use crate::sys;
use crate::StackCapture;

/// Capability bits of `CapEff` that decide what stoke may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `CAP_PERFMON` (38): perf events as if `perf_event_paranoid` were -1.
    pub perfmon: bool,
    /// `CAP_SYS_ADMIN` (21): the older catch-all that also allows perf events
    /// and `/proc/PID/map_files`.
    pub sys_admin: bool,
    /// `CAP_SYS_PTRACE` (19): ptrace and `process_vm_readv` of other users'
    /// processes, past Yama.
    pub sys_ptrace: bool,
    /// `CAP_SYSLOG` (34): kernel addresses in `/proc/kallsyms` when
    /// `kptr_restrict` is 1.
    pub syslog: bool,
}

impl Capabilities {
    /// From the hexadecimal `CapEff` mask of `/proc/PID/status`.
    pub fn from_mask(mask: u64) -> Capabilities {
        let has = |bit: u32| mask & (1u64 << bit) != 0;
        Capabilities {
            perfmon: has(38),
            sys_admin: has(21),
            sys_ptrace: has(19),
            syslog: has(34),
        }
    }
}

/// How a probe of a system call went.
#[derive(Debug)]
pub enum Probe {
    /// It worked.
    Works,
    /// The kernel refused it, with this errno.
    Refused(io::Error),
}

impl Probe {
    fn from_result<T>(result: io::Result<T>) -> Probe {
        match result {
            Ok(_) => Probe::Works,
            Err(err) => Probe::Refused(err),
        }
    }

    /// Whether it worked.
    pub fn works(&self) -> bool {
        matches!(self, Probe::Works)
    }

    /// The errno of a refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Probe::Works => None,
            Probe::Refused(err) => err.raw_os_error(),
        }
    }
}

/// What stoke found about the machine it runs on.
#[derive(Debug)]
pub struct MachineFacts {
    /// stoke's effective user id.
    pub euid: u32,
    /// stoke's effective capabilities.
    pub capabilities: Capabilities,
    /// `kernel.perf_event_paranoid`.
    pub perf_event_paranoid: Option<i32>,
    /// `kernel.kptr_restrict`.
    pub kptr_restrict: Option<i32>,
    /// `kernel.yama.ptrace_scope`; `None` where the kernel has no Yama.
    pub yama_ptrace_scope: Option<i32>,
    /// `kernel.perf_event_mlock_kb`.
    pub perf_event_mlock_kb: Option<u64>,
    /// stoke's `RLIMIT_MEMLOCK` (soft), in bytes; `None` is unlimited.
    pub memlock_limit: Option<u64>,
    /// `kernel.perf_event_max_sample_rate`.
    pub perf_event_max_sample_rate: Option<u64>,
    /// `kernel.perf_event_max_stack`.
    pub perf_event_max_stack: Option<u64>,
    /// stoke's seccomp mode (0 none, 1 strict, 2 filter).
    pub seccomp: Option<u32>,
    /// Whether `/sys/bus/event_source/devices` lists a CPU PMU.
    pub pmu_listed: bool,
    /// `cycles` (hardware) on stoke's own thread, user space only.
    pub perf_cycles: Probe,
    /// `cpu-clock` on stoke's own thread, user space only.
    pub perf_user: Probe,
    /// `cpu-clock` on stoke's own thread, kernel included.
    pub perf_kernel: Probe,
    /// `cpu-clock` on every task of CPU 0 (what `-a` needs).
    pub perf_all_cpus: Probe,
    /// `PTRACE_SEIZE` of a child of stoke's.
    pub ptrace: Probe,
    /// Where a cgroup v2 hierarchy is mounted (the unified one of a hybrid
    /// layout included).
    pub cgroup2_mount: Option<PathBuf>,
    /// stoke's own cgroup v2 path (`0::/…` in `/proc/self/cgroup`).
    pub cgroup2_path: Option<String>,
}

fn read_number<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of a `Name:\tvalue` line of `/proc/self/status`.
fn status_field(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Opens a counting `cpu-clock` or `cycles` event, then closes it.
fn try_event(counter: Counter, exclude_kernel: bool, pid: i32, cpu: i32) -> Probe {
    let spec = AttrSpec {
        counter,
        frequency: 99,
        exclude_kernel,
        exclude_callchain_kernel: exclude_kernel,
        stack: StackCapture::Callchain,
        enable_on_exec: false,
        wakeup_watermark: 0,
        side_band: true,
        monotonic: false,
    };
    Probe::from_result(sys::perf::perf_event_open(&spec.attr(), pid, cpu))
}

/// Seizes a child that waits on its stdin, then ends it.
fn try_ptrace() -> Probe {
    let child = Command::new("/bin/sh")
        .args(["-c", "read _"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => return Probe::Refused(err),
    };
    let pid = child.id() as libc::pid_t;
    let result = sys::ptrace::seize(pid, 0);
    // Killing a seized tracee ends it; the kernel drops the tracing.
    let _ = child.kill();
    let _ = child.wait();
    Probe::from_result(result)
}

/// The mount point of a cgroup v2 hierarchy, from `/proc/self/mountinfo`.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

impl MachineFacts {
    /// Reads and tries everything. Takes a few milliseconds (one child
    /// process for the ptrace probe).
    pub fn probe() -> MachineFacts {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let capabilities = status_field(&status, "CapEff")
            .and_then(|m| u64::from_str_radix(&m, 16).ok())
            .map(Capabilities::from_mask)
            .unwrap_or_default();
        let seccomp = status_field(&status, "Seccomp").and_then(|v| v.parse().ok());
        let pmu_listed = ["cpu", "cpu_core", "cpu_atom", "armv8_pmuv3_0"]
            .iter()
            .any(|name| {
                std::path::Path::new("/sys/bus/event_source/devices")
                    .join(name)
                    .exists()
            });
        let cgroup2_path = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            });
        MachineFacts {
            euid: sys::process::geteuid(),
            capabilities,
            perf_event_paranoid: read_number("/proc/sys/kernel/perf_event_paranoid"),
            kptr_restrict: read_number("/proc/sys/kernel/kptr_restrict"),
            yama_ptrace_scope: read_number("/proc/sys/kernel/yama/ptrace_scope"),
            perf_event_mlock_kb: read_number("/proc/sys/kernel/perf_event_mlock_kb"),
            memlock_limit: sys::process::memlock_limit(),
            perf_event_max_sample_rate: read_number("/proc/sys/kernel/perf_event_max_sample_rate"),
            perf_event_max_stack: read_number("/proc/sys/kernel/perf_event_max_stack"),
            seccomp,
            pmu_listed,
            perf_cycles: try_event(Counter::Cycles, true, 0, -1),
            perf_user: try_event(Counter::CpuClock, true, 0, -1),
            perf_kernel: try_event(Counter::CpuClock, false, 0, -1),
            perf_all_cpus: try_event(Counter::CpuClock, true, -1, 0),
            ptrace: try_ptrace(),
            cgroup2_mount: cgroup2_mount(),
            cgroup2_path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bits_are_read_from_the_mask() {
        let all = Capabilities::from_mask(0x1ff_ffff_ffff);
        assert!(all.perfmon && all.sys_admin && all.sys_ptrace && all.syslog);
        let ptrace_only = Capabilities::from_mask(1 << 19);
        assert_eq!(
            ptrace_only,
            Capabilities {
                sys_ptrace: true,
                ..Capabilities::default()
            }
        );
    }

    #[test]
    fn status_fields_are_found_by_name() {
        let status = "Name:\tstoke\nCapEff:\t000001ffffffffff\nSeccomp:\t2\n";
        assert_eq!(
            status_field(status, "CapEff").as_deref(),
            Some("000001ffffffffff")
        );
        assert_eq!(status_field(status, "Seccomp").as_deref(), Some("2"));
        assert_eq!(status_field(status, "Cap"), None);
    }

    #[test]
    fn this_machine_can_be_probed() {
        let facts = MachineFacts::probe();
        // Whatever is allowed here, the user-space cpu-clock probe and the
        // paranoid level agree: refused only at level 3 or under a filter.
        if facts.perf_event_paranoid.is_some_and(|p| p <= 2) && facts.seccomp != Some(2) {
            assert!(facts.perf_user.works(), "{facts:#?}");
        }
    }
}
