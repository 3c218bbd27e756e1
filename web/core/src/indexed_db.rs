//! IndexedDB's requests and transactions as futures, straight over web-sys: the little of it
//! [`store`](crate::store) uses (open with an upgrade, get, getAll, put, delete, commit). The
//! `idb` crate did the same with tokio's channels and an error enum per call: ~20 KB of wasm.

use js_sys::{Function, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DomException, EventTarget, IdbDatabase, IdbRequest, IdbTransaction};

/// Why IndexedDB failed, as the browser said it.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<JsValue> for Error {
    fn from(value: JsValue) -> Self {
        match value.dyn_ref::<js_sys::Error>() {
            Some(error) => Error(error.message().into()),
            None => Error(
                value
                    .as_string()
                    .unwrap_or_else(|| "IndexedDB failed".into()),
            ),
        }
    }
}

impl From<Option<DomException>> for Error {
    fn from(exception: Option<DomException>) -> Self {
        match exception {
            Some(exception) => Error(format!("{}: {}", exception.name(), exception.message())),
            None => Error("IndexedDB failed".into()),
        }
    }
}

/// An event name and its listener.
type Listener = (&'static str, Closure<dyn FnMut()>);

/// Wait until `target` fires `ok` (then `true`) or one of `failed` (then `false`). The
/// listeners are removed again either way.
async fn fired(target: &EventTarget, ok: &'static str, failed: &[&'static str]) -> bool {
    let mut handlers: Vec<Listener> = Vec::new();
    let promise = Promise::new(&mut |resolve: Function, reject: Function| {
        let done = Closure::new(move || {
            let _ = resolve.call0(&JsValue::NULL);
        });
        handlers.push((ok, done));
        for &name in failed {
            let reject = reject.clone();
            let fail = Closure::new(move || {
                let _ = reject.call0(&JsValue::NULL);
            });
            handlers.push((name, fail));
        }
    });
    for (name, handler) in &handlers {
        let _ = target.add_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
    }
    let outcome = JsFuture::from(promise).await;
    for (name, handler) in &handlers {
        let _ = target.remove_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
    }
    outcome.is_ok()
}

/// The result of `request` once it succeeds (`undefined` for a key that is not stored).
pub async fn result(request: &IdbRequest) -> Result<JsValue, Error> {
    if fired(request, "success", &["error"]).await {
        Ok(request.result()?)
    } else {
        Err(request.error()?.into())
    }
}

/// Commit `transaction` and wait until it is done.
pub async fn commit(transaction: &IdbTransaction) -> Result<(), Error> {
    // web-sys marks commit() deprecated: IndexedDB 2.0 dropped it and 3.0 brings it back; every
    // browser the app supports has it. Without it the transaction still commits when idle.
    #[allow(deprecated)]
    transaction.commit()?;
    if fired(transaction, "complete", &["error", "abort"]).await {
        Ok(())
    } else {
        Err(transaction.error().into())
    }
}

/// Open database `name` at `version`, first creating those of `stores` it lacks (out-of-line
/// keys, no indexes).
pub async fn open(
    name: &str,
    version: u32,
    stores: &'static [&'static str],
) -> Result<IdbDatabase, Error> {
    let factory =
        crate::global::indexed_db().ok_or(Error("this browser has no IndexedDB".into()))?;
    let request = factory.open_with_u32(name, version)?;
    let on_upgrade = {
        let request = request.clone();
        Closure::<dyn FnMut()>::new(move || {
            let Ok(database) = request.result() else {
                return;
            };
            let database: IdbDatabase = database.unchecked_into();
            for store in stores {
                if !database.object_store_names().contains(store) {
                    let _ = database.create_object_store(store);
                }
            }
        })
    };
    request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let database = result(&request).await;
    request.set_onupgradeneeded(None);
    Ok(database?.unchecked_into())
}
