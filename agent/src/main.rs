//! `hostwatch-agent`: samples this host's metrics every interval and pushes them to a hostwatch
//! collector, spooling them while it is away. Run `hostwatch-agent --help` for the options.

use std::process::ExitCode;

use agent::config::{Command, Config};

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("hostwatch-agent: bad configuration: {err}");
            return ExitCode::from(2);
        }
    };
    match config.command {
        Command::Help => {
            print!("{}", Config::help());
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("hostwatch-agent {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::CheckConfig => {
            println!("configuration OK: {config:#?}");
            return ExitCode::SUCCESS;
        }
        Command::Once => {
            let mut sampler = agent::sampler::Sampler::new();
            let sample = sampler.sample(0, agent::runtime::now_ms());
            // Serializing plain data to a string cannot fail.
            println!("{}", serde_json::to_string_pretty(&sample).expect("sample as JSON"));
            return ExitCode::SUCCESS;
        }
        Command::Install { ref root, start } => {
            return match agent::install::install(&config, root, start) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("hostwatch-agent: install failed: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Run => {}
    }
    if let Err(err) = agent::logging::init(&config.log_level) {
        eprintln!("hostwatch-agent: {err:#}");
        return ExitCode::from(2);
    }
    match agent::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
