//! Fuzz the whole parse: arbitrary bytes, and the same bytes mapped into a small alphabet of
//! structural tokens.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "invariants.rs"]
mod invariants;

fuzz_target!(|data: &[u8]| {
    let options = arfwire_parse::ParseOptions::default();
    invariants::outcome(data, &arfwire_parse::parse(data, &options));
    let remapped = invariants::remap(data);
    invariants::outcome(&remapped, &arfwire_parse::parse(&remapped, &options));
});
