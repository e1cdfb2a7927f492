//! The SVG flame graph in a real browser: Debian's chromium driven by
//! playwright-core (tests/browser/check.js). Checks what only a browser can:
//! the page runs without JavaScript errors, the search counts the share of
//! all samples (frames too narrow to draw included), zooming draws what was
//! too narrow at first, Reset Zoom refreshes the search, and a 20,000-stack
//! profile's SVG works. Its load time is printed, not asserted (the machine
//! is shared): bench/svg_load.py measures it against inferno's SVG.
//!
//! Skipped, saying so, where chromium (`apt-get install chromium`) or
//! playwright-core (`npm install --prefix target/browser playwright-core`,
//! as .ci/run does) is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, stoke};

/// node, the driver and where playwright-core is, or why not.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("STOKE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "{} is missing (apt-get install chromium)",
            chromium.display()
        ));
    }
    let node = common::find_in_path("node").ok_or("node is not installed")?;
    let modules = std::env::var_os("STOKE_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser/node_modules")
        });
    if !modules.join("playwright-core").is_dir() {
        return Err(format!(
            "playwright-core is not in {} (npm install --prefix target/browser playwright-core)",
            modules.display()
        ));
    }
    Ok((node, modules))
}

/// What check.js reports.
struct Seen {
    load_ms: u64,
    errors: Vec<String>,
    /// (step, matched text, drawn frame titles) after each step.
    steps: Vec<(String, String, Vec<String>)>,
}

/// Runs check.js on `svg` with `steps`; `None` (after saying why) when the
/// browser is not there.
fn check(svg: &Path, steps: &[&str]) -> Option<Seen> {
    let (node, modules) = match browser() {
        Ok(found) => found,
        Err(why) => {
            eprintln!("skipped the browser check: {why}");
            return None;
        }
    };
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/check.js");
    let out = run(Command::new(node)
        .arg(driver)
        .arg(svg)
        .args(steps)
        .env("NODE_PATH", &modules));
    assert!(out.status.success(), "check.js failed\n{out}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("check.js output");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    Some(Seen {
        load_ms: json["loadMs"].as_u64().unwrap(),
        errors: strings(&json["errors"]),
        steps: json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["step"].as_str().unwrap().to_owned(),
                    s["matched"].as_str().unwrap().to_owned(),
                    strings(&s["titles"]),
                )
            })
            .collect(),
    })
}

fn convert(dir: &Path, folded: &str, name: &str) -> PathBuf {
    std::fs::write(dir.join("in.folded"), folded).unwrap();
    let out = run(stoke()
        .current_dir(dir)
        .args(["convert", "in.folded", "-o", name]));
    out.assert_success();
    dir.join(name)
}

#[test]
fn search_counts_all_samples_and_zoom_draws_what_was_too_narrow() {
    let dir = tempfile::tempdir().unwrap();
    // 2,000 one-sample stacks reach malloc beside 20,000 samples of `hot`:
    // at the default minimum width none of them is drawn.
    let mut folded = String::from("prog;main;hot 20000\n");
    for group in 0..20 {
        for leaf in 0..100 {
            folded.push_str(&format!(
                "prog;main;spread;group_{group};leaf_{group}_{leaf};malloc 1\n"
            ));
        }
    }
    let svg = convert(dir.path(), &folded, "thin.svg");
    let Some(seen) = check(
        &svg,
        &["search:malloc", "zoom:group_3", "unzoom", "search:^leaf_3_"],
    ) else {
        return;
    };
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    let [search, zoom, unzoom, _] = &seen.steps[..] else {
        panic!("four steps")
    };
    // 2,000 of 22,000 samples.
    assert_eq!(search.1, "Matched: 9.1% of all samples");
    let leaf = |titles: &[String]| titles.iter().any(|t| t.starts_with("leaf_3_7 ("));
    assert!(
        !leaf(&search.2),
        "leaf frames are too narrow to draw at first"
    );
    assert!(leaf(&zoom.2), "zooming into group_3 draws its leaves");
    assert!(
        zoom.2.iter().any(|t| t.starts_with("malloc (1 samples")),
        "{:?}",
        zoom.2
    );
    assert_eq!(
        zoom.1,
        "Matched: 9.1% of all samples, 100% of the zoomed frame"
    );
    assert!(!leaf(&unzoom.2), "Reset Zoom draws the first view again");
    assert_eq!(
        unzoom.1, "Matched: 9.1% of all samples",
        "Reset Zoom refreshes the search"
    );
    // The search after the reset: 100 of 22,000.
    assert_eq!(seen.steps[3].1, "Matched: 0.5% of all samples");
}

/// `n` distinct stacks, 8 to 30 frames deep, of 3,000 functions, with
/// counts 1 to 50, from a fixed seed.
fn many_stacks(n: usize) -> (String, u64, u64) {
    let mut seed: u64 = 0x5eed;
    let mut next = |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let mut lines = std::collections::BTreeMap::new();
    while lines.len() < n {
        let depth = 8 + next(23);
        let mut stack = vec!["app".to_owned(), "main".to_owned()];
        for level in 0..depth {
            stack.push(format!("fn_{}", next(100) + 100 * (level % 30)));
        }
        lines.insert(stack.join(";"), 1 + next(50));
    }
    let total: u64 = lines.values().sum();
    let matched: u64 = lines
        .iter()
        .filter(|(s, _)| s.split(';').any(|f| f == "fn_1234"))
        .map(|(_, c)| c)
        .sum();
    let text: String = lines.iter().map(|(s, c)| format!("{s} {c}\n")).collect();
    (text, total, matched)
}

#[test]
fn a_profile_of_20000_stacks_loads_and_searches_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let (folded, total, matched) = many_stacks(20_000);
    let svg = convert(dir.path(), &folded, "big.svg");
    let size = std::fs::metadata(&svg).unwrap().len();
    let Some(seen) = check(&svg, &["search:^fn_1234$"]) else {
        return;
    };
    eprintln!(
        "browser: the 20,000-stack SVG ({:.1} MB) loaded in {} ms",
        size as f64 / 1e6,
        seen.load_ms
    );
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    let expected = format!(
        "Matched: {:.1}% of all samples",
        100.0 * matched as f64 / total as f64
    );
    assert_eq!(seen.steps[0].1, expected);
    assert!(
        seen.steps[0].2.len() < 5_000,
        "{} frames drawn at first",
        seen.steps[0].2.len()
    );
}
