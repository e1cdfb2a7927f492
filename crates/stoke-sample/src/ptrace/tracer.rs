//! The traced threads: seizing, handling every kind of ptrace stop, and
//! detaching from all of them on drop.
//!
//! Rules kept everywhere:
//! - a thread is never left in a stop: every stop but the one the sampler
//!   asked for (and reads registers in) is resumed as soon as it is seen;
//! - a signal-delivery stop is resumed with its signal (never swallowed);
//! - a group-stop (SIGSTOP, SIGTSTP, …) is resumed with `PTRACE_LISTEN`, so
//!   the thread stays stopped as its user wanted;
//! - every wait uses `__WALL` and names the thread it waits for, so stoke
//!   never reaps a child that is not a traced thread.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use stoke_model::{Pid, Tid};

use super::capture::{restartable, SavedRegs};
use super::maps::MapsWatch;
use super::stat::{BlockedIn, StatFile};
use crate::sys::ptrace::{self as sys, WaitStatus};
use crate::{procfs, Event};

/// How long stoke spins waiting for an interrupted thread to stop before
/// leaving the stop to be collected later.
const SPIN: Duration = Duration::from_micros(50);
/// How often every traced process's task list is listed, whatever its
/// thread count says.
const RESCAN: Duration = Duration::from_millis(100);
/// How long detaching waits for one thread to stop.
const DETACH_TIMEOUT: Duration = Duration::from_secs(2);

/// One traced thread.
#[derive(Debug)]
pub(crate) struct Thread {
    /// Its process.
    pub(crate) pid: Pid,
    /// Its `stat` file.
    pub(crate) stat: StatFile,
    /// Its name as last seen.
    pub(crate) comm: Option<String>,
    /// In a group-stop (listening): stopped by a signal, not by stoke.
    pub(crate) group_stopped: bool,
    /// stoke asked it to stop and has not seen the stop yet.
    interrupt_pending: bool,
    /// Stopped for stoke (registers being read); resumed next.
    held: bool,
    /// What the sample stoke asked for is to record (the CPU it was on;
    /// in wall mode whether it was blocked), until its stop comes.
    pub(crate) request: Option<(u32, Option<bool>)>,
    /// Its last system call seen blocked, and the instruction pointer.
    pub(crate) last_syscall: Option<(u64, crate::Syscall)>,
    /// Where it was last stopped while blocked, with its registers then:
    /// while it stays blocked there it is sampled without a stop.
    pub(crate) blocked_site: Option<(BlockedIn, SavedRegs)>,
}

impl Thread {
    fn new(pid: Pid, tid: Tid) -> Thread {
        Thread {
            pid,
            stat: StatFile::open(pid, tid),
            comm: None,
            group_stopped: false,
            interrupt_pending: false,
            held: false,
            request: None,
            last_syscall: None,
            blocked_site: None,
        }
    }
}

/// What asking a thread to stop did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interrupt {
    /// It is stopped for stoke: take the sample, then [`Tracer::resume`].
    Stopped,
    /// It will stop when it next runs; [`Tracer::handle_pending`] says when.
    Pending,
    /// It is gone, or entered a group-stop instead.
    Failed,
}

/// What handling one wait status did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handled {
    /// The stop stoke asked for: the thread is stopped, its registers can
    /// be read; call [`Tracer::resume`] next.
    Interrupted,
    /// The thread entered a group-stop instead (it is listening).
    GroupStopped,
    /// The thread is gone.
    Gone,
    /// Some other stop, already resumed.
    Resumed,
}

/// The set of traced threads.
#[derive(Debug)]
pub(crate) struct Tracer {
    pub(crate) threads: BTreeMap<Tid, Thread>,
    /// The process whose end ends the recording.
    root: Pid,
    /// Whether the root process runs the program to profile (after its
    /// first exec, for a launched command).
    pub(crate) started: bool,
    /// Set when the root thread exited or was killed.
    pub(crate) root_exited: bool,
    /// For a launched command (stoke's own child): its raw wait status once
    /// stoke reaped it, shared with the [`crate::Child`] handle.
    reaped: Option<Arc<OnceLock<i32>>>,
    /// Events to hand out.
    pub(crate) events: Vec<Event>,
    /// The mappings last reported per process, re-read to notice changes.
    pub(crate) maps: MapsWatch,
    /// Threads and processes seen being born (found, forked, exec'd).
    pub(crate) births: u64,
    /// When every traced process's task list was last listed.
    last_rescan: Option<Instant>,
}

