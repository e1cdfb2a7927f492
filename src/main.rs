//! The `stoke` command line: parses arguments into the libraries' options,
//! handles signals, writes outputs atomically and turns errors into one line
//! on stderr and an exit code.

mod cli;
mod convert;
mod destination;
mod diff;
mod doctor;
mod doctor_target;
mod dump;
mod input;
mod output;
mod record;
mod report;
mod signals;
mod summary;
mod svg_args;
mod top;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

fn main() -> ExitCode {
    install_panic_message();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    let result = match cli.command {
        cli::Command::Record(args) => record::run(args),
        cli::Command::Report(args) => report::run(args),
        cli::Command::Convert(args) => convert::run(args),
        cli::Command::Diff(args) => diff::run(args),
        cli::Command::Doctor(args) => doctor::run(args),
        cli::Command::Top(args) => top::run(args),
        cli::Command::Dump(args) => dump::run(args),
        cli::Command::Completions { shell } => print_completions(shell),
        cli::Command::Man { subcommand } => print_man_page(subcommand.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("stoke: {}", one_line(&err));
            ExitCode::from(1)
        }
    }
}

fn print_completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli::Cli::command(), "stoke", &mut script);
    print_bytes(&script)
}

fn print_man_page(subcommand: Option<&str>) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let top = cli::Cli::command();
    let page = match subcommand {
        None => clap_mangen::Man::new(top),
        Some(name) => {
            let sub = top
                .find_subcommand(name)
                .with_context(|| format!("no subcommand {name:?}"))?
                .clone()
                .display_name(format!("stoke-{name}"))
                .bin_name(format!("stoke {name}"));
            clap_mangen::Man::new(sub)
        }
    };
    let mut roff = Vec::new();
    page.render(&mut roff)?;
    print_bytes(&roff)
}

/// Writes to stdout; a reader that went away (`| head`) is no error.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Help and version go to stdout as clap prints them; a usage error becomes
/// one `stoke:` line (with clap's tips), exit status 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
    }
    let text = err.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut line = String::new();
    let mut tip = None;
    let mut command = "stoke".to_string();
    let subcommand = std::env::args().nth(1).filter(|word| {
        use clap::CommandFactory;
        cli::Cli::command()
            .get_subcommands()
            .any(|s| s.get_name() == word)
    });
    if let Some(subcommand) = subcommand {
        command = format!("stoke {subcommand}");
    }
    for l in &lines {
        if l.starts_with("Usage: ") {
            continue;
        } else if let Some(t) = l.strip_prefix("tip: ") {
            tip.get_or_insert(t);
        } else if !l.starts_with("For more information") {
            if !line.is_empty() && !line.ends_with(':') {
                line.push(',');
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(l.trim_start_matches("error: "));
        }
    }
    if let Some(tip) = tip {
        line.push_str(&format!(" ({tip})"));
    }
    eprintln!("stoke: {line}; see `{command} --help`");
    ExitCode::from(2)
}

/// A panic is a bug of stoke: say so on one line (with the place, and a
/// backtrace only when `RUST_BACKTRACE` asks for one). Unwinding goes on, so
/// the samplers' guards still detach from the target.
fn install_panic_message() {
    let backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("panic");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("stoke: internal error: {message}{place} (a bug in stoke; please report it)");
        if backtrace {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
}

/// An error and its causes on one line, without repeating a cause that the
/// message above it already quotes.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
