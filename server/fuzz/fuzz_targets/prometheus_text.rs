//! Any Prometheus exposition text: parsed as the ingest endpoint does; what it accepts holds
//! only valid points.
#![no_main]

use app::metrics::check_point;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let now = chrono::Utc::now();
    if let Ok(parsed) = server::prometheus::parse(text, now) {
        for point in &parsed.points {
            check_point(point, now).expect("accepted points are valid");
        }
    }
});
