//! `stoke record`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use stoke_model::Pid;
use stoke_record::{
    Control, NamePattern, Progress, RecordOptions, Recording, Session, StopReason, SystemScope,
    Target, UnwindMode,
};
use stoke_sample::{ChildStdout, CommandSpec, SamplerOptions, StackCapture};

use crate::cli::{Mode, RecordArgs, Unwind};
use crate::output::{self, Render};
use crate::{signals, summary};

pub fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let mut target = target_of(&args)?;
    let outputs = output::resolve(&args.outputs, args.format, &default_stem(&target))?;
    // A profile on stdout is not mixed with the command's own output: that
    // goes to stderr.
    if let Target::Command(spec)
    | Target::System {
        command: Some(spec),
        ..
    } = &mut target
    {
        if outputs.iter().any(output::Output::is_stdout) {
            spec.stdout = ChildStdout::Stderr;
        }
    }
    // Every CPU's samples, DWARF-unwound by one process, outrun it on a
    // busy machine (records are lost): frame pointers there, as perf -a -g.
    let default_unwind = match target {
        Target::System { .. } => Unwind::Fp,
        _ => Unwind::Auto,
    };
    let (unwind, stack) = match args.unwind.unwrap_or(default_unwind) {
        Unwind::Fp => (UnwindMode::FramePointer, StackCapture::Callchain),
        mode => (
            if mode == Unwind::Dwarf {
                UnwindMode::Dwarf
            } else {
                UnwindMode::Auto
            },
            StackCapture::RegsAndStack {
                size: args.stack_size,
            },
        ),
    };
    let options = RecordOptions {
        sampler: SamplerOptions {
            frequency: args.frequency,
            kernel: !args.no_kernel,
            stack,
            mode: match args.mode {
                Mode::Cpu => stoke_record::SampleMode::Cpu,
                Mode::Wall => stoke_record::SampleMode::Wall,
                Mode::OffCpu => stoke_record::SampleMode::OffCpu,
            },
            per_cpu: !args.per_task_events,
            ..SamplerOptions::default()
        },
        backend: args.backend.into(),
        unwind,
        python: args.python.into(),
        duration: args.duration,
        per_process: args.per_process,
        // The machine's (or many processes') threads would each keep their
        // own stack table: counted per process unless threads are asked for.
        merge_threads: matches!(target, Target::System { .. }) && !args.per_thread,
        symbolize: crate::cli::symbolize_options(args.lines, &args.debug_dirs, args.debug_info),
    };
    if args.call_graph {
        eprintln!("stoke: note: -g is not needed: stoke always records whole stacks");
    }
    signals::install()?;
    let session = Session::start(&target, options)?;
    if matches!(
        target,
        Target::Command(_)
            | Target::System {
                command: Some(_),
                ..
            }
    ) {
        signals::forward_sigint_to(session.pid().0);
    }
    if let Some(reason) = session.fallback() {
        eprintln!("stoke: perf events not available ({reason}); sampling with ptrace");
    } else if args.mode != Mode::Cpu {
        eprintln!("stoke: off-CPU time from perf events (context-switch samples)");
    }
    for warning in session.launch_warnings() {
        eprintln!("stoke: warning: {warning}");
    }
    let what = match &target {
        Target::System { .. } => session.title().to_string(),
        _ => format!("pid {}", session.pid()),
    };
    eprintln!(
        "stoke: recording {what} with {}; Ctrl-C to stop",
        session.description()
    );
    let live = std::io::stderr().is_terminal();
    let mut show = |p: Progress| {
        let _ = write!(
            std::io::stderr(),
            "\rstoke: {:.1} s, {} samples ",
            p.elapsed.as_secs_f64(),
            summary::thousands(p.samples)
        );
    };
    let recording = session.run(Control {
        stop: &signals::STOP,
        signal: &signals::SIGNAL,
        interrupts: &signals::INTERRUPTS,
        progress: if live { Some(&mut show) } else { None },
    })?;
    if live {
        eprint!("\r\x1b[K");
    }
    let context = summary::Context {
        stack_size: match stack {
            StackCapture::RegsAndStack { size } => Some(size),
            StackCapture::Callchain => None,
        },
        wall: args.mode != Mode::Cpu,
    };
    let written_at = Instant::now();
    let render = Render {
        title: args.title,
        per_thread: args.per_thread,
        // Many processes: one speedscope profile each, unless threads are asked.
        per_process: matches!(target, Target::System { .. }) && !args.per_thread,
        svg: args.svg.with_palette(args.palette.into()),
    };
    if recording.profile.total_samples() == 0 {
        summary::print(&recording, &[], written_at.elapsed(), context);
        summary::print_empty(&recording);
        // An empty recording is no failure of the command: its status stays stoke's.
        return Ok(ExitCode::from(exit_code(&recording)));
    }
    // Every output is written even when one fails; a failure makes the
    // exit status non-zero (a failing command's own status still wins).
    let (written, failed) = output::write_all(&recording.profile, &outputs, &render);
    summary::print(&recording, &written, written_at.elapsed(), context);
    if args.open {
        open_flame_graph(&written);
    }
    Ok(ExitCode::from(match (exit_code(&recording), failed) {
        (0, 1..) => 1,
        (code, _) => code,
    }))
}

