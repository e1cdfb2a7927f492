//! Cost of one unwind on real stacks. Not a test of speed (no timing is
//! asserted); run it by hand to measure:
//! `cargo test --release -p stoke-unwind --test bench -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::Modules;
use stoke_unwind::{UnwindMode, Unwinder};

#[test]
#[ignore = "measurement, run by hand"]
fn unwind_cost_per_sample() {
    let binary = common::build_fixture("unwind_fixture", "bench", &["-O2", "-fomit-frame-pointer"]);
    let out = common::scratch_dir().join("dumps-bench");
    common::run_fixture(&binary, &out);
    for tag in ["qsort", "recursion"] {
        let dump = common::read_dump(&out, tag);
        let modules = Modules::from_maps(&dump.maps);
        let regs = common::registers(&dump.regs);
        let mut unwinder = Unwinder::new();
        let mut frames = Vec::with_capacity(1024);
        let rounds = 20_000;
        let started = Instant::now();
        for _ in 0..rounds {
            frames.clear();
            unwinder.unwind(
                &regs,
                UnwindMode::Dwarf,
                &mut |addr| modules.module_ref(addr),
                &mut |addr| dump.stack.read(addr),
                1024,
                &mut frames,
            );
        }
        let per_unwind = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        println!(
            "{tag}: {} frames, {per_unwind:.2} µs per unwind, {:.3} µs per frame",
            frames.len(),
            per_unwind / frames.len() as f64
        );
    }
}
