//! `stoke doctor -p PID` / `stoke doctor -- CMD`: what each binary of the
//! target gives stoke, and hints for the runtimes it recognises.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::Serialize;
use stoke_model::{MappingKind, Pid};
use stoke_sample::procfs::Follow;
use stoke_symbolize::{inspect_module, ModuleFacts};

use crate::doctor::{check, Check, DoctorArgs, Status};

/// One binary of the target.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleCheck {
    /// Its path as the target names it.
    pub path: String,
    /// The outcome.
    pub status: Status,
    /// What it has, in one line.
    pub summary: String,
    /// How function names are found: `symtab`, `minidebuginfo`,
    /// `debug file`, `dynsym` (exported functions only) or `none`.
    pub names: &'static str,
    /// Call frame information: `.eh_frame`, `.debug_frame` or `none`.
    pub cfi: &'static str,
    /// DWARF line tables (for `--lines`).
    pub lines: bool,
    /// Whether its functions set up frame pointers (a heuristic).
    pub frame_pointers: Option<bool>,
    /// The separate debug file found for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug_file: Option<String>,
    /// What to do about it, when anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What was found about the target.
#[derive(Debug, Default)]
pub struct TargetReport {
    /// The target, for the heading.
    pub what: Option<String>,
    /// Each of its binaries.
    pub modules: Vec<ModuleCheck>,
    /// Runtime hints (Python, node, JVM, Go).
    pub runtimes: Vec<Check>,
}

/// A binary to look at: where to open it and how the target names it.
struct Binary {
    named: PathBuf,
    file: std::fs::File,
    root: Option<PathBuf>,
}

pub fn inspect(args: &DoctorArgs) -> anyhow::Result<TargetReport> {
    let (what, binaries, cmdline) = match (args.pid, args.command.split_first()) {
        (Some(pid), _) => {
            let (binaries, cmdline) = process_binaries(Pid(pid))?;
            (format!("pid {pid}"), binaries, cmdline)
        }
        (None, Some((program, _))) => {
            let (binaries, interpreter) = command_binaries(program)?;
            let cmdline = args
                .command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let mut what = program.to_string_lossy().into_owned();
            if let Some(interpreter) = interpreter {
                what.push_str(&format!(
                    " (a script: its interpreter {} is checked)",
                    interpreter.display()
                ));
            }
            (what, binaries, cmdline)
        }
        (None, None) => return Ok(TargetReport::default()),
    };
    let mut report = TargetReport {
        what: Some(what),
        ..TargetReport::default()
    };
    let mut facts = Vec::new();
    for binary in &binaries {
        match inspect_module(
            &binary.file,
            &binary.named,
            binary.root.as_deref(),
            &args.debug_dirs,
        ) {
            Ok(f) => {
                report.modules.push(module_check(&binary.named, &f));
                facts.push((binary.named.clone(), f));
            }
            Err(err) => report.modules.push(ModuleCheck {
                path: binary.named.display().to_string(),
                status: Status::Warn,
                summary: format!("cannot be read: {err}"),
                names: "none",
                cfi: "none",
                lines: false,
                frame_pointers: None,
                debug_file: None,
                fix: None,
            }),
        }
    }
    report.runtimes = runtime_hints(&facts, &cmdline, args.pid);
    Ok(report)
}

