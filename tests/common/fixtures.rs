//! Fixture programs compiled from `fixtures/` by the harness.
//!
//! Each (source, build, name) is compiled once per test process, into
//! `$CARGO_TARGET_TMPDIR/fixtures/<build>/<name>`. The compiler writes a
//! temporary name that is then renamed, so test binaries running at the same
//! time never see (or execute) a half-written file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// How a fixture is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Build {
    /// `-O2 -g` with frame pointers in every function, leaves included.
    FramePointers,
    /// `-O2 -g -fomit-frame-pointer`: only DWARF CFI describes the frames.
    NoFramePointers,
}

impl Build {
    fn folder(self) -> &'static str {
        match self {
            Build::FramePointers => "fp",
            Build::NoFramePointers => "nofp",
        }
    }

    fn cflags(self) -> &'static [&'static str] {
        match self {
            Build::FramePointers => &[
                "-O2",
                "-g",
                "-fno-omit-frame-pointer",
                "-mno-omit-leaf-frame-pointer",
            ],
            Build::NoFramePointers => &["-O2", "-g", "-fomit-frame-pointer"],
        }
    }
}

/// Outputs already built by this process.
static BUILT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn output_path(folder: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fixtures")
        .join(folder)
        .join(name)
}

/// Builds `fixtures/<source>.c` with `build` and returns the executable,
/// named after the source.
pub fn c_fixture(source: &str, build: Build) -> PathBuf {
    c_fixture_named(source, build, source)
}

/// Builds `fixtures/<source>.c` with `build` as an executable called `name`
/// (its process name is then `name`, cut to 15 bytes by the kernel).
pub fn c_fixture_named(source: &str, build: Build, name: &str) -> PathBuf {
    c_fixture_with_flags(source, build, name, &[])
}

/// Builds `fixtures/<source>.c` with `build` and extra compiler flags (e.g.
/// `-DHOT_WEIGHT=6` for a variant) as an executable called `name`; give each
/// variant its own name.
pub fn c_fixture_with_flags(source: &str, build: Build, name: &str, flags: &[&str]) -> PathBuf {
    let src = sources().join(format!("{source}.c"));
    build_once(output_path(build.folder(), name), |out| {
        let mut cmd = Command::new("gcc");
        cmd.args(build.cflags())
            .args(flags)
            .args(["-Wall", "-Wextra", "-pthread", "-o"])
            .arg(out)
            .arg(&src);
        cmd
    })
}

/// Builds the single-file Rust program `fixtures/<dir>/main.rs` in release
/// mode without frame pointers (`-C opt-level=3 -C debuginfo=1
/// -C force-frame-pointers=no`). The crate, and the executable, are named
/// `dir` with `-` replaced by `_` (`rust-spin` → `rust_spin`, whose
/// functions are `rust_spin::hot` etc.).
pub fn rust_fixture(dir: &str) -> PathBuf {
    let src = sources().join(dir).join("main.rs");
    let name = dir.replace('-', "_");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    build_once(output_path("rust", &name), |out| {
        let mut cmd = Command::new(&rustc);
        cmd.args(["--edition", "2021", "--crate-name", &name])
            .args(["-C", "opt-level=3", "-C", "debuginfo=1"])
            .args(["-C", "force-frame-pointers=no", "-o"])
            .arg(out)
            .arg(&src);
        cmd
    })
}

/// Runs `compile(temporary)` unless `out` was already built by this process,
/// then renames the temporary to `out`.
fn build_once(out: PathBuf, compile: impl FnOnce(&Path) -> Command) -> PathBuf {
    // A panic while building poisons the lock; the set itself stays valid.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let built = built.get_or_insert_with(HashSet::new);
    if built.contains(&out) {
        return out;
    }
    let folder = out.parent().expect("output has a folder");
    std::fs::create_dir_all(folder).expect("create fixture folder");
    let file_name = out
        .file_name()
        .expect("output has a name")
        .to_string_lossy();
    let temporary = folder.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut cmd = compile(&temporary);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "building fixture {} failed ({}):\n{cmd:?}\n{}",
        out.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&temporary, &out).expect("rename built fixture into place");
    built.insert(out.clone());
    out
}
