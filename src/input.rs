//! Reading profile files (folded or pprof) for `report`, `convert` and `diff`.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use stoke_profile::Profile;

/// Reads a profile from a file, or from stdin for `-`. Malformed folded
/// lines are reported with the file name and line, truncated gzip or
/// protobuf data as such, and a profile without samples is an error.
pub fn read(path: &Path) -> anyhow::Result<Profile> {
    let (bytes, name) = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
        (bytes, "<stdin>".to_owned())
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        (bytes, path.display().to_string())
    };
    Ok(stoke_profile::read_profile(&bytes, &name)?)
}
