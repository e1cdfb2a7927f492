//! One ELF file, mapped and parsed: what symbolization needs from it
//! (load segments, build-id, debug links, symbols, DWARF sections).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gimli::{EndianReader, RunTimeEndian};
use object::elf;
use object::read::{CompressionFormat, SectionKind};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SectionFlags, SectionIndex};

use memmap2::Mmap;
use stoke_model::layout::LoadSegment;

use crate::symtab::{RawSymbol, SymbolSource};
use crate::sys::Bytes;
use crate::FileOpener;

/// The gimli reader over (mapped or decompressed) section bytes.
pub(crate) type Reader = EndianReader<RunTimeEndian, Bytes>;

/// Why an ELF file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// Opening or mapping failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error, errno kept.
        source: std::io::Error,
    },
    /// The bytes are not a usable ELF file.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: object::Error,
    },
    /// The DWARF could not be indexed.
    #[error("{path}: bad DWARF: {source}")]
    Dwarf {
        /// The file.
        path: PathBuf,
        /// What gimli said.
        source: gimli::Error,
    },
    /// Not an ELF file (e.g. a PE or Mach-O file).
    #[error("{0}: not an ELF file")]
    NotElf(PathBuf),
}

/// A mapped ELF file and the facts parsed from it once.
pub(crate) struct ElfImage {
    /// Where it was opened from.
    pub(crate) path: PathBuf,
    /// The whole file.
    pub(crate) bytes: Bytes,
    /// Its byte order.
    pub(crate) endian: RunTimeEndian,
    /// Its address size in bytes (4 or 8).
    pub(crate) address_size: u8,
    /// Its `PT_LOAD` segments.
    pub(crate) segments: Vec<LoadSegment>,
    /// Its GNU build-id note.
    pub(crate) build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: file name and CRC32.
    pub(crate) debuglink: Option<(PathBuf, u32)>,
    /// `.gnu_debugaltlink`: supplementary (dwz) file name and build-id.
    pub(crate) altlink: Option<(PathBuf, Vec<u8>)>,
    /// Whether it carries DWARF (a non-empty `.debug_info` with contents).
    pub(crate) has_dwarf: bool,
}

impl ElfImage {
    /// Opens a file with `open`, maps and parses it.
    pub(crate) fn open(path: &Path, open: FileOpener) -> Result<ElfImage, LoadError> {
        let io = |source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = open(path).map_err(io)?;
        ElfImage::open_file(path, &file)
    }

    /// Parses a file the caller mapped; `path` names it.
    pub(crate) fn from_map(path: &Path, map: Arc<Mmap>) -> Result<ElfImage, LoadError> {
        ElfImage::parse(path, Bytes::shared(map))
    }

    /// Maps and parses a file the caller opened; `path` names it.
    pub(crate) fn open_file(path: &Path, file: &File) -> Result<ElfImage, LoadError> {
        let bytes = Bytes::map(file).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ElfImage::parse(path, bytes)
    }

    /// Parses bytes (mapped, or read from memory like the vDSO's).
    pub(crate) fn parse(path: &Path, bytes: Bytes) -> Result<ElfImage, LoadError> {
        let obj = parse_object(path, &bytes)?;
        let endian = if obj.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let address_size = if obj.is_64() { 8 } else { 4 };
        let segments = obj
            .segments()
            .map(|s| {
                let (offset, file_size) = s.file_range();
                let executable = match s.flags() {
                    object::SegmentFlags::Elf { p_flags, .. } => p_flags.contains(elf::PF_X),
                    _ => false,
                };
                LoadSegment {
                    offset,
                    file_size,
                    vaddr: s.address(),
                    executable,
                }
            })
            .collect();
        let build_id = obj.build_id().ok().flatten().map(<[u8]>::to_vec);
        let debuglink = obj
            .gnu_debuglink()
            .ok()
            .flatten()
            .map(|(name, crc)| (path_from_bytes(name), crc));
        let altlink = obj
            .gnu_debugaltlink()
            .ok()
            .flatten()
            .map(|(name, id)| (path_from_bytes(name), id.to_vec()));
        let has_dwarf = obj.section_by_name(".debug_info").is_some_and(|s| {
            s.kind() != SectionKind::UninitializedData && s.size() > 0 && s.file_range().is_some()
        });
        drop(obj);
        Ok(ElfImage {
            path: path.to_path_buf(),
            bytes,
            endian,
            address_size,
            segments,
            build_id,
            debuglink,
            altlink,
            has_dwarf,
        })
    }

