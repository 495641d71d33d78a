//! Any Prometheus exposition text: parsed as the ingest endpoint does (which then checks each
//! point's names and time); what it accepts are finite samples of well-formed metric names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let now = chrono::Utc::now();
    if let Ok(parsed) = server::prometheus::parse(text, now) {
        for point in &parsed.points {
            assert!(point.value.is_finite());
            let name = point.series.as_str();
            assert!(!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()));
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "_:".contains(c)));
        }
    }
});
