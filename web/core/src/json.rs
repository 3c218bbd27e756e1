//! The plain values the core hands JS (the view, transcript events, the book it stores), written
//! as JSON by serde_json and made objects by the browser's `JSON.parse`: serde_json's
//! serializer is much smaller in the wasm than serde-wasm-bindgen's. What JS hands the core is
//! read by [`read`](crate::read).

use serde::Serialize;
use wasm_bindgen::JsValue;

/// `value` as the UI gets it: records as objects, `None` fields left out (every optional field
/// of the views skips `None`, so none becomes `null`).
pub fn to_js<T: Serialize>(value: &T) -> JsValue {
    try_to_js(value).unwrap_or(JsValue::UNDEFINED)
}

/// [`to_js`], or `None` if `value` cannot be written (a map with keys that are not strings).
pub fn try_to_js<T: Serialize>(value: &T) -> Option<JsValue> {
    let json = serde_json::to_string(value).ok()?;
    js_sys::JSON::parse(&json).ok()
}