impl Tracer {
    /// An empty tracer of the process `root`.
    pub(crate) fn new(root: Pid, reaped: Option<Arc<OnceLock<i32>>>) -> Tracer {
        Tracer {
            threads: BTreeMap::new(),
            root,
            started: false,
            root_exited: false,
            reaped,
            events: Vec::new(),
            maps: MapsWatch::default(),
            births: 0,
            last_rescan: None,
        }
    }

    /// Seizes thread `tid` of `pid` (it keeps running) and adds it.
    pub(crate) fn seize(&mut self, pid: Pid, tid: Tid) -> io::Result<()> {
        sys::seize(tid.0 as libc::pid_t, sys::FOLLOW_ALL)?;
        self.threads.insert(tid, Thread::new(pid, tid));
        Ok(())
    }

    /// Seizes the threads of the traced processes that stoke does not know
    /// yet: threads are not followed through clone events (see
    /// [`sys::FOLLOW_ALL`]), so a process's `/proc/PID/task` is listed when
    /// its thread count (in its main thread's `stat`) says one is missing,
    /// and at least every [`RESCAN`]. Called at the start of each round, so
    /// a new thread is sampled from the round after its birth on.
    pub(crate) fn discover(&mut self, now: Instant) {
        let mut known: BTreeMap<Pid, u32> = BTreeMap::new();
        for thread in self.threads.values() {
            *known.entry(thread.pid).or_default() += 1;
        }
        let rescan = self
            .last_rescan
            .is_none_or(|at| now.duration_since(at) >= RESCAN);
        if rescan {
            self.last_rescan = Some(now);
        }
        for (pid, count) in known {
            let missing = self
                .threads
                .get_mut(&Tid(pid.0))
                .and_then(|t| t.stat.read())
                .is_none_or(|stat| stat.num_threads > count);
            if !(missing || rescan) {
                continue;
            }
            let Ok(tids) = procfs::threads(pid) else {
                continue;
            };
            for tid in tids {
                if self.threads.contains_key(&tid) {
                    continue;
                }
                // ESRCH: gone already; EPERM: exiting, or another tracer's.
                if sys::seize(tid.0 as libc::pid_t, sys::FOLLOW_ALL).is_err() {
                    continue;
                }
                let mut thread = Thread::new(pid, tid);
                self.births += 1;
                self.events.push(Event::Fork {
                    pid,
                    ppid: pid,
                    tid,
                    ptid: Tid(pid.0),
                });
                if let Some(stat) = thread.stat.read() {
                    thread.comm = Some(stat.comm.clone());
                    self.events.push(Event::Comm {
                        pid,
                        tid,
                        name: stat.comm,
                        exec: false,
                    });
                }
                self.threads.insert(tid, thread);
            }
        }
    }

    /// Handles every stop or exit already waiting, without blocking.
    /// Returns the threads that stopped for an interrupt stoke asked for
    /// earlier ([`Interrupt::Pending`]): they are held, and each needs its
    /// sample taken and [`Tracer::resume`].
    ///
    /// The kernel is asked which thread has a status waiting (one system
    /// call, see [`sys::peek_any`]), so the cost follows the stops, not the
    /// number of threads: a program with hundreds of threads gets its clone
    /// stops resumed promptly. Only when it names a thread stoke does not
    /// know (a new thread whose clone event is still queued, or a child
    /// that is not traced) is every known thread looked at in turn.
    pub(crate) fn handle_pending(&mut self) -> Vec<Tid> {
        let mut held = Vec::new();
        // A thread in a storm of stops must not keep stoke here forever.
        let mut budget = 4 * self.threads.len() + 64;
        while budget > 0 {
            budget -= 1;
            let tid = match sys::peek_any() {
                Ok(None) | Err(_) => return held,
                Ok(Some(raw)) => Tid(raw as u32),
            };
            if !self.threads.contains_key(&tid) {
                break;
            }
            match sys::wait(tid.0 as libc::pid_t, true) {
                Ok(Some((_, status))) => {
                    if self.handle(tid, status) == Handled::Interrupted {
                        held.push(tid);
                    }
                }
                // Reported by the peek, yet gone: look at every thread.
                Ok(None) | Err(_) => break,
            }
        }
        self.scan_pending(&mut held);
        held
    }

