//! Comparing two profiles: a differential flame graph and the change of
//! each function's self share, with a test that tells a real change from
//! sampling noise.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;

use crate::folded::folded_stacks;
use crate::stats::normal_quantile;
use crate::svg::{render, thousands};
use crate::{Profile, SvgError, SvgOptions};

/// Writes a differential flame graph: frames are as wide as in `after`,
/// red where they grew and blue where they shrank relative to `before`,
/// the deeper the colour the larger the change.
///
/// `before` is first scaled to the same total as `after`, so a longer or
/// shorter recording does not read as growth or shrinkage everywhere: a
/// stack's colour says how its *share* changed. Stacks only in `before` have
/// no width and do not show. Title: [`SvgOptions::title`], else `stoke
/// diff`; the subtitle gives both totals.
///
/// # Errors
/// [`SvgError::Empty`] when either profile has no samples;
/// [`SvgError::Render`] when writing fails.
pub fn write_diff_svg(
    before: &Profile,
    after: &Profile,
    options: &SvgOptions,
    out: &mut dyn io::Write,
) -> Result<(), SvgError> {
    if before.is_empty() || after.is_empty() {
        return Err(SvgError::Empty);
    }
    let (nb, na) = (before.total_samples(), after.total_samples());
    let old = folded_stacks(before, options.per_thread);
    let new = folded_stacks(after, options.per_thread);
    let scale = na as f64 / nb as f64;
    let stacks: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let lines: Vec<String> = stacks
        .into_iter()
        .map(|stack| {
            let b = old
                .get(stack)
                .map_or(0, |&c| (c as f64 * scale).round() as u64);
            let a = new.get(stack).copied().unwrap_or(0);
            format!("{stack} {b} {a}")
        })
        .collect();
    let title = options
        .title
        .clone()
        .unwrap_or_else(|| "stoke diff".to_owned());
    let subtitle = format!(
        "red grew, blue shrank: {} samples after, {} before (scaled to {})",
        thousands(na),
        thousands(nb),
        thousands(na)
    );
    render(&lines, title, subtitle, options, out)
}

/// How one function's self share changed.
#[derive(Clone, Debug, PartialEq)]
pub struct ShareChange {
    /// The function (leaf frame) name.
    pub name: String,
    /// Its self samples before.
    pub before_samples: u64,
    /// Its self samples after.
    pub after_samples: u64,
    /// Its share of all samples before, in percent.
    pub before_percent: f64,
    /// Its share of all samples after, in percent.
    pub after_percent: f64,
    /// `after_percent - before_percent`, in percentage points.
    pub change_points: f64,
    /// The lower bound of the one-sided confidence interval of the change,
    /// in points (see [`compare_self_shares`]).
    pub lower_bound_points: f64,
    /// The upper bound of the one-sided confidence interval of the change
    /// (for shrinkage), in points.
    pub upper_bound_points: f64,
}

impl ShareChange {
    /// Whether the share grew beyond sampling noise (the lower bound is
    /// above 0).
    pub fn grew_significantly(&self) -> bool {
        self.lower_bound_points > 0.0
    }

    /// Whether the share shrank beyond sampling noise.
    pub fn shrank_significantly(&self) -> bool {
        self.upper_bound_points < 0.0
    }
}

/// Every function's self-share change between two profiles.
#[derive(Clone, Debug, PartialEq)]
pub struct ShareComparison {
    /// Samples in `before`.
    pub before_total: u64,
    /// Samples in `after`.
    pub after_total: u64,
    /// The confidence of each interval after the Bonferroni correction is
    /// applied (`1 - (1 - confidence) / functions`).
    pub per_function_confidence: f64,
    /// The z value of the one-sided bounds.
    pub z: f64,
    /// Every function with self samples in either profile, largest
    /// absolute change first (ties by name).
    pub changes: Vec<ShareChange>,
}

impl ShareComparison {
    /// Functions whose self share grew by more than `points` percentage
    /// points *and* beyond sampling noise, largest growth first.
    pub fn regressions(&self, points: f64) -> Vec<&ShareChange> {
        let mut grew: Vec<&ShareChange> = self
            .changes
            .iter()
            .filter(|c| c.change_points > points && c.grew_significantly())
            .collect();
        grew.sort_by(|a, b| b.change_points.total_cmp(&a.change_points));
        grew
    }
}

fn self_counts(profile: &Profile) -> HashMap<&str, u64> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for (_, stack, count) in profile.samples() {
        let name = profile.frame(profile.stack_frame(stack)).name.as_str();
        *counts.entry(name).or_default() += count;
    }
    counts
}

