//! `rawstor-ost`: serves a file:// store (one or more mountpaths) over TCP.

mod heartbeat;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;
use rawstor::Location;
use rawstor::daemon;
use rawstor::store::Store;
use rawstor::uri::Endpoint;

/// How long in-flight requests may run after SIGTERM before their
/// connections are closed (the flush that follows fits in the 5 s a
/// service manager is promised).
const STOP_GRACE: Duration = Duration::from_millis(3500);

/// Serves a rawstor store over TCP (the ost:// protocol).
#[derive(Parser)]
#[command(
    name = "rawstor-ost",
    version = rawstor::VERSION,
    disable_version_flag = true,
    after_help = "SIGTERM or SIGINT: stop accepting, finish in-flight requests, flush, exit 0."
)]
struct Args {
    /// Print the version
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    version: (),
    /// Address to listen on, e.g. 127.0.0.1:7777 (port 0 picks one; the
    /// address is printed on stdout)
    #[arg(short, long)]
    bind: String,
    /// file:///dir[,file:///dir2...]: the store's mountpaths (created when
    /// missing)
    #[arg(value_parser = location)]
    location: Location,
    /// Requests of one connection in flight
    #[arg(long, default_value_t = 4096, value_parser = positive)]
    queue_size: usize,
    /// Threads for slow requests: flush, FUA, large I/O, metadata
    #[arg(long, default_value_t = 4, value_parser = positive)]
    workers: usize,
    /// Connections served at once
    #[arg(long, default_value_t = 1024, value_parser = positive)]
    max_connections: usize,
    /// Register with a rawstor-mdt (mdt://HOST:PORT) and heartbeat to it
    #[arg(long, value_parser = mdt)]
    mdt: Option<String>,
    /// Failure domain told to the MDT (default: the hostname)
    #[arg(long, value_parser = one_line)]
    domain: Option<String>,
    /// Address told to the MDT (default: the bound one)
    #[arg(long, value_parser = one_line)]
    advertise: Option<String>,
}

fn location(text: &str) -> Result<Location, String> {
    text.parse()
        .map_err(|e: rawstor::Error| e.context().to_string())
}

fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("not a positive number".into()),
    }
}

fn mdt(text: &str) -> Result<String, String> {
    match location(text)?.endpoints() {
        [Endpoint::Mdt(addr)] => Ok(addr.clone()),
        _ => Err("not one mdt://HOST:PORT".into()),
    }
}

/// A value told to the MDT: one line, not empty.
fn one_line(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains(['\n', '\r']) {
        return Err("must be one non-empty line".into());
    }
    Ok(text.to_string())
}

fn main() -> ExitCode {
    rawstor::log::to_stderr();
    let args = match Args::try_parse() {
        Ok(args) => args,
        // --help, --version.
        Err(err) => {
            let rendered = err.to_string();
            return daemon::usage_exit("rawstor-ost", &rendered, !err.use_stderr());
        }
    };
    let mut mountpaths: Vec<PathBuf> = Vec::new();
    for endpoint in args.location.endpoints() {
        match endpoint {
            Endpoint::File(path) => mountpaths.push(path.clone()),
            other => {
                eprintln!("rawstor-ost: LOCATION must list file:// mountpaths, not '{other}'");
                return ExitCode::from(2);
            }
        }
    }
    let store = match Store::open(mountpaths, true) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("rawstor-ost: cannot open the store: {e}");
            return ExitCode::from(match e.errno() {
                libc::EACCES | libc::EPERM => 77,
                _ => 66,
            });
        }
    };
    let store_id = store.id();
    let open_chunk_limit = store.open_chunk_limit();
    let store_mountpaths = store.mountpaths().to_vec();
    let (listener, stop, bound) = match daemon::listen("rawstor-ost", &args.bind) {
        Ok(started) => started,
        Err(code) => return code,
    };

    let config = server::Config {
        workers: args.workers,
        queue_size: args.queue_size,
        max_connections: args.max_connections,
    };
    let server = match server::Server::new(store, &config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("rawstor-ost: cannot start the workers: {e}");
            return ExitCode::from(71);
        }
    };
    if let Err(code) = start_heartbeat(&args, bound, store_id, store_mountpaths) {
        return code;
    }
    eprintln!(
        "rawstor-ost: serving {} on {} (at most {open_chunk_limit} chunk files open)",
        args.location, args.bind
    );

    let threads = server.accept_loop(&listener, &stop);
    drop(listener);
    shut_down(server, threads)
}

/// With `--mdt`: registers with the MDT and heartbeats to it.
fn start_heartbeat(
    args: &Args,
    bound: std::net::SocketAddr,
    id: rawstor::Uuid,
    mountpaths: Vec<PathBuf>,
) -> Result<(), ExitCode> {
    let Some(mdt_addr) = args.mdt.clone() else {
        return Ok(());
    };
    if bound.ip().is_unspecified() && args.advertise.is_none() {
        eprintln!(
            "rawstor-ost: bound to {bound}, which clients cannot reach: give --advertise HOST:PORT for the MDT"
        );
        return Err(ExitCode::from(2));
    }
    let registration = heartbeat::Registration {
        mdt_addr,
        id,
        addr: args.advertise.clone().unwrap_or(bound.to_string()),
        domain: args.domain.clone().unwrap_or_else(daemon::hostname),
        mountpaths,
    };
    heartbeat::start(registration).map_err(|e| {
        eprintln!("rawstor-ost: cannot start the heartbeat: {e}");
        ExitCode::from(71)
    })
}

/// After a stop signal: in-flight requests get [`STOP_GRACE`] to finish,
/// then every open object is flushed (exit 71 if one fails).
fn shut_down(server: Arc<server::Server>, threads: Vec<JoinHandle<()>>) -> ExitCode {
    let started = Instant::now();
    server.stop();
    if !daemon::join_until(threads, started + STOP_GRACE) {
        eprintln!(
            "rawstor-ost: requests still running after {} ms: closing their connections",
            STOP_GRACE.as_millis()
        );
        server.abort_connections();
    }
    let failed = server.flush_all();
    // Not dropped: that would wait for workers a request may still hold;
    // they end with the process.
    std::mem::forget(server);
    eprintln!(
        "rawstor-ost: stopped in {} ms",
        started.elapsed().as_millis()
    );
    if failed > 0 {
        return ExitCode::from(71);
    }
    ExitCode::SUCCESS
}