    /// [`Tracer::handle_pending`] the slow way: a `waitpid` for every known
    /// thread (and the threads found meanwhile).
    fn scan_pending(&mut self, held: &mut Vec<Tid>) {
        let mut seen: BTreeSet<Tid> = held.iter().copied().collect();
        let mut queue: Vec<Tid> = self.threads.keys().copied().collect();
        let mut births = self.births;
        while let Some(tid) = queue.pop() {
            if !seen.insert(tid) || !self.threads.contains_key(&tid) {
                continue;
            }
            // Several statuses may be queued for one thread.
            while let Ok(Some((_, status))) = sys::wait(tid.0 as libc::pid_t, true) {
                match self.handle(tid, status) {
                    Handled::Interrupted => {
                        held.push(tid);
                        break;
                    }
                    Handled::Gone => break,
                    Handled::GroupStopped | Handled::Resumed => {}
                }
            }
            // New threads found meanwhile are looked at too.
            if self.births != births {
                births = self.births;
                queue.extend(self.threads.keys().filter(|t| !seen.contains(t)));
            }
        }
    }

    /// Whether some thread was asked to stop and has not yet.
    pub(crate) fn interrupts_pending(&self) -> bool {
        self.threads.values().any(|t| t.interrupt_pending)
    }

    /// Asks `tid` to stop and waits a moment (at most [`SPIN`]) for it,
    /// handling whatever else it reports first.
    ///
    /// A thread on a CPU stops within microseconds (an inter-processor
    /// interrupt). One waiting for a CPU on a busy machine, or in
    /// uninterruptible sleep, stops only when it next runs: stoke does not
    /// wait for that (it would sample one thread per time slice); the stop
    /// is collected later by [`Tracer::handle_pending`]. Every wait is
    /// WNOHANG: a blocking wait could hang on a group leader that has just
    /// exited (its exit is reported only once its whole group has).
    pub(crate) fn interrupt(&mut self, tid: Tid) -> Interrupt {
        let Some(thread) = self.threads.get_mut(&tid) else {
            return Interrupt::Failed;
        };
        if thread.interrupt_pending {
            return Interrupt::Pending;
        }
        if sys::interrupt(tid.0 as libc::pid_t).is_err() {
            // Gone (its exit is waiting to be seen) or not traced.
            return Interrupt::Failed;
        }
        thread.interrupt_pending = true;
        let started = Instant::now();
        loop {
            match sys::wait(tid.0 as libc::pid_t, true) {
                Ok(Some((_, status))) => match self.handle(tid, status) {
                    Handled::Interrupted => return Interrupt::Stopped,
                    Handled::Gone | Handled::GroupStopped => return Interrupt::Failed,
                    Handled::Resumed => {}
                },
                Ok(None) if started.elapsed() < SPIN => std::hint::spin_loop(),
                Ok(None) => return Interrupt::Pending,
                Err(_) => {
                    // ECHILD: not (or no longer) a traced thread of ours.
                    self.remove(tid);
                    return Interrupt::Failed;
                }
            }
        }
    }

    /// Resumes a thread stopped for stoke (back into its group-stop if it
    /// was in one).
    pub(crate) fn resume(&mut self, tid: Tid) {
        let Some(thread) = self.threads.get_mut(&tid) else {
            return;
        };
        thread.held = false;
        let listening = thread.group_stopped;
        let raw = tid.0 as libc::pid_t;
        // An error means the thread died meanwhile (SIGKILL): its exit is
        // then waiting to be seen, and nothing is left to resume.
        let _ = if listening {
            sys::listen(raw)
        } else {
            sys::cont(raw, 0)
        };
    }

    /// Handles one wait status of `tid`: resumes every stop but an
    /// interrupt stoke asked for, and turns what it learns into events.
    pub(crate) fn handle(&mut self, tid: Tid, status: i32) -> Handled {
        let raw = tid.0 as libc::pid_t;
        match WaitStatus::from_raw(status) {
            WaitStatus::Exited(_) | WaitStatus::Killed(_) => {
                self.exited(tid, status);
                Handled::Gone
            }
            WaitStatus::Other => Handled::Resumed,
            WaitStatus::Stopped { signal, event } => match event {
                0 => {
                    // A signal-delivery stop: deliver it.
                    let _ = sys::cont(raw, signal);
                    Handled::Resumed
                }
                libc::PTRACE_EVENT_STOP => self.event_stop(tid, signal),
                libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK => {
                    self.interrupt_absorbed(tid);
                    if let Ok(new) = sys::event_message(raw) {
                        self.born(tid, Tid(new as u32), event);
                    }
                    let _ = sys::cont(raw, 0);
                    Handled::Resumed
                }
                libc::PTRACE_EVENT_EXEC => {
                    self.interrupt_absorbed(tid);
                    let former = sys::event_message(raw).map(|t| Tid(t as u32)).ok();
                    self.exec(tid, former);
                    let _ = sys::cont(raw, 0);
                    Handled::Resumed
                }
                _ => {
                    self.interrupt_absorbed(tid);
                    let _ = sys::cont(raw, 0);
                    Handled::Resumed
                }
            },
        }
    }

