//! The vDSO: the small ELF image the kernel maps into every process. It has
//! no file to open, but the kernel maps the same image into every process
//! of one ABI, so stoke reads its own copy (plain file I/O on
//! `/proc/self/mem`, no permission over the target needed).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::elf::ElfImage;
use crate::module::Module;
use crate::sys::Bytes;
use crate::UnknownReason;

/// The prefix of the vDSO's own names (`__vdso_clock_gettime`), dropped so
/// frames read like the libc functions they implement (`clock_gettime`).
const NAME_PREFIX: &str = "__vdso_";

/// The vDSO's name for its function `name`, as frames show it.
pub(crate) fn display_name(name: &str) -> &str {
    name.strip_prefix(NAME_PREFIX).unwrap_or(name)
}

/// Reads and parses this process's vDSO.
pub(crate) fn load_own() -> Result<Module, UnknownReason> {
    let unavailable = |what: String| UnknownReason::FileUnavailable(format!("[vdso]: {what}"));
    let image = own_image().map_err(unavailable)?;
    let image = ElfImage::parse(Path::new("[vdso]"), Bytes::owned(image))
        .map_err(|e| UnknownReason::BadElf(e.to_string()))?;
    Ok(Module::from_image(&image))
}

/// This process's vDSO bytes: its range from `/proc/self/maps`, read from
/// `/proc/self/mem`. The one reader of the vDSO, for the symbolizer and the
/// unwinder alike (re-exported as [`crate::own_vdso_image`]).
pub fn own_image() -> Result<Vec<u8>, String> {
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| format!("reading /proc/self/maps: {e}"))?;
    let (start, end) =
        vdso_range(&maps).ok_or_else(|| "no [vdso] mapping in /proc/self/maps".to_string())?;
    let len = usize::try_from(end - start).map_err(|e| e.to_string())?;
    let mut image = vec![0; len];
    let mut mem =
        File::open("/proc/self/mem").map_err(|e| format!("opening /proc/self/mem: {e}"))?;
    mem.seek(SeekFrom::Start(start))
        .and_then(|_| mem.read_exact(&mut image))
        .map_err(|e| format!("reading /proc/self/mem at {start:#x}: {e}"))?;
    Ok(image)
}

/// The `[vdso]` line's address range in a maps file.
fn vdso_range(maps: &str) -> Option<(u64, u64)> {
    let line = maps.lines().find(|l| l.trim_end().ends_with("[vdso]"))?;
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vdso_line_gives_its_range() {
        let maps = "\
7f1e2b4a0000-7f1e2b4a2000 r--p 00000000 00:00 0                          [vvar]
7ffd1d5f3000-7ffd1d5f5000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(vdso_range(maps), Some((0x7ffd_1d5f_3000, 0x7ffd_1d5f_5000)));
        assert_eq!(vdso_range("00400000-00401000 r-xp 0 0:0 0 /bin/x\n"), None);
    }

    #[test]
    fn vdso_names_read_like_libc_names() {
        assert_eq!(display_name("__vdso_clock_gettime"), "clock_gettime");
        assert_eq!(display_name("clock_gettime"), "clock_gettime");
    }
}