/// Compares each function's self share (self samples / all samples) before
/// and after, with a confidence bound on each change.
///
/// Each sample is treated as a draw that lands in the function with
/// probability p, so a self count is binomial(n, p). The change
/// p_after − p_before gets a two-proportion interval with the
/// Agresti–Caffo adjustment (one success and one failure added to each
/// side, which keeps the interval honest for functions with few or no
/// samples): p̃ = (x + 1) / (n + 2), se = √(p̃₁(1−p̃₁)/(n₁+2) + p̃₂(1−p̃₂)/(n₂+2)),
/// bounds (p̃₂ − p̃₁) ∓ z·se. With m functions compared, z is the
/// one-sided normal quantile of `1 − (1 − confidence)/m` (Bonferroni), so
/// the chance that *any* function is flagged by noise alone is at most
/// `1 − confidence`.
///
/// # Panics
/// If `confidence` is not between 0 and 1.
pub fn compare_self_shares(before: &Profile, after: &Profile, confidence: f64) -> ShareComparison {
    assert!(
        confidence > 0.0 && confidence < 1.0,
        "confidence {confidence}"
    );
    let (cb, ca) = (self_counts(before), self_counts(after));
    let (nb, na) = (before.total_samples(), after.total_samples());
    let names: BTreeMap<&str, (u64, u64)> = cb
        .keys()
        .chain(ca.keys())
        .map(|&n| {
            (
                n,
                (
                    cb.get(n).copied().unwrap_or(0),
                    ca.get(n).copied().unwrap_or(0),
                ),
            )
        })
        .collect();
    let m = names.len().max(1) as f64;
    let per_function_confidence = 1.0 - (1.0 - confidence) / m;
    let z = normal_quantile(per_function_confidence);
    let share = |x: u64, n: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    let mut changes: Vec<ShareChange> = names
        .into_iter()
        .map(|(name, (xb, xa))| {
            let (pb, pa) = (share(xb, nb), share(xa, na));
            let adj = |x: u64, n: u64| (x as f64 + 1.0) / (n as f64 + 2.0);
            let (qb, qa) = (adj(xb, nb), adj(xa, na));
            let se =
                (qb * (1.0 - qb) / (nb as f64 + 2.0) + qa * (1.0 - qa) / (na as f64 + 2.0)).sqrt();
            let centre = qa - qb;
            ShareChange {
                name: name.to_owned(),
                before_samples: xb,
                after_samples: xa,
                before_percent: pb * 100.0,
                after_percent: pa * 100.0,
                change_points: (pa - pb) * 100.0,
                lower_bound_points: (centre - z * se) * 100.0,
                upper_bound_points: (centre + z * se) * 100.0,
            }
        })
        .collect();
    changes.sort_by(|a, b| {
        b.change_points
            .abs()
            .total_cmp(&a.change_points.abs())
            .then_with(|| a.name.cmp(&b.name))
    });
    ShareComparison {
        before_total: nb,
        after_total: na,
        per_function_confidence,
        z,
        changes,
    }
}

/// Writes the `top` functions whose self share changed most: shares before
/// and after, the change in points with its confidence bound, and `grew` or
/// `shrank` where the change is beyond sampling noise.
///
/// # Errors
/// When writing to `out` fails.
pub fn write_share_table(
    comparison: &ShareComparison,
    top: usize,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    writeln!(
        out,
        "{:>8} {:>8} {:>8} {:>17}  {:<6}  function",
        "before", "after", "change", "bounds (points)", ""
    )?;
    for c in comparison.changes.iter().take(top) {
        let verdict = if c.grew_significantly() {
            "grew"
        } else if c.shrank_significantly() {
            "shrank"
        } else {
            "noise"
        };
        let name: String = c
            .name
            .chars()
            .map(|ch| if ch.is_control() { ' ' } else { ch })
            .collect();
        writeln!(
            out,
            "{:>7.2}% {:>7.2}% {:>+8.2} {:>+8.2}..{:<+7.2}  {:<6}  {name}",
            c.before_percent,
            c.after_percent,
            c.change_points,
            c.lower_bound_points,
            c.upper_bound_points,
            verdict
        )?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frame, FrameKind, Metadata, Thread};

    fn profile(split: &[(&str, u64)]) -> Profile {
        let mut p = Profile::new(Metadata::default());
        let t = p.intern_thread(Thread {
            pid: 1,
            tid: 1,
            process_name: None,
            thread_name: None,
        });
        let main = p.intern_frame(Frame::new("main", FrameKind::User));
        for &(name, count) in split {
            let f = p.intern_frame(Frame::new(name, FrameKind::User));
            let s = p.intern_stack(&[main, f]).unwrap();
            p.add_sample(t, s, count);
        }
        p
    }

    #[test]
    fn noise_is_not_a_regression_but_a_real_shift_is() {
        let before = profile(&[("hot", 1875), ("cold", 625)]);
        let same = profile(&[("hot", 1840), ("cold", 660)]);
        let worse = profile(&[("hot", 2140), ("cold", 360)]);
        let c = compare_self_shares(&before, &same, 0.999);
        assert!(c.regressions(0.5).is_empty(), "{c:?}");
        let c = compare_self_shares(&before, &worse, 0.999);
        let grew = c.regressions(5.0);
        assert_eq!(grew.len(), 1);
        assert_eq!(grew[0].name, "hot");
        assert!((grew[0].change_points - 10.6).abs() < 0.01);
        assert!(c.regressions(11.0).is_empty(), "threshold in points");
        let cold = c.changes.iter().find(|c| c.name == "cold").unwrap();
        assert!(cold.shrank_significantly());
    }

    #[test]
    fn a_big_change_on_few_samples_is_noise() {
        let before = profile(&[("a", 3), ("b", 7)]);
        let after = profile(&[("a", 6), ("b", 4)]);
        let c = compare_self_shares(&before, &after, 0.999);
        assert!(c.changes[0].change_points > 25.0);
        assert!(c.regressions(5.0).is_empty(), "{c:?}");
    }
}
