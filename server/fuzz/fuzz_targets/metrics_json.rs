//! Any body of `POST /api/metrics`: parsed and grouped by source as the server does; what it
//! accepts holds only valid points.
#![no_main]

use app::metrics::{Sample, check_point, group_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(samples) = serde_json::from_slice::<Vec<Sample>>(data) else {
        return;
    };
    let now = chrono::Utc::now();
    if let Ok(rooms) = group_batch(samples, now) {
        for (_, points) in rooms {
            for point in points {
                check_point(&point, now).expect("accepted points are valid");
            }
        }
    }
});
