//! Any series selector (`cpu{core="0"}`, lists of them): a selector that parses is written back
//! as text that parses to the same.
#![no_main]

use app::metrics::Series;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(series) = text.parse::<Series>() {
        let again: Series = series.to_string().parse().expect("written selectors parse");
        assert_eq!(again, series);
    }
    if let Ok(list) = Series::parse_list(text) {
        let written: Vec<String> = list.iter().map(Series::to_string).collect();
        let again = Series::parse_list(&written.join(", ")).expect("written lists parse");
        assert_eq!(again, list);
    }
});
