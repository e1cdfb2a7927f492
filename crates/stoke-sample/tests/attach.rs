//! Attaching the perf sampler to running processes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use stoke_model::{MappingKind, Pid, Tid};
use stoke_sample::{Event, PerfSampler, SampleError, Sampler, SamplerOptions};

use common::{run_fixture_if_requested, state_and_tracer, Fixture};

/// The entry point of the fixture process (see `common`).
#[test]
fn fixture() {
    run_fixture_if_requested();
}

/// Polls until every tid in `wanted` has a sample (or gives up after many
/// polls, failing with what was seen). Returns every event.
fn poll_until_sampled(sampler: &mut PerfSampler, wanted: &[Tid]) -> Vec<Event> {
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

#[test]
fn every_thread_of_a_running_process_is_sampled() {
    let mut fixture = Fixture::start("fixture");
    let mut sampler = PerfSampler::attach(fixture.pid, &SamplerOptions::default()).unwrap();
    assert_eq!(sampler.target(), fixture.pid);
    let events = poll_until_sampled(&mut sampler, &fixture.busy);

    // The existing threads and mappings come first, from /proc.
    for (i, tid) in fixture.busy.iter().enumerate() {
        let name = format!("busy-{i}");
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Comm { tid: t, name: n, exec: false, .. } if t == tid && *n == name
        )));
    }
    let first_sample = events
        .iter()
        .position(|e| matches!(e, Event::Sample(_)))
        .unwrap();
    let vdso = events.iter().position(
        |e| matches!(e, Event::Mmap { mapping, .. } if mapping.kind == MappingKind::Vdso),
    );
    assert!(
        vdso.is_some_and(|v| v < first_sample),
        "vdso mapping before samples"
    );
    let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Mmap { mapping, .. } if mapping.kind == MappingKind::File(exe.clone()) && mapping.inode != 0
    )));

    // A thread created after attaching is followed by inheritance.
    let late = fixture.spawn_thread();
    poll_until_sampled(&mut sampler, &[late]);

    let mut rest = Vec::new();
    sampler.finish(&mut |e| rest.push(e)).unwrap();
    assert_eq!(sampler.lost(), 0);
    drop(sampler);
    let (state, tracer) = state_and_tracer(fixture.pid);
    assert!(!matches!(state, 'T' | 't' | 'Z' | 'X'), "state {state}");
    assert_eq!(tracer, 0);
}

#[test]
fn dropping_an_unfinished_sampler_leaves_the_target_running() {
    let fixture = Fixture::start("fixture");
    let mut sampler = PerfSampler::attach(fixture.pid, &SamplerOptions::default()).unwrap();
    poll_until_sampled(&mut sampler, &fixture.busy[..1]);
    drop(sampler);
    let (state, tracer) = state_and_tracer(fixture.pid);
    assert!(!matches!(state, 'T' | 't' | 'Z' | 'X'), "state {state}");
    assert_eq!(tracer, 0);
}

#[test]
fn unused_pids_are_no_such_process() {
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let unused = (1..pid_max)
        .rev()
        .map(Pid)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let err = PerfSampler::attach(unused, &SamplerOptions::default()).err();
    assert!(
        matches!(err, Some(SampleError::NoSuchProcess(p)) if p == unused),
        "{err:?}"
    );
}
