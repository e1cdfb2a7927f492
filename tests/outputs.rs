//! End-to-end tests of the output formats and of `report`, `convert` and
//! `diff` on fixture recordings.
//!
//! The diff gate is checked with the statistics it documents (docs/diff.md):
//! two recordings of the same fixture whose own measured splits agree
//! differ only by sampling noise (a few tenths of a point with ~2,500
//! samples), far under the 5-point limit and inside the 99.9 % bound; the `-DHOT_WEIGHT=6` variant moves `hot` from
//! 75 % to 86 % of samples, +11 points, about 8σ.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use common::{
    assert_stoke_error, c_fixture, c_fixture_with_flags, run, stoke, stoke_record, Build, Folded,
    MeasuredSplit, Outcome, HZ,
};
use stoke_profile::pprof::decode;

/// A recording of `cpu_split` into several formats at once.
struct Recorded {
    dir: tempfile::TempDir,
    /// The split the fixture measured itself in this run.
    measured: MeasuredSplit,
}

impl Recorded {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Records `program` (named `cpu_split`) into out.folded, out.pb.gz,
/// out.speedscope.json and out.svg.
fn record_all(program: &Path, extra: &[&str]) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = stoke_record(dir.path());
    cmd.args(["-F", HZ]);
    for name in ["out.folded", "out.pb.gz", "out.speedscope.json", "out.svg"] {
        cmd.arg("-o").arg(dir.path().join(name));
    }
    cmd.args(extra).arg("--").arg(program);
    let outcome = run(&mut cmd);
    outcome.assert_success();
    let measured = MeasuredSplit::from_output(&outcome.stdout);
    Recorded { dir, measured }
}

fn split() -> &'static Recorded {
    static R: OnceLock<Recorded> = OnceLock::new();
    R.get_or_init(|| {
        record_all(
            &c_fixture("cpu_split", Build::FramePointers),
            &["--per-thread"],
        )
    })
}

