//! Naming what a blocked thread waited in, from the frames of its stack.
//!
//! With kernel frames, the system call is the kernel's entry function for
//! it (`__x64_sys_read` or `ksys_read` → `read`), followed by the kernel
//! function that blocked: the innermost kernel frame that is not the
//! scheduler's (`schedule`, `schedule_timeout`, …), as `read in pipe_read`.
//! A wait outside a system call (a page fault) is named by that kernel
//! function alone. Without kernel frames, the user-space leaf names it: the
//! C library's wrapper (`__GI___libc_read` → `read`).

use stoke_profile::{FrameId, FrameKind, Profile};

use crate::stack::BLOCKED_PREFIX;

/// Prefixes of the kernel's system-call entry functions.
const SYSCALL_ENTRY: [&str; 6] = [
    "__x64_sys_",
    "__ia32_sys_",
    "__se_sys_",
    "__do_sys_",
    "ksys_",
    "__sys_",
];

/// Prefixes and suffixes of C library wrappers around the system call.
const WRAPPER_PREFIXES: [&str; 5] = ["__GI___libc_", "__GI___", "__libc_", "__GI_", "__"];

/// `[blocked: NAME]` for a stack a thread blocked with, given its frames
/// root first.
pub(crate) fn blocked_name(profile: &Profile, root_first: &[FrameId]) -> String {
    let name = wait_name(profile, root_first).unwrap_or_else(|| "unknown".to_string());
    format!("{BLOCKED_PREFIX}{name}]")
}

fn wait_name(profile: &Profile, root_first: &[FrameId]) -> Option<String> {
    let frames: Vec<_> = root_first.iter().map(|&id| profile.frame(id)).collect();
    let kernel = || frames.iter().filter(|f| f.kind == FrameKind::Kernel);
    let call = kernel().find_map(|f| syscall_of(&f.name));
    let waiter = kernel()
        .rev()
        .find(|f| !is_scheduler(&f.name))
        .map(|f| f.name.as_str())
        .filter(|n| !is_entry(n));
    match (call, waiter) {
        (Some(call), Some(waiter)) => return Some(format!("{call} in {waiter}")),
        (Some(call), None) => return Some(call.to_string()),
        (None, Some(waiter)) => return Some(waiter.to_string()),
        (None, None) => {}
    }
    let user = frames
        .iter()
        .rev()
        .find(|f| matches!(f.kind, FrameKind::User | FrameKind::Inline))?;
    Some(wrapped_call(&user.name))
}

/// The system call a kernel entry function is for (`__x64_sys_read` →
/// `read`).
fn syscall_of(name: &str) -> Option<&str> {
    SYSCALL_ENTRY
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .filter(|n| !n.is_empty())
}

/// Whether a kernel function is system-call or exception entry, which
/// names no wait of its own.
fn is_entry(name: &str) -> bool {
    syscall_of(name).is_some()
        || name.starts_with("entry_")
        || name.starts_with("do_syscall_")
        || name.starts_with("asm_")
        || name.starts_with("x64_sys_call")
}

/// Whether a kernel function is part of switching, not of what waited.
fn is_scheduler(name: &str) -> bool {
    name.contains("schedule")
        || name.contains("cond_resched")
        || name.starts_with("__switch_to")
        || name.starts_with("finish_task_switch")
        || name.starts_with("perf_")
        || name.starts_with("__perf_")
}

/// The system call a C library wrapper makes: its name without the
/// library's internal prefixes, version or `_nocancel` suffix.
fn wrapped_call(name: &str) -> String {
    let name = name.split('@').next().unwrap_or(name);
    let name = WRAPPER_PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    let name = name.strip_suffix("_nocancel").unwrap_or(name);
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoke_profile::{Frame, Metadata};

    fn name(frames: &[(&str, FrameKind)]) -> String {
        let mut p = Profile::new(Metadata::default());
        let ids: Vec<FrameId> = frames
            .iter()
            .map(|(n, k)| p.intern_frame(Frame::new(*n, *k)))
            .collect();
        blocked_name(&p, &ids)
    }

    #[test]
    fn kernel_entry_functions_name_the_system_call() {
        use FrameKind::*;
        let stack = [
            ("main", User),
            ("__GI___libc_read", User),
            ("entry_SYSCALL_64_after_hwframe", Kernel),
            ("do_syscall_64", Kernel),
            ("ksys_read", Kernel),
            ("pipe_read", Kernel),
            ("schedule", Kernel),
            ("__schedule", Kernel),
        ];
        assert_eq!(name(&stack), "[blocked: read in pipe_read]");
        let sleep = [
            ("main", User),
            ("entry_SYSCALL_64_after_hwframe", Kernel),
            ("do_syscall_64", Kernel),
            ("__x64_sys_clock_nanosleep", Kernel),
            ("common_nsleep", Kernel),
            ("hrtimer_nanosleep", Kernel),
            ("do_nanosleep", Kernel),
            ("schedule", Kernel),
            ("__schedule", Kernel),
        ];
        assert_eq!(name(&sleep), "[blocked: clock_nanosleep in do_nanosleep]");
        let pause = [
            ("main", User),
            ("do_syscall_64", Kernel),
            ("__x64_sys_pause", Kernel),
            ("schedule", Kernel),
        ];
        assert_eq!(name(&pause), "[blocked: pause]");
        let lock = [
            ("pthread_cond_wait", User),
            ("do_syscall_64", Kernel),
            ("__x64_sys_futex", Kernel),
            ("do_futex", Kernel),
            ("futex_wait", Kernel),
            ("__futex_wait", Kernel),
            ("futex_do_wait", Kernel),
            ("schedule", Kernel),
        ];
        assert_eq!(name(&lock), "[blocked: futex in futex_do_wait]");
        let fault = [
            ("main", User),
            ("asm_exc_page_fault", Kernel),
            ("folio_wait_bit_common", Kernel),
            ("io_schedule", Kernel),
            ("__schedule", Kernel),
        ];
        assert_eq!(name(&fault), "[blocked: folio_wait_bit_common]");
    }

    #[test]
    fn without_kernel_frames_the_wrapper_names_it() {
        use FrameKind::*;
        assert_eq!(
            name(&[("main", User), ("__GI___clock_nanosleep", User)]),
            "[blocked: clock_nanosleep]"
        );
        assert_eq!(
            name(&[("main", User), ("read@GLIBC_2.2.5", User)]),
            "[blocked: read]"
        );
        assert_eq!(name(&[]), "[blocked: unknown]");
    }
}
