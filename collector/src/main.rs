//! `hostwatch-collector`: receives hostwatch agents' samples, stores them in SQLite and serves
//! the live page, the API and the event streams. Run `hostwatch-collector --help` for options.

use std::process::ExitCode;

use collector::config::{Command, Config};

/// The storage thread allocates each sample's point and the executor threads free it: under
/// glibc's malloc that cross-thread traffic contended on the writer's arena lock (a fifth of
/// the writer's time at 100,000 samples/s was in malloc, half of it waiting on that lock). mimalloc frees to the owning thread without a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::NotifyTest => {
            return match collector::notify::test_send(&config.notify) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("hostwatch-collector notify-test: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Run => {}
    }
    if let Err(err) = agent::runtime::logging::init(&config.log_level) {
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
