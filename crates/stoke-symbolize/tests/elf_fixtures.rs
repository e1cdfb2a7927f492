//! The symbolizer on a C fixture built by gcc in variants: full DWARF 5 and
//! 4, compressed, stripped of debug info, with split debug info, stripped of
//! everything.

mod common;

use std::path::Path;

use common::*;
use stoke_model::{BuildId, FrameAddress};
use stoke_symbolize::{
    ModuleRequest, SymbolFrame, SymbolizeOptions, Symbolized, Symbolizer, UnknownReason,
};

/// Results for the inlined region of `hash_loop`: [hash_loop, mix] frames.
fn inlined_results(results: &[Symbolized]) -> Vec<&[SymbolFrame]> {
    results
        .iter()
        .filter_map(|r| match r {
            Symbolized::Found(frames) if frames.len() == 2 && frames[1].name == "mix" => {
                Some(&frames[..])
            }
            _ => None,
        })
        .collect()
}

/// Checks that symbolizing `hash_loop` of `binary` shows `mix` inlined into
/// it, with file and line on both frames (reading separate debug files' DWARF).
fn assert_inline_chain(binary: &Path) {
    let mut s = Symbolizer::new(SymbolizeOptions {
        separate_debug_dwarf: true,
        ..SymbolizeOptions::default()
    });
    let hash_loop = function(binary, "hash_loop");
    let results = symbolize_at(&mut s, binary, &body(hash_loop));
    for r in &results {
        assert_eq!(outer_name(r), Some("hash_loop"), "{r:?}");
    }
    let inlined = inlined_results(&results);
    assert!(!inlined.is_empty(), "mix never inlined: {results:?}");
    let mix_body = lines_with("MIX_BODY");
    let call_site = lines_with("CALL_SITE");
    for frames in &inlined {
        let (caller, callee) = (&frames[0], &frames[1]);
        assert!(!caller.inlined && callee.inlined, "{frames:?}");
        for frame in *frames {
            assert!(
                frame.file.as_deref().unwrap().ends_with("inline.c"),
                "{frame:?}"
            );
        }
        assert_eq!(caller.line, Some(call_site[0]), "{frames:?}");
        assert!(callee.line.is_some());
    }
    assert!(
        inlined
            .iter()
            .any(|f| mix_body.contains(&f[1].line.unwrap())),
        "no address in mix's loop body: {inlined:?}"
    );
}

#[test]
fn dwarf5_gives_the_inline_chain_outermost_first() {
    let dir = tempfile::tempdir().unwrap();
    assert_inline_chain(&compile(dir.path(), "full", &["-g", "-gdwarf-5"]));
}

#[test]
fn dwarf4_gives_the_inline_chain() {
    let dir = tempfile::tempdir().unwrap();
    assert_inline_chain(&compile(dir.path(), "dwarf4", &["-g", "-gdwarf-4"]));
}

#[test]
fn compressed_debug_sections_are_read() {
    let dir = tempfile::tempdir().unwrap();
    assert_inline_chain(&compile(dir.path(), "gz", &["-g", "-gz=zlib"]));
}

#[test]
fn return_addresses_are_looked_up_inside_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "full", &["-g"]);
    let main = function(&binary, "main");
    let hash_loop = function(&binary, "hash_loop");
    let mut s = symbolizer();
    let request = ModuleRequest {
        path: &binary,
        build_id: None,
        map: None,
        root: None,
    };
    // One past the end of main, as a return address, is still main.
    let end = file_offset(&binary, main.address + main.size - 1) + 1;
    let start = file_offset(&binary, hash_loop.address);
    let out = s.symbolize_module(
        &request,
        &[
            FrameAddress::ReturnAddress(end),
            FrameAddress::InstructionPointer(start),
            FrameAddress::ReturnAddress(start + 1),
        ],
    );
    assert_eq!(outer_name(&out[0]), Some("main"));
    assert_eq!(outer_name(&out[1]), Some("hash_loop"));
    assert_eq!(out[1], out[2]);
}

