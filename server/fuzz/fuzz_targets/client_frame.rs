//! Any bytes a socket may send: parsed as a client frame, a publish validated as the server
//! does, and a frame that parses must survive a round trip unchanged.
#![no_main]

use app::protocol::{ClientFrame, NewEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = serde_json::from_slice::<ClientFrame>(data) else {
        return;
    };
    if let ClientFrame::Publish { kind, data, .. } = &frame {
        let event = NewEvent {
            kind: *kind,
            data: data.clone(),
        };
        let _ = event.validate();
    }
    let text = serde_json::to_string(&frame).expect("a parsed frame serialises");
    let again: ClientFrame = serde_json::from_str(&text).expect("and parses again");
    assert_eq!(again, frame);
});
