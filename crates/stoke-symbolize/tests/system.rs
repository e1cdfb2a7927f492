//! The symbolizer on files of the running system: libc, the kernel's
//! symbols, and perf maps in /tmp.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;
use stoke_model::{BuildId, FrameAddress, Pid};
use stoke_symbolize::{ModuleRequest, Symbolized, UnknownReason};

const LIBC_CANDIDATES: &[&str] = &[
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib64/libc.so.6",
    "/lib64/libc.so.6",
];

fn libc() -> &'static Path {
    LIBC_CANDIDATES
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("no libc.so.6 found")
}

#[test]
fn malloc_in_libc_is_named() {
    let libc = libc();
    let malloc = function(libc, "malloc");
    let offset = file_offset(libc, malloc.address) + 8;
    let mut s = symbolizer();
    for root in [None, Some(Path::new("/proc/self/root"))] {
        let request = ModuleRequest {
            path: libc,
            build_id: None,
            map: None,
            root,
        };
        let out = s.symbolize_module(&request, &[FrameAddress::InstructionPointer(offset)]);
        let name = outer_name(&out[0]).unwrap_or_else(|| panic!("{out:?}"));
        assert!(name.contains("malloc"), "{name}");
    }
}

#[test]
fn kernel_addresses_are_named_from_kallsyms() {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let address = kallsyms
        .lines()
        .find_map(|l| l.strip_suffix(" T schedule"))
        .map(|a| u64::from_str_radix(a, 16).unwrap())
        .expect("no schedule in /proc/kallsyms");
    let mut s = symbolizer();
    let out = s.symbolize_kernel(&[address + 4, address]);
    if address == 0 {
        let hidden = Symbolized::Unknown(UnknownReason::KernelSymbolsHidden);
        assert_eq!(out, vec![hidden.clone(), hidden]);
        return;
    }
    assert_eq!(outer_name(&out[0]), Some("schedule"));
    assert_eq!(outer_name(&out[1]), Some("schedule"));

    // Read ahead on another thread: the same answers.
    let mut prefetched = symbolizer();
    prefetched.prefetch_kernel();
    assert_eq!(prefetched.symbolize_kernel(&[address + 4, address]), out);
}

/// A perf map path for a pid that cannot exist (above the kernel's pid
/// limit), removed again on drop.
struct FakeMap {
    pid: Pid,
    path: PathBuf,
}

impl FakeMap {
    fn new(pid: u32) -> FakeMap {
        let path = PathBuf::from(format!("/tmp/perf-{pid}.map"));
        let _ = std::fs::remove_file(&path);
        FakeMap {
            pid: Pid(pid),
            path,
        }
    }
}

impl Drop for FakeMap {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

const MAP: &str = "7f0000001000 40 LazyCompile:~hot app.js:10\n0x7f0000002000 0x80 Builtin:Add\n";

#[test]
fn jit_maps_name_anonymous_code() {
    let map = FakeMap::new(99_000_001);
    std::fs::write(&map.path, MAP).unwrap();
    let mut s = symbolizer();
    let out = s.symbolize_jit(map.pid, &[0x7f00_0000_1010, 0x7f00_0000_2000, 0x10]);
    assert_eq!(outer_name(&out[0]), Some("LazyCompile:~hot app.js:10"));
    assert_eq!(outer_name(&out[1]), Some("Builtin:Add"));
    assert_eq!(out[2], Symbolized::Unknown(UnknownReason::NoSymbol));

    // The map grows while the JIT runs: a changed file is read again.
    std::fs::write(&map.path, format!("{MAP}7f0000003000 10 Later\n")).unwrap();
    let out = s.symbolize_jit(map.pid, &[0x7f00_0000_3008]);
    assert_eq!(outer_name(&out[0]), Some("Later"));
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());

    let none = s.symbolize_jit(Pid(99_000_009), &[0x7f00_0000_1010]);
    assert_eq!(none, vec![Symbolized::Unknown(UnknownReason::NoSymbol)]);
}

fn assert_refused(s: &mut stoke_symbolize::Symbolizer, pid: Pid, why: &str) {
    let out = s.symbolize_jit(pid, &[0x7f00_0000_1010]);
    assert!(
        matches!(&out[0], Symbolized::Unknown(UnknownReason::FileUnavailable(m)) if m.contains(why)),
        "{out:?}"
    );
    assert!(
        s.warnings()
            .iter()
            .any(|w| w.contains(why) && w.contains(&pid.to_string())),
        "{:?}",
        s.warnings()
    );
}

