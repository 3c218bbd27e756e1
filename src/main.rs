//! `muxagent`: the daemon and the command line.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod ctl;
mod daemon;
mod home;
mod limits;
mod log;
mod os;
mod qr;
mod render;
#[cfg(feature = "up")]
mod up;

use cli::{AuthCommand, Command, DaemonCommand};
use commands::CommandError;

fn main() {
    if muxagent_relay_client::version::print_if_requested(muxagent_relay_client::version_line!()) {
        return;
    }
    let cli: cli::Cli = argh::from_env();
    if let Err(error) = run(cli.command) {
        // Errors quote what machines, relays and agents said: no escape reaches the terminal.
        eprintln!(
            "muxagent: {}",
            muxagent_client::words::visible_text(&error.to_string())
        );
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<(), CommandError> {
    let home = home::Home::from_env()?;
    match command {
        #[cfg(feature = "up")]
        Command::Up(up) => up::run(&home, &up.listen, up.public_url),
        Command::Daemon(daemon) => match daemon.command {
            DaemonCommand::Start(start) => commands::daemon_start(&home, start),
            DaemonCommand::Stop(_) => commands::daemon_stop(&home),
            DaemonCommand::Status(status) => commands::daemon_status(&home, status.json),
            DaemonCommand::Install(_) => commands::daemon_install(&home),
        },
        Command::Pair(pair) => commands::pair(&home, pair),
        Command::Auth(auth) => match auth.command {
            AuthCommand::Status(status) => commands::auth_status(&home, status.json),
        },
        Command::Unpair(unpair) if unpair.local => commands::reset(&home),
        Command::Unpair(_) => commands::unpair(&home),
        Command::Sessions(sessions) => commands::sessions(&home, sessions.json),
        Command::Version(_) => {
            println!("{}", muxagent_relay_client::version_line!());
            Ok(())
        }
        Command::Ctl(ctl) => ctl::run(&home, ctl.command),
    }
}
