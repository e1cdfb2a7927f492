//! `stoke top` without a terminal: a plain-text table every interval.

use std::io::Write;

use super::table::{Row, Table};
use super::Header;

/// Rows printed per table.
pub const ROWS: usize = 25;

/// The header line of a table.
pub fn header_line(header: &Header) -> String {
    format!(
        "{} · {} Hz · {:.0} samples/s · {} lost · {} missed · {:.1} s{}",
        header.target,
        header.frequency,
        header.samples_per_second,
        header.lost,
        header.missed,
        header.elapsed.as_secs_f64(),
        if header.named_pending > 0 {
            format!(" · naming {}", header.named_pending)
        } else {
            String::new()
        }
    )
}

/// The column titles.
pub const COLUMNS: [&str; 8] = [
    "SELF%",
    "TOTAL%",
    "SELF",
    "TOTAL",
    "ALL-SELF%",
    "ALL-TOTAL%",
    "PROCESS",
    "FUNCTION",
];

/// A row's cells, as [`COLUMNS`] names them.
pub fn cells(row: &Row, table: &Table) -> [String; 8] {
    let (interval, all) = (table.interval_samples, table.all_samples);
    [
        format!("{:.1}", Table::percent(row.self_interval, interval)),
        format!("{:.1}", Table::percent(row.total_interval, interval)),
        row.self_interval.to_string(),
        row.total_interval.to_string(),
        format!("{:.1}", Table::percent(row.self_all, all)),
        format!("{:.1}", Table::percent(row.total_all, all)),
        row.place.clone(),
        display_name(row),
    ]
}

/// A function's name, kernel functions marked `[k]` as in the outputs.
pub fn display_name(row: &Row) -> String {
    if row.kind == stoke_profile::FrameKind::Kernel {
        format!("{} [k]", row.function)
    } else {
        row.function.clone()
    }
}

/// Prints one table; a reader gone away (`| head`) ends nothing here.
pub fn print(header: &Header, table: &Table) {
    let mut text = String::new();
    text.push_str(&header_line(header));
    text.push('\n');
    text.push_str(&header.backend);
    text.push('\n');
    text.push_str(&format!(
        "{:>6} {:>6} {:>7} {:>7} {:>9} {:>10}  {:<24} {}\n",
        COLUMNS[0],
        COLUMNS[1],
        COLUMNS[2],
        COLUMNS[3],
        COLUMNS[4],
        COLUMNS[5],
        COLUMNS[6],
        COLUMNS[7]
    ));
    for row in table.rows.iter().take(ROWS) {
        let c = cells(row, table);
        text.push_str(&format!(
            "{:>6} {:>6} {:>7} {:>7} {:>9} {:>10}  {:<24} {}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        ));
    }
    text.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