/// The `-DHOT_WEIGHT=6` variant, copied to a file named `cpu_split` so its
/// process (root frame) has the same name as the original's.
fn hot_variant() -> (tempfile::TempDir, PathBuf) {
    let built = c_fixture_with_flags(
        "cpu_split",
        Build::FramePointers,
        "cpu_split_hot6",
        &["-DHOT_WEIGHT=6"],
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("cpu_split");
    std::fs::copy(built, &copy).unwrap();
    (dir, copy)
}

fn stoke_in(dir: &Path, args: &[&str]) -> Outcome {
    let mut cmd = stoke();
    cmd.current_dir(dir).args(args);
    run(&mut cmd)
}

#[test]
fn pprof_decodes_with_the_recorded_totals_functions_mappings_and_labels() {
    let r = split();
    let folded = Folded::read(&r.path("out.folded"));
    let m = decode(&std::fs::read(r.path("out.pb.gz")).unwrap()).expect("valid pprof");
    let s = |i: i64| m.string_table[i as usize].as_str();
    let types: Vec<_> = m
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    assert_eq!(m.period, 1_000_000_000 / 999);
    let total: i64 = m.sample.iter().map(|x| x.value[0]).sum();
    assert_eq!(total as u64, folded.total());
    let functions: Vec<&str> = m.function.iter().map(|f| s(f.name)).collect();
    for name in ["hot", "cold", "main"] {
        assert!(
            functions.contains(&name),
            "{name} missing from {functions:?}"
        );
    }
    let exe = m
        .mapping
        .iter()
        .find(|x| s(x.filename).ends_with("/cpu_split"))
        .unwrap_or_else(|| panic!("no cpu_split mapping in {:?}", m.mapping));
    assert!(
        s(exe.build_id).len() >= 16 && s(exe.build_id).bytes().all(|b| b.is_ascii_hexdigit()),
        "build-id {:?}",
        s(exe.build_id)
    );
    assert!(
        m.mapping.iter().any(|x| s(x.filename).contains("libc")),
        "libc mapping"
    );
    let hot = m.function.iter().find(|f| s(f.name) == "hot").unwrap();
    let hot_loc = m
        .location
        .iter()
        .find(|l| l.line.iter().any(|x| x.function_id == hot.id))
        .unwrap();
    assert_eq!(
        hot_loc.mapping_id, exe.id,
        "hot's location is in the executable"
    );
    for sample in &m.sample {
        let keys: Vec<&str> = sample.label.iter().map(|l| s(l.key)).collect();
        assert!(
            keys.contains(&"tid") && keys.contains(&"thread") && keys.contains(&"process"),
            "{keys:?}"
        );
    }
}

#[test]
fn speedscope_has_one_sampled_profile_per_thread() {
    let text = std::fs::read_to_string(split().path("out.speedscope.json")).unwrap();
    assert!(text.starts_with("{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\""));
    assert_eq!(
        text.matches("\"type\":\"sampled\"").count(),
        1,
        "one thread"
    );
    assert!(text.contains("\"name\":\"cpu_split (cpu_split-"), "{text}");
    assert!(
        text.contains(r#"{"name":"hot","file":"cpu_split"}"#),
        "{text}"
    );
    assert!(!text.contains("_[k]"), "kernel frames carry no marker");
}

#[test]
fn per_thread_puts_the_thread_under_the_process_in_folded_and_svg() {
    let r = split();
    let folded = Folded::read(&r.path("out.folded"));
    assert!(folded
        .stacks
        .iter()
        .all(|s| s.frames[1].starts_with("cpu_split-")));
    let svg = std::fs::read_to_string(r.path("out.svg")).unwrap();
    assert!(svg.contains("<title>cpu_split-"), "thread frame in the SVG");
}

#[test]
fn convert_pprof_back_to_folded_gives_the_recorded_lines() {
    let r = split();
    let out = stoke_in(
        r.dir.path(),
        &["convert", "out.pb.gz", "-o", "back.folded", "--per-thread"],
    );
    out.assert_success();
    let original = std::fs::read_to_string(r.path("out.folded")).unwrap();
    let back = std::fs::read_to_string(r.path("back.folded")).unwrap();
    assert_eq!(back, original);
}

#[test]
fn convert_renders_svg_with_record_options_and_uses_stdin_and_stdout() {
    let r = split();
    let out = stoke_in(
        r.dir.path(),
        &[
            "convert",
            "out.folded",
            "-o",
            "icicle.svg",
            "--title",
            "converted",
            "--width",
            "900",
            "--min-width",
            "2",
            "--icicle",
        ],
    );
    out.assert_success();
    let svg = std::fs::read_to_string(r.path("icicle.svg")).unwrap();
    assert!(svg.contains(">converted</text>"));
    assert!(svg.contains("width=\"900\""));
    assert!(svg.contains("<title>hot ("));

    let mut cmd = stoke();
    cmd.current_dir(r.dir.path())
        .args(["convert", "-", "-o", "-", "--format", "svg"])
        .stdin(Stdio::from(File::open(r.path("out.folded")).unwrap()));
    // `run` closes stdin, so this one is run directly.
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("<?xml"), "{stdout}");
    assert!(stdout.contains("<title>cold ("));
}

#[test]
fn report_lists_the_hot_function_first_with_percentages() {
    for file in ["out.folded", "out.pb.gz"] {
        let out = stoke_in(split().dir.path(), &["report", file, "-n", "3"]);
        out.assert_success();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert!(lines[0].contains("samples in"), "{out}");
        assert!(
            lines[1].contains("self%") && lines[1].contains("total%"),
            "{out}"
        );
        assert!(lines[2].trim_end().ends_with(" hot"), "{out}");
        let share: f64 = lines[2]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!((65.0..85.0).contains(&share), "{out}");
    }
}

#[test]
fn diff_gate_passes_on_a_rerun_and_fails_on_a_hotter_variant() {
    let base = split();
    // A rerun is "the same program" only when the fixture measured the same
    // split: on a shared machine its own split moves by several points from
    // run to run now and then (cache and frequency effects), a real change
    // the gate is right to report. Rerun until the truths agree.
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let agrees = |r: &Recorded| (r.measured.hot - base.measured.hot).abs() <= 0.02;
    let mut again = record_all(&fixture, &["--per-thread"]);
    for _ in 0..4 {
        if agrees(&again) {
            break;
        }
        again = record_all(&fixture, &["--per-thread"]);
    }
    let (_keep, variant) = hot_variant();
    let hotter = record_all(&variant, &["--per-thread"]);

    let before = base.path("out.folded");
    let same = stoke_in(
        base.dir.path(),
        &[
            "diff",
            before.to_str().unwrap(),
            again.path("out.pb.gz").to_str().unwrap(),
            "-o",
            "same.svg",
            "--fail-on-regression",
            "5",
        ],
    );
    if agrees(&again) {
        same.assert_success();
        assert!(
            same.stderr.contains("no function's self share grew"),
            "{same}"
        );
    } else {
        eprintln!(
            "skipping the rerun's gate: the fixture's own split moved {:+.1} points in five reruns",
            (again.measured.hot - base.measured.hot) * 100.0
        );
    }
    same.assert_no_panic();
    assert!(base.path("same.svg").exists());

    let worse = stoke_in(
        base.dir.path(),
        &[
            "diff",
            before.to_str().unwrap(),
            hotter.path("out.folded").to_str().unwrap(),
            "-o",
            "worse.svg",
            "--fail-on-regression",
            "5",
        ],
    );
    assert_stoke_error(&worse, Some(1), &["regression: hot self share grew"]);
    let hot_row = worse
        .stdout
        .lines()
        .find(|l| l.trim_end().ends_with(" hot"))
        .unwrap();
    assert!(hot_row.contains(" grew "), "{worse}");
    let cold_row = worse
        .stdout
        .lines()
        .find(|l| l.trim_end().ends_with(" cold"))
        .unwrap();
    assert!(cold_row.contains(" shrank "), "{worse}");
    let svg = std::fs::read_to_string(base.path("worse.svg")).unwrap();
    assert!(svg.contains("<title>hot ("), "differential graph drawn");
    assert!(svg.contains("fill=\"rgb(255,"), "red frames for growth");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.folded"), "main;a 3\nmain;b three\n").unwrap();
    let out = stoke_in(dir.path(), &["report", "bad.folded"]);
    assert_stoke_error(&out, Some(1), &["bad.folded:2:"]);

    std::fs::write(dir.path().join("empty.folded"), "\n").unwrap();
    let out = stoke_in(dir.path(), &["convert", "empty.folded", "-o", "e.svg"]);
    assert_stoke_error(&out, Some(1), &["empty.folded: the profile has no samples"]);
    assert!(!dir.path().join("e.svg").exists(), "no empty SVG");

    let pb = std::fs::read(split().path("out.pb.gz")).unwrap();
    std::fs::write(dir.path().join("cut.pb.gz"), &pb[..pb.len() / 2]).unwrap();
    let out = stoke_in(dir.path(), &["report", "cut.pb.gz"]);
    assert_stoke_error(&out, Some(1), &["cut.pb.gz: truncated or corrupt gzip"]);

    std::fs::write(dir.path().join("junk.pb"), b"\x0a\xff\xff\xff").unwrap();
    let out = stoke_in(dir.path(), &["convert", "junk.pb", "-o", "x.folded"]);
    assert_stoke_error(
        &out,
        Some(1),
        &["junk.pb: not a pprof profile (truncated or corrupt protobuf)"],
    );
}

#[test]
fn hostile_names_are_escaped_in_svg_and_kept_across_folded_and_pprof() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "<script>alert(1)</script>",
        "a & b",
        "say \"hi\" 'there'",
        "with spaces",
    ];
    let text = format!("prog;{} 5\nprog;{};x:y 2\n", names.join(";"), names[1]);
    std::fs::write(dir.path().join("h.folded"), &text).unwrap();
    let out = stoke_in(
        dir.path(),
        &["convert", "h.folded", "-o", "h.svg", "-o", "h.pb.gz"],
    );
    out.assert_success();
    let svg = std::fs::read_to_string(dir.path().join("h.svg")).unwrap();
    assert!(!svg.contains("<script>alert"), "raw markup in the SVG");
    assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(svg.contains("a &amp; b"));
    let out = stoke_in(dir.path(), &["convert", "h.pb.gz", "-o", "back.folded"]);
    out.assert_success();
    let back = std::fs::read_to_string(dir.path().join("back.folded")).unwrap();
    let mut expected: Vec<&str> = text.lines().collect();
    expected.sort();
    assert_eq!(back.lines().collect::<Vec<_>>(), expected);
    let m = decode(&std::fs::read(dir.path().join("h.pb.gz")).unwrap()).unwrap();
    for name in names {
        assert!(
            m.string_table.iter().any(|s| s == name),
            "{name} kept in pprof"
        );
    }
}