    /// An event stop (fork, clone, exec, …) of a thread stoke had asked to
    /// stop: the kernel counts it as the stop the interrupt asked for, and
    /// no `PTRACE_EVENT_STOP` follows. The interrupt is over and its sample
    /// skipped; without this the thread would wait for that stop forever and
    /// never be sampled again. (Should the stop come after all, it is resumed
    /// like any stop stoke did not ask for.)
    fn interrupt_absorbed(&mut self, tid: Tid) {
        if let Some(thread) = self.threads.get_mut(&tid) {
            if std::mem::replace(&mut thread.interrupt_pending, false) {
                thread.request = None;
            }
        }
    }

    /// A `PTRACE_EVENT_STOP`: stoke's interrupt, a new thread's first stop,
    /// a SIGCONT re-trap (all with SIGTRAP) or a group-stop (a stop signal).
    fn event_stop(&mut self, tid: Tid, signal: i32) -> Handled {
        let raw = tid.0 as libc::pid_t;
        let Some(thread) = self.threads.get_mut(&tid) else {
            let _ = sys::cont(raw, 0);
            return Handled::Resumed;
        };
        let pending = std::mem::replace(&mut thread.interrupt_pending, false);
        if is_stop_signal(signal) {
            thread.group_stopped = true;
            thread.request = None;
            let _ = sys::listen(raw);
            return Handled::GroupStopped;
        }
        thread.group_stopped = false;
        if pending {
            thread.held = true;
            return Handled::Interrupted;
        }
        keep_restartable(raw);
        let _ = sys::cont(raw, 0);
        Handled::Resumed
    }

    /// A thread or process was created by `parent`.
    /// `event` is the `PTRACE_EVENT_*` that reported it: a fork or vfork
    /// makes a process (its pid is its tid), a clone usually a thread.
    fn born(&mut self, parent: Tid, tid: Tid, event: i32) {
        let Some(ppid) = self.threads.get(&parent).map(|t| t.pid) else {
            return;
        };
        self.births += 1;
        let pid = if event == libc::PTRACE_EVENT_CLONE {
            thread_group(tid).unwrap_or(ppid)
        } else {
            Pid(tid.0)
        };
        self.threads
            .entry(tid)
            .or_insert_with(|| Thread::new(pid, tid));
        self.events.push(Event::Fork {
            pid,
            ppid,
            tid,
            ptid: parent,
        });
    }

    /// `tid` exec'd (it was `former` before, if another thread exec'd).
    fn exec(&mut self, tid: Tid, former: Option<Tid>) {
        self.births += 1;
        if let Some(former) = former.filter(|&f| f != tid) {
            if let Some(thread) = self.threads.remove(&former) {
                self.threads.entry(tid).or_insert(thread);
            }
        }
        let pid = Pid(tid.0);
        // The process's other threads are gone or going; they stay in the
        // table until their exits are collected (a traced thread that
        // exits is reaped by its tracer, else it lingers as a zombie).
        let thread = self
            .threads
            .entry(tid)
            .or_insert_with(|| Thread::new(pid, tid));
        thread.pid = pid;
        thread.stat = StatFile::open(pid, tid);
        let name = procfs::thread_name(pid, tid).unwrap_or_default();
        thread.comm = Some(name.clone());
        self.events.push(Event::Comm {
            pid,
            tid,
            name,
            exec: true,
        });
        self.push_mappings(pid);
        if pid == self.root {
            self.started = true;
        }
    }

    /// Queues an `Mmap` event for every executable mapping of `pid`.
    pub(crate) fn push_mappings(&mut self, pid: Pid) {
        let mappings = procfs::executable_mappings(pid).unwrap_or_default();
        self.events
            .extend(mappings.iter().map(|mapping| Event::Mmap {
                pid,
                tid: Tid(pid.0),
                mapping: mapping.clone(),
            }));
        self.maps.reported(pid, mappings);
    }

