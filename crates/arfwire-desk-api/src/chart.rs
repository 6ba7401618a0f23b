//! The reports-over-time chart, drawn on the server as inline SVG (no script, no external
//! resource, nothing the page's Content-Security-Policy has to allow).

use chrono::NaiveDate;
use maud::{Markup, html};

/// One bar: a day and how many reports it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCount {
    /// The UTC day.
    pub day: NaiveDate,
    /// Reports received that day.
    pub count: i64,
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 240;
const LEFT: u32 = 44;
const RIGHT: u32 = 8;
const TOP: u32 = 12;
const BOTTOM: u32 = 36;

/// A round axis maximum at or above `max`: 1, 2, 5, 10, 20, 50, ...
fn nice_max(max: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            let candidate = step.saturating_mul(m);
            if candidate >= max {
                return candidate;
            }
        }
        if step > i64::MAX / 10 {
            return max;
        }
        step *= 10;
    }
}

/// Bars for `days` (oldest first), with the axis maximum, a few date labels and a tooltip per
/// bar. Empty input draws an empty frame with a note.
pub fn bar_chart(days: &[DayCount], label: &str) -> Markup {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max = nice_max(days.iter().map(|d| d.count).max().unwrap_or(0).max(1));
    let n = u32::try_from(days.len()).unwrap_or(u32::MAX).max(1);
    let slot = f64::from(plot_w) / f64::from(n);
    let bar_w = (slot * 0.8).max(1.0);
    let label_every = (days.len() / 6).max(1);
    let total: i64 = days.iter().map(|d| d.count).sum();
    html! {
        svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) preserveAspectRatio="xMinYMin meet"
            aria-label=(format!("{label}: {total} reports over {} days", days.len())) {
            title { (label) }
            line class="axis" x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + plot_h) {}
            line class="axis" x1=(LEFT) y1=(TOP + plot_h) x2=(WIDTH - RIGHT) y2=(TOP + plot_h) {}
            text class="tick" x=(LEFT - 6) y=(TOP + 4) text-anchor="end" { (max) }
            text class="tick" x=(LEFT - 6) y=(TOP + plot_h) text-anchor="end" { "0" }
            line class="grid" x1=(LEFT) y1=(TOP + plot_h / 2) x2=(WIDTH - RIGHT) y2=(TOP + plot_h / 2) {}
            text class="tick" x=(LEFT - 6) y=(TOP + plot_h / 2 + 4) text-anchor="end" { (max / 2) }
            @if days.is_empty() {
                text class="tick" x=(LEFT + plot_w / 2) y=(TOP + plot_h / 2) text-anchor="middle" {
                    "no reports in this period"
                }
            }
            @for (i, d) in days.iter().enumerate() {
                @let x = f64::from(LEFT) + slot * i as f64 + (slot - bar_w) / 2.0;
                @let h = f64::from(plot_h) * d.count as f64 / max as f64;
                @let y = f64::from(TOP + plot_h) - h;
                rect class="bar" data-day=(d.day) data-count=(d.count)
                    x=(format!("{x:.1}")) y=(format!("{y:.1}"))
                    width=(format!("{bar_w:.1}")) height=(format!("{h:.1}")) {
                    title { (d.day) ": " (d.count) @if d.count == 1 { " report" } @else { " reports" } }
                }
                @if i % label_every == 0 || i + 1 == days.len() {
                    text class="tick" x=(format!("{:.1}", x + bar_w / 2.0)) y=(TOP + plot_h + 16)
                        text-anchor="middle" { (d.day.format("%m-%d")) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maximum_is_round() {
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(101), 200);
    }

    #[test]
    fn one_bar_per_day_and_escaped_label() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
        let days: Vec<DayCount> = (0..30)
            .map(|i| DayCount {
                day: day + chrono::Days::new(i),
                count: i as i64 % 4,
            })
            .collect();
        let svg = bar_chart(&days, "<script>x</script>").into_string();
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 30);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("data-day=\"2026-01-30\""));
    }
}
