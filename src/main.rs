//! `muxagent`: the daemon and the command line.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("muxagent: not built yet");
    std::process::exit(1);
}
