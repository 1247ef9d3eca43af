//! Entry point: parse the command line and settings, set up logging, hand over to `cmd`.

use std::process::ExitCode;

use clap::Parser;
use r2_sync::cli::{Cli, Command};
use r2_sync::{cmd, config::Config, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Healthcheck)) {
        return healthcheck();
    }
    let cfg = match Config::from_env() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("r2-sync: {e}");
            return ExitCode::from(2);
        }
    };
    #[cfg(feature = "fault-injection")]
    r2_sync::fault::arm(cfg.fault.clone());
    let log = logging::root(cfg.log_level);
    logging::log_panics(log.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("r2-sync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Run);
    runtime.block_on(cmd::run(command, cfg, log))
}

fn healthcheck() -> ExitCode {
    let port = match Config::health_port_from_env() {
        Ok(port) => port,
        Err(e) => {
            eprintln!("r2-sync: {e}");
            return ExitCode::from(2);
        }
    };
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(r2_sync::cmd::healthcheck(port)),
        Err(e) => {
            eprintln!("r2-sync: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
