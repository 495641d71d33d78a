//! The wasm entry point: hydrates the server-rendered page.
// The pages' view types nest deeply; laying them out in the release build needs the room.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Waits for a lazily loaded route's code before hydrating it.
    leptos::mount::hydrate_lazy(app::App);
}

/// Room in the read-only data for the split (`cargo leptos build --split`). The splitter lays out
/// each module's constants anew, aligned, within the span the linker gave them; when that layout
/// comes out longer than the span (its padding), it gives up and puts every constant of every
/// lazily loaded module into the first one. The same code measured 312 KB brotli that way
/// against 285 KB with this room (docs/benchmarks.md, "The page's weight"). Nothing refers to
/// it, so no module carries it.
#[used]
static SPLIT_SLACK: [u8; 16 * 1024] = [0xa5; 16 * 1024];
