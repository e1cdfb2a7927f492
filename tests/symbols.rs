//! End-to-end tests of naming: inline frames and `--lines`, separate debug
//! files (`--debug-dir`, Debian's libc6-dbg), Rust demangling, kernel frames,
//! JIT perf maps (and the refusal of unsafe ones), node, deleted binaries.
//!
//! Tests that need something the machine may lack (root, node, libc6-dbg)
//! say on stderr why they skipped and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    c_fixture, find_in_path, record_command, run, rust_fixture, stoke_record, Build, Folded,
    LeftFiles, Recording, HZ,
};

/// Whether the tests run as root (map_files, chown, installing packages).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn skip(test: &str, why: &str) {
    eprintln!("{test}: skipped: {why}");
}

/// Samples whose user leaf is `name`.
fn leaf_count(folded: &Folded, name: &str) -> u64 {
    folded.count(|s| s.user_leaf() == Some(name))
}

/// Line numbers of `fixtures/<file>` lines containing `marker`.
fn fixture_lines(file: &str, marker: &str) -> Vec<u32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(file);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i as u32 + 1)
        .collect()
}

#[test]
fn an_inlined_function_is_its_own_frame_under_its_caller() {
    let fixture = c_fixture("inline_hot", Build::FramePointers);
    let recording = record_command(&[], &[fixture.as_os_str(), "1".as_ref()]);
    let folded = recording.folded.of_process("inline_hot");
    let inlined = leaf_count(&folded, "mix_inlined");
    assert!(
        inlined * 5 >= folded.total(),
        "only {inlined} of {} samples in mix_inlined\n{}",
        folded.total(),
        recording.outcome
    );
    // Every sample in the inlined function has its caller right above it.
    let under_caller = folded.count(|s| {
        s.frames
            .windows(2)
            .any(|w| w[0] == "outer_loop" && w[1] == "mix_inlined")
    });
    assert_eq!(under_caller, folded.count(|s| s.contains("mix_inlined")));
    // Without --lines, names carry no source location.
    assert!(!folded
        .stacks
        .iter()
        .any(|s| s.frames.iter().any(|f| f.contains("inline_hot.c:"))));
}

#[test]
fn lines_option_names_frames_with_file_and_line() {
    let fixture = c_fixture("inline_hot", Build::FramePointers);
    let recording = record_command(&["--lines"], &[fixture.as_os_str(), "0.5".as_ref()]);
    let folded = recording.folded.of_process("inline_hot");
    let call = fixture_lines("inline_hot.c", "CALL_LINE")[0];
    let caller = format!("outer_loop (inline_hot.c:{call})");
    let mix_lines = fixture_lines("inline_hot.c", "MIX_LINE");
    let leaves: Vec<&str> = folded
        .stacks
        .iter()
        .filter(|s| s.contains(&caller))
        .filter_map(|s| s.user_leaf())
        .collect();
    assert!(
        leaves.iter().any(|leaf| mix_lines
            .iter()
            .any(|l| *leaf == format!("mix_inlined (inline_hot.c:{l})"))),
        "no `mix_inlined (inline_hot.c:LINE)` under `{caller}`: {leaves:?}\n{}",
        recording.outcome
    );
}

/// The GNU build-id of an ELF file, as hex, read with `readelf -n`.
fn build_id(binary: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(binary)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build-id in {}", binary.display()))
        .trim()
        .to_string()
}

fn tool(program: &str, args: &[&std::ffi::OsStr]) {
    let outcome = run(Command::new(program).args(args));
    assert!(outcome.status.success(), "{program} {args:?}\n{outcome}");
}

#[test]
fn debug_dir_names_static_functions_of_a_stripped_binary() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("inline_hot");
    std::fs::copy(c_fixture("inline_hot", Build::FramePointers), &binary).unwrap();
    let id = build_id(&binary);
    let folder = dir.path().join("dbg/.build-id").join(&id[..2]);
    std::fs::create_dir_all(&folder).unwrap();
    let debug = folder.join(format!("{}.debug", &id[2..]));
    tool(
        "objcopy",
        &[
            "--only-keep-debug".as_ref(),
            binary.as_os_str(),
            debug.as_os_str(),
        ],
    );
    tool("strip", &["--strip-all".as_ref(), binary.as_os_str()]);

    let record = |extra: &[&str]| {
        let out = dir.path().join("out.folded");
        let mut cmd = stoke_record(dir.path());
        cmd.args(["-F", HZ, "-o"]).arg(&out).args(extra);
        cmd.arg("--").arg(&binary).arg("0.5");
        run(&mut cmd).assert_success();
        Folded::read(&out)
    };
    let plain = record(&[]);
    assert_eq!(leaf_count(&plain, "static_spin"), 0);
    assert!(plain.stacks.iter().any(|s| s
        .user_leaf()
        .is_some_and(|f| f.starts_with("inline_hot+0x"))));
    let debug_dir = dir.path().join("dbg");
    let with_debug = record(&["--debug-dir", debug_dir.to_str().unwrap()]);
    let named = leaf_count(&with_debug, "static_spin");
    assert!(
        named * 5 >= with_debug.total(),
        "static_spin named in {named} of {} samples",
        with_debug.total()
    );
}

