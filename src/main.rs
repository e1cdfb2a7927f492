//! The `stoke` command line: parses arguments into the libraries' options,
//! handles signals, writes outputs atomically and turns errors into one line
//! on stderr and an exit code.

mod cli;
mod convert;
mod diff;
mod input;
mod output;
mod record;
mod report;
mod signals;
mod summary;
mod svg_args;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Record(args) => record::run(args),
        cli::Command::Report(args) => report::run(args),
        cli::Command::Convert(args) => convert::run(args),
        cli::Command::Diff(args) => diff::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("stoke: {}", one_line(&err));
            ExitCode::from(1)
        }
    }
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
