#![forbid(unsafe_code)]

fn main() {
    eprintln!("muxagent-relay: not built yet");
    std::process::exit(1);
}
