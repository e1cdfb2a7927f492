//! Reading profile files (folded, pprof or speedscope) for `report`,
//! `convert` and `diff`.

use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use stoke_profile::{Profile, ReadLimits};

/// Reads a profile from a file, or from stdin for `-`, as a stream (folded
/// input is never held whole) within stoke's [`ReadLimits`]. Malformed
/// folded lines are reported with the file name and line, truncated gzip or
/// protobuf data as such, input past a limit with the limit, and a profile
/// without samples is an error.
pub fn read(path: &Path) -> anyhow::Result<Profile> {
    let limits = ReadLimits::default();
    if path.as_os_str() == "-" {
        let mut stdin = std::io::stdin().lock();
        return Ok(stoke_profile::read_profile_from(
            &mut stdin, "<stdin>", &limits,
        )?);
    }
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut input = BufReader::with_capacity(64 << 10, file);
    Ok(stoke_profile::read_profile_from(
        &mut input,
        &path.display().to_string(),
        &limits,
    )?)
}
