//! Fuzz the `message/feedback-report` field grammar on its own.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "invariants.rs"]
#[allow(dead_code)]
mod invariants;

fuzz_target!(|data: &[u8]| {
    let limits = arfwire_parse::Limits::default();
    for input in [data.to_vec(), invariants::remap(data)] {
        let (report, diagnostics) = arfwire_parse::parse_feedback_fields(&input, &limits);
        invariants::feedback(&report);
        for d in &diagnostics {
            assert!(!d.message.contains('\0'), "NUL in a diagnostic");
        }
        if let Some(incidents) = report.incidents {
            assert!(incidents <= limits.max_incidents, "Incidents not capped");
        }
    }
});
