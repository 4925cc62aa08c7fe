//! `node-sim`: serves K simulated nodes with fault injection (BRIEF §5) until
//! SIGTERM or SIGINT. See `node-sim --help`.
//!
//! Every flag can also come from `NODE_SIM_<FLAG>` (upper snake case), so the
//! chart can configure it through the environment; a flag given on the command
//! line wins over its variable, and an empty variable counts as unset.

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use api_consumer::api::{Faults, NodeOp};
use api_consumer::sim::{SimCluster, SimOptions};

const NAME: &str = "node-sim";

const MILLIS: &str = "a whole number of milliseconds";
const SECONDS: &str = "a whole number of seconds";
const PER_SECOND: &str = "a whole number of requests per second";

#[derive(Debug, Clone, PartialEq)]
struct Settings {
    nodes: usize,
    base_port: u16,
    host: IpAddr,
    seed: u64,
    data_file: Option<PathBuf>,
    faults: Faults,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            nodes: 1,
            base_port: 8080,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            seed: 0,
            data_file: None,
            faults: Faults::default(),
        }
    }
}

/// One value flag: how to parse it into the settings and how to show its
/// default, so `--help` cannot drift from the real defaults.
struct Flag {
    name: &'static str,
    value: &'static str,
    help: &'static str,
    set: fn(&mut Settings, &str) -> Result<(), String>,
    show: fn(&Settings) -> String,
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "nodes",
        value: "K",
        help: "number of nodes, on ports P..P+K-1",
        set: |s, v| {
            s.nodes = match v.trim().parse() {
                Ok(0) | Err(_) => return Err("expected a whole number of at least 1".into()),
                Ok(n) => n,
            };
            Ok(())
        },
        show: |s| s.nodes.to_string(),
    },
    Flag {
        name: "base-port",
        value: "P",
        help: "port of the first node; 0 gives every node a random free port",
        set: |s, v| parse_into(&mut s.base_port, v, "a port number (0-65535)"),
        show: |s| s.base_port.to_string(),
    },
    Flag {
        name: "host",
        value: "IP",
        help: "address to listen on",
        set: |s, v| parse_into(&mut s.host, v, "an IP address such as 127.0.0.1 or 0.0.0.0"),
        show: |s| s.host.to_string(),
    },
    Flag {
        name: "fail-rate",
        value: "R",
        help: "probability of 500, call not applied",
        set: |s, v| parse_rate(&mut s.faults.fail_rate, v),
        show: |s| s.faults.fail_rate.to_string(),
    },
    Flag {
        name: "ambiguous-rate",
        value: "R",
        help: "probability of 500 after the call was applied",
        set: |s, v| parse_rate(&mut s.faults.ambiguous_rate, v),
        show: |s| s.faults.ambiguous_rate.to_string(),
    },
    Flag {
        name: "unavailable-rate",
        value: "R",
        help: "probability of 503, call not applied",
        set: |s, v| parse_rate(&mut s.faults.unavailable_rate, v),
        show: |s| s.faults.unavailable_rate.to_string(),
    },
    Flag {
        name: "throttle-rate",
        value: "R",
        help: "probability of 429 with Retry-After, call not applied",
        set: |s, v| parse_rate(&mut s.faults.throttle_rate, v),
        show: |s| s.faults.throttle_rate.to_string(),
    },
    Flag {
        name: "retry-after-secs",
        value: "S",
        help: "Retry-After sent with injected 429s",
        set: |s, v| parse_into(&mut s.faults.retry_after_secs, v, SECONDS),
        show: |s| s.faults.retry_after_secs.to_string(),
    },
    Flag {
        name: "timeout-rate",
        value: "R",
        help: "probability of no answer for --hang-ms (then 504), call not applied",
        set: |s, v| parse_rate(&mut s.faults.timeout_rate, v),
        show: |s| s.faults.timeout_rate.to_string(),
    },
    Flag {
        name: "hang-ms",
        value: "MS",
        help: "how long an injected timeout hangs",
        set: |s, v| parse_into(&mut s.faults.hang_ms, v, MILLIS),
        show: |s| s.faults.hang_ms.to_string(),
    },
    Flag {
        name: "latency-ms",
        value: "MS",
        help: "delay added to every node-API call",
        set: |s, v| parse_into(&mut s.faults.latency_ms, v, MILLIS),
        show: |s| s.faults.latency_ms.to_string(),
    },
    Flag {
        name: "jitter-ms",
        value: "MS",
        help: "extra random delay, uniform in [0, MS]",
        set: |s, v| parse_into(&mut s.faults.jitter_ms, v, MILLIS),
        show: |s| s.faults.jitter_ms.to_string(),
    },
    Flag {
        name: "rate-limit",
        value: "N",
        help: "node-API calls per second per node, 429 above it; 0 = no limit",
        set: |s, v| parse_into(&mut s.faults.rate_limit, v, PER_SECOND),
        show: |s| s.faults.rate_limit.to_string(),
    },
    Flag {
        name: "fail-ops",
        value: "OPS",
        help: "calls the rates apply to, comma-separated from create,delete,get,list; empty = none",
        set: |s, v| {
            s.faults.fail_ops = parse_ops(v)?;
            Ok(())
        },
        show: |s| {
            let names: Vec<&str> = s.faults.fail_ops.iter().map(|op| op.as_str()).collect();
            names.join(",")
        },
    },
    Flag {
        name: "seed",
        value: "N",
        help: "seed of the fault dice; node i uses N+i",
        set: |s, v| parse_into(&mut s.seed, v, "a whole number"),
        show: |s| s.seed.to_string(),
    },
    Flag {
        name: "data-file",
        value: "PATH",
        help: "JSON file keeping the groups of all nodes across restarts",
        set: |s, v| {
            if v.is_empty() {
                return Err("expected a file path".into());
            }
            s.data_file = Some(PathBuf::from(v));
            Ok(())
        },
        show: |s| match &s.data_file {
            Some(path) => path.display().to_string(),
            None => "none: groups are kept in memory".into(),
        },
    },
];

