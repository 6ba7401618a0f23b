//! The counts `arfwire process` prints when it is done, taken from parse outcomes.

use std::collections::BTreeMap;
use std::time::Duration;

use arfwire_parse::{Outcome, RejectReason};

/// Counts gathered over one run.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    /// Submissions that reached a decision: parsed, or refused by the intake as too large.
    pub(crate) submissions: u64,
    /// Submissions recognised as reports.
    pub(crate) reports: u64,
    /// Abuse events (one per reported message).
    pub(crate) events: u64,
    pub(crate) events_by_kind: BTreeMap<&'static str, u64>,
    pub(crate) events_by_feedback_type: BTreeMap<String, u64>,
    /// Rejection records.
    pub(crate) rejected: u64,
    pub(crate) not_report_by_reason: BTreeMap<&'static str, u64>,
    pub(crate) refused_by_reason: BTreeMap<&'static str, u64>,
    /// Inputs that yielded no record: unreadable, or too large and unreadable too.
    pub(crate) input_errors: u64,
}

/// The label for events whose report carried no `Feedback-Type`.
const NO_FEEDBACK_TYPE: &str = "(none)";

impl Summary {
    /// Count one decided submission.
    pub(crate) fn record(&mut self, outcome: &Outcome) {
        self.submissions += 1;
        match outcome {
            Outcome::Report(submission) if !submission.reports.is_empty() => {
                self.reports += 1;
                for item in &submission.reports {
                    self.events += 1;
                    *self
                        .events_by_kind
                        .entry(submission.kind.as_str())
                        .or_default() += 1;
                    let feedback_type = item
                        .feedback
                        .as_ref()
                        .and_then(|f| f.feedback_type.as_deref())
                        .unwrap_or(NO_FEEDBACK_TYPE);
                    *self
                        .events_by_feedback_type
                        .entry(printable(feedback_type))
                        .or_default() += 1;
                }
            }
            // A report without reported messages is refused as a parser failure when the
            // records are derived; count it the same way.
            Outcome::Report(_) => self.refuse(RejectReason::ParserFailure.as_str()),
            Outcome::NotReport(not_report) => {
                self.rejected += 1;
                *self
                    .not_report_by_reason
                    .entry(not_report.reason.as_str())
                    .or_default() += 1;
            }
            Outcome::Rejected(rejection) => self.refuse(rejection.reason.as_str()),
        }
    }

    fn refuse(&mut self, reason: &'static str) {
        self.rejected += 1;
        *self.refused_by_reason.entry(reason).or_default() += 1;
    }

    /// The summary for a person, ending with a newline.
    pub(crate) fn render(&self, elapsed: Duration) -> String {
        let mut rows: Vec<Row<'_>> = Vec::new();
        let counts = |rows: &mut Vec<Row<'_>>, heading, map: Vec<(&'static str, u64)>| {
            if map.is_empty() {
                return;
            }
            rows.push(Row::heading(4, heading));
            let mut map = map;
            map.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            rows.extend(map.into_iter().map(|(name, n)| Row::count(6, name, n)));
        };
        rows.push(Row::count(2, "events", self.events));
        counts(
            &mut rows,
            "by kind",
            self.events_by_kind.iter().map(|(k, n)| (*k, *n)).collect(),
        );
        if !self.events_by_feedback_type.is_empty() {
            rows.push(Row::heading(4, "by feedback type"));
            let mut by_type: Vec<(&str, u64)> = self
                .events_by_feedback_type
                .iter()
                .map(|(k, n)| (k.as_str(), *n))
                .collect();
            by_type.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            rows.extend(by_type.into_iter().map(|(name, n)| Row::count(6, name, n)));
        }
        rows.push(Row::count(2, "rejected", self.rejected));
        counts(
            &mut rows,
            "not a report",
            self.not_report_by_reason
                .iter()
                .map(|(k, n)| (*k, *n))
                .collect(),
        );
        counts(
            &mut rows,
            "refused",
            self.refused_by_reason
                .iter()
                .map(|(k, n)| (*k, *n))
                .collect(),
        );
        rows.push(Row::count(2, "input errors", self.input_errors));

        let width = rows
            .iter()
            .map(|row| row.indent + row.label.chars().count())
            .max()
            .unwrap_or(0)
            .max(24);
        let mut out = format!(
            "arfwire: {} submission{} ({} report{}) in {:.2} s\n",
            self.submissions,
            plural(self.submissions),
            self.reports,
            plural(self.reports),
            elapsed.as_secs_f64()
        );
        for row in rows {
            let label = format!("{:indent$}{}", "", row.label, indent = row.indent);
            match row.count {
                Some(n) => out.push_str(&format!("{label:<width$}  {n:>6}\n")),
                None => out.push_str(&format!("{label}\n")),
            }
        }
        out
    }
}

/// One line of the rendered summary.
struct Row<'a> {
    indent: usize,
    label: &'a str,
    count: Option<u64>,
}

impl<'a> Row<'a> {
    fn heading(indent: usize, label: &'a str) -> Self {
        Row {
            indent,
            label,
            count: None,
        }
    }

    fn count(indent: usize, label: &'a str, n: u64) -> Self {
        Row {
            indent,
            label,
            count: Some(n),
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A feedback type as written by a reporter, made safe to print: control characters escaped.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_run_says_so() {
        let text = Summary::default().render(Duration::from_millis(1500));
        assert!(
            text.starts_with("arfwire: 0 submissions (0 reports) in 1.50 s\n"),
            "{text}"
        );
        assert!(text.contains("\n  events      "), "{text}");
        assert!(!text.contains("by kind"), "{text}");
        assert!(text.contains("\n  input errors"), "{text}");
    }

    #[test]
    fn outcomes_are_counted_by_reason() {
        let mut summary = Summary::default();
        summary.record(&arfwire_parse::parse(b"", &Default::default()));
        summary.record(&arfwire_parse::parse(
            b"\x00\x01garbage",
            &Default::default(),
        ));
        assert_eq!(summary.submissions, 2);
        assert_eq!(summary.rejected, 2);
        assert_eq!(summary.refused_by_reason.get("empty"), Some(&1));
        let text = summary.render(Duration::ZERO);
        assert!(text.contains("\n    refused\n"), "{text}");
        assert!(text.contains("      empty"), "{text}");
    }

    #[test]
    fn control_characters_in_feedback_types_are_escaped() {
        assert_eq!(printable("abuse\u{1b}[31m"), "abuse\\u{1b}[31m");
    }
}
