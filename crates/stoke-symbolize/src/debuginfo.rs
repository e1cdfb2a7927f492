//! Finding separate debug info: by build-id under `.build-id/`, by
//! `.gnu_debuglink` next to the binary, and dwz supplementary files named by
//! `.gnu_debugaltlink`. Every candidate is checked (build-id or CRC32) before
//! it is used, so a stale debug file never gives wrong names.

use std::path::{Path, PathBuf};

use crate::elf::ElfImage;
use crate::FileOpener;

/// The system's global debug folder.
const SYSTEM_DEBUG_DIR: &str = "/usr/lib/debug";

/// Where to look for debug files of one binary.
pub(crate) struct DebugSearch<'a> {
    /// The binary as opened (possibly under `/proc/PID/root`).
    pub(crate) opened_path: &'a Path,
    /// The binary's path as the target names it.
    pub(crate) target_path: &'a Path,
    /// The target's root (`/proc/PID/root`), when files are opened through it.
    pub(crate) root: Option<&'a Path>,
    /// Extra folders from the options, searched first.
    pub(crate) debug_dirs: &'a [PathBuf],
    /// How candidate files are opened.
    pub(crate) open: FileOpener,
}

impl DebugSearch<'_> {
    /// Global debug folders: the extra ones, the target's, then the host's.
    fn global_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.debug_dirs.to_vec();
        if let Some(root) = self.root {
            dirs.push(root.join(SYSTEM_DEBUG_DIR.trim_start_matches('/')));
        }
        dirs.push(PathBuf::from(SYSTEM_DEBUG_DIR));
        dirs
    }

    /// Finds a debug file with DWARF for `binary`, whose build-id is
    /// `build_id` (the binary's own, else the one the mapping reported).
    pub(crate) fn find(&self, binary: &ElfImage, build_id: Option<&[u8]>) -> Option<ElfImage> {
        let dirs = self.global_dirs();
        if let Some(id) = build_id {
            for dir in &dirs {
                if let Some(image) = build_id_path(dir, id)
                    .and_then(|p| open_checked(&p, binary, Check::BuildId(id), self.open))
                {
                    return Some(image);
                }
            }
        }
        let (name, crc) = binary.debuglink.as_ref()?;
        let check = match build_id {
            Some(id) => Check::BuildIdOrCrc(id, *crc),
            None => Check::Crc(*crc),
        };
        let mut candidates = Vec::new();
        if let Some(folder) = self.opened_path.parent() {
            candidates.push(folder.join(name));
            candidates.push(folder.join(".debug").join(name));
        }
        let target_folder = self.target_path.parent().unwrap_or(Path::new("/"));
        let relative_folder = target_folder.strip_prefix("/").unwrap_or(target_folder);
        for dir in &dirs {
            candidates.push(dir.join(relative_folder).join(name));
            candidates.push(dir.join(name));
        }
        candidates
            .iter()
            .find_map(|path| open_checked(path, binary, check, self.open))
    }

    /// Finds the dwz supplementary file a debug image refers to.
    pub(crate) fn find_alt(&self, image: &ElfImage) -> Option<ElfImage> {
        let (name, id) = image.altlink.as_ref()?;
        let mut candidates = Vec::new();
        if name.is_absolute() {
            if let Some(root) = self.root {
                candidates.push(root.join(name.strip_prefix("/").unwrap_or(name)));
            }
            candidates.push(name.clone());
        } else if let Some(folder) = image.path.parent() {
            candidates.push(folder.join(name));
        }
        for dir in self.global_dirs() {
            candidates.extend(build_id_path(&dir, id));
        }
        candidates
            .iter()
            .find_map(|path| open_checked(path, image, Check::BuildId(id), self.open))
    }
}

/// `DIR/.build-id/ab/cdef….debug`.
fn build_id_path(dir: &Path, id: &[u8]) -> Option<PathBuf> {
    let (first, rest) = id.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let rest: String = rest.iter().map(|b| format!("{b:02x}")).collect();
    Some(
        dir.join(".build-id")
            .join(format!("{first:02x}"))
            .join(format!("{rest}.debug")),
    )
}

/// How a candidate debug file proves it belongs to the binary.
#[derive(Clone, Copy)]
enum Check<'a> {
    /// Its build-id is this one.
    BuildId(&'a [u8]),
    /// Its build-id is this one, or it has none and the CRC32 matches.
    BuildIdOrCrc(&'a [u8], u32),
    /// The CRC32 of the whole file matches (the debuglink's).
    Crc(u32),
}

fn open_checked(
    path: &Path,
    binary: &ElfImage,
    check: Check<'_>,
    open: FileOpener,
) -> Option<ElfImage> {
    if path == binary.path || !path.is_file() {
        return None;
    }
    let image = ElfImage::open(path, open).ok()?;
    let matches = match (check, image.build_id.as_deref()) {
        (Check::BuildId(id), found) => found == Some(id),
        (Check::BuildIdOrCrc(id, _), Some(found)) => found == id,
        (Check::BuildIdOrCrc(_, crc) | Check::Crc(crc), _) => crc32(&image.bytes) == crc,
    };
    (matches && image.has_dwarf).then_some(image)
}

/// CRC-32 (IEEE 802.3, as zlib and `.gnu_debuglink` use it).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn build_id_paths_split_the_first_byte() {
        assert_eq!(
            build_id_path(Path::new("/usr/lib/debug"), &[0xab, 0xcd, 0xef]),
            Some(PathBuf::from("/usr/lib/debug/.build-id/ab/cdef.debug"))
        );
        assert_eq!(build_id_path(Path::new("/d"), &[0xab]), None);
    }
}
