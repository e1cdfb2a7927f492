//! Arguments.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A sampling CPU profiler for Linux: where does a program spend its CPU?
#[derive(Debug, Parser)]
#[command(
    name = "stoke",
    version,
    about,
    after_help = "Examples:\n  \
        stoke record -o flame.svg -- ./myprog args    profile a command from its first instruction\n  \
        stoke record -p 1234 -d 10 -o flame.svg       attach to a running process for 10 s\n  \
        stoke record -F 499 -o out.folded -o out.svg -- make -j2\n  \
        stoke record -o out.pb.gz -- ./myprog          pprof for go tool pprof, Pyroscope, Grafana\n  \
        stoke report out.folded                        top functions by self and total samples\n  \
        stoke convert out.pb.gz -o flame.svg           re-render without recording again\n  \
        stoke diff before.folded after.folded -o diff.svg --fail-on-regression 2"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Profile a command or a running process and write a flame graph.
    Record(RecordArgs),
    /// Watch the hottest functions of a running process or a command, live.
    Top(crate::top::TopArgs),
    /// Print every thread's stack of a running process, once.
    Dump(crate::dump::DumpArgs),
    /// Print the top functions of a profile file (folded or pprof).
    Report(crate::report::ReportArgs),
    /// Convert or re-render a profile file (folded or pprof) without recording.
    Convert(crate::convert::ConvertArgs),
    /// Compare two profiles: a differential flame graph and the functions
    /// whose share changed, with an optional CI gate.
    Diff(crate::diff::DiffArgs),
    /// Check what stoke can do on this machine and how to get the rest.
    Doctor(crate::doctor::DoctorArgs),
    /// Print a shell completion script: `stoke completions bash > /etc/bash_completion.d/stoke`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of stoke or of one subcommand:
    /// `stoke man record | man -l -`.
    Man {
        /// A subcommand (record, top, dump, report, convert, diff, doctor).
        subcommand: Option<String>,
    },
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An interactive SVG flame graph.
    Svg,
    /// Folded stacks (`a;b;c 42`), as read by flamegraph.pl, inferno and speedscope.
    Folded,
    /// Gzipped pprof protobuf, as read by `go tool pprof`, Pyroscope and Grafana.
    Pprof,
    /// speedscope's JSON format, one profile per thread.
    Speedscope,
}

/// How the SVG flame graph's frames are coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Palette {
    /// A hue per frame kind: user red, inlined aqua, kernel orange, JIT
    /// green, off-CPU blue, roots and markers grey; the shade by name.
    #[default]
    Kind,
    /// The classic flame-graph colours (flamegraph.pl, inferno): every frame
    /// red to yellow by name.
    Hot,
    /// Greys for print, a band per frame kind.
    #[value(alias = "grey", alias = "gray")]
    Mono,
}

impl From<Palette> for stoke_profile::SvgPalette {
    fn from(palette: Palette) -> Self {
        match palette {
            Palette::Kind => stoke_profile::SvgPalette::Kind,
            Palette::Hot => stoke_profile::SvgPalette::Hot,
            Palette::Mono => stoke_profile::SvgPalette::Mono,
        }
    }
}

/// Ways to walk user stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Unwind {
    /// DWARF CFI where a module has it, frame pointers otherwise (JIT code too).
    Auto,
    /// DWARF CFI only.
    Dwarf,
    /// The kernel's frame-pointer walk only (cheapest, breaks without frame pointers).
    Fp,
}

/// Which sampler records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// perf events; ptrace where they are forbidden (or, for `--mode wall`
    /// and `off-cpu`, where their kernel-side context-switch samples are).
    Auto,
    /// perf events only.
    Perf,
    /// ptrace: one thread interrupted at a time (works where perf events
    /// are forbidden, e.g. in Docker).
    Ptrace,
}

/// Whether Python frames are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Python {
    /// Name the Python functions a CPython 3.8-3.13 target runs, in place
    /// of the interpreter's evaluation frames.
    Auto,
    /// Show the interpreter's C functions only.
    Off,
}

/// Which threads are sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Threads on a CPU: where CPU time goes.
    Cpu,
    /// Every thread, running or blocked: where wall-clock time goes.
    /// Time off the CPU is under `[off-cpu]`, its stacks ending in
    /// `[blocked: NAME]` or `[runnable]` (`[syscall: NAME]` under ptrace).
    Wall,
    /// Only time off the CPU: where threads wait (blocked or runnable).
    OffCpu,
}

