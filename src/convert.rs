//! `stoke convert`: re-render or convert a profile file without recording.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::Format;
use crate::input;
use crate::output::{self, Render};
use crate::svg_args::SvgArgs;

/// Read a profile (folded, pprof or speedscope) and write it again in any output
/// format: an SVG flame graph, folded stacks, pprof or speedscope.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    stoke convert out.folded -o flame.svg --title 'my run' --icicle\n  \
    stoke convert profile.pb.gz -o profile.speedscope.json\n  \
    stoke convert out.folded -o out.pb.gz\n  \
    cat out.folded | stoke convert - -o - --format svg > flame.svg")]
pub struct ConvertArgs {
    /// The profile to read: folded stacks, pprof (gzipped or not) or
    /// speedscope JSON; `-` reads stdin.
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Write here; repeat for several outputs. The format comes from the
    /// extension (.svg, .folded/.txt, .pb.gz/.pb/.pprof, .speedscope.json/.json)
    /// or --format; `-` writes to stdout (folded unless --format says).
    #[arg(short, long = "output", value_name = "OUT", required = true)]
    pub outputs: Vec<PathBuf>,

    /// Output format, for outputs whose extension does not say.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Title of the flame graph (default: the recorded command line).
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,

    /// Put each thread (name-tid) under its process, when the input knows
    /// threads (pprof written by stoke does; folded input keeps its frames).
    #[arg(long)]
    pub per_thread: bool,

    /// Fold inlined functions into the functions they were inlined into
    /// (like pprof's -noinlines).
    #[arg(long)]
    pub no_inlines: bool,

    #[command(flatten)]
    pub svg: SvgArgs,

    /// Colours of the SVG flame graph: `kind` (by frame kind), `hot` (the
    /// classic warm flame-graph colours) or `mono` (greys, for print).
    #[arg(long, value_enum, default_value_t = crate::cli::Palette::Kind)]
    pub palette: crate::cli::Palette,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let outputs = output::resolve(&args.outputs, args.format, "stoke")?;
    let mut profile = input::read(&args.input)?;
    if args.no_inlines {
        profile = profile.without_inlines();
    }
    let render = Render {
        title: args.title,
        per_thread: args.per_thread,
        per_process: false,
        svg: args.svg.with_palette(args.palette.into()),
    };
    let (_, failed) = output::write_all(&profile, &outputs, &render);
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
