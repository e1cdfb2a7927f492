//! `stoke top`: the hottest functions of a running program, live.
//!
//! The session is the one `record` drives, polled in small steps; between
//! steps new addresses go to a naming thread ([`stoke_record::LiveNamer`])
//! and, every interval, the counts are taken and shown: full screen on a
//! terminal, a plain-text table per interval otherwise.

mod plain;
mod screen;
mod table;
mod terminal;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use stoke_model::Pid;
use stoke_record::{LiveNamer, RecordOptions, Session, SystemScope, Target};
use stoke_sample::{CommandSpec, SamplerOptions, StackCapture};

use crate::cli::{Backend, DebugInfo, Format, Python};
use crate::output::{self, Render};
use crate::{signals, summary};
use screen::Action;
use table::{Counts, SortBy, ViewOptions};

/// Watch the hottest functions of a running process or a command, live:
/// self and total shares over the last interval and since the start, with
/// the process (or thread) they ran in. Keys: q quit, s/t sort by self or
/// total, p pause, k hide/show kernel frames, T a row per thread, r reset,
/// arrows scroll. Without a terminal, a plain-text table every interval.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    stoke top -p $(pidof myserver)\n  \
    stoke top -- ./myprog args          quitting stops the command\n  \
    stoke top -p 1234 -d 10 > top.log   a table per second, for 10 s")]
#[command(group = clap::ArgGroup::new("target").required(true).multiple(true)
    .args(["pid", "command", "all_cpus"]))]