#[test]
fn without_inline_expansion_only_the_real_function_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "full", &["-g"]);
    let mut s = Symbolizer::new(SymbolizeOptions {
        inlines: false,
        ..SymbolizeOptions::default()
    });
    let results = symbolize_at(&mut s, &binary, &body(function(&binary, "hash_loop")));
    let call_site = lines_with("CALL_SITE")[0];
    let mut saw_call_site = false;
    for r in &results {
        let Symbolized::Found(frames) = r else {
            panic!("{r:?}")
        };
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].name, "hash_loop");
        saw_call_site |= frames[0].line == Some(call_site);
    }
    assert!(saw_call_site);
}

#[test]
fn pie_file_offsets_are_converted_to_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "full", &["-g"]);
    let mut s = symbolizer();
    for name in ["main", "hash_loop", "local_helper"] {
        let f = function(&binary, name);
        let offset = file_offset(&binary, f.address);
        assert_ne!(offset, f.address, "the fixture should move its text");
        let out = symbolize_at(&mut s, &binary, &[f.address, f.address + f.size - 1]);
        assert_eq!(outer_name(&out[0]), Some(name));
        assert_eq!(outer_name(&out[1]), Some(name));
    }
    // A file offset no segment maps (inside the ELF header padding) has no name.
    let request = ModuleRequest {
        path: &binary,
        build_id: None,
        map: None,
        root: None,
    };
    let out = s.symbolize_module(&request, &[FrameAddress::InstructionPointer(u64::MAX / 2)]);
    assert_eq!(out, vec![Symbolized::Unknown(UnknownReason::NoSymbol)]);
}

#[test]
fn strip_debug_keeps_names_from_symtab() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "stripped", &["-g"]);
    run("strip", &["--strip-debug", binary.to_str().unwrap()]);
    let mut s = symbolizer();
    for name in ["hash_loop", "local_helper", "main"] {
        let f = function(&binary, name);
        let out = symbolize_at(&mut s, &binary, &[f.address + f.size / 2]);
        let Symbolized::Found(frames) = &out[0] else {
            panic!("{name}: {out:?}")
        };
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].name, name);
        assert_eq!((frames[0].file.as_deref(), frames[0].line), (None, None));
    }
}

/// Splits `binary`'s debug info into `debug` and links it by debuglink.
fn split(binary: &Path, debug: &Path, link: bool) {
    let (b, d) = (binary.to_str().unwrap(), debug.to_str().unwrap());
    run("objcopy", &["--only-keep-debug", b, d]);
    if link {
        run(
            "objcopy",
            &["--strip-debug", &format!("--add-gnu-debuglink={d}"), b],
        );
    } else {
        run("objcopy", &["--strip-debug", b]);
    }
}

#[test]
fn split_debug_info_by_debuglink_gives_lines_again() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "split", &["-g"]);
    split(&binary, &dir.path().join("split.debug"), true);
    assert_inline_chain(&binary);

    // By default a separate debug file gives names from its symbol table,
    // but its DWARF (inline frames, lines) is not read.
    let f = function(&binary, "hash_loop");
    let out = symbolize_at(&mut symbolizer(), &binary, &body(f));
    for r in &out {
        assert!(
            matches!(r, Symbolized::Found(fr) if fr.len() == 1 && fr[0].name == "hash_loop" && fr[0].file.is_none()),
            "{r:?}"
        );
    }
}

#[test]
fn split_debug_info_without_build_id_is_checked_by_crc() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "nobuildid", &["-g", "-Wl,--build-id=none"]);
    std::fs::create_dir(dir.path().join(".debug")).unwrap();
    let debug = dir.path().join(".debug/nobuildid.debug");
    split(&binary, &debug, true);
    assert_inline_chain(&binary);

    // A debug file of another build under the linked name is not used.
    let other = compile(
        dir.path(),
        "other",
        &["-g", "-Wl,--build-id=none", "-DOTHER"],
    );
    run(
        "objcopy",
        &[
            "--only-keep-debug",
            other.to_str().unwrap(),
            debug.to_str().unwrap(),
        ],
    );
    let mut s = Symbolizer::new(SymbolizeOptions {
        separate_debug_dwarf: true,
        ..SymbolizeOptions::default()
    });
    let f = function(&binary, "hash_loop");
    let out = symbolize_at(&mut s, &binary, &[f.address + 4]);
    let Symbolized::Found(frames) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(frames[0].name, "hash_loop");
    assert_eq!(frames[0].file, None, "a stale debug file was used");
}

