//! `muxagent-relay --version`: the version, the target it was built for and the git commit, fixed
//! at build time by build.rs, e.g. `muxagent-relay 0.1.0 (aarch64-unknown-linux-musl, commit
//! abc1234)`.

/// The whole `--version` line.
pub const LINE: &str = concat!(
    env!("CARGO_PKG_NAME"),
    " ",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MUXAGENT_BUILD_TARGET"),
    ", commit ",
    env!("MUXAGENT_BUILD_COMMIT"),
    ")"
);

/// Prints [`LINE`] if the command line is only `--version` (or `-V`): then the program is done.
/// Call it before parsing the command line.
pub fn print_if_requested() -> bool {
    let mut args = std::env::args_os().skip(1);
    let asked = matches!(args.next(), Some(arg) if arg == "--version" || arg == "-V")
        && args.next().is_none();
    if asked {
        println!("{LINE}");
    }
    asked
}
