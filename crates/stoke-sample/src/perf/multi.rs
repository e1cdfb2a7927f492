//! Several attached processes under per-task events: one
//! [`PerfSampler`] each, polled in turn. Used for `-p 1,2,3` where per-CPU
//! events are refused (an unprivileged user's own processes).

use std::time::Duration;

use stoke_model::Pid;

use super::sampler::PerfSampler;
use crate::{Coverage, Event, PollOutcome, SampleError, Sampler, SamplerOptions};

/// Per-task samplers of several processes; recording ends when all exited.
pub(crate) struct MultiSampler {
    samplers: Vec<(PerfSampler, bool)>,
}

impl MultiSampler {
    /// Attaches to every pid in `pids` (all or nothing).
    pub(crate) fn attach(pids: &[Pid], options: &SamplerOptions) -> Result<Self, SampleError> {
        let samplers = pids
            .iter()
            .map(|&pid| PerfSampler::attach(pid, options).map(|s| (s, false)))
            .collect::<Result<_, _>>()?;
        Ok(MultiSampler { samplers })
    }
}

impl Sampler for MultiSampler {
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        sink: &mut dyn FnMut(Event),
    ) -> Result<PollOutcome, SampleError> {
        let live = self
            .samplers
            .iter()
            .filter(|(_, gone)| !gone)
            .count()
            .max(1);
        // Each live sampler waits its share of the timeout.
        let share = timeout.map(|t| t / live as u32);
        for (sampler, gone) in &mut self.samplers {
            let wait = match gone {
                true => Some(Duration::ZERO),
                false => share.or(Some(Duration::from_millis(100))),
            };
            if sampler.poll(wait, sink)?.target_exited {
                *gone = true;
            }
        }
        Ok(PollOutcome {
            target_exited: self.samplers.iter().all(|(_, gone)| *gone),
        })
    }

    fn finish(&mut self, sink: &mut dyn FnMut(Event)) -> Result<(), SampleError> {
        let mut result = Ok(());
        for (sampler, _) in &mut self.samplers {
            if let Err(err) = sampler.finish(sink) {
                result = result.and(Err(err));
            }
        }
        result
    }

    fn description(&self) -> String {
        let first = self.samplers.first().map(|(s, _)| s.description());
        format!(
            "{}, per-task events on each process",
            first.unwrap_or_default()
        )
    }

    fn event(&self) -> String {
        self.samplers
            .first()
            .map(|(s, _)| s.event())
            .unwrap_or_default()
    }

    fn target(&self) -> Pid {
        self.samplers
            .first()
            .map(|(s, _)| s.target())
            .unwrap_or_default()
    }

    fn coverage(&self) -> Coverage {
        let mut coverage = self
            .samplers
            .first()
            .map(|(s, _)| s.coverage())
            .unwrap_or_default();
        coverage.cpu_time = self
            .samplers
            .iter()
            .try_fold(Duration::ZERO, |sum, (s, _)| {
                Some(sum + s.coverage().cpu_time?)
            });
        coverage
    }
}
