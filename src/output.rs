//! Outputs: which files in which formats, checked before recording starts
//! (see [`crate::destination`] for how each is written), and written all,
//! even when one of them fails.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use stoke_profile::{
    write_folded, write_pprof, write_speedscope, write_svg, FoldedOptions, Profile,
    SpeedscopeOptions,
};

use crate::cli::Format;
use crate::destination::{self, Sink};

/// Where an output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file.
    File(PathBuf),
}

/// One requested output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub destination: Destination,
    pub format: Format,
    /// Where it writes, as resolved when checked.
    pub sink: Sink,
}

impl Output {
    /// Where it goes, for messages.
    pub fn display(&self) -> String {
        match &self.destination {
            Destination::Stdout => "stdout".to_string(),
            Destination::File(p) => p.display().to_string(),
        }
    }

    /// Whether the profile goes to stoke's standard output (`-`,
    /// `/dev/stdout`, `/proc/self/fd/1`).
    pub fn is_stdout(&self) -> bool {
        self.sink.is_stdout()
    }
}

/// Resolves `-o` arguments into outputs and checks, before anything is
/// recorded, that each can be written: a known format, and a destination
/// that can be created or written (see [`destination::check`]). With no
/// `-o`, one file in the current folder named after the target.
pub fn resolve(
    paths: &[PathBuf],
    format: Option<Format>,
    default_stem: &str,
) -> anyhow::Result<Vec<Output>> {
    let defaulted;
    let paths = if paths.is_empty() {
        let ext = match format.unwrap_or(Format::Svg) {
            Format::Svg => "svg",
            Format::Folded => "folded",
            Format::Pprof => "pb.gz",
            Format::Speedscope => "speedscope.json",
        };
        defaulted = [PathBuf::from(format!("{default_stem}.{ext}"))];
        &defaulted[..]
    } else {
        paths
    };
    let mut outputs = Vec::new();
    for path in paths {
        let output = resolve_one(path, format)
            .and_then(|output| destination::check(&output.sink).map(|()| output))
            .with_context(|| match path.to_str() {
                Some("-") => "cannot write stdout".to_owned(),
                _ => format!("cannot write {}", path.display()),
            })?;
        outputs.push(output);
    }
    Ok(outputs)
}

fn resolve_one(path: &Path, format: Option<Format>) -> anyhow::Result<Output> {
    if path.as_os_str() == "-" {
        return Ok(Output {
            destination: Destination::Stdout,
            format: format.unwrap_or(Format::Folded),
            sink: Sink::Stream(destination::Stream::Stdout),
        });
    }
    let sink = destination::resolve(path)?;
    let format = match (format, format_of(path)) {
        (Some(f), _) | (None, Some(f)) => f,
        // A stream, pipe or device without an extension: folded, as `-`.
        (None, None) if !matches!(sink, Sink::Regular(_)) => Format::Folded,
        (None, None) => {
            let ext = path
                .extension()
                .map(|e| format!("\".{}\"", e.to_string_lossy()))
                .unwrap_or_else(|| "(none)".into());
            bail!(
                "unknown output format {ext} for {}: use .svg, .folded, .txt, .pb.gz or .speedscope.json, or --format",
                path.display()
            );
        }
    };
    Ok(Output {
        destination: Destination::File(path.to_path_buf()),
        format,
        sink,
    })
}

fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".pb.gz") {
        return Some(Format::Pprof);
    }
    match path.extension()?.to_str()? {
        "svg" => Some(Format::Svg),
        "folded" | "txt" => Some(Format::Folded),
        "pb" | "pprof" => Some(Format::Pprof),
        "json" => Some(Format::Speedscope),
        _ => None,
    }
}

/// Settings shared by every output.
pub struct Render {
    pub title: Option<String>,
    pub per_thread: bool,
    /// speedscope: one profile per process (recordings of many processes).
    pub per_process: bool,
    pub svg: crate::svg_args::SvgArgs,
}

