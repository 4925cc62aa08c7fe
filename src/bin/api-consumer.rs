//! `api-consumer`: creates or deletes groups on every node, all-or-nothing.
//!
//! Configuration comes only from the environment (and a `.env` file); the
//! binary's only arguments are `--help` and `--version`, so they are read by
//! hand rather than through an argument parser, and the help text is
//! generated from the same table that documents the variables.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use api_consumer::config::{self, Config};
use api_consumer::domain::{ExitStatus, StopReason};
use api_consumer::engine::Control;
use api_consumer::job::run_job;
use api_consumer::output::summary::log_summary;
use api_consumer::output::telemetry;

/// The target of these log lines, which `LOG_LEVEL` directives name: part
/// of the log interface.
const LOG_TARGET: &str = "api_consumer";

fn main() -> ExitCode {
    match std::env::args_os().nth(1) {
        None => {}
        Some(arg) if arg == "--help" || arg == "-h" => {
            print!("{}", config::help_text());
            return ExitCode::SUCCESS;
        }
        Some(arg) if arg == "--version" || arg == "-V" => {
            println!("api-consumer {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(arg) => {
            eprintln!(
                "api-consumer: unexpected argument {arg:?}; configuration comes from environment variables (see --help)"
            );
            return exit(ExitStatus::ConfigError);
        }
    }
    let config = Config::from_env();
    let (format, level) = match &config {
        Ok(config) => (config.log_format, config.log_level.clone()),
        // The one line that follows is an error, which must show whatever
        // LOG_LEVEL says (even `off`, or an invalid filter).
        Err(_) => (
            config::log_settings_from_env_lenient().0,
            "error".to_string(),
        ),
    };
    if let Err(error) = telemetry::init(format, &level) {
        eprintln!("api-consumer: cannot set up logging: {error}");
        return exit(ExitStatus::ConfigError);
    }
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(target: LOG_TARGET, variable = error.variable(),
                exit_code = u8::from(ExitStatus::ConfigError), "configuration error: {error}");
            return exit(ExitStatus::ConfigError);
        }
    };
    // One thread drives every request: the job waits on the network, not on
    // the CPU. Without cross-thread wake-ups it needs about half the CPU per
    // request that two workers need, and fewer stacks and malloc arenas
    // (docs/BENCHMARKS.md). Reading the id file runs on tokio's blocking
    // pool all the same.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(target: LOG_TARGET, error_message = %error,
                exit_code = u8::from(ExitStatus::CannotStart),
                "cannot start the async runtime; no request was sent");
            return exit(ExitStatus::CannotStart);
        }
    };
    let status = runtime.block_on(async {
        let control = Arc::new(Control::default());
        let signals = tokio::spawn(watch_signals(control.clone()));
        let result = run_job(&config, control).await;
        signals.abort();
        match result {
            Ok(report) => {
                log_summary(&report);
                report.exit_code
            }
            Err(error) => {
                tracing::error!(target: LOG_TARGET, variable = error.variable(),
                    exit_code = u8::from(ExitStatus::ConfigError), "cannot start: {error}");
                ExitStatus::ConfigError
            }
        }
    });
    // Requests cut off by the shutdown budget must not hold the exit.
    runtime.shutdown_background();
    exit(status)
}

fn exit(status: ExitStatus) -> ExitCode {
    let _ = std::io::stdout().flush();
    ExitCode::from(u8::from(status))
}

/// First SIGTERM or SIGINT: start nothing new. Second: roll back what is
/// still applying now instead of letting it finish.
async fn watch_signals(control: Arc<Control>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!(target: LOG_TARGET, "cannot listen for termination signals");
        return;
    };
    let mut received = 0u32;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        received += 1;
        if received == 1 {
            tracing::warn!(target: LOG_TARGET, signal = name,
                "signal received; no new group starts, groups in flight finish or roll back");
            control.stop(StopReason::Signal);
        } else {
            tracing::warn!(target: LOG_TARGET, signal = name,
                "second signal; groups still applying roll back now");
            control.abort.cancel();
        }
    }
}
