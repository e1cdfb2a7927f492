//! Busy work across many functions of several crates, for CPU_SECONDS
//! (default 3): walk this binary's own DWARF with gimli, demangle its
//! symbols, look addresses up with addr2line, render flame graphs with
//! inferno. Prints `done N` with the rounds completed.

use std::time::Duration;

use object::{Object, ObjectSection, ObjectSymbol};

fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn walk_dwarf(file: &object::File<'_>) -> usize {
    let load = |id: gimli::SectionId| -> Result<std::borrow::Cow<'_, [u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(std::borrow::Cow::Borrowed(&[])))
    };
    let owned = gimli::DwarfSections::load(load).unwrap();
    let dwarf = owned.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut units = dwarf.units();
    let mut entries = 0;
    let mut n = 0;
    while let Ok(Some(header)) = units.next() {
        n += 1;
        if n % 7 != 0 {
            continue;
        }
        let unit = dwarf.unit(header).unwrap();
        let mut cursor = unit.entries();
        while let Ok(Some(_)) = cursor.next_dfs() {
            entries += 1;
        }
    }
    entries
}

fn demangle_all(file: &object::File<'_>) -> usize {
    let mut total = 0;
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        if let Ok(d) = rustc_demangle::try_demangle(name) {
            total += format!("{d:#}").len();
        } else if let Ok(s) = cpp_demangle::Symbol::new(name.as_bytes()) {
            total += s.demangle().map_or(0, |d| d.len());
        }
    }
    total
}

fn lookups(
    ctx: &addr2line::Context<gimli::EndianSlice<'_, gimli::RunTimeEndian>>,
    addrs: &[u64],
) -> usize {
    let mut found = 0;
    for &a in addrs {
        if let Ok(mut frames) = ctx.find_frames(a).skip_all_loads() {
            while let Ok(Some(_)) = frames.next() {
                found += 1;
            }
        }
    }
    found
}

fn flame(round: usize) -> usize {
    let mut lines = Vec::new();
    for i in 0..400 {
        lines.push(format!(
            "main;f{};g{};h{} {}",
            i % 13,
            (i + round) % 29,
            i % 97,
            i + 1
        ));
    }
    let mut options = inferno::flamegraph::Options::default();
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut out)
        .unwrap();
    out.len()
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3.0);
    let exe = std::fs::read("/proc/self/exe").unwrap();
    let file = object::File::parse(&*exe).unwrap();
    let endian = gimli::RunTimeEndian::Little;
    let load = |id: gimli::SectionId| -> Result<gimli::EndianSlice<'_, gimli::RunTimeEndian>, gimli::Error> {
        let data = file
            .section_by_name(id.name())
            .and_then(|s| s.data().ok())
            .unwrap_or(&[]);
        Ok(gimli::EndianSlice::new(data, endian))
    };
    let dwarf = gimli::Dwarf::load(load).unwrap();
    let ctx = addr2line::Context::from_dwarf(dwarf).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let addrs: Vec<u64> = (0..2000u64)
        .map(|i| text.address() + (i * 2_654_435_761) % text.size())
        .collect();
    let start = cpu_time();
    let mut rounds = 0;
    let mut sink = 0;
    while (cpu_time() - start).as_secs_f64() < seconds {
        sink += walk_dwarf(&file) + demangle_all(&file) + lookups(&ctx, &addrs) + flame(rounds);
        rounds += 1;
    }
    println!("done {rounds} {sink}");
}
