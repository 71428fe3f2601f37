//! `shmring`: create rings and look into them, record them with ffmpeg,
//! and run the demo. `shmring --help` lists the commands; each has its own
//! `--help`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod bridge;
mod capture;
mod cat;
mod chromium;
mod chromium_exec;
mod chromium_stock;
mod cli;
mod demo;
mod encoder;
mod failure;
mod host;
mod probe;
mod process;
mod record;
mod size;
mod stat;
mod stream_table;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Create(args) => host::create(args),
        Command::Hold(args) => host::hold(args),
        Command::Rm(args) => host::remove(args),
        Command::Gc(args) => host::gc(args),
        Command::Stat(args) => stat::stat(args),
        Command::Top(args) => stat::top(args),
        Command::Cat(args) => cat::cat(args),
        Command::Record(args) => record::record(args),
        Command::Demo(args) => demo::demo(args),
        Command::Camera(args) => capture::camera(args),
        Command::Microphone(args) => capture::microphone(args),
        Command::Bridge(args) => bridge::serve(args),
        Command::Chromium(args) => chromium::launch(args),
        Command::ChromiumExec(args) => chromium_exec::run(args),
        Command::Bench(args) => return bench(args.args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("shmring: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Events go to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

/// The transport comparison of `shmring-benches`, hosted as a subcommand:
/// its producer and consumer processes are this binary again.
fn bench(args: Vec<String>) -> ExitCode {
    use shmring_benches::compare::{self, Relaunch};
    if args.first().is_some_and(|a| a == "bot") {
        let Ok(shmring) = std::env::current_exe() else {
            eprintln!("shmring bench bot: cannot find this program");
            return ExitCode::FAILURE;
        };
        let host = shmring_benches::bot::Host { shmring, display: "shmring bench".to_string() };
        return shmring_benches::bot::main(&args[1..], &host);
    }
    let relaunch = Relaunch { prefix: vec!["bench".to_string()], display: "shmring bench".to_string() };
    compare::main(&args, &relaunch)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
