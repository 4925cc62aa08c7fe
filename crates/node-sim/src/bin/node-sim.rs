//! `node-sim`: serves K simulated nodes with fault injection (docs/NODE_API.md) until
//! SIGTERM or SIGINT. See `node-sim --help`.
//!
//! Every flag can also come from `NODE_SIM_<FLAG>` (upper snake case), so the
//! chart can configure it through the environment; a flag given on the command
//! line wins over its variable. The command line is parsed by clap, which
//! also writes `--help` and exits 2 with the flag's name on a bad value.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use node_sim::{Faults, NodeOp, Protocol, SimCluster, SimOptions};

/// Simulated cluster nodes with fault injection.
///
/// Serves the node API (POST/DELETE /v1/group/, GET /v1/group/<id>/, GET
/// /v1/groups, GET /healthz) on K independent nodes, prints one URL per node,
/// and runs until SIGTERM or SIGINT. Inspection, never faulted: GET
/// /_sim/state, GET|PUT /_sim/faults, POST /_sim/reset.
// This comment is `--help`'s text, read by people, not rustdoc: `<id>` is
// a placeholder, not an HTML tag.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Parser)]
#[command(name = "node-sim", version)]
struct Args {
    /// Number of nodes, on ports P..P+K-1.
    #[arg(long, value_name = "K", env = "NODE_SIM_NODES", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    nodes: u16,
    /// First port (P); 0 gives every node a free port of its own.
    #[arg(
        long,
        value_name = "P",
        env = "NODE_SIM_BASE_PORT",
        default_value_t = 8080
    )]
    base_port: u16,
    /// Address to listen on.
    #[arg(long, env = "NODE_SIM_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Probability of 500, call not applied.
    #[arg(long, value_name = "R", env = "NODE_SIM_FAIL_RATE", value_parser = rate,
          default_value_t = Faults::default().fail_rate)]
    fail_rate: f64,
    /// Probability of applying the call, then answering 500.
    #[arg(long, value_name = "R", env = "NODE_SIM_AMBIGUOUS_RATE", value_parser = rate,
          default_value_t = Faults::default().ambiguous_rate)]
    ambiguous_rate: f64,
    /// Probability of 503, call not applied.
    #[arg(long, value_name = "R", env = "NODE_SIM_UNAVAILABLE_RATE", value_parser = rate,
          default_value_t = Faults::default().unavailable_rate)]
    unavailable_rate: f64,
    /// Probability of 429 with Retry-After, call not applied.
    #[arg(long, value_name = "R", env = "NODE_SIM_THROTTLE_RATE", value_parser = rate,
          default_value_t = Faults::default().throttle_rate)]
    throttle_rate: f64,
    /// Retry-After seconds sent with injected 429s.
    #[arg(long, value_name = "S", env = "NODE_SIM_RETRY_AFTER_SECS",
          default_value_t = Faults::default().retry_after_secs)]
    retry_after_secs: u64,
    /// Probability of no answer for --hang-ms (then 504), call not applied.
    #[arg(long, value_name = "R", env = "NODE_SIM_TIMEOUT_RATE", value_parser = rate,
          default_value_t = Faults::default().timeout_rate)]
    timeout_rate: f64,
    /// How long an injected timeout hangs, in milliseconds.
    #[arg(long, value_name = "MS", env = "NODE_SIM_HANG_MS",
          default_value_t = Faults::default().hang_ms)]
    hang_ms: u64,
    /// Delay added to every node-API call, in milliseconds.
    #[arg(long, value_name = "MS", env = "NODE_SIM_LATENCY_MS",
          default_value_t = Faults::default().latency_ms)]
    latency_ms: u64,
    /// Delay added to creates and deletes only, on top of --latency-ms, in
    /// milliseconds, before the call is applied.
    #[arg(long, value_name = "MS", env = "NODE_SIM_WRITE_LATENCY_MS",
          default_value_t = Faults::default().write_latency_ms)]
    write_latency_ms: u64,
    /// Extra random delay, uniform in [0, MS].
    #[arg(long, value_name = "MS", env = "NODE_SIM_JITTER_MS",
          default_value_t = Faults::default().jitter_ms)]
    jitter_ms: u64,
    /// Node-API calls per second per node, 429 with Retry-After above it; 0 = no limit.
    #[arg(long, value_name = "N", env = "NODE_SIM_RATE_LIMIT",
          default_value_t = Faults::default().rate_limit)]
    rate_limit: u32,
    /// Node-API calls in progress at most; above it 503 at once, not applied; 0 = no bound.
    #[arg(long, value_name = "K", env = "NODE_SIM_MAX_IN_FLIGHT",
          default_value_t = Faults::default().max_in_flight)]
    max_in_flight: u32,
    /// Calls the rates apply to, comma-separated from create,delete,get,list; empty = none.
    #[arg(long, value_name = "OPS", env = "NODE_SIM_FAIL_OPS", value_parser = ops,
          default_value = "create,delete,get")]
    fail_ops: OpList,
    /// How creates and deletes work: standard (one call each) or two-phase
    /// (an intention, then the same call again commits it, per session).
    #[arg(long, value_name = "P", env = "NODE_SIM_PROTOCOL", value_parser = protocol,
          default_value = "standard")]
    protocol: Protocol,
    /// Seed of the fault dice; node i uses N+i.
    #[arg(long, value_name = "N", env = "NODE_SIM_SEED", default_value_t = 0)]
    seed: u64,
    /// JSON file keeping the groups of all nodes across restarts (default: memory only).
    #[arg(long, value_name = "PATH", env = "NODE_SIM_DATA_FILE")]
    data_file: Option<PathBuf>,
}

