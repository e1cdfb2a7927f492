//! The pprof writer and reader: decoded back and checked.

mod common;

use common::{add, sample_profile};
use stoke_profile::pprof::decode;
use stoke_profile::{
    read_pprof, read_profile, write_folded, write_pprof, FoldedOptions, Frame, FrameKind, Metadata,
    Module, PprofError, Profile, ReadError, Thread,
};

fn pprof_bytes(p: &Profile) -> Vec<u8> {
    let mut out = Vec::new();
    write_pprof(p, &mut out).unwrap();
    out
}

fn folded(p: &Profile, per_thread: bool) -> String {
    let mut out = Vec::new();
    write_folded(p, &FoldedOptions { per_thread }, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// A profile with a module (path, build-id), source lines and an inlined function.
fn profile_with_modules() -> Profile {
    let mut p = sample_profile();
    p.add_module(Module {
        name: "fixture".into(),
        path: "/opt/app/fixture".into(),
        build_id: Some("0123456789abcdef".into()),
    });
    let t = p.intern_thread(Thread {
        pid: 100,
        tid: 102,
        process_name: Some("fixture".into()),
        thread_name: Some("io".into()),
    });
    let frame = |name: &str, kind, line| Frame {
        name: name.into(),
        kind,
        module: Some("fixture".into()),
        location: Some(("src/app.c".into(), line)),
    };
    let ids = [
        p.intern_frame(frame("main", FrameKind::User, 10)),
        p.intern_frame(frame("parse", FrameKind::User, 20)),
        p.intern_frame(frame("next_token", FrameKind::Inline, 30)),
    ];
    let stack = p.intern_stack(&ids).unwrap();
    p.add_sample(t, stack, 9);
    p
}

#[test]
fn decoded_pprof_has_sample_types_totals_functions_and_mappings() {
    let p = profile_with_modules();
    let bytes = pprof_bytes(&p);
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzipped");
    let m = decode(&bytes).unwrap();
    let s = |i: i64| m.string_table[i as usize].as_str();
    assert_eq!(s(0), "");
    let types: Vec<(&str, &str)> = m
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    let period = m.period_type.as_ref().unwrap();
    assert_eq!((s(period.r#type), s(period.unit)), ("cpu", "nanoseconds"));
    assert_eq!(m.period, 1_000_000_000 / 999);
    assert_eq!(s(m.default_sample_type), "cpu");
    assert_eq!(m.duration_nanos, 3_020_000_000);
    let total: i64 = m.sample.iter().map(|x| x.value[0]).sum();
    assert_eq!(total as u64, p.total_samples());
    let cpu: i64 = m.sample.iter().map(|x| x.value[1]).sum();
    assert_eq!(cpu, total * m.period);
    let names: Vec<&str> = m.function.iter().map(|f| s(f.name)).collect();
    for name in [
        "main",
        "compute",
        "helper",
        "do_syscall_64",
        "parse",
        "next_token",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let app = m
        .mapping
        .iter()
        .find(|x| s(x.filename) == "/opt/app/fixture")
        .expect("module mapping");
    assert_eq!(s(app.build_id), "0123456789abcdef");
    assert!(app.has_functions && app.has_line_numbers && app.has_inline_frames);
    assert!(m
        .mapping
        .iter()
        .any(|x| s(x.filename) == "[kernel.kallsyms]"));
    // The inlined function is the first line of its caller's location.
    let parse_fn = m.function.iter().find(|f| s(f.name) == "parse").unwrap();
    let loc = m
        .location
        .iter()
        .find(|l| l.line.iter().any(|x| x.function_id == parse_fn.id))
        .unwrap();
    let lines: Vec<(&str, i64)> = loc
        .line
        .iter()
        .map(|x| {
            let f = m.function.iter().find(|f| f.id == x.function_id).unwrap();
            (s(f.name), x.line)
        })
        .collect();
    assert_eq!(lines, [("next_token", 30), ("parse", 20)]);
    assert_eq!(loc.mapping_id, app.id);
    // Thread labels.
    let keys: Vec<&str> = m.sample[0].label.iter().map(|l| s(l.key)).collect();
    assert_eq!(keys, ["process", "thread", "pid", "tid"]);
    assert_eq!(s(m.comment[0]), "./fixture --spin");
}

#[test]
fn pprof_round_trip_keeps_stacks_threads_metadata_and_modules() {
    let p = profile_with_modules();
    let back = read_pprof(&pprof_bytes(&p)).unwrap();
    assert_eq!(folded(&back, true), folded(&p, true));
    assert_eq!(folded(&back, false), folded(&p, false));
    assert_eq!(back.meta.command, p.meta.command);
    assert_eq!(back.meta.frequency, 999);
    assert_eq!(back.meta.event, "cpu-clock");
    assert_eq!((back.meta.lost, back.meta.truncated), (2, 3));
    assert_eq!(back.meta.duration, p.meta.duration);
    let module = back.module("fixture").expect("module read back");
    assert_eq!(module.path, "/opt/app/fixture");
    assert_eq!(module.build_id.as_deref(), Some("0123456789abcdef"));
    let inline = back
        .frames()
        .find(|(_, f)| f.name == "next_token")
        .unwrap()
        .1;
    assert_eq!(inline.kind, FrameKind::Inline);
    assert_eq!(inline.location, Some(("src/app.c".into(), 30)));
    let kernel = back
        .frames()
        .find(|(_, f)| f.name == "do_syscall_64")
        .unwrap()
        .1;
    assert_eq!(kernel.kind, FrameKind::Kernel);
}

#[test]
fn same_profile_same_bytes() {
    let p = profile_with_modules();
    assert_eq!(pprof_bytes(&p), pprof_bytes(&p));
}

#[test]
fn hostile_names_survive_pprof_intact() {
    let mut p = Profile::new(Metadata::default());
    let t = p.intern_thread(Thread {
        pid: 1,
        tid: 1,
        process_name: Some("a b;<c>".into()),
        thread_name: None,
    });
    let hostile = [
        "<script>alert(1)</script>",
        "a & b",
        "\"q\" 'q'",
        "x;y",
        "with space",
    ];
    let frames: Vec<_> = hostile.iter().map(|&n| (n, FrameKind::User)).collect();
    add(&mut p, t, &frames, 4);
    let back = read_pprof(&pprof_bytes(&p)).unwrap();
    let names: Vec<&str> = back.frames().map(|(_, f)| f.name.as_str()).collect();
    assert_eq!(names, hostile);
    assert_eq!(
        back.threads().next().unwrap().1.process_name.as_deref(),
        Some("a b;<c>")
    );
}

#[test]
fn truncated_and_corrupt_input_is_a_clear_error() {
    let bytes = pprof_bytes(&profile_with_modules());
    let err = read_pprof(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, PprofError::Gzip(_)), "{err}");
    assert!(
        err.to_string().contains("truncated or corrupt gzip"),
        "{err}"
    );
    let err = read_profile(&bytes[..20], "cut.pb.gz").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cut.pb.gz: truncated or corrupt gzip"),
        "{err}"
    );
    // A raw protobuf cut in the middle of a message.
    let raw = {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let err = read_profile(&raw[..raw.len() - 3], "cut.pb").unwrap_err();
    assert!(matches!(err, ReadError::Pprof { .. }), "{err}");
    assert!(
        err.to_string().contains("truncated or corrupt protobuf"),
        "{err}"
    );
}

#[test]
fn input_format_is_detected_and_empty_input_is_an_error() {
    let p = profile_with_modules();
    let bytes = pprof_bytes(&p);
    let back = read_profile(&bytes, "anything").unwrap();
    assert_eq!(back.total_samples(), p.total_samples());
    let text = folded(&p, false);
    let back = read_profile(text.as_bytes(), "x.folded").unwrap();
    assert_eq!(folded(&back, false), text);
    let err = read_profile(b"", "empty.folded").unwrap_err();
    assert_eq!(err.to_string(), "empty.folded: the profile has no samples");
    let err = read_profile(b"a;b 1\nno count\n", "bad.folded").unwrap_err();
    assert!(err.to_string().starts_with("bad.folded:2: "), "{err}");
}

#[test]
fn the_main_programs_mapping_comes_first() {
    let mut p = Profile::new(Metadata::default());
    for (name, path) in [
        ("libpython3.11.so.1.0", "/usr/lib/libpython3.11.so.1.0"),
        ("python3.11", "/usr/bin/python3.11"),
    ] {
        p.add_module(Module {
            name: name.into(),
            path: path.into(),
            build_id: None,
        });
    }
    let main = p.intern_thread(Thread {
        pid: 7,
        tid: 7,
        process_name: Some("python3".into()),
        thread_name: None,
    });
    let frame = |p: &mut Profile, name: &str, module: &str| {
        p.intern_frame(Frame {
            name: name.into(),
            kind: FrameKind::User,
            module: Some(module.into()),
            location: None,
        })
    };
    let start = frame(&mut p, "_start", "python3.11");
    let eval = frame(&mut p, "_PyEval_EvalFrameDefault", "libpython3.11.so.1.0");
    // Most samples are in the library, but every stack starts in the program.
    let stack = p.intern_stack(&[start, eval]).unwrap();
    p.add_sample(main, stack, 90);
    let m = decode(&pprof_bytes(&p)).unwrap();
    let first = &m.mapping[0];
    assert_eq!(
        m.string_table[first.filename as usize],
        "/usr/bin/python3.11"
    );
}

#[test]
fn hostile_pprof_is_refused_within_the_limits() {
    use std::io::Write;
    // 100 MB of empty samples, 97 KB gzipped: refused at the unpacking limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..1000 {
        gz.write_all(&[0x12, 0x00].repeat(50_000)).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let err = read_profile(&bomb, "bomb.pb.gz").unwrap_err().to_string();
    assert!(
        err.contains("unpacks to more than the limit of 64 MiB"),
        "{err}"
    );
    // 16 MB of empty strings (raw): their table would take 24 times that.
    let strings = [0x32, 0x00].repeat(8 << 20);
    let err = read_profile(&strings, "strings.pb")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tables would take more than the limit of 64 MiB"),
        "{err}"
    );
    // One sample 100,000 locations deep.
    let mut sample = vec![0x0a];
    let ids = [0x01].repeat(100_000);
    let mut len = ids.len();
    while len >= 0x80 {
        sample.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    sample.push(len as u8);
    sample.extend(&ids);
    let mut message = vec![0x12];
    let mut len = sample.len();
    while len >= 0x80 {
        message.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    message.push(len as u8);
    message.extend(&sample);
    let err = read_profile(&message, "deep.pb").unwrap_err().to_string();
    assert!(
        err.contains("a sample of 100000 locations is deeper than the limit"),
        "{err}"
    );
}

#[test]
fn binary_data_is_not_a_profile() {
    let err = read_profile(b"\x7fELF\x02\x01\x01\x00\x00\x00", "a.out").unwrap_err();
    assert_eq!(
        err.to_string(),
        "a.out: not a folded, pprof or speedscope profile"
    );
    let err = read_profile(&[0u8; 64], "zeros").unwrap_err();
    assert_eq!(
        err.to_string(),
        "zeros: not a folded, pprof or speedscope profile"
    );
}