/// How much of separate debug files is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DebugInfo {
    /// Their symbol tables only.
    Symbols,
    /// Their symbol tables and DWARF (inline frames, lines).
    Full,
}

/// Profile a command from its first instruction, or attach to a running
/// process, sampling every thread (and, for a command, its children) at a
/// fixed rate. Stops when the command exits, after --duration, or on Ctrl-C,
/// then writes every output.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    stoke record -o flame.svg -- python3 script.py\n  \
    stoke record -p $(pidof myserver) -d 30 -o server.svg\n  \
    stoke record -o - -- xz -9 -k big.tar | inferno-flamegraph > flame.svg")]
#[command(group = clap::ArgGroup::new("target").required(true).multiple(true)
    .args(["pid", "command", "all_cpus", "cgroup", "name"]))]
pub struct RecordArgs {
    /// Attach to this running process (all its threads, and threads it
    /// starts later); several as `-p 1,2,3`.
    #[arg(short, long, value_name = "PID", value_delimiter = ',', num_args = 1,
          conflicts_with_all = ["command", "all_cpus", "cgroup", "name"])]
    pub pid: Vec<u32>,

    /// Every CPU: every process and kernel thread, for --duration, until
    /// Ctrl-C, or for the life of a COMMAND given too. Each process is a
    /// root frame. Needs perf_event_paranoid <= 0, CAP_PERFMON or root.
    #[arg(short = 'a', long)]
    pub all_cpus: bool,

    /// Only the tasks of this cgroup v2 folder (a container, a systemd
    /// unit), on every CPU, as perf's -G: an absolute path or one relative
    /// to the cgroup2 mount (e.g. system.slice/nginx.service).
    #[arg(short = 'G', long, value_name = "PATH", conflicts_with_all = ["all_cpus", "name"])]
    pub cgroup: Option<PathBuf>,

    /// Every process whose command name or executable's file name matches
    /// PATTERN (`*` and `?` wildcards), as running at start.
    #[arg(long, value_name = "PATTERN", conflicts_with_all = ["all_cpus", "command"])]
    pub name: Option<String>,

    /// With --name: also processes that start later (exec into a matching name).
    #[arg(long, requires = "name")]
    pub follow_new: bool,

    /// With -a: keep the idle task's samples, as an `[idle]` root.
    #[arg(long, requires = "all_cpus")]
    pub idle: bool,

    /// Name each process root `name-PID`, so processes of one name stay apart.
    #[arg(long)]
    pub per_process: bool,

    /// Sample a command or process with per-task events even where per-CPU
    /// events are allowed (then threads that live less than a sample
    /// period are not sampled).
    #[arg(long)]
    pub per_task_events: bool,

    /// Samples per second (per thread on a CPU).
    #[arg(short = 'F', long, value_name = "HZ", default_value_t = 999,
          visible_short_alias = 'r', visible_alias = "rate",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub frequency: u32,

    /// Accepted for perf's habit; stoke always records whole stacks.
    #[arg(short = 'g', hide = true)]
    pub call_graph: bool,

    /// Open the SVG flame graph when it is written (xdg-open, where a
    /// display is present; otherwise stoke says where the file is).
    #[arg(long)]
    pub open: bool,

    /// Stop after this many seconds (e.g. 10 or 2.5).
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<std::time::Duration>,

    /// Write here; repeat for several outputs. The format comes from the
    /// extension (.svg flame graph, .folded or .txt folded stacks, .pb.gz
    /// pprof, .speedscope.json speedscope); `-` writes folded stacks to
    /// stdout. Default: stoke-NAME-TIME.svg (NAME the command, TIME the start) here.
    #[arg(short, long = "output", value_name = "FILE")]
    pub outputs: Vec<PathBuf>,

    /// Output format, for outputs whose extension does not say.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Leave out kernel frames.
    #[arg(long)]
    pub no_kernel: bool,

    /// Title of the flame graph (default: the command line).
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,

    /// Put each thread (name-tid) under its process in the outputs.
    #[arg(long)]
    pub per_thread: bool,

    #[command(flatten)]
    pub svg: crate::svg_args::SvgArgs,

    /// Colours of the SVG flame graph: `kind` (by frame kind), `hot` (the
    /// classic warm flame-graph colours) or `mono` (greys, for print).
    #[arg(long, value_enum, default_value_t = Palette::Kind)]
    pub palette: Palette,

    /// How to walk user stacks: `dwarf` unwinds copies of the stack with the
    /// binaries' call frame information (whole stacks without frame
    /// pointers), `fp` takes the kernel's frame-pointer walk, `auto` is
    /// DWARF with frame pointers where a module has no CFI and through JIT
    /// code (executable memory outside any module). JIT runtimes must keep
    /// frame pointers and write a perf map for names: node
    /// `--perf-basic-prof`, python3.12+ `-X perf`, java
    /// `-XX:+PreserveFramePointer` with a perf-map agent. Default: `auto`;
    /// `fp` for -a, --cgroup, --name and several pids, where every CPU's
    /// samples are unwound by one stoke process.
    #[arg(long, value_enum)]
    pub unwind: Option<Unwind>,

    /// Bytes of user stack copied per sample for DWARF unwinding (at most
    /// 65528); stacks deeper than this are cut and counted in the summary.
    #[arg(long, value_name = "BYTES", default_value_t = 32768,
          value_parser = clap::value_parser!(u32).range(64..=65528))]
    pub stack_size: u32,

    /// The sampler: perf events, or ptrace where perf events are forbidden.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,

    /// Sample threads on a CPU (`cpu`) or every thread, blocked ones too
    /// (`wall`, with the ptrace backend). `-F` is per thread in both.
    #[arg(long, value_enum, default_value_t = Mode::Cpu)]
    pub mode: Mode,

    /// Python functions of a CPython 3.8-3.13 target, spliced into its
    /// native stacks (`auto`), or its C functions only (`off`).
    #[arg(long, value_enum, default_value_t = Python::Auto)]
    pub python: Python,

    /// Show the source line in each frame's name: `parse (lexer.c:42)`.
    /// Frames then split by line; implies --debug-info full.
    #[arg(long)]
    pub lines: bool,

    /// Also look for separate debug files in DIR (like /usr/lib/debug: by
    /// build-id under DIR/.build-id/, or by .gnu_debuglink); repeatable.
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,

    /// What separate debug files (distribution -dbg packages) give:
    /// `symbols` reads their symbol tables (every function named, cheap),
    /// `full` their DWARF too (functions inlined inside system libraries,
    /// lines; libc's costs about 0.2 s and 30 MB).
    #[arg(long, value_enum, default_value_t = DebugInfo::Symbols)]
    pub debug_info: DebugInfo,

    /// The command to run and profile: everything after the options (after
    /// `--` too), arguments included, as `perf record` and `py-spy` take it.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

