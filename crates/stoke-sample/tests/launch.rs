//! Launching real commands under the perf sampler.

mod common;

use std::ffi::OsString;

use stoke_model::{MappingKind, Pid};
use stoke_sample::{
    CommandSpec, Event, PerfSampler, SampleError, Sampler, SamplerOptions, StackCapture,
};

use common::record_until_exit;

fn shell_loop(iterations: u32) -> CommandSpec {
    CommandSpec {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            format!("i=0; while [ $i -lt {iterations} ]; do i=$((i+1)); done").into(),
        ],
        stdout: Default::default(),
    }
}

fn samples_of(events: &[Event], pid: Pid) -> Vec<&stoke_sample::Sample> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Sample(s) if s.pid == pid => Some(s),
            _ => None,
        })
        .collect()
}

fn lost(events: &[Event]) -> u64 {
    events
        .iter()
        .map(|e| match e {
            Event::Lost { count } => *count,
            _ => 0,
        })
        .sum()
}

#[test]
fn a_launched_shell_loop_is_sampled_from_its_exec() {
    let (mut sampler, mut child) =
        PerfSampler::launch(&shell_loop(500_000), &SamplerOptions::default()).expect("launch");
    let pid = child.pid();
    assert_eq!(sampler.target(), pid);
    let events = record_until_exit(&mut sampler);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(child.wait().expect("second wait"), status);

    let samples = samples_of(&events, pid);
    assert!(samples.len() > 10, "only {} samples", samples.len());
    assert!(samples.iter().any(|s| !s.user_callchain.is_empty()));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Comm { pid: p, name, exec: true, .. } if *p == pid && name == "sh"
    )));
    let files: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Mmap {
                pid: p, mapping, ..
            } if *p == pid => match &mapping.kind {
                MappingKind::File(path) => Some(path.display().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("/dash") || f.ends_with("/sh")),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.contains("libc")), "{files:?}");
    assert_eq!(lost(&events), 0);
    assert_eq!(sampler.lost(), 0);
    eprintln!("{}: {} samples", sampler.description(), samples.len());
    // Every file mapping carries an identity: a build-id from the kernel
    // (5.12+), or else device and inode.
    for e in &events {
        if let Event::Mmap { mapping, .. } = e {
            if let MappingKind::File(_) = mapping.kind {
                assert!(
                    mapping.build_id.is_some() || mapping.inode != 0,
                    "{mapping:?}"
                );
            }
        }
    }
}

#[test]
fn stack_copies_come_with_user_registers() {
    let options = SamplerOptions {
        stack: StackCapture::RegsAndStack { size: 16384 },
        ..SamplerOptions::default()
    };
    let (mut sampler, mut child) = PerfSampler::launch(&shell_loop(300_000), &options).unwrap();
    let pid = child.pid();
    let events = record_until_exit(&mut sampler);
    assert!(child.wait().unwrap().success());
    let samples = samples_of(&events, pid);
    let with_stack: Vec<_> = samples
        .iter()
        .filter_map(|s| Some((s.user_regs?, s.user_stack.as_ref()?)))
        .collect();
    assert!(
        with_stack.len() > 10,
        "{} of {} samples",
        with_stack.len(),
        samples.len()
    );
    for (regs, stack) in &with_stack {
        assert!(regs.sp() != 0 && regs.ip() != 0, "{regs:?}");
        assert_eq!(stack.start, regs.sp());
        assert!(!stack.bytes.is_empty() && stack.bytes.len() <= 16384);
    }
    assert_eq!(lost(&events), 0);
    assert!(sampler.description().contains("16384-byte stack copies"));
}

#[test]
fn forked_children_of_the_command_are_followed() {
    let command = CommandSpec {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            "sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done' & \
             i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; wait"
                .into(),
        ],
        stdout: Default::default(),
    };
    let (mut sampler, mut child) =
        PerfSampler::launch(&command, &SamplerOptions::default()).unwrap();
    let events = record_until_exit(&mut sampler);
    assert!(child.wait().unwrap().success());
    let forked: Vec<Pid> = events
        .iter()
        .filter_map(|e| match e {
            Event::Fork { pid, ppid, .. } if *ppid == child.pid() && *pid != *ppid => Some(*pid),
            _ => None,
        })
        .collect();
    assert!(!forked.is_empty(), "no fork seen");
    assert!(forked.iter().any(|&p| !samples_of(&events, p).is_empty()));
    assert!(!samples_of(&events, child.pid()).is_empty());
}

#[test]
fn unknown_commands_are_not_found() {
    let command = CommandSpec {
        program: "no-such-command-xyz".into(),
        args: Vec::new(),
        stdout: Default::default(),
    };
    let err = PerfSampler::launch(&command, &SamplerOptions::default()).err();
    assert!(
        matches!(&err, Some(SampleError::CommandNotFound(name)) if name == "no-such-command-xyz"),
        "{err:?}"
    );
}

#[test]
fn files_that_cannot_be_executed_give_the_exec_errno() {
    let command = CommandSpec {
        program: OsString::from("/etc/passwd"),
        args: Vec::new(),
        stdout: Default::default(),
    };
    match PerfSampler::launch(&command, &SamplerOptions::default()) {
        Err(SampleError::Exec { command, source }) => {
            assert_eq!(command, "/etc/passwd");
            assert_eq!(source.raw_os_error(), Some(libc::EACCES));
        }
        other => panic!("expected an exec error, got {:?}", other.err()),
    }
}

#[test]
fn a_signalled_child_reports_its_signal() {
    let (mut sampler, mut child) =
        PerfSampler::launch(&shell_loop(100_000_000), &SamplerOptions::default()).unwrap();
    child.signal(libc::SIGTERM).unwrap();
    let _ = record_until_exit(&mut sampler);
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert!(
        child.signal(libc::SIGTERM).is_err(),
        "reaped children cannot be signalled"
    );
}

#[test]
fn both_cpus_busy_with_full_stack_copies_lose_nothing() {
    let busy = "i=0; while [ $i -lt 600000 ]; do i=$((i+1)); done";
    let command = CommandSpec {
        program: "sh".into(),
        args: vec!["-c".into(), format!("({busy}) & ({busy}) & wait").into()],
        stdout: Default::default(),
    };
    let options = SamplerOptions {
        stack: StackCapture::RegsAndStack { size: 16384 },
        ..SamplerOptions::default()
    };
    let (mut sampler, mut child) = PerfSampler::launch(&command, &options).unwrap();
    // Rely on the ring buffers' wake-ups, not on short timeouts.
    let mut events = Vec::new();
    let mut wakeups = 0;
    loop {
        let outcome = sampler
            .poll(Some(std::time::Duration::from_secs(10)), &mut |e| {
                events.push(e)
            })
            .unwrap();
        wakeups += 1;
        if outcome.target_exited {
            break;
        }
    }
    sampler.finish(&mut |e| events.push(e)).unwrap();
    assert!(child.wait().unwrap().success());
    let samples = events
        .iter()
        .filter(|e| matches!(e, Event::Sample(_)))
        .count();
    let cpus: std::collections::HashSet<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::Sample(s) => Some(s.cpu),
            _ => None,
        })
        .collect();
    eprintln!(
        "{}: {samples} samples on cpus {cpus:?}, {wakeups} wake-ups, {} KiB rings",
        sampler.description(),
        sampler.ring_bytes() / 1024
    );
    assert_eq!(lost(&events), 0, "{samples} samples");
    assert_eq!(sampler.lost(), 0);
}
