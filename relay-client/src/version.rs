//! `--version` for both programs, `muxagent` and `muxagent-relay`: the version, the target it was
//! built for and the git commit, fixed at build time by the build script each package shares
//! (`relay/build/info.rs`), e.g. `muxagent-relay 0.1.0 (aarch64-unknown-linux-musl, commit
//! abc1234)`.

/// The whole `--version` line of the package that calls it (its name and version are read where
/// the macro is expanded, so each program names itself).
#[macro_export]
macro_rules! version_line {
    () => {
        concat!(
            env!("CARGO_PKG_NAME"),
            " ",
            env!("CARGO_PKG_VERSION"),
            " (",
            env!("MUXAGENT_BUILD_TARGET"),
            ", commit ",
            env!("MUXAGENT_BUILD_COMMIT"),
            ")"
        )
    };
}

/// Prints `line` (a [`version_line!`]) if the command line is only `--version` (or `-V`): then
/// the program is done. Call it before parsing the command line.
pub fn print_if_requested(line: &str) -> bool {
    let mut args = std::env::args_os().skip(1);
    let asked = matches!(args.next(), Some(arg) if arg == "--version" || arg == "-V")
        && args.next().is_none();
    if asked {
        println!("{line}");
    }
    asked
}
