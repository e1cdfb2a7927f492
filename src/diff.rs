//! `stoke diff`: compare two profiles.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use stoke_profile::{compare_self_shares, write_diff_svg, write_share_table};

use crate::input;
use crate::output::write_path;
use crate::svg_args::SvgArgs;

/// The confidence of the regression test across all functions compared.
const CONFIDENCE: f64 = 0.999;

/// Compare two profiles (folded or pprof): write a differential flame graph
/// (red grew, blue shrank, both normalised to the same total) and print the
/// functions whose self share changed most. With --fail-on-regression, exit
/// 1 when a function's self share grew by more than PCT points beyond
/// sampling noise (see docs/diff.md).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    stoke diff before.folded after.folded -o diff.svg\n  \
    stoke diff base.pb.gz pr.pb.gz --fail-on-regression 2   # CI gate")]
pub struct DiffArgs {
    /// The profile before the change.
    #[arg(value_name = "BEFORE")]
    pub before: PathBuf,

    /// The profile after the change.
    #[arg(value_name = "AFTER")]
    pub after: PathBuf,

    /// Write the differential flame graph (SVG) here.
    #[arg(short, long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Functions to list in the table.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Exit 1 when a function's self share grew by more than PCT percentage
    /// points and the growth is beyond sampling noise (99.9 % confidence
    /// over all functions compared).
    #[arg(long, value_name = "PCT", value_parser = parse_points)]
    pub fail_on_regression: Option<f64>,

    /// Title of the flame graph.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,

    /// Put each thread (name-tid) under its process.
    #[arg(long)]
    pub per_thread: bool,

    #[command(flatten)]
    pub svg: SvgArgs,
}

fn parse_points(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..100.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "expected percentage points between 0 and 100, found {text:?}"
        )),
    }
}

pub fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    if args.before.as_os_str() == "-" && args.after.as_os_str() == "-" {
        bail!("only one of BEFORE and AFTER can be stdin");
    }
    if let Some(path) = &args.output {
        crate::output::check_path(path)?;
    }
    let before = input::read(&args.before)?;
    let after = input::read(&args.after)?;
    if let Some(path) = &args.output {
        let mut bytes = Vec::new();
        let options = args.svg.options(args.title.clone(), args.per_thread);
        write_diff_svg(&before, &after, &options, &mut bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        write_path(path, &bytes)?;
    }
    let comparison = compare_self_shares(&before, &after, CONFIDENCE);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "self share of all samples: {} before ({}), {} after ({})",
        crate::summary::thousands(comparison.before_total),
        args.before.display(),
        crate::summary::thousands(comparison.after_total),
        args.after.display()
    )
    .context("writing to stdout")?;
    write_share_table(&comparison, args.top, &mut out).context("writing to stdout")?;
    if let Some(path) = &args.output {
        eprintln!("stoke: wrote {}", path.display());
    }
    if let Some(points) = args.fail_on_regression {
        let regressions = comparison.regressions(points);
        if !regressions.is_empty() {
            for r in &regressions {
                eprintln!(
                    "stoke: regression: {} self share grew {:+.2} points ({:.2}% -> {:.2}%), at least {:+.2} beyond noise; limit {points} points",
                    r.name, r.change_points, r.before_percent, r.after_percent, r.lower_bound_points
                );
            }
            return Ok(ExitCode::from(1));
        }
        eprintln!("stoke: no function's self share grew by more than {points} points beyond sampling noise");
    }
    Ok(ExitCode::SUCCESS)
}
