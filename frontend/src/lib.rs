//! The wasm entry point: hydrates the server-rendered page.
// The pages' view types nest deeply; laying them out in the release build needs the room.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Waits for a lazily loaded route's code before hydrating it.
    leptos::mount::hydrate_lazy(app::App);
}