#[test]
fn symlinked_jit_maps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.map");
    std::fs::write(&target, MAP).unwrap();
    let map = FakeMap::new(99_000_002);
    symlink(&target, &map.path).unwrap();
    let mut s = symbolizer();
    assert_refused(&mut s, map.pid, "symbolic link");
    // Asked again: still refused, warned once.
    assert_refused(&mut s, map.pid, "symbolic link");
    assert_eq!(s.warnings().len(), 1);
}

#[test]
fn jit_maps_of_other_owners_and_fifos_are_refused() {
    let map = FakeMap::new(99_000_003);
    std::fs::write(&map.path, MAP).unwrap();
    let mut s = symbolizer();
    if nix_uid_is_root() {
        std::os::unix::fs::chown(&map.path, Some(12345), None).unwrap();
        assert_refused(&mut s, map.pid, "owned by uid 12345");
    }
    let fifo = FakeMap::new(99_000_004);
    run("mkfifo", &[fifo.path.to_str().unwrap()]);
    // Opening a FIFO for reading would block; the symbolizer must not.
    assert_refused(&mut s, fifo.pid, "not a regular file");
}

fn nix_uid_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

#[test]
fn a_thousand_addresses_in_libc_and_a_binary() {
    let dir = tempfile::tempdir().unwrap();
    let binary = compile(dir.path(), "full", &["-g"]);
    let libc = libc();
    // Every 100th text byte of libc's executable segment, up to 900 of them.
    let text = function(libc, "malloc");
    let start = file_offset(libc, text.address) & !0xfff;
    let libc_addresses: Vec<FrameAddress> = (0..900)
        .map(|i| FrameAddress::ReturnAddress(start + i * 100))
        .collect();
    let hash_loop = function(&binary, "hash_loop");
    let binary_addresses: Vec<FrameAddress> = (0..100)
        .map(|i| {
            let a = hash_loop.address + i % hash_loop.size;
            FrameAddress::InstructionPointer(file_offset(&binary, a))
        })
        .collect();

    let started = Instant::now();
    let mut s = symbolizer();
    let libc_out = s.symbolize_module(
        &ModuleRequest {
            path: libc,
            build_id: None,
            map: None,
            root: None,
        },
        &libc_addresses,
    );
    let binary_out = s.symbolize_module(
        &ModuleRequest {
            path: &binary,
            build_id: None,
            map: None,
            root: None,
        },
        &binary_addresses,
    );
    let elapsed = started.elapsed();
    eprintln!("1000 addresses (900 libc, 100 fixture) symbolized in {elapsed:?}");

    let named = libc_out.iter().filter(|r| outer_name(r).is_some()).count();
    assert!(named > 700, "only {named} of 900 libc addresses named");
    assert!(binary_out
        .iter()
        .all(|r| outer_name(r) == Some("hash_loop")));
}

#[inline(never)]
fn marker_function_for_the_self_test(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(31).rotate_left(7))
}

/// The file offset of a live address of this process, from /proc/self/maps.
fn own_file_offset(address: u64) -> (PathBuf, u64) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (range, pgoff) = (fields[0], fields[2]);
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        if (start..end).contains(&address) {
            let pgoff = u64::from_str_radix(pgoff, 16).unwrap();
            return (PathBuf::from(fields[5]), address - start + pgoff);
        }
    }
    panic!("{address:#x} not mapped");
}

#[test]
fn this_test_binary_symbolizes_its_own_rust_functions() {
    assert_eq!(marker_function_for_the_self_test(1), 31 << 7);
    let address = marker_function_for_the_self_test as fn(u64) -> u64 as usize as u64;
    let (path, offset) = own_file_offset(address);
    let mut s = symbolizer();
    let request = ModuleRequest {
        path: &path,
        build_id: None,
        map: Some(stoke_symbolize::map_file(&std::fs::File::open(&path).unwrap()).unwrap()),
        root: Some(Path::new("/proc/self/root")),
    };
    let out = s.symbolize_module(&request, &[FrameAddress::InstructionPointer(offset + 1)]);
    let Symbolized::Found(frames) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(frames[0].name, "system::marker_function_for_the_self_test");
    assert!(frames[0].file.as_deref().unwrap().ends_with("system.rs"));
}