/// `--open`: the first SVG written, in the desktop's viewer when there is a
/// display, else its address on stderr.
fn open_flame_graph(outputs: &[output::Output]) {
    let svg = outputs
        .iter()
        .find_map(|o| match (&o.destination, o.format) {
            (output::Destination::File(path), crate::cli::Format::Svg) => Some(path),
            _ => None,
        });
    let Some(path) = svg else {
        eprintln!("stoke: --open: no SVG output to open (add -o flame.svg)");
        return;
    };
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    let opened = display
        && std::process::Command::new("xdg-open")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok();
    if opened {
        eprintln!("stoke: opening {}", path.display());
    } else {
        eprintln!(
            "stoke: no display to open it on: open file://{} in a browser",
            path.display()
        );
    }
}

/// A wrapped command's exit status becomes stoke's own (128 + N for a
/// command killed by signal N, as shells report it); 0 otherwise, and 0 when
/// stoke itself stopped the command at the end of `--duration`.
fn exit_code(recording: &Recording) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    if recording.stop_reason == StopReason::Duration {
        return 0;
    }
    match recording.exit_status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => code as u8,
            (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
            _ => 1,
        },
        None => 0,
    }
}

/// What `stoke record` was asked to profile.
fn target_of(args: &RecordArgs) -> anyhow::Result<Target> {
    let command = args
        .command
        .split_first()
        .map(|(program, rest)| CommandSpec::new(program.clone(), rest.to_vec()));
    let scope = if args.all_cpus {
        SystemScope::All { idle: args.idle }
    } else if let Some(path) = &args.cgroup {
        SystemScope::Cgroup(path.clone())
    } else if let Some(pattern) = &args.name {
        SystemScope::Name {
            pattern: NamePattern::new(pattern),
            follow_new: args.follow_new,
        }
    } else if args.pid.len() > 1 {
        SystemScope::Pids(args.pid.iter().map(|&p| Pid(p)).collect())
    } else {
        return Ok(match (args.pid.first(), command) {
            (Some(&pid), _) => Target::Pid(Pid(pid)),
            (None, Some(command)) => Target::Command(command),
            (None, None) => {
                anyhow::bail!("nothing to profile: give -p PID, -a, --cgroup, --name or -- COMMAND")
            }
        });
    };
    Ok(Target::System { scope, command })
}

/// `stoke-<name>-<UTC time>`, the default output name.
fn default_stem(target: &Target) -> String {
    let name = match target {
        Target::Pid(pid) => stoke_sample::procfs::thread_name(*pid, (*pid).into())
            .unwrap_or_else(|| pid.to_string()),
        Target::System { scope, .. } => match scope {
            SystemScope::All { .. } => "all".to_string(),
            SystemScope::Pids(_) => "pids".to_string(),
            SystemScope::Name { pattern, .. } => pattern.as_str().to_string(),
            SystemScope::Cgroup(path) => path
                .file_name()
                .map_or_else(|| "cgroup".into(), |n| n.to_string_lossy().into_owned()),
        },
        Target::Command(spec) => std::path::Path::new(&spec.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "command".into()),
    };
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("stoke-{name}-{}", utc_stamp(SystemTime::now()))
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_stamps_are_civil_dates() {
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "19700101-000000");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661);
        assert_eq!(utc_stamp(leap), "20000229-010101");
    }
}