/// A parsed `--fail-ops` list.
#[derive(Debug, Clone, PartialEq)]
struct OpList(Vec<NodeOp>);

fn rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("expected a probability between 0 and 1".into()),
    }
}

fn protocol(value: &str) -> Result<Protocol, String> {
    Protocol::parse(value.trim()).ok_or_else(|| "expected standard or two-phase".into())
}

fn ops(value: &str) -> Result<OpList, String> {
    let mut ops = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let op = NodeOp::parse(name).ok_or_else(|| {
            format!("unknown call {name:?}; expected create, delete, get or list")
        })?;
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    Ok(OpList(ops))
}

impl Args {
    fn options(self) -> SimOptions {
        SimOptions {
            faults: Faults {
                fail_rate: self.fail_rate,
                ambiguous_rate: self.ambiguous_rate,
                unavailable_rate: self.unavailable_rate,
                throttle_rate: self.throttle_rate,
                retry_after_secs: self.retry_after_secs,
                timeout_rate: self.timeout_rate,
                hang_ms: self.hang_ms,
                latency_ms: self.latency_ms,
                write_latency_ms: self.write_latency_ms,
                jitter_ms: self.jitter_ms,
                rate_limit: self.rate_limit,
                fail_ops: self.fail_ops.0,
                max_in_flight: self.max_in_flight,
                protocol: self.protocol,
            },
            seed: self.seed,
            data_file: self.data_file,
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .try_init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // clap exits 2 with a message naming the flag (or variable) on bad input.
    let args = Args::parse();
    init_logging();
    let (host, base_port, nodes) = (args.host, args.base_port, usize::from(args.nodes));
    let cluster = match SimCluster::start(host, base_port, nodes, args.options()).await {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("node-sim: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let printed = cluster
        .urls()
        .iter()
        .try_for_each(|url| writeln!(stdout, "{url}"))
        .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(error) = printed {
        // The nodes work without anyone reading the URLs; keep serving.
        tracing::warn!(%error, "cannot print the node URLs");
    }
    cluster.run_until(shutdown_signal()).await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("node-sim").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_simulator() {
        let options = parse(&[]).unwrap().options();
        assert_eq!(options.faults, Faults::default());
        assert_eq!(options.seed, 0);
        assert_eq!(options.data_file, None);
    }

    #[test]
    fn flags_parse_into_faults() {
        let args = parse(&[
            "--fail-rate",
            "0.25",
            "--nodes=3",
            "--fail-ops",
            "delete, get",
            "--latency-ms=5",
            "--write-latency-ms",
            "300",
        ])
        .unwrap();
        assert_eq!(args.nodes, 3);
        let faults = args.options().faults;
        assert_eq!(faults.fail_rate, 0.25);
        assert_eq!((faults.latency_ms, faults.write_latency_ms), (5, 300));
        assert_eq!(faults.fail_ops, vec![NodeOp::Delete, NodeOp::Get]);
        assert_eq!(parse(&["--fail-ops", ""]).unwrap().fail_ops, OpList(vec![]));
        let two_phase = parse(&["--protocol", "two-phase"]).unwrap().options();
        assert_eq!(two_phase.faults.protocol, Protocol::TwoPhase);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--fail-rate", "1.5"][..],
            &["--nodes", "0"],
            &["--fail-ops", "create,put"],
            &["--protocol", "2pc"],
            &["--write-latency-ms", "-1"],
            &["--write-latency-ms", "0.5"],
            &["--write-latency-ms", "1s"],
            &["--nodes"],
            &["--bogus", "1"],
            &["--host", "localhost"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn every_flag_has_a_variable() {
        Args::command().debug_assert();
        for arg in Args::command().get_arguments() {
            if arg
                .get_long()
                .is_some_and(|l| l != "help" && l != "version")
            {
                let env = arg.get_env().map(|e| e.to_string_lossy().to_string());
                assert!(env.is_some_and(|e| e.starts_with("NODE_SIM_")), "{arg:?}");
            }
        }
    }
}
