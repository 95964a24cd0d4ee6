//! `rawstor-ost`: serves a file:// store (one or more mountpaths) over TCP.

mod heartbeat;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rawstor::Location;
use rawstor::daemon::{self, CommandLine};
use rawstor::store::Store;
use rawstor::uri::Endpoint;

const USAGE: &str = "\
usage: rawstor-ost [options] -b|--bind ADDR LOCATION

Serves a rawstor store over TCP (the ost:// protocol).

  -b, --bind ADDR         address to listen on, e.g. 127.0.0.1:7777 (port 0
                          picks one; the address is printed on stdout)
  LOCATION                file:///dir[,file:///dir2...]: the store's
                          mountpaths (created when missing)
  --queue-size N          requests of one connection in flight (default 4096)
  --workers N             threads for slow requests: flush, FUA, large I/O,
                          metadata (default 4)
  --max-connections N     connections served at once (default 1024)
  --mdt mdt://HOST:PORT   register with a rawstor-mdt and heartbeat to it
  --domain NAME           failure domain told to the MDT (default: hostname)
  --advertise HOST:PORT   address told to the MDT (default: the bound one)
  -h, --help              this text
  -v, --version           the version

SIGTERM or SIGINT: stop accepting, finish in-flight requests, flush, exit 0.";

/// How long in-flight requests may run after SIGTERM before their
/// connections are closed (the flush that follows fits in the 5 s a
/// service manager is promised).
const STOP_GRACE: Duration = Duration::from_millis(3500);

struct Args {
    bind: String,
    location: Location,
    queue_size: usize,
    workers: usize,
    max_connections: usize,
    mdt: Option<String>,
    domain: Option<String>,
    advertise: Option<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut bind = None;
    let mut location = None;
    let mut queue_size = 4096;
    let mut workers = 4;
    let mut max_connections = 1024;
    let (mut mdt, mut domain, mut advertise) = (None, None, None);
    let mut line = CommandLine::from_env();
    while let Some((name, inline)) = line.next_arg() {
        match name.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "-v" | "--version" => {
                println!("rawstor-ost {}", rawstor::VERSION);
                return Ok(None);
            }
            "-b" | "--bind" => bind = Some(line.value(inline, "--bind")?),
            "--queue-size" => queue_size = line.positive(inline, "--queue-size")?,
            "--workers" => workers = line.positive(inline, "--workers")?,
            "--max-connections" => max_connections = line.positive(inline, "--max-connections")?,
            "--mdt" => {
                let text = line.value(inline, "--mdt")?;
                let location = text
                    .parse::<Location>()
                    .map_err(|e| e.context().to_string())?;
                match location.endpoints() {
                    [Endpoint::Mdt(addr)] => mdt = Some(addr.clone()),
                    _ => return Err(format!("--mdt '{text}' is not one mdt://HOST:PORT")),
                }
            }
            "--domain" => domain = Some(one_line(line.value(inline, "--domain")?, "--domain")?),
            "--advertise" => {
                advertise = Some(one_line(line.value(inline, "--advertise")?, "--advertise")?)
            }
            other if other.starts_with('-') && other.len() > 1 => {
                return Err(format!("unknown option '{other}'"));
            }
            _ if location.is_none() => {
                location = Some(
                    name.parse::<Location>()
                        .map_err(|e| e.context().to_string())?,
                )
            }
            _ => return Err(format!("unexpected argument '{name}'")),
        }
    }
    Ok(Some(Args {
        bind: bind.ok_or("missing --bind ADDR")?,
        location: location.ok_or("missing LOCATION (file:///dir[,file:///dir2...])")?,
        queue_size,
        workers,
        max_connections,
        mdt,
        domain,
        advertise,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rawstor-ost: {message} (see rawstor-ost --help)");
            return ExitCode::from(2);
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

    let (server, workers) = server::Server::new(
        store,
        server::Config {
            workers: args.workers,
            queue_size: args.queue_size,
            max_connections: args.max_connections,
        },
    );
    if let Some(mdt_addr) = args.mdt.clone() {
        if bound.ip().is_unspecified() && args.advertise.is_none() {
            eprintln!(
                "rawstor-ost: bound to {bound}, which clients cannot reach: give --advertise HOST:PORT for the MDT"
            );
            return ExitCode::from(2);
        }
        let registration = heartbeat::Registration {
            mdt_addr,
            id: store_id,
            addr: args.advertise.clone().unwrap_or(bound.to_string()),
            domain: args.domain.clone().unwrap_or_else(hostname),
            mountpaths: store_mountpaths,
        };
        if let Err(e) = heartbeat::start(registration) {
            eprintln!("rawstor-ost: cannot start the heartbeat: {e}");
            return ExitCode::from(71);
        }
    }
    eprintln!(
        "rawstor-ost: serving {} on {} (at most {open_chunk_limit} chunk files open)",
        args.location, args.bind
    );

    let threads = server.accept_loop(&listener, &stop);
    drop(listener);
    let started = Instant::now();
    server.stop();
    if !server::join_until(threads, started + STOP_GRACE) {
        eprintln!(
            "rawstor-ost: requests still running after {} ms: closing their connections",
            STOP_GRACE.as_millis()
        );
        server.abort_connections();
    }
    let failed = server.flush_all();
    drop(server);
    drop(workers); // detached: they end with the process
    eprintln!(
        "rawstor-ost: stopped in {} ms",
        started.elapsed().as_millis()
    );
    if failed > 0 {
        return ExitCode::from(71);
    }
    ExitCode::SUCCESS
}

/// This machine's name, the default failure domain.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A value told to the MDT: one line, not empty.
fn one_line(text: String, what: &str) -> Result<String, String> {
    if text.is_empty() || text.contains(['\n', '\r']) {
        return Err(format!("{what} must be one non-empty line"));
    }
    Ok(text)
}