    /// Function symbols of `.symtab` (source `Symtab`) or `.dynsym`.
    pub(crate) fn symbols(&self, source: SymbolSource) -> Vec<RawSymbol<'_>> {
        let Ok(obj) = object::File::parse(&*self.bytes) else {
            return Vec::new();
        };
        let symbols = match source {
            SymbolSource::Symtab => obj.symbols(),
            SymbolSource::Dynsym => obj.dynamic_symbols(),
        };
        let mut out = Vec::new();
        for sym in symbols {
            let (st_type, st_bind) = match sym.flags() {
                object::SymbolFlags::Elf { st_info, .. } => (st_info.st_type(), st_info.st_bind()),
                _ => continue,
            };
            let is_code = match st_type {
                elf::STT_FUNC | elf::STT_GNU_IFUNC => true,
                elf::STT_NOTYPE => sym
                    .section_index()
                    .is_some_and(|index| section_is_executable(&obj, index)),
                _ => false,
            };
            let Ok(name) = sym.name() else { continue };
            if !is_code || sym.is_undefined() || name.is_empty() || name.starts_with('$') {
                continue;
            }
            out.push(RawSymbol {
                address: sym.address(),
                size: sym.size(),
                name: without_version(name),
                is_function: st_type != elf::STT_NOTYPE,
                binding: st_bind,
                source,
            });
        }
        out
    }

    /// The MiniDebugInfo image (`.gnu_debugdata`: an xz-compressed ELF file
    /// holding the `.symtab` that a stripped binary lost, as Fedora ships
    /// them), decompressed and parsed; `None` when there is none or it is
    /// corrupt.
    pub(crate) fn mini_debug_info(&self) -> Option<ElfImage> {
        let obj = parse_object(&self.path, &self.bytes).ok()?;
        let compressed = obj.section_by_name(".gnu_debugdata")?.data().ok()?;
        let mut elf = Vec::new();
        lzma_rs::xz_decompress(&mut std::io::Cursor::new(compressed), &mut elf).ok()?;
        let mut path = self.path.clone().into_os_string();
        path.push(" [.gnu_debugdata]");
        ElfImage::parse(Path::new(&path), Bytes::owned(elf)).ok()
    }

    /// The stated address of a section, if the file has one by that name.
    pub(crate) fn section_address(&self, name: &str) -> Option<u64> {
        let obj = parse_object(&self.path, &self.bytes).ok()?;
        obj.section_by_name(name).map(|s| s.address())
    }

    /// Loads one DWARF section by name, decompressing it if needed; a missing
    /// or contentless section reads as empty.
    pub(crate) fn section(&self, name: &str) -> Result<Reader, LoadError> {
        let empty = || EndianReader::new(Bytes::owned(Vec::new()), self.endian);
        if name.is_empty() {
            return Ok(empty());
        }
        let obj = parse_object(&self.path, &self.bytes)?;
        let Some(section) = obj.section_by_name(name) else {
            return Ok(empty());
        };
        let parse = |source| LoadError::Parse {
            path: self.path.clone(),
            source,
        };
        let range = section.compressed_file_range().map_err(parse)?;
        if range.format == CompressionFormat::None {
            if section.kind() == SectionKind::UninitializedData {
                return Ok(empty());
            }
            let Some((offset, size)) = section.file_range() else {
                return Ok(empty());
            };
            let (start, end) = (offset as usize, offset.saturating_add(size) as usize);
            if end > self.bytes.len() || start > end {
                return Ok(empty());
            }
            return Ok(EndianReader::new(self.bytes.clone(), self.endian).range(start..end));
        }
        let data = section.uncompressed_data().map_err(parse)?;
        Ok(EndianReader::new(
            Bytes::owned(data.into_owned()),
            self.endian,
        ))
    }
}

fn parse_object<'a>(path: &Path, bytes: &'a [u8]) -> Result<object::File<'a>, LoadError> {
    let obj = object::File::parse(bytes).map_err(|source| LoadError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if obj.format() != object::BinaryFormat::Elf {
        return Err(LoadError::NotElf(path.to_path_buf()));
    }
    Ok(obj)
}

fn section_is_executable(obj: &object::File<'_>, index: SectionIndex) -> bool {
    obj.section_by_index(index).is_ok_and(|s| match s.flags() {
        SectionFlags::Elf { sh_flags, .. } => sh_flags.0 & elf::SHF_EXECINSTR.0 != 0,
        _ => false,
    })
}

/// A symbol name without its symbol version: `.symtab` of shared libraries
/// names versioned definitions `clock_gettime@@GLIBC_2.17`, which would split
/// one function's samples by the library's version.
fn without_version(name: &str) -> &str {
    match name.split_once('@') {
        Some((plain, _)) if !plain.is_empty() => plain,
        _ => name,
    }
}

fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_versions_are_dropped() {
        assert_eq!(
            without_version("clock_gettime@@GLIBC_2.17"),
            "clock_gettime"
        );
        assert_eq!(without_version("memcpy@GLIBC_2.2.5"), "memcpy");
        assert_eq!(without_version("malloc"), "malloc");
        assert_eq!(without_version("@weird"), "@weird");
    }
}