/// `stoke record -F 999 EXTRA -- cpu_split 0.5` in a fresh folder.
fn record_split(dir: &Path, extra: &[&str]) -> Outcome {
    let mut cmd = stoke_record(dir);
    cmd.args(["-F", HZ]).args(extra).arg("--");
    cmd.arg(c_fixture("cpu_split", Build::FramePointers))
        .arg("0.5");
    run(&mut cmd)
}

#[test]
fn a_profile_on_stdout_gets_stdout_alone_and_the_command_prints_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = record_split(dir.path(), &["-o", "-"]);
    out.assert_success();
    // Every line is folded (Folded::parse panics on any other line).
    let folded = Folded::parse(&out.stdout);
    assert!(folded.share_containing("hot") > 0.5, "{out}");
    assert!(
        out.stderr.lines().any(|l| l.starts_with("split hot=")),
        "the command's own output is kept, on stderr\n{out}"
    );
    // The pipeline of `stoke report --help`.
    let mut report = stoke();
    report
        .args(["report", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = report.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(out.stdout.as_bytes())
        .unwrap();
    let report = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{text}");
    assert!(text.lines().nth(2).unwrap().ends_with(" hot"), "{text}");

    let svg = record_split(dir.path(), &["-o", "-", "--format", "svg"]);
    svg.assert_success();
    assert!(svg.stdout.starts_with("<?xml"), "{svg}");
    assert!(svg.stdout.trim_end().ends_with("</svg>"), "{svg}");
    // The command's output stays where it was when the profile goes to a file.
    let file = record_split(dir.path(), &["-o", "f.folded"]);
    assert!(file.stdout.starts_with("split hot="), "{file}");
}

#[test]
fn an_unwritable_output_is_refused_before_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let ok = dir.path().join("ok.folded");
    let mut cmd = stoke_record(dir.path());
    cmd.args(["-o", "/proc/version/x.svg", "-o"])
        .arg(&ok)
        .args(["--", "sh", "-c"])
        .arg(format!("touch {}", marker.display()));
    let out = run(&mut cmd);
    assert_stoke_error(&out, Some(1), &["cannot write /proc/version/x.svg"]);
    assert!(!marker.exists(), "the command ran\n{out}");
    assert!(!ok.exists());
}