pub struct TopArgs {
    /// Watch this running process (all its threads); several as
    /// `-p 1,2,3`. Quitting leaves them running, untraced.
    #[arg(short, long, value_name = "PID[,PID…]", value_delimiter = ',', num_args = 1,
          conflicts_with_all = ["command", "all_cpus"])]
    pub pid: Vec<u32>,

    /// Every CPU: every process and kernel thread (needs
    /// perf_event_paranoid <= 0, CAP_PERFMON or root).
    #[arg(short = 'a', long)]
    pub all_cpus: bool,

    /// Seconds between refreshes (e.g. 1 or 0.5).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,

    /// Samples per second (per thread on a CPU).
    #[arg(short = 'F', long, value_name = "HZ", default_value_t = 999,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub frequency: u32,

    /// Quit after this many seconds.
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_interval)]
    pub duration: Option<Duration>,

    /// Also write the profile accumulated since the start when quitting,
    /// as `record -o` does (format from the extension); repeatable.
    #[arg(short, long = "output", value_name = "FILE")]
    pub outputs: Vec<PathBuf>,

    /// Output format, for outputs whose extension does not say.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Start with kernel frames hidden (`k` toggles).
    #[arg(long)]
    pub no_kernel: bool,

    /// Start with a row per thread (`T` toggles).
    #[arg(long)]
    pub per_thread: bool,

    /// Sort by total rather than self samples at the start (`s`/`t`).
    #[arg(long)]
    pub sort_total: bool,

    /// The sampler: perf events, or ptrace where perf events are forbidden.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,

    /// Python functions of a CPython 3.8-3.13 target (`auto`) or its C
    /// functions only (`off`).
    #[arg(long, value_enum, default_value_t = Python::Auto)]
    pub python: Python,

    /// Show the source line in each function's name: `parse (lexer.c:42)`.
    #[arg(long)]
    pub lines: bool,

    /// Also look for separate debug files in DIR; repeatable.
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,

    /// What separate debug files give: `symbols` or `full` (DWARF too).
    #[arg(long, value_enum, default_value_t = DebugInfo::Symbols)]
    pub debug_info: DebugInfo,

    /// The command to run and watch: everything after the options. Its
    /// output is discarded while the full-screen view is shown.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a number of seconds, found {text:?}"))?;
    if !(0.05..=86_400.0).contains(&secs) {
        return Err(format!("expected from 0.05 to 86400 seconds, found {text}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What the header line shows.
pub struct Header {
    pub target: String,
    pub backend: String,
    pub frequency: u32,
    pub samples_per_second: f64,
    pub lost: u64,
    pub missed: u64,
    pub elapsed: Duration,
    pub interval: Duration,
    pub named_pending: usize,
}

/// How often the loop wakes to read keys and hand new addresses for naming.
const STEP: Duration = Duration::from_millis(50);
/// How often new addresses are looked for.
const NAMING_STEP: Duration = Duration::from_millis(100);

pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let command = args
        .command
        .split_first()
        .map(|(program, rest)| CommandSpec::new(program.clone(), rest.to_vec()));
    let target = match (args.all_cpus, args.pid.as_slice(), command) {
        (true, _, command) => Target::System {
            scope: SystemScope::All { idle: false },
            command,
        },
        (false, [pid], _) => Target::Pid(Pid(*pid)),
        (false, [_, _, ..], command) => Target::System {
            scope: SystemScope::Pids(args.pid.iter().map(|&p| Pid(p)).collect()),
            command,
        },
        (false, [], Some(command)) => Target::Command(command),
        (false, [], None) => anyhow::bail!("nothing to watch: give -p PID, -a or -- COMMAND"),
    };
    let outputs = if args.outputs.is_empty() {
        Vec::new()
    } else {
        output::resolve(&args.outputs, args.format, "stoke-top")?
    };
    let full_screen = std::io::stdout().is_terminal();
    let options = RecordOptions {
        sampler: SamplerOptions {
            frequency: args.frequency,
            kernel: true,
            stack: StackCapture::RegsAndStack { size: 32768 },
            ..SamplerOptions::default()
        },
        backend: args.backend.into(),
        unwind: stoke_record::UnwindMode::Auto,
        python: args.python.into(),
        duration: None,
        symbolize: crate::cli::symbolize_options(args.lines, &args.debug_dirs, args.debug_info),
        per_process: false,
        merge_threads: false,
    };
    signals::install()?;
    let launched = matches!(
        target,
        Target::Command(_)
            | Target::System {
                command: Some(_),
                ..
            }
    );
    let mut session = if launched && full_screen {
        quiet_launch(|| Session::start(&target, options))??
    } else {
        Session::start(&target, options)?
    };
    if launched {
        signals::forward_sigint_to(session.pid().0);
    }
    if let Some(reason) = session.fallback() {
        eprintln!("stoke: perf events not available ({reason}); sampling with ptrace");
    }
    let mut namer = session.live_namer();
    let view = ViewOptions {
        sort: if args.sort_total {
            SortBy::Total
        } else {
            SortBy::SelfTime
        },
        kernel: !args.no_kernel,
        per_thread: args.per_thread,
    };
    let target_name = match &target {
        Target::Pid(pid) => format!(
            "pid {pid} ({})",
            stoke_sample::procfs::thread_name(*pid, (*pid).into()).unwrap_or_default()
        ),
        Target::Command(spec) => format!("{} (pid {})", spec.display(), session.pid()),
        Target::System { .. } => session.title().to_string(),
    };
    let mut live = Live {
        target: target_name,
        interval: args.interval,
        frequency: args.frequency,
        counts: Counts::default(),
        started: Instant::now(),
        last_refresh: Instant::now(),
        interval_samples_per_second: 0.0,
        last_samples: 0,
    };
    let deadline = args.duration.map(|d| live.started + d);
    let outcome = if full_screen {
        let mut screen = terminal::Screen::enter()?;
        let outcome = live.full_screen(&mut session, &mut namer, view, deadline, &mut screen);
        drop(screen);
        outcome
    } else {
        live.plain(&mut session, &mut namer, view, deadline)
    };
    let exited = outcome?;
    let sampled_for = live.started.elapsed();
    let pid = session.pid();
    let signal = signals::SIGNAL.load(Ordering::SeqCst);
    let recording = session.end(
        sampled_for,
        exited,
        signal,
        &signals::INTERRUPTS,
        (!outputs.is_empty()).then_some(namer),
        !outputs.is_empty(),
    )?;
    match (launched, exited) {
        (_, true) => eprintln!("stoke: {} exited", live.target),
        (true, false) => eprintln!("stoke: stopped the command {}", live.target),
        (false, false) if matches!(target, Target::Pid(_)) => {
            eprintln!("stoke: detached from pid {pid}; it runs on, untraced")
        }
        (false, false) => eprintln!("stoke: stopped watching {}", live.target),
    }
    if outputs.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if recording.profile.total_samples() == 0 {
        summary::print_empty(&recording);
        return Ok(ExitCode::SUCCESS);
    }
    let written_at = Instant::now();
    let render = Render {
        title: None,
        per_thread: false,
        per_process: false,
        svg: crate::svg_args::SvgArgs::default().with_palette(crate::cli::Palette::Kind.into()),
    };
    let (written, failed) = output::write_all(&recording.profile, &outputs, &render);
    let context = summary::Context {
        stack_size: Some(32768),
        wall: false,
    };
    summary::print(&recording, &written, written_at.elapsed(), context);
    Ok(ExitCode::from(u8::from(failed > 0)))
}

/// Starts a command whose output would draw over the view with its
/// standard output and error on /dev/null (stoke's own are put back at once).
fn quiet_launch<T>(start: impl FnOnce() -> T) -> anyhow::Result<T> {
    use nix::unistd::{dup, dup2_stderr, dup2_stdout};
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    let saved_out = dup(std::io::stdout()).context("saving standard output")?;
    let saved_err = dup(std::io::stderr()).context("saving standard error")?;
    let _ = dup2_stdout(&null);
    let _ = dup2_stderr(&null);
    let started = start();
    dup2_stdout(&saved_out).context("restoring standard output")?;
    dup2_stderr(&saved_err).context("restoring standard error")?;
    Ok(started)
}

/// The state of the view between refreshes.
struct Live {
    target: String,
    interval: Duration,
    frequency: u32,
    counts: Counts,
    started: Instant,
    last_refresh: Instant,
    interval_samples_per_second: f64,
    last_samples: u64,
}

impl Live {
    fn header(&self, session: &Session, namer: &LiveNamer) -> Header {
        Header {
            target: self.target.clone(),
            backend: session.description(),
            frequency: self.frequency,
            samples_per_second: self.interval_samples_per_second,
            lost: session.aggregator().stats().lost,
            missed: session.coverage().missed,
            elapsed: self.started.elapsed(),
            interval: self.interval,
            named_pending: namer.pending(),
        }
    }

    /// Ends an interval: counts taken, the rate worked out.
    fn refresh(&mut self, session: &Session) {
        let aggregator = session.aggregator();
        self.counts.refresh(aggregator);
        let samples = aggregator.samples();
        let secs = self.last_refresh.elapsed().as_secs_f64().max(1e-3);
        self.interval_samples_per_second = (samples - self.last_samples) as f64 / secs;
        self.last_samples = samples;
        self.last_refresh = Instant::now();
    }

    /// Polls the sampler for one step and hands new addresses for naming.
    /// Returns `Some(exited)` when the loop should end.
    fn step(
        &mut self,
        session: &mut Session,
        namer: &mut LiveNamer,
        deadline: Option<Instant>,
        timeout: Duration,
        last_naming: &mut Instant,
    ) -> anyhow::Result<Option<bool>> {
        if signals::STOP.load(Ordering::SeqCst) {
            return Ok(Some(false));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Some(false));
        }
        if session.poll_for(timeout)? {
            return Ok(Some(true));
        }
        if last_naming.elapsed() >= NAMING_STEP {
            namer.request(session.aggregator());
            *last_naming = Instant::now();
        }
        Ok(None)
    }

    fn plain(
        &mut self,
        session: &mut Session,
        namer: &mut LiveNamer,
        view: ViewOptions,
        deadline: Option<Instant>,
    ) -> anyhow::Result<bool> {
        let mut last_naming = Instant::now();
        loop {
            if let Some(exited) = self.step(session, namer, deadline, STEP, &mut last_naming)? {
                return Ok(exited);
            }
            namer.receive();
            if self.last_refresh.elapsed() >= self.interval {
                self.refresh(session);
                // The interval's new addresses get their names before printing,
                // for as long as a tenth of the interval.
                namer.request(session.aggregator());
                let until = Instant::now() + self.interval / 10;
                while namer.pending() > 0 && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(5));
                    namer.receive();
                }
                let table = self.counts.table(session.aggregator(), namer, view);
                plain::print(&self.header(session, namer), &table);
            }
        }
    }

    fn full_screen(
        &mut self,
        session: &mut Session,
        namer: &mut LiveNamer,
        mut view: ViewOptions,
        deadline: Option<Instant>,
        screen: &mut terminal::Screen,
    ) -> anyhow::Result<bool> {
        let mut last_naming = Instant::now();
        let mut paused = false;
        let mut scroll = 0usize;
        let mut redraw = true;
        let mut rows = 0usize;
        loop {
            // The sampler is waited on (the ptrace sampler samples only
            // then); keys are read without waiting.
            if let Some(exited) = self.step(session, namer, deadline, STEP, &mut last_naming)? {
                return Ok(exited);
            }
            while let Some(action) = screen::key(Duration::ZERO) {
                redraw = true;
                match action {
                    Action::Quit => return Ok(false),
                    Action::Sort(by) => view.sort = by,
                    Action::Pause => paused = !paused,
                    Action::Kernel => view.kernel = !view.kernel,
                    Action::Threads => view.per_thread = !view.per_thread,
                    Action::Reset => {
                        self.counts.reset(session.aggregator());
                        self.last_refresh = Instant::now();
                        scroll = 0;
                    }
                    Action::Scroll(by) => {
                        scroll = scroll.saturating_add_signed(by).min(rows.saturating_sub(1))
                    }
                    Action::ScrollTo(at) => scroll = at.min(rows.saturating_sub(1)),
                }
            }
            if namer.receive() > 0 {
                redraw = true;
            }
            if self.last_refresh.elapsed() >= self.interval {
                if !paused {
                    self.refresh(session);
                } else {
                    self.last_refresh = Instant::now();
                }
                redraw = true;
            }
            if redraw {
                redraw = false;
                let table = self.counts.table(session.aggregator(), namer, view);
                rows = table.rows.len();
                let header = self.header(session, namer);
                screen
                    .terminal
                    .draw(|frame| screen::draw(frame, &header, &table, view, paused, scroll))
                    .context("drawing the view")?;
            }
        }
    }
}
