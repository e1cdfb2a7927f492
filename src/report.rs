//! `stoke report`: the top functions of a profile file, on the terminal.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use stoke_profile::{write_report, ReportOptions, ReportOrder};

use crate::{input, summary};

/// Print the functions of a profile (folded, pprof or speedscope) with the
/// most self and total samples, like `perf report --no-children` or `pprof
/// -top`. Kernel functions are marked `[kernel]`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    stoke report out.folded\n  \
    stoke report --top 40 --sort total profile.pb.gz\n  \
    stoke record -o - -- ./prog | stoke report -")]
pub struct ReportArgs {
    /// The profile: folded stacks, pprof (gzipped or not) or speedscope
    /// JSON; `-` reads stdin.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,

    /// How many functions to show.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// Order by self samples (the function itself running) or total samples
    /// (it or anything it called).
    #[arg(long, value_enum, default_value_t = Sort::SelfSamples)]
    pub sort: Sort,

    /// Fold inlined functions into the functions they were inlined into
    /// (like pprof's -noinlines), so the table reads as perf report's.
    /// Recordings and pprof files know inline frames; folded text does not.
    #[arg(long)]
    pub no_inlines: bool,
}

/// Orderings of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Sort {
    /// Self samples.
    #[value(name = "self")]
    SelfSamples,
    /// Total samples.
    #[value(name = "total")]
    TotalSamples,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let mut profile = input::read(&args.input)?;
    if args.no_inlines {
        profile = profile.without_inlines();
    }
    let options = ReportOptions {
        top: args.top,
        order: match args.sort {
            Sort::SelfSamples => ReportOrder::SelfSamples,
            Sort::TotalSamples => ReportOrder::TotalSamples,
        },
    };
    let mut out = std::io::stdout().lock();
    let mut header = format!(
        "{} samples in {}",
        summary::thousands(profile.total_samples()),
        args.input.display()
    );
    if !profile.meta.command.is_empty() {
        header.push_str(&format!(" ({})", profile.meta.command));
    }
    writeln!(out, "{header}").context("writing to stdout")?;
    write_report(&profile, &options, &mut out).context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
