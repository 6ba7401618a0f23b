//! Throughput benchmark: arfwire's whole parse and classify against a bare MIME parse of
//! the same bytes, in one run, so the ratio is comparable on any machine.
//!
//! Run with `cargo bench -p arfwire-tests --bench pipeline`. It prints reports/s, MB/s and
//! the cost ratio (target: our parse costs at most 2x the bare parse), then the cost of
//! refusing hostile shapes next to what the bare parser spends on them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use arfwire_parse::{Outcome, ParseOptions};
use arfwire_tests::{corpus_dir, fixtures_dir, read_index};

/// Run `f` over all inputs repeatedly for at least `min` and return seconds per pass.
fn time_passes(inputs: &[Vec<u8>], min: Duration, mut f: impl FnMut(&[u8])) -> (f64, u32) {
    // Warm up once.
    for input in inputs {
        f(input);
    }
    let start = Instant::now();
    let mut passes = 0u32;
    while start.elapsed() < min || passes < 3 {
        for input in inputs {
            f(input);
        }
        passes += 1;
    }
    (start.elapsed().as_secs_f64() / f64::from(passes), passes)
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "eml") {
            if let Ok(bytes) = std::fs::read(&path) {
                out.push(bytes);
            }
        }
    }
}

fn main() {
    let min = Duration::from_millis(
        std::env::var("ARFWIRE_BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000),
    );
    let corpus = corpus_dir();
    let mut inputs: Vec<Vec<u8>> = read_index(&corpus)
        .iter()
        .filter(|row| !row.path.ends_with(".json"))
        .filter_map(|row| std::fs::read(corpus.join(&row.path)).ok())
        .collect();
    let n_corpus = inputs.len();
    collect_files(&fixtures_dir(), &mut inputs);
    let bytes: usize = inputs.iter().map(Vec::len).sum();
    let options = ParseOptions::default();
    let n_reports: usize = inputs
        .iter()
        .map(|i| match arfwire_parse::parse(i, &options) {
            Outcome::Report(s) => s.reports.len(),
            _ => 0,
        })
        .sum();

    let (bare, bare_passes) = time_passes(&inputs, min, |input| {
        black_box(mail_parser::MessageParser::default().parse(black_box(input)));
    });
    let (ours, our_passes) = time_passes(&inputs, min, |input| {
        black_box(arfwire_parse::parse(black_box(input), &options));
    });

    let mb = bytes as f64 / 1e6;
    println!("arfwire parse benchmark");
    println!(
        "  inputs: {} submissions ({n_corpus} corpus + {} fixtures), {:.2} MB, {n_reports} reported messages",
        inputs.len(),
        inputs.len() - n_corpus,
        mb
    );
    println!(
        "  bare mail-parser parse : {:>9.1} submissions/s {:>8.1} MB/s  ({bare_passes} passes)",
        inputs.len() as f64 / bare,
        mb / bare
    );
    println!(
        "  arfwire parse+classify : {:>9.1} submissions/s {:>8.1} MB/s  {:>9.1} reports/s  ({our_passes} passes)",
        inputs.len() as f64 / ours,
        mb / ours,
        n_reports as f64 / ours
    );
    println!(
        "  cost ratio arfwire / bare: {:.2}x (target <= 2.00x)",
        ours / bare
    );

    println!("hostile shapes: arfwire (pre-scan refusal or bounded parse) vs bare mail-parser");
    for (name, input) in hostile_inputs() {
        let t = Instant::now();
        let outcome = arfwire_parse::parse(&input, &options);
        let ours = t.elapsed();
        let t = Instant::now();
        black_box(mail_parser::MessageParser::default().parse(&input[..]));
        let bare = t.elapsed();
        let verdict = match &outcome {
            Outcome::Rejected(r) => format!("rejected: {}", r.reason.as_str()),
            Outcome::NotReport(n) => format!("not a report: {}", n.reason.as_str()),
            Outcome::Report(s) => format!("report: {} message(s)", s.reports.len()),
        };
        println!(
            "  {name:<34} {:>7.1} MB  arfwire {:>9.2} ms  bare {:>9.2} ms  {verdict}",
            input.len() as f64 / 1e6,
            ours.as_secs_f64() * 1e3,
            bare.as_secs_f64() * 1e3
        );
    }
}

/// The reliability plan's hostile shapes, generated.
fn hostile_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    let mut flat =
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..10_000 {
        flat.extend_from_slice(b"--b\r\n\r\n");
    }
    flat.extend_from_slice(b"--b--\r\n");
    out.push(("H1 10,000 flat parts", flat));

    let mut bomb =
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    while bomb.len() < 24_000_000 {
        bomb.extend_from_slice(b"--b\r\n\r\n");
    }
    out.push(("H2 ~3,000,000 parts", bomb));

    let mut deep = b"From: a@example.com\r\n".to_vec();
    for i in 0..100_000 {
        deep.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"{i}\"\r\n\r\n--{i}\r\n").as_bytes(),
        );
    }
    out.push(("H3 nesting depth 100,000", deep));

    let mut to_lines = b"From: a@example.com\r\n".to_vec();
    for _ in 0..100_000 {
        to_lines.extend_from_slice(b"To: victim@example.net\r\n");
    }
    to_lines.extend_from_slice(b"\r\nbody\r\n");
    out.push(("H4 100,000 To: lines", to_lines));

    let mut rfc2231 = b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain;\r\n".to_vec();
    for i in 0..320_000 {
        rfc2231.extend_from_slice(format!(" name*{i}*=abc;\r\n").as_bytes());
    }
    rfc2231.extend_from_slice(b"\r\nx\r\n--b--\r\n");
    out.push(("H6 RFC 2231 continuation bomb", rfc2231));

    out
}
