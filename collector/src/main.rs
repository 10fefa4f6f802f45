//! `hostwatch-collector`: receives hostwatch agents' samples, stores them in SQLite and serves
//! the live page, the API and the event streams. Run `hostwatch-collector --help` for options.

use std::process::ExitCode;

use collector::config::{Command, Config};

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("hostwatch-collector: bad configuration: {err}");
            return ExitCode::from(2);
        }
    };
    match config.command {
        Command::Help => {
            print!("{}", Config::help());
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("hostwatch-collector {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Run => {}
    }
    if let Err(err) = agent::logging::init(&config.log_level) {
        eprintln!("hostwatch-collector: {err:#}");
        return ExitCode::from(2);
    }
    match collector::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
