//! Several processes and the whole machine: `-a`, `-p a,b`, `--name`,
//! `--cgroup`, short-lived processes, and per-CPU sampling of a command's
//! short-lived threads.
//!
//! Per-CPU events need root (or CAP_PERFMON, or perf_event_paranoid <= 0):
//! each test that needs them skips, saying so, where they are refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    assert_stoke_error, c_fixture, c_fixture_named, c_fixture_with_flags, record_command, run,
    stoke_record, Build, Folded, LiveFixture, MeasuredSplit, Stack, HZ,
};

/// Why per-CPU events cannot be used here, if they cannot.
fn per_cpu_refused() -> Option<String> {
    let root = nix::unistd::geteuid().as_raw() == 0;
    let paranoid: Option<i32> = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    match (root, paranoid) {
        (true, _) | (_, Some(..=0)) => None,
        _ => Some("per-CPU events need root or perf_event_paranoid <= 0".into()),
    }
}

macro_rules! needs_per_cpu {
    () => {
        if let Some(why) = per_cpu_refused() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// Runs `stoke record -F 999 -o DIR/out.folded ARGS` and reads the output.
fn record(args: &[&str]) -> (common::Outcome, Folded, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.folded");
    let mut cmd = stoke_record(dir.path());
    cmd.args(["-F", HZ, "-o"]).arg(&out).args(args);
    let outcome = run(&mut cmd);
    outcome.assert_success();
    let folded = Folded::read(&out);
    (outcome, folded, dir)
}

/// The share of `hot` in hot + cold samples of one process's stacks.
fn hot_share(folded: &Folded, process: &str) -> (f64, u64) {
    folded.of_process(process).split("hot", "cold")
}

#[test]
fn all_cpus_shows_each_process_with_its_own_split() {
    needs_per_cpu!();
    // Two programs with different known splits run side by side for the
    // life of the recording: each is a root with its own split.
    let even = c_fixture_with_flags(
        "cpu_split",
        Build::FramePointers,
        "split_even",
        &["-DHOT_WEIGHT=1"],
    );
    let skewed = c_fixture_named("cpu_split", Build::FramePointers, "split_skewed");
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "{} 2.5 > {d}/even.txt & {} 2.5 > {d}/skewed.txt & wait",
        even.display(),
        skewed.display(),
        d = dir.path().display()
    );
    let (outcome, folded, _out) = record(&["-a", "--", "sh", "-c", &script]);
    let roots = folded.roots();
    assert!(
        roots.contains("split_even") && roots.contains("split_skewed"),
        "roots: {roots:?}\n{}",
        outcome.stderr
    );
    for (name, file) in [("split_even", "even.txt"), ("split_skewed", "skewed.txt")] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let truth = MeasuredSplit::from_output(&text);
        let (hot, samples) = hot_share(&folded, name);
        assert!(
            samples >= 1500,
            "{name}: only {samples} samples in hot or cold"
        );
        assert!(
            (hot - truth.hot).abs() <= 0.03,
            "{name}: hot has {:.1} % of hot+cold samples, it measured {:.1} % ({samples} samples)",
            hot * 100.0,
            truth.hot * 100.0
        );
    }
    assert!(
        !roots.contains("[idle]"),
        "the idle task is left out unless asked: {roots:?}"
    );
}

/// Two busy live fixtures of distinct names (`PREFIX_one`, `PREFIX_two`),
/// and a third that must not be recorded (`PREFIX_other`). Each test gives
/// its own prefix: tests run at once, and one test's processes must not
/// match another's pattern.
fn three_fixtures(prefix: &str) -> [LiveFixture; 3] {
    ["one", "two", "other"].map(|which| {
        let name = format!("{prefix}_{which}");
        let mut cmd = Command::new(c_fixture_named("threads", Build::FramePointers, &name));
        cmd.arg("1");
        LiveFixture::spawn(cmd)
    })
}

#[test]
fn several_pids_are_recorded_and_nothing_else() {
    needs_per_cpu!();
    let [one, two, _other] = three_fixtures("sys");
    let pids = format!("{},{}", one.pid(), two.pid());
    let json = tempfile::tempdir().unwrap();
    let json = json.path().join("out.speedscope.json");
    let (outcome, folded, _dir) = record(&["-p", &pids, "-d", "1.5", "-o", json.to_str().unwrap()]);
    let roots: Vec<&str> = folded.roots().into_iter().collect();
    assert_eq!(roots, ["sys_one", "sys_two"], "{}", outcome.stderr);
    // speedscope: one profile per process, named with its pid.
    let text = std::fs::read_to_string(&json).unwrap();
    let names = text.matches("\"type\":\"sampled\"").count();
    assert_eq!(names, 2, "{text:.400}");
    for (name, pid) in [("sys_one", one.pid()), ("sys_two", two.pid())] {
        let wanted = format!("\"name\":\"{name} (pid {pid})\"");
        assert!(text.contains(&wanted), "no {wanted} in {text:.400}");
    }
}

