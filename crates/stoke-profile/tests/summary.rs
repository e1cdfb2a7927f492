//! Terminal summaries.

mod common;

use common::{add, sample_profile};
use stoke_profile::{top_self, FrameKind, Profile, Thread};

fn top(profile: &Profile, n: usize) -> Vec<(String, u64)> {
    top_self(profile, n)
        .into_iter()
        .map(|f| (f.label(), f.count))
        .collect()
}

#[test]
fn leaf_frames_most_first() {
    let p = sample_profile();
    assert_eq!(
        top(&p, 4),
        vec![
            ("helper".into(), 50),
            ("do_syscall_64 [kernel]".into(), 20),
            ("<alloc::vec::Vec<[u8; 8]>>::push".into(), 10),
            ("compute".into(), 10),
        ],
        "compute is the leaf of two stacks (7 + 3); ties by name"
    );
    assert_eq!(top(&p, 100).len(), 5);
    assert!(top(&p, 0).is_empty());
    assert!(top(&Profile::default(), 5).is_empty());
}

#[test]
fn ties_by_name_and_threads_summed() {
    let mut p = Profile::default();
    let t1 = p.intern_thread(Thread {
        pid: 1,
        tid: 1,
        process_name: None,
        thread_name: None,
    });
    let t2 = p.intern_thread(Thread {
        pid: 1,
        tid: 2,
        process_name: None,
        thread_name: None,
    });
    add(
        &mut p,
        t1,
        &[("main", FrameKind::User), ("zeta", FrameKind::User)],
        4,
    );
    add(
        &mut p,
        t2,
        &[("main", FrameKind::User), ("alpha", FrameKind::User)],
        2,
    );
    add(
        &mut p,
        t1,
        &[("other", FrameKind::User), ("alpha", FrameKind::User)],
        2,
    );
    add(
        &mut p,
        t1,
        &[("main", FrameKind::User), ("beta", FrameKind::User)],
        1,
    );
    add(&mut p, t2, &[("main", FrameKind::User)], 1);
    assert_eq!(
        top(&p, 10),
        vec![
            ("alpha".into(), 4),
            ("zeta".into(), 4),
            ("beta".into(), 1),
            ("main".into(), 1)
        ]
    );
}