#[test]
fn an_output_failing_at_the_end_leaves_the_others_written_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = record_split(
        dir.path(),
        &["-o", "/dev/full", "-o", "ok.folded", "-o", "ok.svg"],
    );
    assert_stoke_error(&out, Some(1), &["cannot write /dev/full", "No space left"]);
    assert!(Folded::read(&dir.path().join("ok.folded")).total() > 0);
    assert!(std::fs::read_to_string(dir.path().join("ok.svg"))
        .unwrap()
        .contains("</svg>"));
    assert!(out.stderr.contains("stoke: wrote "), "{out}");
    assert!(!out.stderr.contains("wrote /dev/full"), "{out}");
}

#[test]
fn report_reads_speedscope_and_lists_functions_not_the_process() {
    let r = split();
    for file in ["out.folded", "out.speedscope.json", "out.pb.gz"] {
        let out = stoke_in(
            r.dir.path(),
            &["report", file, "-n", "50", "--sort", "total"],
        );
        out.assert_success();
        assert!(
            !out.stdout
                .lines()
                .any(|l| l.trim_end().ends_with(" cpu_split")),
            "{file}: the process is listed as a function\n{out}"
        );
        assert!(out.stdout.contains(" main\n"), "{file}\n{out}");
    }
    let pprof = stoke_in(r.dir.path(), &["report", "out.pb.gz", "-n", "3"]);
    let speedscope = stoke_in(r.dir.path(), &["report", "out.speedscope.json", "-n", "3"]);
    let rows = |o: &Outcome| {
        o.stdout
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rows(&pprof),
        rows(&speedscope),
        "same table from speedscope"
    );
    let out = stoke_in(
        r.dir.path(),
        &[
            "convert",
            "out.speedscope.json",
            "-o",
            "back.folded",
            "--per-thread",
        ],
    );
    out.assert_success();
    let original = Folded::read(&r.path("out.folded"));
    let back = Folded::read(&r.path("back.folded"));
    assert_eq!(back.total(), original.total());
}

