//! `rawstor-mdt`: the metadata target. Keeps the cluster map (the OSTs,
//! their failure domains, capacity and heartbeats) and the record of every
//! object created on mdt:// (layout and placement), in control files:
//! versioned, checksummed, LZ4-compressed, written atomically to several
//! copies, a corrupt copy rewritten from a good one when read.
//!
//! Clients and OSTs speak the ost:// wire protocol to it (the codec is
//! librawstor's), with the opcodes `OstRegister`, `ClusterMap`, `Place`,
//! `Lookup` and `Forget`. Requests are small and rare (create, open,
//! heartbeats), so each connection gets a thread that answers in order.

mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rawstor::daemon::{self, Buffers, Connections, Reply, Request, Service, Serving};
use rawstor::wire::Offer;

use state::Mdt;

/// Copies of every control file when `--data` names one directory.
const COPIES_IN_ONE_DIR: usize = 3;
/// A connection silent this long (or stuck in the middle of a frame) is
/// closed; its client reconnects when it next has a request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Keeps a rawstor cluster's map and object records (the mdt://
/// protocol).
#[derive(Parser)]
#[command(
    name = "rawstor-mdt",
    version = rawstor::VERSION,
    disable_version_flag = true,
    after_help = "SIGTERM or SIGINT: stop accepting and exit 0. Records are written before each answer; a request cut by the exit gets no answer, and its client retries or fails with a clear error."
)]
struct Args {
    /// Print the version
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    version: (),
    /// Address to listen on, e.g. 127.0.0.1:7700 (port 0 picks one; the
    /// address is printed on stdout)
    #[arg(short, long)]
    bind: String,
    /// Where the records live: one directory keeps three copies in it;
    /// several (DIR,DIR...) keep one copy each
    #[arg(long, value_parser = data_dirs)]
    data: DataDirs,
    /// An OST silent this long is down
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_timeout_ms: u64,
    /// Connections served at once (more are refused with EBUSY)
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
}

/// Where the records live (`--data`).
#[derive(Clone)]
struct DataDirs(Vec<PathBuf>);

/// `--data`: absolute directories; one becomes [`COPIES_IN_ONE_DIR`].
fn data_dirs(text: &str) -> Result<DataDirs, String> {
    let dirs: Vec<PathBuf> = text.split(',').map(PathBuf::from).collect();
    if let Some(relative) = dirs.iter().find(|d| !d.is_absolute()) {
        return Err(format!("{}: use an absolute path", relative.display()));
    }
    Ok(DataDirs(match dirs.as_slice() {
        [one] => (1..=COPIES_IN_ONE_DIR)
            .map(|i| one.join(format!("copy-{i}")))
            .collect(),
        _ => dirs,
    }))
}

fn main() -> ExitCode {
    rawstor::log::to_stderr();
    let args = match Args::try_parse() {
        Ok(args) => args,
        // --help, --version.
        Err(err) => {
            let rendered = err.to_string();
            return daemon::usage_exit("rawstor-mdt", &rendered, !err.use_stderr());
        }
    };
    let heartbeat_timeout = Duration::from_millis(args.heartbeat_timeout_ms);
    let mdt = match Mdt::open(args.data.0.clone(), heartbeat_timeout) {
        Ok(mdt) => Arc::new(mdt),
        Err(e) => {
            eprintln!("rawstor-mdt: cannot open the records: {e}");
            return ExitCode::from(match e.errno() {
                libc::EACCES | libc::EPERM => 77,
                _ => 66,
            });
        }
    };
    let (listener, stop, _) = match daemon::listen("rawstor-mdt", &args.bind) {
        Ok(started) => started,
        Err(code) => return code,
    };
    eprintln!(
        "rawstor-mdt: {} keeping records in {}",
        mdt.id(),
        args.data
            .0
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let connections = Connections::new(args.max_connections as usize);
    let served = Arc::new(Served {
        mdt,
        buffers: Buffers::default(),
    });
    let serving = Serving {
        workers: None,
        queue_size: 1,
        idle_timeout: Some(READ_TIMEOUT),
    };
    // Threads still answering when the loop ends finish by themselves:
    // their connections' reading is ended below, records are written
    // before each answer.
    let _threads = connections.accept_loop("rawstor-mdt", &listener, &stop, move |stream| {
        daemon::serve(&served, stream, &serving)
    });
    connections.stop();
    eprintln!("rawstor-mdt: stopped");
    ExitCode::SUCCESS
}

/// The MDT as the connection loop sees it: every request is answered in
/// order on its connection's thread.
struct Served {
    mdt: Arc<Mdt>,
    buffers: Buffers,
}

impl Service for Served {
    fn offer(&self) -> Offer {
        Offer {
            capabilities: 0,
            store_id: self.mdt.id(),
        }
    }

    fn inline(&self, _: &Request) -> bool {
        true
    }

    fn answer(&self, session: u64, request: &Request) -> Reply {
        let (header, payload) = (&request.header, &request.payload);
        let result = self.mdt.handle(session, request.op, header, payload);
        Reply::from_result(header, result)
    }

    fn buffers(&self) -> &Buffers {
        &self.buffers
    }
}