#[test]
fn split_debug_info_is_found_by_build_id_in_debug_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "byid", &["-g", "-gz=zlib"]);
    let bytes = std::fs::read(&binary).unwrap();
    let id = {
        use object::Object;
        object::File::parse(&*bytes)
            .unwrap()
            .build_id()
            .unwrap()
            .unwrap()
            .to_vec()
    };
    let hex = BuildId(id.clone()).to_string();
    let folder = dir.path().join("dbg/.build-id").join(&hex[..2]);
    std::fs::create_dir_all(&folder).unwrap();
    split(&binary, &folder.join(format!("{}.debug", &hex[2..])), false);

    let f = function(&binary, "hash_loop");
    let mut plain = symbolizer();
    let out = symbolize_at(&mut plain, &binary, &[f.address + 4]);
    assert!(matches!(&out[0], Symbolized::Found(fr) if fr[0].file.is_none()));

    let mut s = Symbolizer::new(SymbolizeOptions {
        debug_dirs: vec![dir.path().join("dbg")],
        separate_debug_dwarf: true,
        ..SymbolizeOptions::default()
    });
    let results = symbolize_at(&mut s, &binary, &body(f));
    assert!(!inlined_results(&results).is_empty(), "{results:?}");

    // The mapping's build-id must match the file's.
    let request = ModuleRequest {
        path: &binary,
        build_id: Some(&BuildId(vec![0xde, 0xad])),
        map: None,
        root: None,
    };
    let out = s.symbolize_module(&request, &[FrameAddress::InstructionPointer(0)]);
    assert!(matches!(
        &out[0],
        Symbolized::Unknown(UnknownReason::FileUnavailable(_))
    ));
    assert!(s.warnings().iter().any(|w| w.contains("build-id")));
}

#[test]
fn strip_all_keeps_exported_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "bare", &["-g"]);
    let (hash_loop, local_helper) = (
        function(&binary, "hash_loop"),
        function(&binary, "local_helper"),
    );
    run("strip", &["--strip-all", binary.to_str().unwrap()]);
    let mut s = symbolizer();
    let out = symbolize_at(
        &mut s,
        &binary,
        &[hash_loop.address + 3, local_helper.address + 3],
    );
    assert_eq!(outer_name(&out[0]), Some("hash_loop"));
    // The static function is named by its start, from its .eh_frame FDE.
    assert_eq!(
        out[1],
        Symbolized::Unnamed {
            function_offset: file_offset(&binary, local_helper.address)
        }
    );
}

#[test]
fn stripped_static_functions_are_named_by_their_start() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile_source(&data("statics.c"), dir.path(), "statics", &[]);
    let (churn, fold) = (function(&binary, "churn"), function(&binary, "fold"));
    run("strip", &["--strip-all", binary.to_str().unwrap()]);
    let mut s = symbolizer();
    let out = symbolize_at(
        &mut s,
        &binary,
        &[
            churn.address + 1,
            churn.address + churn.size - 1,
            fold.address + fold.size / 2,
        ],
    );
    let unnamed = |f: Function| Symbolized::Unnamed {
        function_offset: file_offset(&binary, f.address),
    };
    // Two addresses in one function: one name, its start.
    assert_eq!(out[0], unnamed(churn));
    assert_eq!(out[1], unnamed(churn));
    // Another function: another name.
    assert_eq!(out[2], unnamed(fold));
    assert_ne!(out[0], out[2]);

    // Exported functions keep their names; bytes no FDE covers (the ELF
    // header) still have none.
    let main = function(&binary, "main");
    let out = symbolize_at(&mut s, &binary, &[main.address + 1]);
    assert_eq!(outer_name(&out[0]), Some("main"));
    let request = ModuleRequest {
        path: &binary,
        build_id: None,
        map: None,
        root: None,
    };
    let out = s.symbolize_module(&request, &[FrameAddress::InstructionPointer(0x10)]);
    assert_eq!(out, vec![Symbolized::Unknown(UnknownReason::NoSymbol)]);
}

