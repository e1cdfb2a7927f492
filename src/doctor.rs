//! `stoke doctor`: what stoke can do on this machine, one line per check,
//! each with the exact fix.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use stoke_sample::probe::{MachineFacts, Probe};

/// Check what stoke can do here (permissions, sysctls, containers, PMU) and
/// how to get the rest.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when stoke can sample here (with perf events or \
    ptrace), 1 when it cannot sample at all."
)]
pub struct DoctorArgs {
    /// Print the checks as JSON, for scripts.
    #[arg(long)]
    pub json: bool,

    /// Also check what the binaries of this running process give stoke
    /// (symbols, unwind information, frame pointers, debug files).
    #[arg(short, long, value_name = "PID", conflicts_with = "command")]
    pub pid: Option<u32>,

    /// Also look for separate debug files in DIR, as `record` does.
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<std::path::PathBuf>,

    /// Also check the binaries of this command (its program and the
    /// libraries it links), without running it.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<std::ffi::OsString>,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// stoke works, with less than it could.
    Warn,
    /// Something stoke needs is missing.
    Fail,
}

impl Status {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report (also used for runtime hints).
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// A stable name for scripts.
    pub id: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found and what it means.
    pub summary: String,
    /// The setting's value, for checks of a sysctl.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// What to do about it, when anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

pub(crate) fn check(id: &'static str, status: Status, summary: impl Into<String>) -> Check {
    Check {
        id,
        status,
        summary: summary.into(),
        value: None,
        fix: None,
    }
}

impl Check {
    pub(crate) fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    fn value(mut self, value: Option<impl Into<i64>>) -> Check {
        self.value = value.map(Into::into);
        self
    }
}

/// The report as JSON.
#[derive(Serialize)]
struct Report<'a> {
    /// Whether stoke can sample at all here.
    can_sample: bool,
    /// The backend `--backend auto` will use.
    backend: &'a str,
    checks: &'a [Check],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    modules: &'a [crate::doctor_target::ModuleCheck],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    runtimes: &'a [Check],
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let facts = MachineFacts::probe();
    let checks = machine_checks(&facts);
    let target = crate::doctor_target::inspect(&args)?;
    let backend = if facts.perf_user.works() {
        "perf"
    } else if facts.ptrace.works() {
        "ptrace"
    } else {
        "none"
    };
    let can_sample = backend != "none";
    if args.json {
        let report = Report {
            can_sample,
            backend,
            checks: &checks,
            modules: &target.modules,
            runtimes: &target.runtimes,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_checks(&facts, &checks, backend);
        crate::doctor_target::print(&target);
    }
    Ok(ExitCode::from(if can_sample { 0 } else { 1 }))
}

fn print_checks(facts: &MachineFacts, checks: &[Check], backend: &str) {
    let who = if facts.euid == 0 {
        "root".to_string()
    } else {
        format!("uid {}", facts.euid)
    };
    println!("stoke doctor: what stoke can do here, as {who}");
    let width = checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in checks {
        println!("{:<4}  {:<width$}  {}", c.status.label(), c.id, c.summary);
        if let Some(fix) = &c.fix {
            println!("{:<4}  {:<width$}  fix: {fix}", "", "");
        }
    }
    println!(
        "{}",
        match backend {
            "perf" => "stoke record samples with perf events here.",
            "ptrace" => "stoke record falls back to ptrace here (slower; no kernel frames).",
            _ => "stoke cannot sample here: neither perf events nor ptrace are allowed.",
        }
    );
}

/// `EPERM: Operation not permitted`.
fn errno_text(probe: &Probe) -> String {
    match probe {
        Probe::Works => "works".to_string(),
        Probe::Refused(err) => match err.raw_os_error() {
            Some(code) => {
                let text = err.to_string();
                let text = text.split(" (os error").next().unwrap_or(&text);
                format!("{:?}: {text}", nix::errno::Errno::from_raw(code))
            }
            None => err.to_string(),
        },
    }
}

fn refused_by_permission(probe: &Probe) -> bool {
    matches!(probe.errno(), Some(libc::EACCES | libc::EPERM))
}

/// The fix that lets a user of this machine sample more with perf events.
const PERFMON_FIX: &str =
    "or give stoke the capability: sudo setcap cap_perfmon+ep $(command -v stoke)";

fn machine_checks(f: &MachineFacts) -> Vec<Check> {
    let mut checks = Vec::new();
    let perf_privileged = f.capabilities.perfmon || f.capabilities.sys_admin;
    let filtered = f.seccomp == Some(2);

    // Can perf events be opened at all?
    checks.push(match &f.perf_user {
        Probe::Works => check(
            "perf_event_open",
            Status::Ok,
            "perf events work (the fast, accurate backend)",
        ),
        probe if filtered || probe.errno() == Some(libc::ENOSYS) => check(
            "perf_event_open",
            Status::Fail,
            format!(
                "perf_event_open is refused ({}) by a seccomp filter (a container?); stoke falls back to ptrace",
                errno_text(probe)
            ),
        )
        .fix("run the container with --cap-add=PERFMON (Docker 20.10+ then allows perf_event_open) or --security-opt seccomp=unconfined"),
        probe => check(
            "perf_event_open",
            Status::Fail,
            format!(
                "perf_event_open is refused ({}); stoke falls back to ptrace",
                errno_text(probe)
            ),
        )
        .fix(format!("sudo sysctl kernel.perf_event_paranoid=2, {PERFMON_FIX}")),
    });

    checks.push(paranoid_check(f, perf_privileged).value(f.perf_event_paranoid));

    if f.perf_user.works() {
        checks.push(match &f.perf_kernel {
            Probe::Works => check(
                "kernel_frames",
                Status::Ok,
                "time in the kernel is sampled, with kernel stacks",
            ),
            probe => check(
                "kernel_frames",
                Status::Warn,
                format!(
                    "time in the kernel is not sampled ({}): profiles show user time only",
                    errno_text(probe)
                ),
            )
            .fix(format!(
                "sudo sysctl kernel.perf_event_paranoid=1, {PERFMON_FIX}"
            )),
        });
        checks.push(match &f.perf_all_cpus {
            Probe::Works => check(
                "whole_machine",
                Status::Ok,
                "every CPU can be sampled (stoke record -a)",
            ),
            probe => check(
                "whole_machine",
                Status::Warn,
                format!(
                    "sampling every CPU (-a) is refused ({}): it needs perf_event_paranoid <= 0, CAP_PERFMON or root",
                    errno_text(probe)
                ),
            )
            .fix(format!("sudo sysctl kernel.perf_event_paranoid=0, {PERFMON_FIX}")),
        });
        checks.push(pmu_check(f));
    }

    checks.push(ptrace_check(f, filtered));
    if let Some(scope) = f.yama_ptrace_scope {
        checks.push(yama_check(scope, f.euid == 0 || f.capabilities.sys_ptrace).value(Some(scope)));
    }
    checks.push(capabilities_check(f));
    checks.push(kptr_check(f).value(f.kptr_restrict));
    if f.perf_user.works() {
        let as_i64 = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
        checks.extend(
            mlock_check(f, perf_privileged).map(|c| c.value(as_i64(f.perf_event_mlock_kb))),
        );
        checks.extend(rate_check(f).map(|c| c.value(as_i64(f.perf_event_max_sample_rate))));
        checks.extend(stack_check(f).map(|c| c.value(as_i64(f.perf_event_max_stack))));
    }
    checks.push(match &f.cgroup2_mount {
        Some(mount) => check(
            "cgroup_v2",
            Status::Ok,
            format!(
                "cgroup v2 is mounted at {} (--cgroup takes paths under it{})",
                mount.display(),
                f.cgroup2_path
                    .as_deref()
                    .map(|p| format!("; stoke runs in {p}"))
                    .unwrap_or_default()
            ),
        ),
        None => check(
            "cgroup_v2",
            Status::Warn,
            "no cgroup v2 hierarchy is mounted: --cgroup cannot be used",
        )
        .fix("mount -t cgroup2 none /sys/fs/cgroup/unified (or boot with systemd.unified_cgroup_hierarchy=1)"),
    });
    checks
}

fn paranoid_check(f: &MachineFacts, privileged: bool) -> Check {
    let Some(level) = f.perf_event_paranoid else {
        return check(
            "perf_event_paranoid",
            Status::Warn,
            "kernel.perf_event_paranoid cannot be read (no perf events in this kernel?)",
        );
    };
    if privileged {
        return check(
            "perf_event_paranoid",
            Status::Ok,
            format!(
                "{level}; it does not apply to you (root or CAP_PERFMON): any process, kernel frames, -a"
            ),
        );
    }
    match level {
        i32::MIN..=-1 => check(
            "perf_event_paranoid",
            Status::Ok,
            format!("{level}: any user may profile anything"),
        ),
        0 => check(
            "perf_event_paranoid",
            Status::Ok,
            "0: your own processes with kernel frames, and every CPU (-a)",
        ),
        1 => check(
            "perf_event_paranoid",
            Status::Warn,
            "1: your own processes with kernel frames; not every CPU (-a)",
        )
        .fix(format!(
            "sudo sysctl kernel.perf_event_paranoid=0 for -a, {PERFMON_FIX}"
        )),
        2 => check(
            "perf_event_paranoid",
            Status::Warn,
            "2: your own processes, user space only (time in the kernel is not sampled); not -a",
        )
        .fix(format!(
            "sudo sysctl kernel.perf_event_paranoid=1 (kernel frames) or 0 (also -a), {PERFMON_FIX}"
        )),
        _ => check(
            "perf_event_paranoid",
            Status::Fail,
            format!("{level}: perf events are forbidden to users (stoke falls back to ptrace)"),
        )
        .fix(format!(
            "sudo sysctl kernel.perf_event_paranoid=2 (or lower), {PERFMON_FIX}"
        )),
    }
}

fn pmu_check(f: &MachineFacts) -> Check {
    if f.perf_cycles.works() {
        check(
            "hardware_pmu",
            Status::Ok,
            "a hardware PMU counts cycles: stoke samples on cycles",
        )
    } else {
        let why = if f.pmu_listed {
            format!("cycles cannot be opened ({})", errno_text(&f.perf_cycles))
        } else {
            "no hardware PMU (a VM without a virtual PMU?)".to_string()
        };
        check(
            "hardware_pmu",
            Status::Ok,
            format!("{why}: stoke samples on the cpu-clock software timer, which measures CPU time as well"),
        )
    }
}

fn ptrace_check(f: &MachineFacts, filtered: bool) -> Check {
    let status = if f.perf_user.works() {
        Status::Warn
    } else {
        Status::Fail
    };
    match &f.ptrace {
        Probe::Works if f.perf_user.works() => check(
            "ptrace",
            Status::Ok,
            "ptrace works (--backend ptrace, and the fallback where perf events are refused)",
        ),
        Probe::Works => check(
            "ptrace",
            Status::Ok,
            "ptrace works: stoke samples with it, one thread at a time (slower than perf events; no kernel frames)",
        ),
        probe if filtered || refused_by_permission(probe) => check(
            "ptrace",
            status,
            format!("ptrace is refused ({})", errno_text(probe)),
        )
        .fix("in a container, add --cap-add=SYS_PTRACE (or --security-opt seccomp=unconfined)"),
        probe => check(
            "ptrace",
            status,
            format!("ptrace does not work ({})", errno_text(probe)),
        ),
    }
}

fn yama_check(scope: i32, may_trace_others: bool) -> Check {
    match scope {
        0 => check(
            "yama_ptrace_scope",
            Status::Ok,
            "0: ptrace may attach to any process of the same user",
        ),
        1 | 2 if may_trace_others => check(
            "yama_ptrace_scope",
            Status::Ok,
            format!("{scope}: does not limit you (root or CAP_SYS_PTRACE)"),
        ),
        1 => check(
            "yama_ptrace_scope",
            Status::Warn,
            "1: ptrace attaches only to descendants: `--backend ptrace -p PID` needs root (commands stoke starts work)",
        )
        .fix("sudo sysctl kernel.yama.ptrace_scope=0, or run stoke as root"),
        2 => check(
            "yama_ptrace_scope",
            Status::Warn,
            "2: only root (CAP_SYS_PTRACE) may use ptrace",
        )
        .fix("run stoke as root, or sudo sysctl kernel.yama.ptrace_scope=1"),
        _ => check(
            "yama_ptrace_scope",
            Status::Warn,
            format!("{scope}: ptrace is disabled for everyone until reboot"),
        ),
    }
}

fn capabilities_check(f: &MachineFacts) -> Check {
    let c = f.capabilities;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    check(
        "capabilities",
        Status::Ok,
        format!(
            "CAP_PERFMON {}, CAP_SYS_ADMIN {}, CAP_SYS_PTRACE {}, CAP_SYSLOG {}",
            yes_no(c.perfmon),
            yes_no(c.sys_admin),
            yes_no(c.sys_ptrace),
            yes_no(c.syslog)
        ),
    )
}

fn kptr_check(f: &MachineFacts) -> Check {
    let level = f.kptr_restrict.map_or("?".to_string(), |k| k.to_string());
    if kernel_addresses_visible() == Some(true) {
        return check(
            "kptr_restrict",
            Status::Ok,
            format!("{level}: kernel symbols are readable, so kernel frames are named"),
        );
    }
    let hidden = check(
        "kptr_restrict",
        Status::Warn,
        format!("{level}: kernel addresses are hidden from you, so kernel frames would show as [unknown]"),
    );
    match f.kptr_restrict {
        // At 0 the kernel shows addresses to users only when perf events
        // may see the kernel too.
        Some(0) => hidden.fix("sudo sysctl kernel.perf_event_paranoid=1, or run stoke as root"),
        Some(1) => hidden
            .fix("run stoke as root (or with CAP_SYSLOG), or sudo sysctl kernel.kptr_restrict=0"),
        _ => hidden.fix("sudo sysctl kernel.kptr_restrict=0 (at 2 not even root sees them)"),
    }
}

/// Whether `/proc/kallsyms` shows real addresses to stoke (its first line
/// only: the kernel prints zeros when they are hidden).
fn kernel_addresses_visible() -> Option<bool> {
    use std::io::BufRead;
    let file = std::fs::File::open("/proc/kallsyms").ok()?;
    let mut line = String::new();
    std::io::BufReader::new(file).read_line(&mut line).ok()?;
    let address = line.split_whitespace().next()?;
    Some(address.chars().any(|c| c != '0'))
}

/// The ring buffer stoke asks for per CPU with stack copies (16 MiB).
const WANTED_RING_KB: u64 = 16 * 1024;

fn mlock_check(f: &MachineFacts, privileged: bool) -> Option<Check> {
    let kb = f.perf_event_mlock_kb?;
    if privileged || f.euid == 0 {
        return Some(check(
            "perf_event_mlock_kb",
            Status::Ok,
            format!("{kb} KiB; does not limit you (root or CAP_PERFMON)"),
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let allowed = kb * cpus + f.memlock_limit.unwrap_or(u64::MAX / 2) / 1024;
    Some(if allowed >= WANTED_RING_KB * cpus {
        check(
            "perf_event_mlock_kb",
            Status::Ok,
            format!("{kb} KiB per CPU: room for full-size ring buffers"),
        )
    } else {
        check(
            "perf_event_mlock_kb",
            Status::Warn,
            format!(
                "{kb} KiB per CPU: stoke's ring buffers shrink to fit, so busy targets may lose samples (counted in the summary)"
            ),
        )
        .fix(format!(
            "sudo sysctl kernel.perf_event_mlock_kb={WANTED_RING_KB}, or raise `ulimit -l`"
        ))
    })
}

fn rate_check(f: &MachineFacts) -> Option<Check> {
    let rate = f.perf_event_max_sample_rate?;
    Some(if rate >= 999 {
        check(
            "perf_event_max_sample_rate",
            Status::Ok,
            format!("{rate} Hz: -F up to {rate} (the default is 999)"),
        )
    } else {
        check(
            "perf_event_max_sample_rate",
            Status::Warn,
            format!("{rate} Hz, below stoke's default of 999 (the kernel lowers it when sampling interrupts run long): use -F {rate} or less"),
        )
        .fix("sudo sysctl kernel.perf_event_max_sample_rate=10000")
    })
}

fn stack_check(f: &MachineFacts) -> Option<Check> {
    let depth = f.perf_event_max_stack?;
    Some(if depth >= 127 {
        check(
            "perf_event_max_stack",
            Status::Ok,
            format!("{depth} frames for kernel stacks and --unwind fp; DWARF user stacks are not limited by it"),
        )
    } else {
        check(
            "perf_event_max_stack",
            Status::Warn,
            format!("{depth} frames: kernel stacks and --unwind fp stacks are cut there"),
        )
        .fix("sudo sysctl kernel.perf_event_max_stack=127")
    })
}