#[test]
fn a_name_pattern_records_every_matching_process_and_nothing_else() {
    needs_per_cpu!();
    let _fixtures = three_fixtures("nm");
    let (outcome, folded, _dir) = record(&["--name", "nm_t*o", "-d", "1.5"]);
    let roots: Vec<&str> = folded.roots().into_iter().collect();
    assert_eq!(roots, ["nm_two"], "{}", outcome.stderr);
    let (outcome, folded, _dir) = record(&["--name", "nm_one", "--per-process", "-d", "1.5"]);
    let roots: Vec<&str> = folded.roots().into_iter().collect();
    assert_eq!(
        roots,
        [format!("nm_one-{}", _fixtures[0].pid())],
        "{}",
        outcome.stderr
    );
}

#[test]
fn a_name_that_matches_nothing_is_a_one_line_error() {
    needs_per_cpu!();
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path()).args(["--name", "no-such-process-xyz", "-d", "1"]));
    assert_stoke_error(&outcome, Some(1), &["no running process", "--follow-new"]);
}

/// A fresh cgroup v2 folder, removed on drop (its processes moved out).
struct TestCgroup(PathBuf);

impl TestCgroup {
    /// Makes one under the cgroup2 mount, or says why it cannot.
    fn new() -> Result<TestCgroup, String> {
        let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| e.to_string())?;
        let root = mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
            })
            .next()
            .ok_or("no cgroup2 file system is mounted")?;
        let dir = root.join(format!("stoke-test-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot make a cgroup under {}: {e}", root.display()))?;
        Ok(TestCgroup(dir))
    }

    fn add(&self, pid: i32) -> Result<(), String> {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("cannot move a process into {}: {e}", self.0.display()))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let parent = self.0.parent().map(|p| p.join("cgroup.procs"));
        if let (Ok(procs), Some(parent)) =
            (std::fs::read_to_string(self.0.join("cgroup.procs")), parent)
        {
            for pid in procs.lines() {
                let _ = std::fs::write(&parent, pid);
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_cgroup_records_only_the_process_moved_into_it() {
    needs_per_cpu!();
    let [inside, outside, _] = three_fixtures("cg");
    let cgroup = match TestCgroup::new().and_then(|c| c.add(inside.pid()).map(|()| c)) {
        Ok(cgroup) => cgroup,
        Err(why) => {
            eprintln!("skipped: cgroup v2 is not writable here: {why}");
            return;
        }
    };
    let path = cgroup.path().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let pb = dir.path().join("out.pb.gz");
    let pb_arg = pb.to_str().unwrap();
    let (outcome, folded, _dir) = record(&["--cgroup", &path, "-d", "1.5", "-o", pb_arg]);
    let roots: Vec<&str> = folded.roots().into_iter().collect();
    assert_eq!(roots, ["cg_one"], "{}", outcome.stderr);
    // Every sample carries the process's cgroup (as /proc/PID/cgroup names
    // it: relative to the cgroup2 mount) as its pprof `cgroup` label.
    let profile = stoke_profile::read_pprof(&std::fs::read(&pb).unwrap()).expect("valid pprof");
    let name = cgroup.path().file_name().unwrap().to_str().unwrap();
    let labelled = profile.meta.cgroups.get(&(inside.pid() as u32));
    assert!(
        labelled.is_some_and(|c| c.ends_with(&format!("/{name}"))),
        "cgroup label {labelled:?}, expected one ending in /{name}"
    );
    drop(outside);
}

#[test]
fn a_loop_of_short_lived_commands_is_covered_and_named() {
    needs_per_cpu!();
    // 100 runs of a program using 10 ms of CPU each, one after another.
    let short = c_fixture_named("cpu_split", Build::FramePointers, "short_split");
    let script = format!(
        "i=0; while [ $i -lt 100 ]; do {} 0.01 > /dev/null; i=$((i+1)); done",
        short.display()
    );
    let (outcome, folded, _dir) = record(&["-a", "--", "sh", "-c", &script]);
    let mine = folded.of_process("short_split");
    let named = mine.count(|s| s.contains("hot") || s.contains("cold"));
    // About 1 s of CPU: 1,000 samples are due; lost records on a busy
    // machine may take some.
    assert!(
        mine.total() >= 500,
        "only {} samples of the short commands\n{}",
        mine.total(),
        outcome.stderr
    );
    assert!(
        named * 10 >= mine.total() * 8,
        "{named} of {} samples of the short commands are in hot or cold",
        mine.total()
    );
}

/// Held by the tests that load the machine with many processes
/// (500 commands, make -j2) and by the one counting short threads' samples,
/// so that on 2 CPUs the churn of one does not starve the other's reader.
static CHURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn churn_lock() -> std::sync::MutexGuard<'static, ()> {
    CHURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn five_hundred_short_commands_are_covered_and_named() {
    needs_per_cpu!();
    let _churn = churn_lock();
    // 500 runs of a program using 2 ms of CPU each: about 1 s of CPU in
    // processes that each live a few milliseconds.
    let short = c_fixture_named("cpu_split", Build::FramePointers, "scale_split");
    let script = format!(
        "i=0; while [ $i -lt 500 ]; do {} 0.002 > /dev/null; i=$((i+1)); done",
        short.display()
    );
    let (outcome, folded, _dir) = record(&["-a", "--", "sh", "-c", &script]);
    let mine = folded.of_process("scale_split");
    // About 1,000 samples are due; a loaded machine stretches the runs but
    // not their CPU time, and lost records may take some.
    assert!(
        mine.total() >= 400,
        "only {} samples of the 500 short commands\n{}",
        mine.total(),
        outcome.stderr
    );
    // Each run spends a part of its 2 ms in exec and the dynamic loader
    // (about a quarter here): most samples are in hot or cold, and nearly
    // all name a function.
    let in_split = mine.count(|s| s.contains("hot") || s.contains("cold"));
    assert!(
        in_split * 2 >= mine.total(),
        "{in_split} of {} samples of the short commands are in hot or cold",
        mine.total()
    );
    let named = mine.count(|s| s.frames.iter().skip(1).any(|f| names_a_function(f)));
    assert!(
        named * 10 >= mine.total() * 8,
        "{named} of {} samples of the short commands name a function",
        mine.total()
    );
}

/// A frame that names a function (not `[unknown]`, a marker or `module+0x…`).
fn names_a_function(frame: &str) -> bool {
    !frame.starts_with('[') && !frame.contains("+0x")
}

#[test]
fn a_parallel_make_of_a_c_project_is_covered_and_named() {
    needs_per_cpu!();
    let _churn = churn_lock();
    // `make -j2` of eight C files: make, the gcc driver, cc1 and as, each a
    // short-lived process, two at a time.
    let dir = tempfile::tempdir().unwrap();
    let mut objects = Vec::new();
    for i in 0..8 {
        // Enough code that each cc1 runs for a while at -O2.
        let mut source = String::new();
        for f in 0..150 {
            source.push_str(&format!(
                "int f{f}(int *a, int n) {{ int s = 0; for (int i = 0; i < n; i++) \
                 s += a[i] * {f} + (a[i] >> 2) - (s ^ i); return s; }}\n"
            ));
        }
        std::fs::write(dir.path().join(format!("m{i}.c")), source).unwrap();
        objects.push(format!("m{i}.o"));
    }
    let makefile = format!(
        "all: {objs}\n%.o: %.c\n\tgcc -O2 -c $< -o $@\n",
        objs = objects.join(" ")
    );
    std::fs::write(dir.path().join("Makefile"), makefile).unwrap();
    let project = dir.path().to_str().unwrap();
    let (outcome, folded, _out) = record(&["-a", "--", "make", "-s", "-j2", "-C", project]);
    for object in &objects {
        assert!(
            dir.path().join(object).exists(),
            "{object} not built\n{}",
            outcome.stderr
        );
    }
    let cc1 = folded.of_process("cc1");
    assert!(
        cc1.total() >= 100,
        "only {} samples of cc1; roots {:?}\n{}",
        cc1.total(),
        folded.roots(),
        outcome.stderr
    );
    // Nearly every cc1 sample is placed in a module; cc1's local functions
    // have no symbols (distributions strip them: `cc1+0x…`), so only part
    // of them name a function (about two thirds here).
    let placed = cc1.count(|s| s.frames.iter().skip(1).any(|f| !f.starts_with('[')));
    assert!(
        placed * 10 >= cc1.total() * 9,
        "{placed} of {} cc1 samples are placed in a module",
        cc1.total()
    );
    let named = cc1.count(|s| s.frames.iter().skip(1).any(|f| names_a_function(f)));
    assert!(
        named * 10 >= cc1.total() * 4,
        "{named} of {} cc1 samples name a function",
        cc1.total()
    );
    assert!(
        folded.of_process("make").total() + folded.of_process("as").total() > 0,
        "no make or as samples; roots {:?}",
        folded.roots()
    );
}

#[test]
fn short_lived_threads_are_sampled_with_per_cpu_events() {
    needs_per_cpu!();
    let _churn = churn_lock();
    // 1,000 threads a second of 0.5 ms each, for 1 s of CPU time: per-task
    // events sample almost none of them; per-CPU events all.
    let fixture = c_fixture("short_threads", Build::FramePointers);
    let recording = record_command(&[], &[fixture.to_str().unwrap(), "1"]);
    let samples = recording.folded.total();
    assert!(
        samples >= 900,
        "{samples} samples where about 1,000 were due\n{}",
        recording.outcome.stderr
    );
    assert!(
        !recording.outcome.stderr.contains("were expected"),
        "{}",
        recording.outcome.stderr
    );
    // Samples in glibc's clone3, whose `syscall` lies past the end of its
    // CFI: the parent's side reaches main, the child's side is a complete
    // stack of its own (nothing called it), neither is truncated.
    let folded = &recording.folded;
    let in_clone = |s: &Stack| s.contains("clone3") && !s.contains("start_thread");
    let creating =
        folded.count(|s| in_clone(s) && s.contains("pthread_create") && s.contains("main"));
    let truncated = folded.count(|s| in_clone(s) && s.is_truncated());
    assert!(
        creating > 0,
        "no sample of the main thread creating a thread reached main\n{:#?}",
        folded.filter(in_clone)
    );
    assert_eq!(truncated, 0, "{:#?}", folded.filter(in_clone));
}

#[test]
fn the_ptrace_backend_cannot_record_every_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(stoke_record(dir.path()).args(["-a", "--backend", "ptrace", "-d", "1"]));
    assert_stoke_error(
        &outcome,
        Some(1),
        &["ptrace backend", "cannot record every CPU"],
    );
}

#[test]
fn follow_new_matches_the_executable_of_a_process_run_through_another_name() {
    needs_per_cpu!();
    // The fixture's file is `fnx_real`; it is run through a symlink named
    // `fnx_link`, so its command name does not match and its file does.
    let real = c_fixture_named("threads", Build::FramePointers, "fnx_real");
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("fnx_link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = dir.path().join("out.folded");
    let mut cmd = stoke_record(dir.path());
    cmd.args([
        "-F",
        HZ,
        "--name",
        "fnx_re*",
        "--follow-new",
        "-d",
        "2.5",
        "-o",
    ])
    .arg(&out);
    let mut stoke = common::RunningStoke::spawn(&mut cmd);
    stoke.wait_for_stderr_line("stoke: recording");
    let mut linked = Command::new(&link);
    linked.arg("1");
    let linked = LiveFixture::spawn(linked);
    let mut other = Command::new(c_fixture_named(
        "threads",
        Build::FramePointers,
        "fnx_other",
    ));
    other.arg("1");
    let _other = LiveFixture::spawn(other);
    let outcome = stoke.finish();
    outcome.assert_success();
    drop(linked);
    let folded = Folded::read(&out);
    let roots: Vec<&str> = folded.roots().into_iter().collect();
    assert_eq!(roots, ["fnx_link"], "{}", outcome.stderr);
}

/// Idle and total jiffies of all CPUs, from /proc/stat's `cpu` line.
fn idle_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let line = stat.lines().find(|l| l.starts_with("cpu ")).unwrap();
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal (guest counted in user).
    let total = fields.iter().take(8).sum();
    (fields[3] + fields[4], total)
}

#[test]
fn idle_time_is_shown_only_when_asked() {
    needs_per_cpu!();
    let before = idle_jiffies();
    let (outcome, folded, _dir) = record(&["-a", "--idle", "-d", "1.5"]);
    let after = idle_jiffies();
    let (idle, total) = (after.0 - before.0, after.1 - before.1);
    let measured = idle as f64 / total.max(1) as f64;
    let idle_share = folded.share(|s| s.root() == "[idle]");
    if !outcome.stderr.contains("cpu-clock") {
        eprintln!("skipped: sampling by cycles, which do not count while a CPU idles");
    } else if measured < 0.2 {
        eprintln!(
            "skipped: the machine was busy (idle {:.0} % of CPU time while recorded)",
            measured * 100.0
        );
    } else {
        assert!(
            (idle_share - measured).abs() < 0.2,
            "[idle] {idle_share:.2} of samples, /proc/stat idle {measured:.2}; {}",
            outcome.stderr
        );
    }
    let (outcome, folded, _dir) = record(&["-a", "-d", "1"]);
    assert!(
        !folded.roots().contains("[idle]"),
        "[idle] without --idle; {}",
        outcome.stderr
    );
}
