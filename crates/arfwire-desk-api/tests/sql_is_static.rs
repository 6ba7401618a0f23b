//! CI lint (test plan S4): the desk's SQL is static text with bound parameters. Fails when a
//! source file builds SQL with `format!`, passes anything but a string literal to a sqlx query
//! function, or reaches for sqlx's escape hatches (`AssertSqlSafe`, `QueryBuilder`,
//! `raw_sql`).

use std::path::{Path, PathBuf};

const QUERY_FUNCTIONS: [&str; 6] = [
    "query(",
    "query_as(",
    "query_scalar(",
    "query_with(",
    "query_as_with(",
    "query_scalar_with(",
];

const ESCAPE_HATCHES: [&str; 4] = [
    "AssertSqlSafe",
    "QueryBuilder",
    "raw_sql",
    "query_unchecked",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literal that starts at `text` (after optional whitespace), if one does.
fn literal_at(text: &str) -> Option<&str> {
    let text = text.trim_start();
    let text = text
        .strip_prefix('r')
        .map_or(text, |t| t.trim_start_matches('#'));
    let body = text.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(&body[..i]),
            _ => escaped = false,
        }
    }
    Some(body)
}

fn looks_like_sql(text: &str) -> bool {
    let words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    let pair = |a: &str, b: &str| words.windows(2).any(|p| p[0] == a && p[1] == b);
    has("select")
        || has("where")
        || has("union")
        || pair("insert", "into")
        || pair("delete", "from")
        || pair("drop", "table")
        || (has("update") && has("set"))
}

/// Every problem in one file's text, as `line: message`.
fn problems(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    for hatch in ESCAPE_HATCHES {
        for (at, _) in text.match_indices(hatch) {
            found.push(format!("{}: uses {hatch}", line_of(at)));
        }
    }
    for function in QUERY_FUNCTIONS {
        for (at, _) in text.match_indices(function) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // another function whose name ends the same way
            }
            if !text[..at].ends_with("sqlx::") {
                continue; // not sqlx's
            }
            if literal_at(&text[at + function.len()..]).is_none() {
                found.push(format!(
                    "{}: sqlx::{function}..) is not given a string literal",
                    line_of(at)
                ));
            }
        }
    }
    for (at, _) in text.match_indices("format!(") {
        if let Some(literal) = literal_at(&text[at + "format!(".len()..])
            && looks_like_sql(literal)
        {
            found.push(format!(
                "{}: SQL built with format!: {literal:?}",
                line_of(at)
            ));
        }
    }
    found
}

#[test]
fn the_lint_catches_what_it_should() {
    let bad = r#"
        let q = format!("SELECT * FROM reports WHERE tenant_id = '{t}'");
        sqlx::query(&q).fetch_all(pool);
        sqlx::query(AssertSqlSafe(q));
        let b = QueryBuilder::new("SELECT 1");
        let u = format!("update reports set status = '{s}'");
    "#;
    let found = problems(bad);
    assert_eq!(found.len(), 6, "{found:#?}");
    let good = r#"
        sqlx::query("SELECT 1 WHERE $1::text IS NULL").bind(x);
        sqlx::query_scalar(
            "SELECT count(*) FROM reports",
        );
        let m = format!("unknown status {s:?}: use new or dismissed");
        let f = format!("reports-{t}.csv");
    "#;
    assert!(problems(good).is_empty(), "{:#?}", problems(good));
}

#[test]
fn desk_sql_is_static_with_bound_parameters() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() >= 5, "found the sources");
    let mut all = Vec::new();
    let mut queries = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        queries += QUERY_FUNCTIONS
            .iter()
            .map(|f| text.matches(&format!("sqlx::{f}")).count())
            .sum::<usize>();
        for p in problems(&text) {
            all.push(format!("{}:{p}", file.display()));
        }
    }
    assert!(queries > 30, "the lint saw the queries ({queries})");
    assert!(
        all.is_empty(),
        "SQL must be static text with bound parameters:\n{}",
        all.join("\n")
    );
}
