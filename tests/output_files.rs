//! How outputs are written to what their paths name: devices, FIFOs, stoke's
//! own stdout, a shell's `>(cmd)`, symlinks (followed unless planted in a
//! shared sticky folder), and files whose owner and mode must be kept.

mod common;

use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{assert_stoke_error, run, stoke, stoke_record, Folded, Outcome};

/// A shell loop that uses about 0.1 s of CPU and prints a line.
const BUSY: &str = "echo from-the-command; i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done";

/// `stoke record -o OUTPUT… [--format FORMAT] -- sh -c BUSY` in `dir`;
/// an output `--format=F` sets the format.
fn record(dir: &Path, outputs: &[&str]) -> Outcome {
    let mut cmd = stoke_record(dir);
    for o in outputs {
        match o.strip_prefix("--format=") {
            Some(format) => cmd.args(["--format", format]),
            None => cmd.args(["-o", o]),
        };
    }
    cmd.args(["--", "sh", "-c", BUSY]);
    run(&mut cmd)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn chown(path: &Path, uid: u32, follow: bool) {
    let owner = Some(nix::unistd::Uid::from_raw(uid));
    let flag = if follow {
        nix::fcntl::AtFlags::empty()
    } else {
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW
    };
    nix::unistd::fchownat(nix::fcntl::AT_FDCWD, path, owner, None, flag).unwrap();
}

const NOBODY: u32 = 65534;

#[test]
fn a_device_node_stays_a_device_node() {
    if !is_root() {
        eprintln!("skipped: creating a device node needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let null = dir.path().join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status();
    if !made.is_ok_and(|s| s.success()) || std::fs::write(&null, b"probe").is_err() {
        eprintln!(
            "skipped: no usable device node in {} (mknod failed or the folder is mounted nodev)",
            dir.path().display()
        );
        return;
    }
    let out = record(dir.path(), &["null", "--format=svg"]);
    out.assert_success();
    let meta = std::fs::symlink_metadata(&null).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "{null:?} was replaced\n{out}"
    );
    assert_eq!(meta.rdev(), nix::sys::stat::makedev(1, 3));
}

#[test]
fn a_full_device_is_an_error_for_that_output_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = record(dir.path(), &["/dev/full", "ok.folded"]);
    assert_stoke_error(
        &out,
        Some(1),
        &["cannot write /dev/full: No space left on device"],
    );
    assert!(std::fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(Folded::read(&dir.path().join("ok.folded")).total() > 0);
}

#[test]
fn a_fifo_is_written_to_its_reader() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("flame.svg");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let out = record(dir.path(), &["flame.svg"]);
    out.assert_success();
    let svg = reader.join().unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn dev_stdout_and_process_substitution_are_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let out = record(dir.path(), &["/dev/stdout", "--format=folded"]);
    out.assert_success();
    assert!(Folded::parse(&out.stdout).total() > 0, "{out}");
    assert!(out.stderr.contains("from-the-command"), "{out}");

    let script = format!(
        "{} record -o >(cat > sub.folded) -- sh -c '{BUSY}'; status=$?; wait $!; exit $status",
        common::stoke_path().display()
    );
    let mut cmd = Command::new("bash");
    cmd.current_dir(dir.path()).args(["-c", &script]);
    let out = run(&mut cmd);
    out.assert_success();
    assert!(
        Folded::read(&dir.path().join("sub.folded")).total() > 0,
        "{out}"
    );
}

#[test]
fn a_closed_stdout_is_an_error() {
    let script = format!(
        "exec {} record -o - -- true >&-",
        common::stoke_path().display()
    );
    let out = run(Command::new("sh").args(["-c", &script]));
    assert_stoke_error(&out, Some(1), &["cannot write stdout: stdout is closed"]);
}

#[test]
fn a_symlink_is_followed_to_the_file_it_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("real.svg"), "old").unwrap();
    symlink("real.svg", dir.path().join("link.svg")).unwrap();
    let out = record(dir.path(), &["link.svg"]);
    out.assert_success();
    let link = std::fs::symlink_metadata(dir.path().join("link.svg")).unwrap();
    assert!(link.file_type().is_symlink(), "the link was replaced");
    let real = std::fs::read_to_string(dir.path().join("real.svg")).unwrap();
    assert!(real.contains("</svg>"), "real.svg kept its old content");
}

#[test]
fn a_planted_symlink_in_a_shared_sticky_folder_is_refused() {
    if !is_root() {
        eprintln!("skipped: planting another user's symlink needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let planted = shared.join("flame.svg");
    symlink(&victim, &planted).unwrap();
    chown(&planted, NOBODY, false);
    let marker = dir.path().join("ran");
    let mut cmd = stoke_record(dir.path());
    cmd.arg("-o")
        .arg(&planted)
        .args(["--", "touch"])
        .arg(&marker);
    let out = run(&mut cmd);
    assert_stoke_error(
        &out,
        Some(1),
        &["refusing to follow the symlink", "sticky world-writable"],
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!marker.exists(), "refused before the command ran");

    // The same link owned by the follower (root) is followed.
    chown(&planted, 0, false);
    let out = record(dir.path(), &[planted.to_str().unwrap()]);
    out.assert_success();
    assert!(std::fs::read_to_string(&victim).unwrap().contains("</svg>"));
}

#[test]
fn an_overwritten_file_keeps_its_owner_and_mode() {
    if !is_root() {
        eprintln!("skipped: a file of another user needs root to make");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.folded");
    std::fs::write(&file, "old 1\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown(&file, NOBODY, true);
    let out = record(dir.path(), &["mine.folded"]);
    out.assert_success();
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (NOBODY, 0o600));
    assert!(Folded::read(&file).total() > 0);
    let new = dir.path().join("new.folded");
    let out =
        run(stoke()
            .current_dir(dir.path())
            .args(["convert", "mine.folded", "-o", "new.folded"]));
    out.assert_success();
    assert_eq!(std::fs::metadata(&new).unwrap().mode() & 0o777, 0o644);
}
