//! The ptrace sampler on live processes: attaching, following new threads,
//! launching commands that fork and exec, and detaching cleanly.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use stoke_model::{Pid, Tid};
use stoke_sample::{
    CommandSpec, Event, PtraceSampler, SampleError, SampleMode, Sampler, SamplerOptions,
    StackCapture,
};

use common::{record_until_exit, run_fixture_if_requested, state_and_tracer, Fixture};

/// The entry point of the fixture process (see `common`).
#[test]
fn fixture() {
    run_fixture_if_requested();
}

fn options(mode: SampleMode) -> SamplerOptions {
    SamplerOptions {
        stack: StackCapture::RegsAndStack { size: 8192 },
        mode,
        ..SamplerOptions::default()
    }
}

/// Polls until every tid in `wanted` has a sample; returns every event.
fn poll_until_sampled(sampler: &mut PtraceSampler, wanted: &[Tid]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..300 {
        let outcome = sampler
            .poll(Some(Duration::from_millis(100)), &mut |e| {
                if let Event::Sample(s) = &e {
                    seen.insert(s.tid);
                }
                events.push(e);
            })
            .unwrap();
        assert!(!outcome.target_exited);
        if wanted.iter().all(|t| seen.contains(t)) {
            return events;
        }
    }
    panic!("threads {wanted:?} not all sampled; saw {seen:?}");
}

/// Every thread of `pid` is neither stopped nor traced.
fn assert_untraced(pid: Pid) {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: u32 = entry
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let path = format!("/proc/{pid}/task/{tid}");
        let Ok(status) = std::fs::read_to_string(format!("{path}/status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        assert_eq!(field("TracerPid:"), "0", "thread {tid} still traced");
        let state = field("State:");
        assert!(
            !state.starts_with('t') && !state.starts_with('T'),
            "thread {tid} left in state {state}"
        );
    }
}

#[test]
fn attach_samples_every_thread_follows_new_ones_and_detaches() {
    let mut fixture = Fixture::start("fixture");
    let pid = fixture.pid;
    let mut sampler = PtraceSampler::attach(pid, &options(SampleMode::Cpu)).expect("attach");
    assert_eq!(sampler.target(), pid);
    assert!(sampler.description().starts_with("ptrace (cpu) at 999 Hz"));
    let events = poll_until_sampled(&mut sampler, &fixture.busy);
    assert!(events.iter().any(|e| matches!(e, Event::Mmap { .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Comm { name, .. } if name == "busy-0")));
    let sample = events
        .iter()
        .find_map(|e| match e {
            Event::Sample(s) => Some(s),
            _ => None,
        })
        .unwrap();
    let regs = sample.user_regs.expect("registers");
    let stack = sample.user_stack.as_ref().expect("stack copy");
    assert_eq!(stack.start, regs.sp());
    assert!(!stack.bytes.is_empty() && stack.bytes.len() <= 8192);
    assert!(sample.off_cpu.is_none());

    // A thread created while traced is followed (PTRACE_O_TRACECLONE). The
    // fixture stops at the clone until the sampler polls, so ask for the
    // thread from another thread while polling.
    let asking = std::thread::spawn(move || {
        let new = fixture.spawn_thread();
        (fixture, new)
    });
    let mut events = Vec::new();
    while !asking.is_finished() {
        sampler
            .poll(Some(Duration::from_millis(10)), &mut |e| events.push(e))
            .unwrap();
    }
    let (_fixture, new) = asking.join().unwrap();
    events.extend(poll_until_sampled(&mut sampler, &[new]));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Fork { tid, pid: p, .. } if *tid == new && *p == pid)));

    sampler.finish(&mut |_| {}).expect("finish");
    drop(sampler);
    assert_untraced(pid);
    assert_eq!(state_and_tracer(pid).1, 0);
}

#[test]
fn dropping_the_sampler_detaches_even_mid_recording() {
    let fixture = Fixture::start("fixture");
    let pid = fixture.pid;
    let mut sampler = PtraceSampler::attach(pid, &options(SampleMode::Wall)).expect("attach");
    poll_until_sampled(&mut sampler, &fixture.busy);
    drop(sampler); // no finish: the guard alone must detach
    assert_untraced(pid);
}

#[test]
fn a_panic_while_recording_detaches() {
    let fixture = Fixture::start("fixture");
    let pid = fixture.pid;
    let busy = fixture.busy.clone();
    let result = std::thread::spawn(move || {
        let mut sampler = PtraceSampler::attach(pid, &options(SampleMode::Cpu)).expect("attach");
        poll_until_sampled(&mut sampler, &busy);
        panic!("on purpose, with the sampler attached");
    })
    .join();
    assert!(result.is_err());
    assert_untraced(pid);
}

#[test]
fn a_launched_command_is_followed_through_fork_and_exec() {
    // The shell forks a subshell that execs `sh` again; both loop.
    let busy = "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done";
    let command = CommandSpec {
        program: "sh".into(),
        args: vec!["-c".into(), format!("sh -c '{busy}' & {busy}; wait").into()],
        stdout: Default::default(),
    };
    let (mut sampler, mut child) =
        PtraceSampler::launch(&command, &options(SampleMode::Cpu)).expect("launch");
    let pid = child.pid();
    let events = record_until_exit(&mut sampler);
    drop(sampler);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(child.wait().expect("second wait"), status);
    let pids: HashSet<Pid> = events
        .iter()
        .filter_map(|e| match e {
            Event::Sample(s) => Some(s.pid),
            _ => None,
        })
        .collect();
    assert!(pids.contains(&pid), "no samples of the command itself");
    assert!(
        pids.len() >= 2,
        "the forked shell was not sampled: {pids:?}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Comm { pid: p, name, exec: true, .. } if *p == pid && name == "sh"
    )));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Fork { ppid, pid: p, .. } if *ppid == pid && *p != pid)));
}

#[test]
fn missing_commands_and_processes_are_reported() {
    let command = CommandSpec {
        program: "no-such-command-xyz".into(),
        args: Vec::new(),
        stdout: Default::default(),
    };
    assert!(matches!(
        PtraceSampler::launch(&command, &SamplerOptions::default()),
        Err(SampleError::CommandNotFound(_))
    ));
    assert!(matches!(
        PtraceSampler::attach(Pid(u32::MAX / 2), &SamplerOptions::default()),
        Err(SampleError::NoSuchProcess(_))
    ));
}

/// The message of a refused attach to `pid`.
fn attach_error(pid: u32) -> String {
    match PtraceSampler::attach(Pid(pid), &SamplerOptions::default()) {
        Ok(_) => panic!("attached to {pid}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn zombies_and_traced_processes_are_named_as_such_not_as_a_permission_problem() {
    // A child that exited and is not reaped yet: a zombie.
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let zpid = zombie.id();
    while !std::fs::read_to_string(format!("/proc/{zpid}/stat"))
        .unwrap()
        .contains(") Z")
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let message = attach_error(zpid);
    zombie.wait().unwrap();
    assert!(
        message.contains(&format!("process {zpid} is a zombie")) && !message.contains("run stoke"),
        "{message}"
    );

    // A process this test already traces.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let spid = sleeper.id();
    nix::sys::ptrace::seize(
        nix::unistd::Pid::from_raw(spid as i32),
        nix::sys::ptrace::Options::empty(),
    )
    .unwrap();
    let message = attach_error(spid);
    // Killing a tracee ends the tracing too.
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let me = nix::unistd::gettid();
    assert!(
        message.contains(&format!("process {spid} is already traced by process {me}"))
            && !message.contains("run stoke"),
        "{message}"
    );
}