/// The bytes of one output.
fn render(profile: &Profile, format: Format, render: &Render) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    match format {
        Format::Folded => {
            let options = FoldedOptions {
                per_thread: render.per_thread,
            };
            write_folded(profile, &options, &mut bytes)?;
        }
        Format::Svg => {
            let options = render.svg.options(render.title.clone(), render.per_thread);
            write_svg(profile, &options, &mut bytes)?;
        }
        Format::Pprof => write_pprof(profile, &mut bytes)?,
        Format::Speedscope => {
            let options = SpeedscopeOptions {
                title: render.title.clone(),
                per_process: render.per_process,
            };
            write_speedscope(profile, &options, &mut bytes)?;
        }
    }
    Ok(bytes)
}

/// Writes one output. The path is resolved again, so that the safety rules
/// hold for what it is now, not for what it was when checked.
pub fn write(profile: &Profile, output: &Output, settings: &Render) -> anyhow::Result<()> {
    let bytes = render(profile, output.format, settings)?;
    let sink = match &output.destination {
        Destination::Stdout => output.sink.clone(),
        Destination::File(path) => destination::resolve(path)?,
    };
    destination::write(&sink, &bytes)
}

/// Writes every output, going on past a failed one: the outputs written,
/// and each one that failed with a `stoke: cannot write …` line printed.
pub fn write_all(profile: &Profile, outputs: &[Output], settings: &Render) -> (Vec<Output>, usize) {
    let mut written = Vec::new();
    let mut failed = 0;
    for out in outputs {
        match write(profile, out, settings) {
            Ok(()) => written.push(out.clone()),
            Err(err) => {
                failed += 1;
                let err = err.context(format!("cannot write {}", out.display()));
                eprintln!("stoke: {}", crate::one_line(&err));
            }
        }
    }
    (written, failed)
}

/// Writes bytes to a path by the rules of [`destination`], checking first.
pub fn write_path(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let sink = destination::resolve(path)?;
    destination::write(&sink, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Checks a path can be written, before work that ends in writing it.
pub fn check_path(path: &Path) -> anyhow::Result<()> {
    destination::check(&destination::resolve(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_extensions_unless_forced() {
        let outs = resolve(&["a.svg".into(), "b.txt".into(), "-".into()], None, "x").unwrap();
        let formats: Vec<_> = outs.iter().map(|o| o.format).collect();
        assert_eq!(formats, [Format::Svg, Format::Folded, Format::Folded]);
        assert_eq!(outs[2].destination, Destination::Stdout);
        let forced = resolve(&["a.out".into()], Some(Format::Svg), "x").unwrap();
        assert_eq!(forced[0].format, Format::Svg);
        let outs = resolve(
            &[
                "a.pb.gz".into(),
                "a.pprof".into(),
                "a.speedscope.json".into(),
            ],
            None,
            "x",
        )
        .unwrap();
        let formats: Vec<_> = outs.iter().map(|o| o.format).collect();
        assert_eq!(formats, [Format::Pprof, Format::Pprof, Format::Speedscope]);
    }

    #[test]
    fn unknown_extensions_and_missing_folders_are_refused() {
        let err = format!("{:#}", resolve(&["a.xyz".into()], None, "x").unwrap_err());
        assert!(err.contains("unknown output format \".xyz\""), "{err}");
        let err = format!(
            "{:#}",
            resolve(&["/no/such/dir/a.svg".into()], None, "x").unwrap_err()
        );
        assert!(
            err.contains("output folder /no/such/dir does not exist"),
            "{err}"
        );
    }

    #[test]
    fn without_outputs_an_svg_is_named_after_the_target() {
        let outs = resolve(&[], None, "stoke-xz").unwrap();
        assert_eq!(
            outs[0].destination,
            Destination::File("stoke-xz.svg".into())
        );
        assert_eq!(outs[0].format, Format::Svg);
    }
}