#[test]
fn rust_names_are_demangled_and_hash_free() {
    let fixture = rust_fixture("rust-spin");
    let recording = record_command(&[], &[fixture.as_os_str(), "0.5".as_ref()]);
    let folded = recording.folded.of_process("rust_spin");
    assert!(
        leaf_count(&folded, "rust_spin::hot") > 0,
        "{}",
        recording.outcome
    );
    let is_hash = |f: &str| {
        f.rsplit_once("::h")
            .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    for stack in &folded.stacks {
        for frame in &stack.frames {
            assert!(
                !frame.starts_with("_ZN") && !frame.starts_with("_R") && !is_hash(frame),
                "mangled or hashed frame {frame:?}"
            );
        }
    }
    // The standard library's frames are demangled too.
    assert!(folded
        .stacks
        .iter()
        .any(|s| s.frames.iter().any(|f| f.starts_with("std::"))));
}

#[test]
fn kernel_frames_are_named_for_a_syscall_heavy_program() {
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(2);
    if paranoid > 1 && !is_root() {
        return skip(
            "kernel_frames",
            "perf_event_paranoid > 1 and not root: no kernel callchains",
        );
    }
    let fixture = c_fixture("syscalls", Build::FramePointers);
    let recording = record_command(&[], &[fixture.as_os_str(), "0.5".as_ref()]);
    let folded = recording.folded.of_process("syscalls");
    let in_kernel = folded.count(|s| s.frames.iter().any(|f| f.ends_with("_[k]")));
    assert!(
        in_kernel * 2 >= folded.total(),
        "only {in_kernel} of {} samples in the kernel",
        folded.total()
    );
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let hidden = kallsyms
        .lines()
        .next()
        .is_none_or(|l| l.starts_with("0000000000000000"));
    if hidden {
        assert!(
            recording
                .outcome
                .stderr
                .contains("warning: kernel symbols are hidden"),
            "{}",
            recording.outcome
        );
        return;
    }
    let read_frames = folded.count(|s| {
        s.frames
            .iter()
            .any(|f| f.ends_with("_[k]") && f.contains("read"))
    });
    assert!(
        read_frames * 2 >= folded.total(),
        "only {read_frames} of {} samples under a kernel *read* function\n{}",
        folded.total(),
        recording.outcome
    );
    assert!(!recording
        .outcome
        .stderr
        .contains("kernel symbols are hidden"));
}

fn record_jit(mode: &str) -> (Recording, LeftFiles) {
    let fixture = c_fixture("jit_map", Build::FramePointers);
    let recording = record_command(&[], &[fixture.as_os_str(), mode.as_ref(), "0.5".as_ref()]);
    let left = LeftFiles::from_stdout(&recording.outcome.stdout);
    (recording, left)
}

#[test]
fn jit_frames_are_named_from_the_programs_perf_map() {
    let (recording, left) = record_jit("ok");
    assert_eq!(left.len(), 1, "{}", recording.outcome);
    let folded = recording.folded.of_process("jit_map");
    // About half the CPU is in the JIT code, half in native_spin.
    let named = leaf_count(&folded, "stoke_jit_spin_[j]");
    assert!(
        named * 4 >= folded.total(),
        "stoke_jit_spin named in {named} of {} samples\n{}",
        folded.total(),
        recording.outcome
    );
    assert!(!recording.outcome.stderr.contains("refused"));
}

/// Asserts a recording named no JIT frame and warned once about the map.
fn assert_map_refused(recording: &Recording, why: &str) {
    let folded = recording.folded.of_process("jit_map");
    assert_eq!(
        folded.count(|s| s.frames.iter().any(|f| f.contains("stoke_jit_spin"))),
        0,
        "a refused map named frames"
    );
    let warnings: Vec<&str> = recording
        .outcome
        .stderr
        .lines()
        .filter(|l| l.starts_with("stoke: warning: refused /tmp/perf-") && l.contains(why))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", recording.outcome);
}

#[test]
fn a_symlinked_perf_map_is_refused_with_a_warning() {
    let (recording, _left) = record_jit("symlink");
    assert_map_refused(&recording, "symbolic link");
}

#[test]
fn a_perf_map_owned_by_another_user_is_refused_with_a_warning() {
    if !is_root() {
        return skip(
            "foreign perf map",
            "needs root to give the map to uid 65534",
        );
    }
    let (recording, _left) = record_jit("foreign");
    assert_map_refused(&recording, "owned by uid 65534");
}

/// `unshare` running `jit_map` in new pid and mount namespaces with a
/// private /tmp (its binary and perf map only reachable through
/// `/proc/PID/root`); killed with its child on drop.
struct Contained {
    unshare: std::process::Child,
    /// Where the binary is inside (a name of this test run's own, so that
    /// a file another run left in the host's /tmp is no false alarm).
    inside: PathBuf,
    /// Kept open so the fixture never gets SIGPIPE.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    /// The fixture's pid as the host sees it (it is 1 inside).
    host_pid: u32,
}

impl Contained {
    fn start() -> Contained {
        use std::io::BufRead;
        let fixture = c_fixture("jit_map", Build::FramePointers);
        let inside = PathBuf::from(format!("/tmp/jit_map_{}", std::process::id()));
        // The fixture is opened before the mount: it may itself live under
        // /tmp (a checkout there), which the new tmpfs hides.
        let script = format!(
            "exec 3<'{}' && mount -t tmpfs tmpfs /tmp && cat <&3 >{in} && exec 3<&- \
             && chmod +x {in} && exec {in} ok 60",
            fixture.display(),
            in = inside.display()
        );
        let mut unshare = Command::new("unshare")
            .args(["--pid", "--mount", "--fork", "--mount-proc", "--kill-child"])
            .args(["sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut stdout = std::io::BufReader::new(unshare.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // The fixture wrote its map before printing it.
        assert_eq!(line.trim_end(), "map /tmp/perf-1.map");
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
        let host_pid = children.split_whitespace().next().unwrap().parse().unwrap();
        Contained {
            unshare,
            inside,
            _stdout: stdout,
            host_pid,
        }
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

#[test]
fn a_process_in_other_namespaces_is_named_through_its_root() {
    if !is_root() || find_in_path("unshare").is_none() {
        return skip("namespaces", "needs root and unshare(1)");
    }
    let contained = Contained::start();
    assert!(
        !contained.inside.exists() && !Path::new("/tmp/perf-1.map").exists(),
        "the namespace's /tmp leaked to the host"
    );
    let pid = contained.host_pid.to_string();
    let recording = record_command(&["-p", &pid, "-d", "1"], &[] as &[&str]);
    let folded = &recording.folded;
    // The binary, at /tmp/jit_map_PID inside only, and the perf map, under the
    // namespaced pid 1, both resolve. (Each loop takes a share of the CPU
    // that varies with the machine's load, 18 % to 50 % here; unnamed, it
    // would have none.)
    for name in ["native_spin", "stoke_jit_spin_[j]"] {
        let named = leaf_count(folded, name);
        assert!(
            named * 10 >= folded.total(),
            "{name} in {named} of {} samples\n{}",
            folded.total(),
            recording.outcome
        );
    }
}

#[test]
fn node_perf_basic_prof_gives_javascript_names() {
    let Some(node) = find_in_path("node") else {
        return skip("node", "node is not installed");
    };
    let script = "function stokeHotLoop(n) { let x = 0; for (let i = 0; i < n; i++) x = (x * 31 + i) | 0; return x; }\n\
                  const t = process.cpuUsage(); let s = 0;\n\
                  while (process.cpuUsage(t).user < 700000) s += stokeHotLoop(100000);\n\
                  console.log(`map /tmp/perf-${process.pid}.map`);";
    let recording = record_command(
        &[],
        &[
            node.as_os_str(),
            "--perf-basic-prof".as_ref(),
            "-e".as_ref(),
            script.as_ref(),
        ],
    );
    let _left = LeftFiles::from_stdout(&recording.outcome.stdout);
    let folded = &recording.folded;
    let js = folded.count(|s| {
        s.frames
            .iter()
            .any(|f| f.contains("stokeHotLoop") && f.ends_with("_[j]"))
    });
    assert!(
        js * 3 >= folded.total(),
        "stokeHotLoop in {js} of {} samples\n{}",
        folded.total(),
        recording.outcome
    );
}

#[test]
fn a_binary_deleted_while_it_runs_still_gets_names() {
    if !is_root() {
        return skip(
            "deleted binary",
            "reading /proc/PID/map_files needs root (CAP_SYS_ADMIN)",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("deleted");
    std::fs::copy(c_fixture("deleted", Build::FramePointers), &binary).unwrap();
    let recording = record_command(
        &[],
        &[binary.as_os_str(), binary.as_os_str(), "0.5".as_ref()],
    );
    assert!(!binary.exists(), "the fixture did not delete itself");
    let folded = recording.folded.of_process("deleted");
    let named = leaf_count(&folded, "deleted_hot");
    assert!(
        named * 2 >= folded.total(),
        "deleted_hot named in {named} of {} samples\n{}",
        folded.total(),
        recording.outcome
    );
}

/// Makes sure Debian's detached debug info for libc is installed (installing
/// libc6-dbg when root), or says why not.
fn libc_debug_info() -> Result<(), String> {
    let query = |package: &str, field: &str| {
        Command::new("dpkg-query")
            .args(["-W", &format!("-f=${{{field}}}"), package])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let libc = query("libc6", "Version").ok_or("not a Debian system (no dpkg libc6)")?;
    let installed = || {
        query("libc6-dbg", "Status").is_some_and(|s| s.contains("install ok installed"))
            && query("libc6-dbg", "Version").as_deref() == Some(libc.as_str())
    };
    if installed() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "libc6-dbg {libc} is not installed and not root to install it"
        ));
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    apt(&["update", "-qq"]);
    let pinned = format!("libc6-dbg={libc}");
    if !apt(&["install", "-y", "-qq", &pinned]) || !installed() {
        return Err(format!("`apt-get install {pinned}` failed"));
    }
    Ok(())
}

#[test]
fn libc_internal_functions_are_named_through_debians_debug_files() {
    if let Err(why) = libc_debug_info() {
        return skip("libc6-dbg", &why);
    }
    // msort_with_tmp is static in libc: only the debug file's .symtab names it.
    let fixture = c_fixture("qsort_cmp", Build::FramePointers);
    let recording = record_command(&[], &[fixture.as_os_str(), "0.5".as_ref()]);
    let folded = recording.folded.of_process("qsort_cmp");
    let named = folded.count(|s| s.frames.iter().any(|f| f.starts_with("msort_with_tmp")));
    assert!(
        named * 2 >= folded.total(),
        "msort_with_tmp in {named} of {} samples\n{}",
        folded.total(),
        recording.outcome
    );
    assert!(!folded
        .stacks
        .iter()
        .any(|s| s.frames.iter().any(|f| f.starts_with("libc.so.6+0x"))));
}

#[test]
fn the_summary_gives_the_time_symbolization_took() {
    let fixture = c_fixture("inline_hot", Build::FramePointers);
    let recording = record_command(&[], &[fixture.as_os_str(), "0.2".as_ref()]);
    assert!(
        recording
            .outcome
            .stderr
            .lines()
            .any(|l| l.starts_with("stoke: wrote ") && l.contains("symbolized in ")),
        "{}",
        recording.outcome
    );
}

/// A target of another user that exits during the recording: its perf map
/// is read after it is gone, when `/proc/PID` no longer says who owned it.
/// The owner was remembered when recording started, so the map, owned by
/// that user, is used (it was refused: "owned by uid 65534, not by root or
/// the target's owner").
#[test]
fn the_perf_map_of_a_target_that_exited_during_recording_is_used() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    if !is_root() || find_in_path("setpriv").is_none() {
        return skip("exited target's map", "needs root and setpriv(1)");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fixture = dir.path().join("jit_map");
    std::fs::copy(c_fixture("jit_map", Build::FramePointers), &fixture).unwrap();
    // The shell reaps the fixture as soon as it exits, before stoke names.
    let mut user = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["sh", "-c", "\"$0\" ok 1 & wait"])
        .arg(&fixture)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv");
    let mut line = String::new();
    std::io::BufReader::new(user.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let left = LeftFiles::from_stdout(&line);
    let pid = line
        .trim_end()
        .strip_prefix("map /tmp/perf-")
        .and_then(|l| l.strip_suffix(".map"))
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    let recording = record_command(&["-p", &pid], &[] as &[&str]);
    let _ = user.wait();
    assert_eq!(left.len(), 1);
    let named = leaf_count(&recording.folded, "stoke_jit_spin_[j]");
    assert!(
        named * 4 >= recording.folded.total(),
        "stoke_jit_spin named in {named} of {} samples\n{}",
        recording.folded.total(),
        recording.outcome
    );
    assert!(
        !recording.outcome.stderr.contains("refused"),
        "{}",
        recording.outcome
    );
}
