//! What the core needs of the JS global scope, the same in a page (`Window`) and in the service
//! worker (`ServiceWorkerGlobalScope`): timers, IndexedDB and the location. web-sys reaches
//! these through `window()`, which a worker does not have.

use js_sys::{Function, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::IdbFactory;

#[wasm_bindgen]
extern "C" {
    /// `setTimeout(handler, ms)`: the timer's handle.
    #[wasm_bindgen(js_name = setTimeout)]
    pub fn set_timeout(handler: &Function, ms: i32) -> i32;
    /// `clearTimeout(handle)`.
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(handle: i32);
}

fn field(of: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(of, &key.into())
        .ok()
        .filter(|value| !value.is_undefined() && !value.is_null())
}

/// `indexedDB`, if the browser gives this context one.
pub fn indexed_db() -> Option<IdbFactory> {
    field(&js_sys::global(), "indexedDB")?.dyn_into().ok()
}

/// The page's (or the worker's) location: origin, protocol (`https:`) and host.
pub fn location() -> Option<(String, String, String)> {
    let location = field(&js_sys::global(), "location")?;
    let text = |key| field(&location, key)?.as_string();
    Some((text("origin")?, text("protocol")?, text("host")?))
}