    fn exited(&mut self, tid: Tid, status: i32) {
        if tid.0 == self.root.0 {
            self.root_exited = true;
            if let Some(cell) = &self.reaped {
                // Only stoke's own child is reaped by this wait.
                let _ = cell.set(status);
            }
        }
        if let Some(thread) = self.threads.remove(&tid) {
            self.events.push(Event::Exit {
                pid: thread.pid,
                tid,
            });
        }
    }

    fn remove(&mut self, tid: Tid) {
        if let Some(thread) = self.threads.remove(&tid) {
            self.events.push(Event::Exit {
                pid: thread.pid,
                tid,
            });
        }
    }

    /// Detaches from every thread: each is stopped, then released with the
    /// signal of a pending signal-delivery stop (none otherwise). Threads
    /// that show up meanwhile (clone events) are detached too. Afterwards no
    /// thread is traced or stopped by stoke.
    pub(crate) fn detach_all(&mut self) {
        while let Some((&tid, _)) = self.threads.iter().next() {
            self.detach(tid);
            self.threads.remove(&tid);
        }
    }

    fn detach(&mut self, tid: Tid) {
        let raw = tid.0 as libc::pid_t;
        let (pending, held) = self
            .threads
            .get(&tid)
            .map_or((false, false), |t| (t.interrupt_pending, t.held));
        if held {
            // Stopped for stoke when a panic unwound: release it as it is.
            let _ = sys::detach(raw, 0);
            return;
        }
        if !pending && sys::interrupt(raw).is_err() {
            // Not traced any more, or dead: a queued exit is collected
            // below if there is one.
            if let Ok(Some((_, status))) = sys::wait(raw, true) {
                self.detach_stopped(tid, status);
            }
            return;
        }
        let started = Instant::now();
        loop {
            match sys::wait(raw, true) {
                Ok(Some((_, status))) => {
                    if self.detach_stopped(tid, status) {
                        return;
                    }
                }
                Ok(None) if started.elapsed() < DETACH_TIMEOUT => {
                    std::thread::sleep(Duration::from_micros(50));
                }
                // Never stopped (a long uninterruptible sleep): the kernel
                // detaches it when stoke exits.
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Releases a thread in the stop `status`; returns whether it is done
    /// (detached or dead).
    fn detach_stopped(&mut self, tid: Tid, status: i32) -> bool {
        let raw = tid.0 as libc::pid_t;
        match WaitStatus::from_raw(status) {
            WaitStatus::Exited(_) | WaitStatus::Killed(_) => {
                self.exited(tid, status);
                true
            }
            WaitStatus::Other => false,
            WaitStatus::Stopped { signal, event } => {
                match event {
                    0 => {
                        let _ = sys::detach(raw, signal);
                    }
                    libc::PTRACE_EVENT_CLONE
                    | libc::PTRACE_EVENT_FORK
                    | libc::PTRACE_EVENT_VFORK => {
                        if let Ok(new) = sys::event_message(raw) {
                            self.born(tid, Tid(new as u32), event);
                        }
                        let _ = sys::detach(raw, 0);
                    }
                    libc::PTRACE_EVENT_STOP if !is_stop_signal(signal) => {
                        // Our interrupt (or a first stop): a call it cut
                        // short restarts.
                        keep_restartable(raw);
                        let _ = sys::detach(raw, 0);
                    }
                    _ => {
                        // An exec or a group-stop (which the thread stays
                        // in).
                        let _ = sys::detach(raw, 0);
                    }
                }
                true
            }
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// Makes a system call that an interrupt stop cut short restart when the
/// stopped thread `raw` resumes (see [`restartable`]).
pub(crate) fn keep_restartable(raw: libc::pid_t) {
    if let Some(regs) = sys::registers(raw).ok().as_ref().and_then(restartable) {
        let _ = sys::set_registers(raw, &regs);
    }
}

/// SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU: the signals of a group-stop.
fn is_stop_signal(signal: i32) -> bool {
    matches!(
        signal,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// The process of a thread (`Tgid:` of `/proc/TID/status`).
fn thread_group(tid: Tid) -> Option<Pid> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Tgid:"))?;
    line.trim().parse().ok().map(Pid)
}
