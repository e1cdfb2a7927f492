//! Outputs: which files in which formats, checked before recording starts,
//! and written atomically (a temporary file in the same folder, renamed).

use std::fs::Permissions;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use stoke_profile::{
    write_folded, write_pprof, write_speedscope, write_svg, FoldedOptions, Profile,
    SpeedscopeOptions,
};

use crate::cli::Format;

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
}

impl Output {
    /// Where it goes, for messages.
    pub fn display(&self) -> String {
        match &self.destination {
            Destination::Stdout => "stdout".to_string(),
            Destination::File(p) => p.display().to_string(),
        }
    }
}

/// Resolves `-o` arguments into outputs, checking what can be checked before
/// recording: known formats and existing folders. With no `-o`, one file in
/// the current folder named after the target.
pub fn resolve(
    paths: &[PathBuf],
    format: Option<Format>,
    default_stem: &str,
) -> anyhow::Result<Vec<Output>> {
    if paths.is_empty() {
        let format = format.unwrap_or(Format::Svg);
        let ext = match format {
            Format::Svg => "svg",
            Format::Folded => "folded",
            Format::Pprof => "pb.gz",
            Format::Speedscope => "speedscope.json",
        };
        let path = PathBuf::from(format!("{default_stem}.{ext}"));
        return Ok(vec![Output {
            destination: Destination::File(path),
            format,
        }]);
    }
    let mut outputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            outputs.push(Output {
                destination: Destination::Stdout,
                format: format.unwrap_or(Format::Folded),
            });
            continue;
        }
        let format = match (format_of(path), format) {
            (_, Some(f)) => f,
            (Some(f), None) => f,
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
        check_folder(path)?;
        outputs.push(Output {
            destination: Destination::File(path.clone()),
            format,
        });
    }
    Ok(outputs)
}

/// Fails when the folder an output goes to does not exist.
pub fn check_folder(path: &Path) -> anyhow::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!("output folder {} does not exist", folder.display());
    }
    Ok(())
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
    pub svg: crate::svg_args::SvgArgs,
}

/// Writes one output.
pub fn write(profile: &Profile, output: &Output, render: &Render) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    match output.format {
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
            };
            write_speedscope(profile, &options, &mut bytes)?;
        }
    }
    match &output.destination {
        Destination::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|_| out.flush())
                .context("writing to stdout")
        }
        Destination::File(path) => write_atomically(path, &bytes),
    }
}

/// Writes a file through a temporary file in the same folder and a rename,
/// so a reader never sees half a file and an old file is never half replaced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".stoke-")
        .tempfile_in(folder)
        .with_context(|| format!("creating a file in {}", folder.display()))?;
    file.write_all(bytes)
        .and_then(|_| {
            file.as_file()
                .set_permissions(Permissions::from_mode(0o644))
        })
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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
        let err = resolve(&["a.xyz".into()], None, "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown output format \".xyz\""), "{err}");
        let err = resolve(&["/no/such/dir/a.svg".into()], None, "x")
            .unwrap_err()
            .to_string();
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
    }
}