fn parse_into<T: std::str::FromStr>(
    slot: &mut T,
    value: &str,
    expected: &str,
) -> Result<(), String> {
    *slot = value
        .trim()
        .parse()
        .map_err(|_| format!("expected {expected}"))?;
    Ok(())
}

fn parse_rate(slot: &mut f64, value: &str) -> Result<(), String> {
    match value.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => {
            *slot = rate;
            Ok(())
        }
        _ => Err("expected a probability between 0 and 1".into()),
    }
}

fn parse_ops(value: &str) -> Result<Vec<NodeOp>, String> {
    let mut ops = Vec::new();
    for name in value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let op = NodeOp::parse(name).ok_or_else(|| {
            format!("unknown call {name:?}; expected create, delete, get or list")
        })?;
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    Ok(ops)
}

fn env_name(flag: &Flag) -> String {
    format!("NODE_SIM_{}", flag.name.to_uppercase().replace('-', "_"))
}

#[derive(Debug, PartialEq)]
enum Command {
    Run(Box<Settings>),
    Help,
    Version,
}

/// Reads the command line, then the environment under it. `--help` and
/// `--version` win over everything, even a bad variable.
fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Command, String> {
    let mut given: Vec<(&Flag, String)> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))?;
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let flag = name
            .strip_prefix("--")
            .and_then(|bare| FLAGS.iter().find(|flag| flag.name == bare))
            .ok_or_else(|| format!("unknown argument {name:?}"))?;
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| format!("--{} needs a value ({})", flag.name, flag.value))?
                .into_string()
                .map_err(|_| format!("the value of --{} is not valid UTF-8", flag.name))?,
        };
        given.push((flag, value));
    }

    let mut settings = Settings::default();
    for flag in FLAGS {
        let var = env_name(flag);
        let Some(value) = env(&var) else { continue };
        let value = value
            .into_string()
            .map_err(|_| format!("{var} is not valid UTF-8"))?;
        if value.trim().is_empty() {
            continue;
        }
        (flag.set)(&mut settings, &value)
            .map_err(|why| format!("invalid value {value:?} in {var} (--{}): {why}", flag.name))?;
    }
    for (flag, value) in given {
        (flag.set)(&mut settings, &value)
            .map_err(|why| format!("invalid value {value:?} for --{}: {why}", flag.name))?;
    }
    Ok(Command::Run(Box::new(settings)))
}