/// The file-backed executable mappings of a live process, each opened once.
fn process_binaries(pid: Pid) -> anyhow::Result<(Vec<Binary>, Vec<String>)> {
    let mappings = stoke_sample::procfs::executable_mappings(pid)
        .with_context(|| format!("reading the mappings of pid {pid}"))?;
    let mut seen = std::collections::HashSet::new();
    let mut binaries = Vec::new();
    for mapping in &mappings {
        let MappingKind::File(path) = &mapping.kind else {
            continue;
        };
        if !seen.insert(path.clone()) {
            continue;
        }
        if let Ok(file) = stoke_sample::procfs::open_mapped_file(pid, mapping) {
            binaries.push(Binary {
                named: path.clone(),
                file,
                root: Some(PathBuf::from(format!("/proc/{pid}/root"))),
            });
        }
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Ok((binaries, cmdline))
}

/// The program `name` names on PATH (or as a path).
fn resolve_program(name: &Path) -> Option<PathBuf> {
    if name.as_os_str().as_encoded_bytes().contains(&b'/') {
        return name.is_file().then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A script's interpreter (`#!/usr/bin/env python3` → python3 on PATH).
fn script_interpreter(program: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = stoke_sample::procfs::open_regular(program, Follow::Yes)
        .ok()?
        .read(&mut head)
        .ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(line.split(|&b| b == b'\n').next()?).into_owned();
    let mut words = line.split_whitespace();
    let interpreter = PathBuf::from(words.next()?);
    if interpreter.file_name().is_some_and(|n| n == "env") {
        return resolve_program(Path::new(words.find(|w| !w.starts_with('-'))?));
    }
    Some(interpreter)
}

/// A command's program (a script's interpreter, returned too) and the
/// libraries the dynamic loader would load for it (`ld.so --list`, which
/// maps them without running the program).
fn command_binaries(program: &OsString) -> anyhow::Result<(Vec<Binary>, Option<PathBuf>)> {
    let Some(mut path) = resolve_program(Path::new(program)) else {
        bail!("command not found: {}", program.to_string_lossy());
    };
    let interpreter = script_interpreter(&path);
    if let Some(interpreter) = &interpreter {
        path = interpreter.clone();
    }
    let mut paths = vec![path.clone()];
    let loader = Path::new("/lib64/ld-linux-x86-64.so.2");
    if loader.exists() {
        if let Ok(out) = Command::new(loader).arg("--list").arg(&path).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or
                // `/lib64/ld-linux-x86-64.so.2 (0x…)`
                let target = line.split("=>").nth(1).unwrap_or(line);
                if let Some(lib) = target
                    .split_whitespace()
                    .next()
                    .filter(|w| w.starts_with('/'))
                {
                    if !paths.iter().any(|p| p == Path::new(lib)) {
                        paths.push(PathBuf::from(lib));
                    }
                }
            }
        }
    }
    let binaries = paths
        .into_iter()
        .filter_map(|named| {
            // The checked opener: a FIFO or device at the path is refused.
            let file = stoke_sample::procfs::open_regular(&named, Follow::Yes).ok()?;
            Some(Binary {
                named,
                file,
                root: None,
            })
        })
        .collect();
    Ok((binaries, interpreter))
}

fn module_check(path: &Path, f: &ModuleFacts) -> ModuleCheck {
    let names = if f.symtab_functions > 0 {
        "symtab"
    } else if f.mini_debug_info {
        "minidebuginfo"
    } else if f.debug_file.is_some() {
        "debug file"
    } else if f.dynsym_functions > 0 {
        "dynsym"
    } else {
        "none"
    };
    let cfi = if f.eh_frame {
        ".eh_frame"
    } else if f.debug_frame {
        ".debug_frame"
    } else {
        "none"
    };
    let fp = f.has_frame_pointers();
    let mut parts = vec![
        match names {
            "symtab" => format!("symbols: {} functions", f.symtab_functions),
            "minidebuginfo" => "symbols: from MiniDebugInfo".to_string(),
            "debug file" => "symbols: from its debug file".to_string(),
            "dynsym" => format!(
                "symbols: {} exported functions only (stripped)",
                f.dynsym_functions
            ),
            _ => "no symbols".to_string(),
        },
        format!("CFI: {cfi}"),
        format!(
            "lines: {}",
            if f.dwarf_lines || f.debug_file.is_some() {
                "yes"
            } else {
                "no"
            }
        ),
        format!(
            "frame pointers: {}",
            match fp {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            }
        ),
    ];
    if let Some(debug) = &f.debug_file {
        parts.push(format!("debug file {}", debug.display()));
    }
    let mut status = Status::Ok;
    let mut fix = None;
    if cfi == "none" && fp != Some(true) {
        status = Status::Warn;
        parts.push("stacks through it break (no CFI, no frame pointers)".into());
        fix = Some("rebuild it with -fno-omit-frame-pointer, or keep its .eh_frame".to_string());
    }
    if !f.names_every_function() {
        status = Status::Warn;
        parts.push("its static functions show as NAME+0xOFFSET".into());
        fix = fix.or_else(|| debug_package_hint(path));
    }
    ModuleCheck {
        path: path.display().to_string(),
        status,
        summary: parts.join("; "),
        names,
        cfi,
        lines: f.dwarf_lines || f.debug_file.is_some(),
        frame_pointers: fp,
        debug_file: f.debug_file.as_ref().map(|p| p.display().to_string()),
        fix,
    }
}

/// Which package would give a binary its debug file, where the system's
/// package manager knows the binary.
fn debug_package_hint(path: &Path) -> Option<String> {
    let owner = |program: &str, args: &[&str], candidate: &Path| {
        let out = Command::new(program)
            .args(args)
            .arg(candidate)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // usrmerge: dpkg knows /lib/… where the file is /usr/lib/… and back.
    let mut candidates = vec![path.to_path_buf()];
    if let Ok(rest) = path.strip_prefix("/usr") {
        candidates.push(Path::new("/").join(rest));
    } else {
        candidates.push(Path::new("/usr").join(path.strip_prefix("/").unwrap_or(path)));
    }
    for candidate in &candidates {
        if let Some(text) = owner("dpkg-query", &["-S"], candidate) {
            let package = text.split(':').next()?.trim().to_string();
            let debug = if package == "libc6" {
                "libc6-dbg".to_string()
            } else {
                format!("{package}-dbgsym")
            };
            return Some(format!(
                "apt install {debug} (-dbgsym packages come from the debian-debug or ddebs archive)"
            ));
        }
        if let Some(text) = owner("rpm", &["-qf", "--qf", "%{NAME}"], candidate) {
            return Some(format!("dnf debuginfo-install {}", text.trim()));
        }
    }
    Some("install its distribution debug package, or point --debug-dir at its debug files".into())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn runtime_hints(
    facts: &[(PathBuf, ModuleFacts)],
    cmdline: &[String],
    pid: Option<u32>,
) -> Vec<Check> {
    let mut hints = Vec::new();
    let names: Vec<String> = facts.iter().map(|(p, _)| file_name(p)).collect();
    let python = facts
        .iter()
        .find(|(p, f)| f.python_runtime || file_name(p).starts_with("libpython3"))
        .map(|(p, _)| file_name(p))
        .or_else(|| names.first().filter(|n| n.starts_with("python3")).cloned());
    if let Some(module) = python {
        let version = module
            .trim_start_matches("lib")
            .trim_start_matches("python")
            .split(".so")
            .next()
            .unwrap_or("")
            .to_string();
        let minor: Option<u32> = version.split('.').nth(1).and_then(|m| m.parse().ok());
        let perf_flag = cmdline.windows(2).any(|w| w[0] == "-X" && w[1] == "perf");
        let hint = match minor {
            Some(m) if m >= 12 && perf_flag => check(
                "python",
                Status::Ok,
                format!("CPython {version} with -X perf: its perf map names Python functions"),
            ),
            Some(m) if m >= 12 => check(
                "python",
                Status::Warn,
                format!("CPython {version}: flame graphs show the interpreter's C functions, not your Python functions"),
            )
            .fix("run it with `python3 -X perf` (or PYTHONPERFSUPPORT=1) so its perf map names Python functions"),
            _ => check(
                "python",
                Status::Warn,
                format!("CPython {}: flame graphs show the interpreter's C functions (_PyEval_EvalFrameDefault), not your Python functions", if version.is_empty() { "3" } else { &version }),
            )
            .fix("Python 3.12 and later name Python functions with `-X perf`"),
        };
        hints.push(hint);
    }
    if names.first().is_some_and(|n| n == "node" || n == "nodejs") {
        let flagged = cmdline.iter().any(|a| {
            a == "--perf-basic-prof" || a == "--perf-prof" || a.starts_with("--perf-basic-prof")
        });
        let map = pid.is_some_and(|p| Path::new(&format!("/tmp/perf-{p}.map")).exists());
        hints.push(if flagged || map {
            check("node", Status::Ok, "node writes a perf map: JIT functions get names")
        } else {
            check(
                "node",
                Status::Warn,
                "node without --perf-basic-prof: JavaScript functions show as [unknown]",
            )
            .fix("start it with `node --perf-basic-prof` (add --interpreted-frames-native-stack for interpreted frames)")
        });
    }
    if names.iter().any(|n| n == "libjvm.so") {
        let fp = cmdline.iter().any(|a| a == "-XX:+PreserveFramePointer");
        let hint = check(
            "jvm",
            if fp { Status::Ok } else { Status::Warn },
            if fp {
                "a JVM with -XX:+PreserveFramePointer: JIT stacks can be walked"
            } else {
                "a JVM without -XX:+PreserveFramePointer: stacks through JIT code break"
            },
        )
        .fix("start it with -XX:+PreserveFramePointer, and a perf map agent (e.g. async-profiler's or perf-map-agent) for Java names");
        hints.push(hint);
    }
    if facts.iter().any(|(_, f)| f.go) {
        hints.push(check(
            "go",
            Status::Ok,
            "Go keeps frame pointers by default: stacks are whole",
        ));
    }
    hints
}

pub fn print(report: &TargetReport) {
    let Some(what) = &report.what else {
        return;
    };
    println!();
    println!("binaries of {what}:");
    for m in &report.modules {
        println!("{:<4}  {}: {}", m.status.label(), m.path, m.summary);
        if let Some(fix) = &m.fix {
            println!("      fix: {fix}");
        }
    }
    for hint in &report.runtimes {
        println!("{:<4}  {}: {}", hint.status.label(), hint.id, hint.summary);
        if let Some(fix) = &hint.fix {
            println!("      fix: {fix}");
        }
    }
}
