//! The online CPUs, one ring buffer each.

use crate::{Call, SampleError};

/// The online CPU numbers (`/sys/devices/system/cpu/online`).
pub(crate) fn online_cpus() -> Result<Vec<u32>, SampleError> {
    let path = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(path).map_err(|source| SampleError::Sys {
        call: Call::ReadProc,
        what: format!("reading {path}"),
        source,
    })?;
    parse_cpu_list(&text).ok_or_else(|| SampleError::Sys {
        call: Call::ReadProc,
        what: format!("parsing {path} ({:?})", text.trim()),
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })
}

/// Parses a kernel CPU list such as `0-3,6,8-9`.
fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_expand_ranges() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-2,5,7-8"), Some(vec![0, 1, 2, 5, 7, 8]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