fn help() -> String {
    let defaults = Settings::default();
    let mut text = format!(
        "{NAME} {version}: simulated cluster nodes with fault injection\n\n\
         Serves the node API (POST/DELETE /v1/group/, GET /v1/group/<id>/, GET /v1/groups,\n\
         GET /healthz) on K independent nodes, prints one URL per node, and runs until\n\
         SIGTERM or SIGINT. Inspection, never faulted: GET /_sim/state, GET|PUT /_sim/faults,\n\
         POST /_sim/reset.\n\n\
         Usage: {NAME} [--flag VALUE | --flag=VALUE]...\n\n\
         Every flag may also be set by the variable shown; the flag wins.\n\n",
        version = env!("CARGO_PKG_VERSION"),
    );
    for flag in FLAGS {
        text.push_str(&format!(
            "  --{} {}\n      {} [default: {}] [env: {}]\n",
            flag.name,
            flag.value,
            flag.help,
            (flag.show)(&defaults),
            env_name(flag),
        ));
    }
    text.push_str(
        "  -h, --help\n      print this help\n  -V, --version\n      print the version\n",
    );
    text
}

fn init_logging() {
    // Logs go to stderr so stdout carries only the node URLs, which scripts read.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .try_init();
}

async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match parse(std::env::args_os().skip(1), |name| std::env::var_os(name)) {
        Ok(Command::Run(settings)) => settings,
        Ok(Command::Help) => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("{NAME} {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{NAME}: {message}\nTry '{NAME} --help'.");
            return ExitCode::from(2);
        }
    };
    init_logging();

    let Settings {
        nodes,
        base_port,
        host,
        seed,
        data_file,
        faults,
    } = *settings;
    let options = SimOptions {
        faults,
        seed,
        data_file,
    };
    let cluster = match SimCluster::start(host, base_port, nodes, options).await {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("{NAME}: {error}");
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

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, String> {
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match parse(args.iter().map(OsString::from), lookup)? {
            Command::Run(settings) => Ok(*settings),
            other => panic!("expected settings, got {other:?}"),
        }
    }

    #[test]
    fn defaults_without_arguments() {
        assert_eq!(run(&[], &[]), Ok(Settings::default()));
    }

    #[test]
    fn flags_win_over_environment() {
        let settings = run(
            &[
                "--fail-rate",
                "0.25",
                "--nodes=3",
                "--fail-ops",
                "delete, get",
            ],
            &[
                ("NODE_SIM_FAIL_RATE", "0.5"),
                ("NODE_SIM_NODES", "2"),
                ("NODE_SIM_BASE_PORT", "0"),
                ("NODE_SIM_DATA_FILE", ""),
            ],
        )
        .unwrap();
        assert_eq!(settings.faults.fail_rate, 0.25);
        assert_eq!(settings.nodes, 3);
        assert_eq!(settings.base_port, 0);
        assert_eq!(settings.data_file, None);
        assert_eq!(settings.faults.fail_ops, vec![NodeOp::Delete, NodeOp::Get]);
    }

    #[test]
    fn bad_values_name_their_source() {
        let error = run(&["--fail-rate", "1.5"], &[]).unwrap_err();
        assert!(error.contains("--fail-rate"), "{error}");
        let error = run(&[], &[("NODE_SIM_NODES", "0")]).unwrap_err();
        assert!(error.contains("NODE_SIM_NODES"), "{error}");
        let error = run(&["--fail-ops", "create,put"], &[]).unwrap_err();
        assert!(error.contains("put"), "{error}");
        assert!(run(&["--nodes"], &[])
            .unwrap_err()
            .contains("needs a value"));
        assert!(run(&["--bogus", "1"], &[]).unwrap_err().contains("unknown"));
        assert!(run(&["--host", "localhost"], &[]).is_err());
    }

    #[test]
    fn help_wins_and_lists_every_flag() {
        let parsed = parse(["--fail-rate", "x", "--help"].map(OsString::from), |_| {
            Some(OsString::from("bad"))
        });
        assert_eq!(parsed, Ok(Command::Help));
        let text = help();
        for flag in FLAGS {
            assert!(text.contains(&format!("--{}", flag.name)));
            assert!(text.contains(&env_name(flag)));
        }
        assert!(text.contains("NODE_SIM_FAIL_RATE"));
    }
}
