//! The plain objects the core is handed, read field by field: a start request and a decision
//! from the UI, the book from IndexedDB. Three small shapes; a serde deserializer for them
//! (serde-wasm-bindgen's from JS values, or serde_json's from `JSON.stringify`) cost the wasm
//! ~25 KB. The rules are written once over [`Object`], so the native tests read serde_json
//! values exactly as the wasm reads JS ones, and they follow serde's: an absent or `null`
//! optional field is `None`, one of the wrong type is an error.

use muxagent_client::book::{Book, Machine};

use crate::view::DecisionView;

/// A JS value as far as these readers look at it.
pub trait Object: Sized {
    /// The value at `key`; `None` when absent, `undefined` or `null`.
    fn get(&self, key: &str) -> Option<Self>;
    /// The string this is.
    fn text(&self) -> Option<String>;
    /// The number this is.
    fn number(&self) -> Option<f64>;
    /// The elements of the array this is.
    fn elements(&self) -> Option<Vec<Self>>;
}

/// `StartRequest` in the contract (`prompt` absent for `startFromPlan`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRequest {
    /// The runtime's name.
    pub runtime: String,
    /// The working directory.
    pub cwd: String,
    /// A title, else the machine makes one.
    pub title: Option<String>,
    /// The permission mode to start in.
    pub mode: Option<String>,
    /// The first prompt; empty when absent.
    pub prompt: String,
    /// The agent's command line for `acp`.
    pub args: Option<Vec<String>>,
}

fn required(object: &impl Object, key: &str) -> Result<String, String> {
    optional(object, key)?.ok_or_else(|| format!("missing field `{key}`"))
}

fn optional(object: &impl Object, key: &str) -> Result<Option<String>, String> {
    match object.get(key) {
        None => Ok(None),
        Some(value) => match value.text() {
            Some(text) => Ok(Some(text)),
            None => Err(format!("`{key}` is not a string")),
        },
    }
}

/// A start request from the UI.
pub fn start_request(object: &impl Object) -> Result<StartRequest, String> {
    let args = match object.get("args") {
        None => None,
        Some(list) => {
            let elements = list.elements().ok_or("`args` is not a list")?;
            let args: Option<Vec<String>> = elements.iter().map(Object::text).collect();
            Some(args.ok_or("`args` holds something other than strings")?)
        }
    };
    Ok(StartRequest {
        runtime: required(object, "runtime")?,
        cwd: required(object, "cwd")?,
        title: optional(object, "title")?,
        mode: optional(object, "mode")?,
        prompt: optional(object, "prompt")?.unwrap_or_default(),
        args,
    })
}

/// A decision from the UI: `{ kind: "allow_once" | "allow_always" }` or
/// `{ kind: "deny", message }`.
pub fn decision(object: &impl Object) -> Result<DecisionView, String> {
    let kind = required(object, "kind")?;
    match kind.as_str() {
        "allow_once" => Ok(DecisionView::AllowOnce),
        "allow_always" => Ok(DecisionView::AllowAlways),
        "deny" => Ok(DecisionView::Deny {
            message: required(object, "message")?,
        }),
        _ => Err(format!("unknown decision `{kind}`")),
    }
}

/// The book as the store keeps it: `{ machines: [{ hostname, fingerprint, signing, noise,
/// relay, paired_at }] }` (what `Book`'s serde form is, written through JSON). `None` if any
/// of it is damaged.
pub fn book(object: &impl Object) -> Option<Book> {
    let machines = object
        .get("machines")?
        .elements()?
        .iter()
        .map(|machine| {
            let text = |key| machine.get(key)?.text();
            let paired_at = machine.get("paired_at")?.number()?;
            Some(Machine {
                hostname: text("hostname")?,
                fingerprint: text("fingerprint")?,
                signing: text("signing")?,
                noise: text("noise")?,
                relay: text("relay")?,
                paired_at: whole(paired_at)?,
            })
        })
        .collect::<Option<Vec<Machine>>>()?;
    Some(Book { machines })
}

/// A JS number that is a whole `u64` (JS numbers are exact up to 2^53).
pub fn whole(number: f64) -> Option<u64> {
    const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
    ((0.0..=MAX_SAFE_INTEGER).contains(&number) && number.fract() == 0.0).then_some(number as u64)
}

impl Object for wasm_bindgen::JsValue {
    fn get(&self, key: &str) -> Option<Self> {
        if !self.is_object() {
            return None;
        }
        let value = js_sys::Reflect::get(self, &key.into()).ok()?;
        (!value.is_undefined() && !value.is_null()).then_some(value)
    }

    fn text(&self) -> Option<String> {
        self.as_string()
    }

