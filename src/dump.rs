//! `stoke dump`: every thread's current stack, once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use stoke_model::Pid;
use stoke_profile::FrameKind;
use stoke_record::{Dump, DumpOptions, DumpThread};
use stoke_sample::ThreadState;

use crate::cli::{DebugInfo, Python};

/// Print every thread's stack right now (like `py-spy dump`, `eu-stack`
/// or gdb's `thread apply all bt`): its id and name, whether it runs or
/// sleeps (in which system call), its functions, kernel ones too where
/// readable (as root). Each thread is stopped on its own for as short a
/// time as it takes to copy its registers and stack, then let go.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    stoke dump -p $(pidof myserver)\n  \
    stoke dump -p 1234 --lines --json | jq '.threads[].state'")]
pub struct DumpArgs {
    /// The process whose threads to show.
    #[arg(short, long, value_name = "PID", required = true)]
    pub pid: u32,

    /// Write JSON (one object: the process, its threads and their frames).
    #[arg(long)]
    pub json: bool,

    /// Show the source line in each frame's name: `parse (lexer.c:42)`.
    #[arg(long)]
    pub lines: bool,

    /// Python functions of a CPython 3.8-3.13 target (`auto`), or its C
    /// functions only (`off`).
    #[arg(long, value_enum, default_value_t = Python::Auto)]
    pub python: Python,

    /// Also look for separate debug files in DIR; repeatable.
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,

    /// What separate debug files give: `symbols` or `full` (DWARF too).
    #[arg(long, value_enum, default_value_t = DebugInfo::Symbols)]
    pub debug_info: DebugInfo,
}

pub fn run(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let options = DumpOptions {
        symbolize: crate::cli::symbolize_options(args.lines, &args.debug_dirs, args.debug_info),
        python: args.python.into(),
        ..DumpOptions::default()
    };
    let dump = stoke_record::dump(Pid(args.pid), &options)?;
    for warning in dump.warnings.iter() {
        eprintln!("stoke: warning: {warning}");
    }
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&json(&dump))?;
        json.push('\n');
        json
    } else {
        text(&dump)
    };
    crate::print_bytes(text.as_bytes())
}

/// What a thread is doing, in words: `running`, `sleeping in read (pipe_read)`.
fn doing(thread: &DumpThread) -> String {
    let mut text = thread.state.word().to_string();
    if thread.state != ThreadState::Running {
        if let Some(syscall) = syscall_name(thread) {
            text.push_str(&format!(" in {syscall}"));
        }
        if let Some(wchan) = &thread.wchan {
            text.push_str(&format!(" ({wchan})"));
        }
    }
    text
}

/// The system call a thread waits in; `restart_syscall` (a sleep that an
/// earlier stop interrupted, resumed by the kernel) says so.
fn syscall_name(thread: &DumpThread) -> Option<String> {
    let syscall = thread.syscall?;
    Some(match syscall.name() {
        Some("restart_syscall") => "restart_syscall (an interrupted sleep, resumed)".into(),
        _ => syscall.to_string(),
    })
}

fn frame_text(name: &str, kind: FrameKind) -> String {
    match kind {
        FrameKind::Inline => format!("{name} (inlined)"),
        FrameKind::Jit => format!("{name} [j]"),
        FrameKind::Python => format!("{name} [py]"),
        _ => name.to_string(),
    }
}

fn text(dump: &Dump) -> String {
    let longest = dump
        .threads
        .iter()
        .map(|t| t.stopped_for)
        .max()
        .unwrap_or(Duration::ZERO);
    let mut out = format!(
        "Process {} ({}): {} thread{}, each stopped for at most {} µs\n",
        dump.pid,
        dump.process_name.as_deref().unwrap_or("?"),
        dump.threads.len(),
        if dump.threads.len() == 1 { "" } else { "s" },
        longest.as_micros()
    );
    for thread in &dump.threads {
        out.push_str(&format!(
            "\nThread {} ({}): {}\n",
            thread.tid.0,
            thread.name.as_deref().unwrap_or("?"),
            doing(thread)
        ));
        if let Some(error) = &thread.error {
            out.push_str(&format!("    [not read: {error}]\n"));
            continue;
        }
        if thread.state != ThreadState::Running {
            for name in thread.kernel.iter().flatten() {
                out.push_str(&format!("    {name} [k]\n"));
            }
        }
        for frame in &thread.frames {
            out.push_str(&format!("    {}\n", frame_text(&frame.name, frame.kind)));
        }
    }
    out
}

fn kind_word(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::User => "user",
        FrameKind::Inline => "inline",
        FrameKind::Kernel => "kernel",
        FrameKind::Jit => "jit",
        FrameKind::Python => "python",
        FrameKind::Marker => "marker",
    }
}

fn json(dump: &Dump) -> serde_json::Value {
    use serde_json::json;
    let threads: Vec<serde_json::Value> = dump
        .threads
        .iter()
        .map(|t| {
            let mut frames: Vec<serde_json::Value> = Vec::new();
            if t.state != ThreadState::Running {
                for name in t.kernel.iter().flatten() {
                    frames.push(json!({ "name": name, "kind": "kernel" }));
                }
            }
            for f in &t.frames {
                let mut frame = json!({ "name": f.name, "kind": kind_word(f.kind) });
                if let Some((file, line)) = &f.location {
                    frame["file"] = json!(file);
                    frame["line"] = json!(line);
                }
                frames.push(frame);
            }
            json!({
                "tid": t.tid.0,
                "name": t.name,
                "state": t.state.word(),
                "syscall": t.syscall.map(|s| s.to_string()),
                "wchan": t.wchan,
                "kernel_stack_readable": t.kernel.is_some(),
                "stopped_us": t.stopped_for.as_micros() as u64,
                "frames": frames,
                "error": t.error,
            })
        })
        .collect();
    json!({
        "pid": dump.pid.0,
        "process_name": dump.process_name,
        "capture_ms": dump.capture_time.as_secs_f64() * 1e3,
        "threads": threads,
    })
}