/// `.eh_frame` FDE ranges `[start, end)` of a binary, in stated addresses.
fn fde_ranges(binary: &Path) -> Vec<(u64, u64)> {
    use gimli::{BaseAddresses, EhFrame, NativeEndian, UnwindSection};
    use object::{Object, ObjectSection};
    let bytes = std::fs::read(binary).unwrap();
    let obj = object::File::parse(&*bytes).unwrap();
    let section = obj.section_by_name(".eh_frame").unwrap();
    let eh_frame = EhFrame::new(section.data().unwrap(), NativeEndian);
    let bases = BaseAddresses::default().set_eh_frame(section.address());
    let mut entries = eh_frame.entries(&bases);
    let mut ranges = Vec::new();
    while let Some(entry) = entries.next().unwrap() {
        if let gimli::CieOrFde::Fde(partial) = entry {
            let fde = partial.parse(EhFrame::cie_from_offset).unwrap();
            ranges.push((fde.initial_address(), fde.end_address()));
        }
    }
    ranges
}

#[test]
fn stripped_liblzma_static_functions_merge_by_fde() {
    use object::{Object, ObjectSection, ObjectSymbol};
    let lzma = Path::new("/usr/lib/x86_64-linux-gnu/liblzma.so.5");
    let bytes = std::fs::read(lzma).unwrap();
    let obj = object::File::parse(&*bytes).unwrap();
    assert!(obj.symbols().next().is_none(), "liblzma should be stripped");
    let exported: Vec<(u64, u64)> = obj
        .dynamic_symbols()
        .filter(|s| s.size() > 0)
        .map(|s| (s.address(), s.address() + s.size()))
        .collect();
    // Static functions: FDEs in .text (the PLT has one too, and its stubs
    // are named) no exported symbol overlaps, big enough to hold two
    // distinct addresses.
    let text = obj.section_by_name(".text").unwrap();
    let text = text.address()..text.address() + text.size();
    let statics: Vec<(u64, u64)> = fde_ranges(lzma)
        .into_iter()
        .filter(|&(start, end)| end - start >= 16 && text.contains(&start))
        .filter(|&(start, end)| !exported.iter().any(|&(s, e)| s < end && start < e))
        .collect();
    assert!(statics.len() >= 2, "{statics:?}");
    let mut s = symbolizer();
    let request = ModuleRequest {
        path: lzma,
        build_id: None,
        map: None,
        root: None,
    };
    for pair in statics.windows(2).take(50) {
        let [(a, a_end), (b, _)] = [pair[0], pair[1]];
        let addresses = [a + 1, a_end - 1, b + 1]
            .map(|svma| FrameAddress::InstructionPointer(file_offset(lzma, svma)));
        let out = s.symbolize_module(&request, &addresses);
        let start = Symbolized::Unnamed {
            function_offset: file_offset(lzma, a),
        };
        assert_eq!(out[0], start, "{a:#x}..{a_end:#x}");
        assert_eq!(out[1], start, "{a:#x}..{a_end:#x}");
        let other = Symbolized::Unnamed {
            function_offset: file_offset(lzma, b),
        };
        assert_eq!(out[2], other);
    }
}

/// This process's vDSO image (the same one the kernel maps everywhere).
fn own_vdso() -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.ends_with("[vdso]")).unwrap();
    let (start, end) = line
        .split_whitespace()
        .next()
        .unwrap()
        .split_once('-')
        .unwrap();
    let start = u64::from_str_radix(start, 16).unwrap();
    let end = u64::from_str_radix(end, 16).unwrap();
    let mut mem = std::fs::File::open("/proc/self/mem").unwrap();
    mem.seek(SeekFrom::Start(start)).unwrap();
    let mut image = vec![0; (end - start) as usize];
    mem.read_exact(&mut image).unwrap();
    image
}

#[test]
fn vdso_functions_are_named_without_their_prefix() {
    use object::{Object, ObjectSegment, ObjectSymbol};
    let image = own_vdso();
    let obj = object::File::parse(&*image).unwrap();
    let symbol = obj
        .dynamic_symbols()
        .find(|s| s.name() == Ok("__vdso_clock_gettime"))
        .expect("no __vdso_clock_gettime in the vDSO");
    let offset = obj
        .segments()
        .find_map(|seg| {
            let (file_start, size) = seg.file_range();
            let delta = symbol.address().checked_sub(seg.address())?;
            (delta < size).then_some(file_start + delta)
        })
        .unwrap();
    let mut s = symbolizer();
    let out = s.symbolize_vdso(
        None,
        &[
            FrameAddress::InstructionPointer(offset),
            FrameAddress::ReturnAddress(offset + symbol.size()),
        ],
    );
    assert_eq!(outer_name(&out[0]), Some("clock_gettime"), "{out:?}");
    assert_eq!(outer_name(&out[1]), Some("clock_gettime"), "{out:?}");

    // A vDSO of another build (another kernel or ABI) is not used.
    let other = BuildId(vec![0xde, 0xad]);
    let out = s.symbolize_vdso(Some(&other), &[FrameAddress::InstructionPointer(offset)]);
    assert!(
        matches!(&out[0], Symbolized::Unknown(UnknownReason::FileUnavailable(m)) if m.contains("[vdso]")),
        "{out:?}"
    );
}