#[test]
fn binary_files_are_not_profiles() {
    let fixture = c_fixture("cpu_split", Build::FramePointers);
    let out = stoke_in(Path::new("/"), &["report", fixture.to_str().unwrap()]);
    assert_stoke_error(
        &out,
        Some(1),
        &["not a folded, pprof or speedscope profile"],
    );
    let out = stoke_in(
        Path::new("/"),
        &[
            "convert",
            "/bin/sh",
            "-o",
            "/dev/null",
            "--format",
            "folded",
        ],
    );
    assert_stoke_error(
        &out,
        Some(1),
        &["/bin/sh: not a folded, pprof or speedscope profile"],
    );
}

#[test]
fn titles_quote_the_command_as_a_shell_would() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = stoke_record(dir.path());
    cmd.args(["-F", HZ, "-o", "t.pb.gz", "--", "sh", "-c"])
        .arg("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done | cat");
    run(&mut cmd).assert_success();
    let m = decode(&std::fs::read(dir.path().join("t.pb.gz")).unwrap()).unwrap();
    assert_eq!(
        m.string_table[m.comment[0] as usize],
        "sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done | cat'"
    );
}

/// Peak RSS in KiB of `stoke ARGS`, measured by GNU time, with its outcome.
fn peak_rss(dir: &Path, args: &[&str]) -> Option<(u64, Outcome)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return None;
    }
    let mut cmd = std::process::Command::new(time);
    cmd.current_dir(dir)
        .args(["-f", "peak-rss-kib %M"])
        .arg(common::stoke_path())
        .args(args);
    let out = run(&mut cmd);
    let rss = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|v| v.trim().parse().ok())?;
    Some((rss, out))
}

#[test]
fn hostile_inputs_stay_under_200_mb_with_a_clear_error() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    let distinct: Vec<String> = (0..1_300_000).map(|i| format!("f{i}")).collect();
    write(
        "distinct.folded",
        format!("{} 1\n", distinct.join(";")).as_bytes(),
    );
    write(
        "deep.folded",
        format!("{} 1\n", ["a"; 5_300_000].join(";")).as_bytes(),
    );
    write(
        "overflow.folded",
        format!("p;a {}\np;b 1\n", u64::MAX).as_bytes(),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..1000 {
        gz.write_all(&[0x12, 0x00].repeat(50_000)).unwrap();
    }
    write("repeated.pb.gz", &gz.finish().unwrap());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&zeros).unwrap();
    }
    write("zeros.gz", &gz.finish().unwrap());
    for (file, message) in [
        (
            "distinct.folded",
            "distinct.folded:1: a stack of 1300000 frames is deeper than the limit of 65536",
        ),
        (
            "deep.folded",
            "deep.folded:1: a stack of 5300000 frames is deeper than the limit",
        ),
        (
            "overflow.folded",
            "overflow.folded:2: the counts add up to more than",
        ),
        (
            "repeated.pb.gz",
            "repeated.pb.gz: pprof profile too large: it unpacks to more than the limit of 64 MiB",
        ),
        (
            "zeros.gz",
            "zeros.gz: pprof profile too large: it unpacks to more than the limit",
        ),
    ] {
        let Some((rss, out)) = peak_rss(dir.path(), &["report", file]) else {
            eprintln!("skipped the memory check: /usr/bin/time (GNU time) is not installed");
            let out = stoke_in(dir.path(), &["report", file]);
            assert_stoke_error(&out, Some(1), &[message]);
            continue;
        };
        assert_stoke_error(&out, Some(1), &[message]);
        assert!(rss < 200 * 1024, "{file}: peak RSS {rss} KiB\n{out}");
    }
}