#[test]
fn gnu_style_zdebug_sections_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "zdebug", &["-g"]);
    let b = binary.to_str().unwrap();
    run("objcopy", &["--compress-debug-sections=zlib-gnu", b]);
    let bytes = std::fs::read(&binary).unwrap();
    let names: Vec<String> = {
        use object::{Object, ObjectSection};
        let obj = object::File::parse(&*bytes).unwrap();
        obj.sections()
            .filter_map(|s| s.name().ok().map(str::to_string))
            .collect()
    };
    assert!(
        names.iter().any(|n| n == ".zdebug_info"),
        "objcopy made no .zdebug_info: {names:?}"
    );
    assert_inline_chain(&binary);
}

#[test]
fn mini_debug_info_names_static_functions_of_a_stripped_binary() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "mini", &["-g"]);
    let local_helper = function(&binary, "local_helper");
    let (b, mini) = (binary.to_str().unwrap(), dir.path().join("mini.symbols"));
    let m = mini.to_str().unwrap();
    // As Fedora builds them: the symbol table alone, xz-compressed, added
    // to the stripped binary as .gnu_debugdata.
    run("objcopy", &["--only-keep-debug", b, m]);
    run(
        "objcopy",
        &["--strip-debug", "--remove-section=.comment", m],
    );
    run("xz", &["-k", "-f", m]);
    run("strip", &["--strip-all", b]);
    run(
        "objcopy",
        &[&format!("--add-section=.gnu_debugdata={m}.xz"), b],
    );
    let out = symbolize_at(&mut symbolizer(), &binary, &[local_helper.address + 3]);
    assert_eq!(outer_name(&out[0]), Some("local_helper"), "{out:?}");
}

#[test]
fn debuglink_under_a_debug_dir_mirrors_the_binary_path() {
    // /usr/lib/debug/<folder of the binary>/<debuglink name>, here with a
    // --debug-dir standing in for /usr/lib/debug.
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "mirrored", &["-g"]);
    let mirror = dir
        .path()
        .join("dbg")
        .join(dir.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&mirror).unwrap();
    let debug = dir.path().join("mirrored.debug");
    split(&binary, &debug, true);
    std::fs::rename(&debug, mirror.join("mirrored.debug")).unwrap();

    let f = function(&binary, "hash_loop");
    let mut s = Symbolizer::new(SymbolizeOptions {
        debug_dirs: vec![dir.path().join("dbg")],
        lines: true,
        ..SymbolizeOptions::default()
    });
    let results = symbolize_at(&mut s, &binary, &body(f));
    assert!(!inlined_results(&results).is_empty(), "{results:?}");
}

#[test]
fn a_deleted_binary_is_read_through_the_callers_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "deleted", &["-g"]);
    let f = function(&binary, "hash_loop");
    let offset = file_offset(&binary, f.address + 3);
    let handle = std::fs::File::open(&binary).unwrap();
    std::fs::remove_file(&binary).unwrap();
    let mut s = symbolizer();
    let address = [FrameAddress::InstructionPointer(offset)];
    let by_path = ModuleRequest {
        path: &binary,
        build_id: None,
        map: None,
        root: None,
    };
    assert!(matches!(
        &s.symbolize_module(&by_path, &address)[0],
        Symbolized::Unknown(UnknownReason::FileUnavailable(_))
    ));
    let by_handle = ModuleRequest {
        map: Some(stoke_symbolize::map_file(&handle).unwrap()),
        ..by_path
    };
    let out = s.symbolize_module(&by_handle, &address);
    assert_eq!(outer_name(&out[0]), Some("hash_loop"), "{out:?}");
}