    fn number(&self) -> Option<f64> {
        self.as_f64()
    }

    fn elements(&self) -> Option<Vec<Self>> {
        js_sys::Array::is_array(self).then(|| js_sys::Array::from(self).to_vec())
    }
}

/// serde_json values read as the wasm reads JS ones, for the native tests.
#[cfg(test)]
mod json_object {
    use serde_json::Value;

    use super::Object;

    impl Object for Value {
        fn get(&self, key: &str) -> Option<Self> {
            self.as_object()?
                .get(key)
                .filter(|value| !value.is_null())
                .cloned()
        }

        fn text(&self) -> Option<String> {
            self.as_str().map(String::from)
        }

        fn number(&self) -> Option<f64> {
            self.as_f64()
        }

        fn elements(&self) -> Option<Vec<Self>> {
            self.as_array().cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn start_requests_read_as_the_ui_writes_them() {
        let full = json!({ "runtime": "acp", "cwd": "/w", "title": "t", "mode": "plan",
                           "prompt": "go", "args": ["npx", "agent"], "extra": 1 });
        assert_eq!(
            start_request(&full),
            Ok(StartRequest {
                runtime: "acp".into(),
                cwd: "/w".into(),
                title: Some("t".into()),
                mode: Some("plan".into()),
                prompt: "go".into(),
                args: Some(vec!["npx".into(), "agent".into()]),
            })
        );
        let bare = start_request(&json!({ "runtime": "claude", "cwd": "/w", "title": null }));
        assert_eq!(
            bare,
            Ok(StartRequest {
                runtime: "claude".into(),
                cwd: "/w".into(),
                title: None,
                mode: None,
                prompt: String::new(),
                args: None,
            })
        );
        assert_eq!(
            start_request(&json!({ "cwd": "/w" })),
            Err("missing field `runtime`".into())
        );
        assert!(start_request(&json!({ "runtime": "c", "cwd": "/w", "mode": 3 })).is_err());
        assert!(start_request(&json!({ "runtime": "c", "cwd": "/w", "args": "npx" })).is_err());
        assert!(start_request(&json!({ "runtime": "c", "cwd": "/w", "args": [1] })).is_err());
        assert!(start_request(&json!("claude")).is_err());
    }

    #[test]
    fn decisions_read_as_the_ui_writes_them() {
        assert_eq!(
            decision(&json!({ "kind": "allow_once" })),
            Ok(DecisionView::AllowOnce)
        );
        assert_eq!(
            decision(&json!({ "kind": "allow_always" })),
            Ok(DecisionView::AllowAlways)
        );
        assert_eq!(
            decision(&json!({ "kind": "deny", "message": "why" })),
            Ok(DecisionView::Deny {
                message: "why".into()
            })
        );
        // What the view shows reads back the same.
        for shown in [
            DecisionView::AllowOnce,
            DecisionView::AllowAlways,
            DecisionView::Deny {
                message: "not now".into(),
            },
        ] {
            assert_eq!(decision(&serde_json::to_value(&shown).unwrap()), Ok(shown));
        }
        assert!(decision(&json!({ "kind": "maybe" })).is_err());
        assert!(
            decision(&json!({ "kind": "deny" })).is_err(),
            "a deny says why"
        );
    }

    #[test]
    fn the_book_reads_back_from_its_serde_form() {
        let book = Book {
            machines: vec![
                Machine {
                    hostname: "alpha".into(),
                    fingerprint: "aa".repeat(32),
                    signing: "bb".repeat(32),
                    noise: "cc".repeat(32),
                    relay: "https://r.example".into(),
                    paired_at: 1_700_000_000,
                },
                Machine {
                    hostname: "beta".into(),
                    fingerprint: "dd".repeat(32),
                    signing: "ee".repeat(32),
                    noise: "ff".repeat(32),
                    relay: "http://127.0.0.1:8080".into(),
                    paired_at: 0,
                },
            ],
        };
        let stored = serde_json::to_value(&book).unwrap();
        assert_eq!(super::book(&stored), Some(book));
        assert_eq!(
            super::book(&json!({ "machines": [] })),
            Some(Book::default())
        );
        let mut damaged = stored.clone();
        damaged["machines"][1]["paired_at"] = json!(-1);
        assert_eq!(super::book(&damaged), None);
        damaged["machines"][1]["paired_at"] = json!(1.5);
        assert_eq!(super::book(&damaged), None);
        let mut damaged = stored;
        damaged["machines"][0]
            .as_object_mut()
            .unwrap()
            .remove("noise");
        assert_eq!(super::book(&damaged), None);
        assert_eq!(super::book(&json!(null)), None);
    }
}
