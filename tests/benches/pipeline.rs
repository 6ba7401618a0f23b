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

fn collect_files(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "eml")
            && let Ok(bytes) = std::fs::read(&path)
        {
            out.push(bytes);
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

    // The same MIME parse with only the header fields arfwire decodes (the floor of our cost).
    let lean_parser = mail_parser::MessageParser::new()
        .with_mime_headers()
        .with_address_headers()
        .with_date_headers()
        .with_message_ids()
        .header_text(mail_parser::HeaderName::Subject);
    let bare_parser = mail_parser::MessageParser::default();
    // The three contenders run in interleaved rounds (one pass each per round), so that load
    // from other processes hits all of them alike; medians and best passes are compared.
    // ARFWIRE_BENCH_ONLY_OURS=1 times only arfwire's parse (for profiling it alone).
    let only_ours = std::env::var("ARFWIRE_BENCH_ONLY_OURS").is_ok_and(|v| v == "1");
    let pass = |f: &mut dyn FnMut(&[u8])| {
        let t = Instant::now();
        for input in &inputs {
            f(input);
        }
        t.elapsed().as_secs_f64()
    };
    let mut bare_times = Vec::new();
    let mut lean_times = Vec::new();
    let mut our_times = Vec::new();
    let started = Instant::now();
    while started.elapsed() < min * 3 || our_times.len() < 5 {
        if !only_ours {
            bare_times.push(pass(&mut |i| {
                black_box(bare_parser.parse(black_box(i)));
            }));
            lean_times.push(pass(&mut |i| {
                black_box(lean_parser.parse(black_box(i)));
            }));
        }
        our_times.push(pass(&mut |i| {
            black_box(arfwire_parse::parse(black_box(i), &options));
        }));
    }
    if only_ours {
        println!("arfwire parse only: {} passes", our_times.len());
        return;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (bare_best, lean_best, our_best) = (best(&bare_times), best(&lean_times), best(&our_times));
    let bare = median(&mut bare_times);
    let lean = median(&mut lean_times);
    let ours = median(&mut our_times);
    let rounds = our_times.len();
    let mb = bytes as f64 / 1e6;
    println!("arfwire parse benchmark");
    println!(
        "  inputs: {} submissions ({n_corpus} corpus + {} fixtures), {:.2} MB, {n_reports} reported messages; {rounds} interleaved rounds",
        inputs.len(),
        inputs.len() - n_corpus,
        mb
    );
    let n = inputs.len() as f64;
    println!(
        "  bare mail-parser parse  : {:>9.1} submissions/s {:>8.1} MB/s",
        n / bare,
        mb / bare
    );
    println!(
        "  mail-parser, lean fields: {:>9.1} submissions/s {:>8.1} MB/s",
        n / lean,
        mb / lean
    );
    println!(
        "  arfwire parse+classify  : {:>9.1} submissions/s {:>8.1} MB/s {:>9.1} reports/s",
        n / ours,
        mb / ours,
        n_reports as f64 / ours
    );
    println!(
        "  cost ratio arfwire / bare: {:.2}x median, {:.2}x best pass (target <= 2.00x); lean / bare {:.2}x",
        ours / bare,
        our_best / bare_best,
        lean_best / bare_best
    );
    attribution_bench(&inputs, &options, min);

    if std::env::var("ARFWIRE_BENCH_HOSTILE").is_ok_and(|v| v == "0") {
        return;
    }
    println!("hostile shapes: arfwire (pre-scan refusal or bounded parse) vs bare mail-parser");
    for (name, input) in hostile_inputs() {
        let t = Instant::now();
        let outcome = arfwire_parse::parse(&input, &options);
        let ours = t.elapsed();
        let bare = if std::env::var("ARFWIRE_BENCH_HOSTILE_BARE").is_ok_and(|v| v == "0") {
            None
        } else {
            let t = Instant::now();
            black_box(mail_parser::MessageParser::default().parse(&input[..]));
            Some(t.elapsed())
        };
        let verdict = match &outcome {
            Outcome::Rejected(r) => format!("rejected: {}", r.reason.as_str()),
            Outcome::NotReport(n) => format!("not a report: {}", n.reason.as_str()),
            Outcome::Report(s) => format!("report: {} message(s)", s.reports.len()),
        };
        println!(
            "  {name:<34} {:>7.1} MB  arfwire {:>9.2} ms  bare {:>12}  {verdict}",
            input.len() as f64 / 1e6,
            ours.as_secs_f64() * 1e3,
            bare.map_or_else(
                || "(skipped)".to_owned(),
                |b| format!("{:.2} ms", b.as_secs_f64() * 1e3)
            )
        );
    }
}

/// The reliability plan's hostile shapes, generated.
fn hostile_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    let mut flat =
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    // 9,999 parts plus the multipart that holds them: exactly the 10,000-part limit.
    for _ in 0..9_999 {
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

/// Attribution cost per reported message, beside the parse cost, over the same inputs.
fn attribution_bench(inputs: &[Vec<u8>], options: &ParseOptions, min: Duration) {
    use arfwire_attribution::{DirectorySnapshot, Input, Profile, ReporterTier};
    let root = arfwire_tests::workspace_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("bench input file");
    let profile = Profile::from_toml(&read("fixtures/exchange/profile.toml")).expect("profile");
    let directory =
        DirectorySnapshot::from_toml(&read("fixtures/exchange/tenants.toml")).expect("tenants");
    let submissions: Vec<_> = inputs
        .iter()
        .filter_map(|i| match arfwire_parse::parse(i, options) {
            Outcome::Report(s) => Some(s),
            _ => None,
        })
        .collect();
    let n_reports: usize = submissions.iter().map(|s| s.reports.len()).sum();
    let mut times = Vec::new();
    let started = Instant::now();
    while started.elapsed() < min || times.len() < 5 {
        let t = Instant::now();
        for s in &submissions {
            for item in &s.reports {
                let input = Input {
                    message: &item.message,
                    feedback: item.feedback.as_ref(),
                    kind: s.kind,
                    claimed_source_ip: item.claimed_source_ip.as_ref(),
                    report_time_unix: Some(1_700_000_000),
                    reporter_tier: ReporterTier::T3,
                    verified_signatures: &[],
                };
                black_box(arfwire_attribution::attribute(&input, &profile, &directory));
            }
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let per_pass = times[times.len() / 2];
    println!(
        "  attribution             : {:>9.1} reports/s   {:>6.1} us per reported message ({} reports, {} passes)",
        n_reports as f64 / per_pass,
        per_pass / n_reports as f64 * 1e6,
        n_reports,
        times.len()
    );
}
