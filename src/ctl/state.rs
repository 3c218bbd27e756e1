//! The controller's own state in `$MUXAGENT_HOME/controller/`: its key (`controller.key`, 0600)
//! and the machines it paired with (`machines.json`, a [`Book`]). The book's data and rules are
//! [`muxagent_client::book`]'s, shared with the web app; only the files are here.

use muxagent_client::book::Book;
pub use muxagent_client::book::Machine;

use crate::home::{Home, HomeError};

/// The controller's key file.
pub const KEY_FILE: &str = "controller.key";
/// The machines file.
pub const MACHINES_FILE: &str = "machines.json";

/// The paired machines (empty when there is no file).
pub fn load(home: &Home) -> Result<Book, HomeError> {
    Ok(home.read_json(MACHINES_FILE)?.unwrap_or_default())
}

/// Save the paired machines atomically.
pub fn save(book: &Book, home: &Home) -> Result<(), HomeError> {
    home.write_json(MACHINES_FILE, book)
}