/// libc calls its own ifuncs (`memcpy`, `strlen`, …) through its PLT, whose
/// slots `IRELATIVE` relocations fill: every stub is named after the
/// ifunc, never `*ABS*+0x…@plt`, and no byte of the PLT is left unnamed
/// (it read `libc.so.6+0x26000`, the start of the FDE covering `.plt`).
#[test]
fn libc_plt_stubs_are_named_after_its_ifuncs() {
    use object::{Object, ObjectSection};
    let libc = libc();
    let bytes = std::fs::read(libc).unwrap();
    let obj = object::File::parse(&*bytes).unwrap();
    let Some(plt) = obj.section_by_name(".plt") else {
        eprintln!("skipped: {} has no .plt", libc.display());
        return;
    };
    // The header (the lazy-binding jump into ld.so) is not a stub.
    let addresses: Vec<u64> = (plt.address() + 16..plt.address() + plt.size()).collect();
    let mut s = symbolizer();
    let out = symbolize_at(&mut s, libc, &addresses);
    let mut names = Vec::new();
    for (address, result) in addresses.iter().zip(&out) {
        let name = outer_name(result).unwrap_or_else(|| panic!("{address:#x}: {result:?}"));
        assert!(
            name.ends_with("@plt") && !name.starts_with("*ABS*"),
            "{address:#x}: {name}"
        );
        names.push(name.to_string());
    }
    names.dedup();
    assert!(
        names
            .iter()
            .any(|n| n == "strnlen@plt" || n == "memcpy@plt"),
        "{names:?}"
    );
}

/// A 2 GiB sparse perf map (planted by the target's user, read by root's
/// stoke) is read only up to the limit, with a warning that says so; the
/// entries before the limit still name code.
#[test]
fn a_huge_sparse_perf_map_is_read_only_up_to_the_limit() {
    let map = FakeMap::new(99_000_005);
    std::fs::write(&map.path, MAP).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&map.path)
        .unwrap();
    file.set_len(2 << 30).unwrap();
    drop(file);
    let mut s = symbolizer();
    let out = s.symbolize_jit(map.pid, &[0x7f00_0000_1010]);
    assert_eq!(outer_name(&out[0]), Some("LazyCompile:~hot app.js:10"));
    let warnings = s.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with(&map.path.display().to_string())
                && w.contains("read only the first 64 MiB of 2048 MiB")),
        "{warnings:?}"
    );
}

/// A process run as `uid`, killed and reaped on drop.
struct OtherUser(std::process::Child);

impl Drop for OtherUser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The map of a target that exited before naming is still trusted when it
/// belongs to the target's owner, remembered while the target ran.
#[test]
fn the_perf_map_of_an_exited_target_is_trusted_for_its_remembered_owner() {
    if !nix_uid_is_root() {
        eprintln!("skipped: needs root to run a process as uid 12345 and give it a map");
        return;
    }
    use std::io::BufRead;
    let mut target = OtherUser(
        std::process::Command::new("setpriv")
            .args(["--reuid=12345", "--regid=12345", "--clear-groups"])
            .args(["sh", "-c", "echo ready && exec sleep 600"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("setpriv"),
    );
    let pid = Pid(target.0.id());
    // The shell prints once setpriv has become the user.
    let mut ready = String::new();
    std::io::BufReader::new(target.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");
    let mut remembering = symbolizer();
    remembering.remember_owner(pid);
    target.0.kill().unwrap();
    target.0.wait().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());

    let map = FakeMap {
        pid,
        path: PathBuf::from(format!("/tmp/perf-{pid}.map")),
    };
    std::fs::write(&map.path, MAP).unwrap();
    std::os::unix::fs::chown(&map.path, Some(12345), None).unwrap();
    let out = remembering.symbolize_jit(pid, &[0x7f00_0000_1010]);
    assert_eq!(
        outer_name(&out[0]),
        Some("LazyCompile:~hot app.js:10"),
        "{:?}",
        remembering.warnings()
    );
    // Without it, the owner is unknown once the process is gone.
    let mut forgetting = symbolizer();
    assert_refused(&mut forgetting, pid, "owned by uid 12345");
}
