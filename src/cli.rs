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
        stoke record -F 499 -o out.folded -o out.svg -- make -j2"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Profile a command or a running process and write a flame graph.
    Record(RecordArgs),
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An interactive SVG flame graph.
    Svg,
    /// Folded stacks (`a;b;c 42`), as read by flamegraph.pl, inferno and speedscope.
    Folded,
}

/// Ways to walk user stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Unwind {
    /// DWARF CFI where a module has it, frame pointers otherwise.
    Auto,
    /// DWARF CFI only.
    Dwarf,
    /// The kernel's frame-pointer walk only (cheapest, breaks without frame pointers).
    Fp,
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
#[command(group = clap::ArgGroup::new("target").required(true).args(["pid", "command"]))]
pub struct RecordArgs {
    /// Attach to this running process (all its threads, and threads it starts later).
    #[arg(short, long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Samples per second (per thread on a CPU).
    #[arg(short = 'F', long, value_name = "HZ", default_value_t = 999,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub frequency: u32,

    /// Stop after this many seconds (e.g. 10 or 2.5).
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<std::time::Duration>,

    /// Write here; repeat for several outputs. The format comes from the
    /// extension (.svg flame graph, .folded or .txt folded stacks); `-` writes
    /// folded stacks to stdout. Default: stoke-<name>-<time>.svg here.
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

    /// How to walk user stacks: `dwarf` unwinds copies of the stack with the
    /// binaries' call frame information (whole stacks without frame
    /// pointers), `fp` takes the kernel's frame-pointer walk, `auto` is
    /// DWARF with frame pointers where a module has no CFI.
    #[arg(long, value_enum, default_value_t = Unwind::Auto)]
    pub unwind: Unwind,

    /// Bytes of user stack copied per sample for DWARF unwinding (at most
    /// 65528); stacks deeper than this are cut and counted in the summary.
    #[arg(long, value_name = "BYTES", default_value_t = 32768,
          value_parser = clap::value_parser!(u32).range(64..=65528))]
    pub stack_size: u32,

    /// The command to run and profile, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("expected a number of seconds, found {text:?}"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!(
            "the duration must be more than 0 seconds, found {text}"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}