/// The longest `--duration`: a year.
const MAX_SECONDS: f64 = 365.0 * 86_400.0;

fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of seconds, found {text:?}"))?;
    if !(0.001..=MAX_SECONDS).contains(&secs) {
        return Err(format!(
            "the duration must be from 0.001 to {MAX_SECONDS} seconds (a year), found {text}"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

impl From<Backend> for stoke_record::Backend {
    fn from(backend: Backend) -> Self {
        match backend {
            Backend::Auto => stoke_record::Backend::Auto,
            Backend::Perf => stoke_record::Backend::Perf,
            Backend::Ptrace => stoke_record::Backend::Ptrace,
        }
    }
}

impl From<Python> for stoke_record::PythonMode {
    fn from(python: Python) -> Self {
        match python {
            Python::Auto => stoke_record::PythonMode::Auto,
            Python::Off => stoke_record::PythonMode::Off,
        }
    }
}

/// How addresses are named, from the naming flags that `record`, `top`
/// and `dump` share.
pub fn symbolize_options(
    lines: bool,
    debug_dirs: &[PathBuf],
    debug_info: DebugInfo,
) -> stoke_record::SymbolizeOptions {
    stoke_record::SymbolizeOptions {
        lines,
        debug_dirs: debug_dirs.to_vec(),
        separate_debug_dwarf: debug_info == DebugInfo::Full,
        ..stoke_record::SymbolizeOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;
    use std::time::Duration;

    #[test]
    fn durations_are_checked_numbers_of_seconds() {
        assert_eq!(parse_seconds("2.5"), Ok(Duration::from_millis(2500)));
        for bad in ["0", "-1", "nan", "inf", "1e19", "1e30", "0.0000001", "ten"] {
            assert!(parse_seconds(bad).is_err(), "{bad} was accepted");
        }
    }
}
