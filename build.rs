//! Fixes the `--version` text at build time: the target triple and the git commit. The code is
//! the relay's (relay/build/info.rs), so both programs say it the same way.

#[path = "relay/build/info.rs"]
mod info;

fn main() {
    info::emit();
}
