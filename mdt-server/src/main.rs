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

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rawstor::daemon::{self, Connections};
use rawstor::error::Error;
use rawstor::wire::{self, Decoded, Decoder, Header, Opcode};

use state::Mdt;

/// Copies of every control file when `--data` names one directory.
const COPIES_IN_ONE_DIR: usize = 3;
/// Longest time a connection waits for the rest of a frame.
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
    let served = Arc::clone(&mdt);
    // Threads still answering when the loop ends finish by themselves:
    // their connections' reading is ended below, records are written
    // before each answer.
    let _threads = connections.accept_loop("rawstor-mdt", &listener, &stop, move |stream| {
        serve(&served, stream)
    });
    connections.stop();
    eprintln!("rawstor-mdt: stopped");
    ExitCode::SUCCESS
}

/// Answers one connection's requests in order until it closes (or the
/// server stops, which ends its reading).
fn serve(mdt: &Mdt, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 64 << 10];
    // The client's session, known once it said Hello.
    let mut session = None;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        decoder.push(&buf[..n]);
        loop {
            let (header, reply) = match decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(Decoded::Frame(frame))) => {
                    let reply = answer(mdt, &frame.header, &frame.payload, &mut session);
                    (frame.header, reply)
                }
                Ok(Some(Decoded::Bad(header, err))) => {
                    (header, Err(Error::new(err.errno(), err.to_string())))
                }
                Err(err) => {
                    let reply = Err(Error::new(err.errno(), err.to_string()));
                    let _ = send(&mut stream, &Header::default(), reply);
                    return;
                }
            };
            if send(&mut stream, &header, reply).is_err() {
                return;
            }
        }
    }
}

fn send(
    stream: &mut TcpStream,
    request: &Header,
    reply: Result<Vec<u8>, Error>,
) -> std::io::Result<()> {
    let (status, payload) = match reply {
        Ok(payload) => (0, payload),
        Err(err) => (-err.errno(), wire::error_message(err.context()).to_vec()),
    };
    let header = request.reply(status).with_payload(&payload);
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&payload);
    stream.write_all(&out)
}

fn answer(
    mdt: &Mdt,
    header: &Header,
    payload: &[u8],
    session: &mut Option<u64>,
) -> Result<Vec<u8>, Error> {
    let Some(op) = header.op() else {
        return Err(Error::new(
            libc::EOPNOTSUPP,
            format!("unknown opcode {}", header.opcode),
        ));
    };
    if op == Opcode::Hello {
        let offer = wire::Offer {
            capabilities: 0,
            store_id: mdt.id(),
        };
        let (welcome, client) = wire::accept_hello(payload, &offer)
            .map_err(|e| Error::new(e.errno(), format!("bad Hello: {e}")))?;
        *session = Some(client);
        return Ok(welcome.encode());
    }
    let Some(session) = *session else {
        return Err(Error::new(libc::EPROTO, "the first request must be Hello"));
    };
    mdt.handle(session, op, header, payload)
}
