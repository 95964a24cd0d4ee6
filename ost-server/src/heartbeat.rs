//! Registration with a rawstor-mdt: a thread that sends this OST's entry
//! (id, address, failure domain, capacity, usage) every
//! [`HEARTBEAT_INTERVAL`], reconnecting when the MDT goes away.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use rawstor::Uuid;
use rawstor::error::{Error, Result};
use rawstor::mdt::OstEntry;
use rawstor::store::record::Record;
use rawstor::wire::{self, Decoded, Decoder, Header, Hello, Opcode};

/// Time between heartbeats; the MDT counts an OST down after a few missed.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Deadline of connecting to the MDT and of one exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Registration {
    pub mdt_addr: String,
    pub id: Uuid,
    pub addr: String,
    pub domain: String,
    pub mountpaths: Vec<PathBuf>,
}

/// Starts the heartbeat thread; it runs until the process ends.
pub fn start(registration: Registration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ost-heartbeat".into())
        .spawn(move || {
            let mut told_down = false;
            loop {
                match heartbeat_session(&registration, &mut told_down) {
                    Ok(()) => {}
                    Err(err) if !told_down => {
                        eprintln!(
                            "rawstor-ost: mdt://{}: {err}; retrying every {} ms",
                            registration.mdt_addr,
                            HEARTBEAT_INTERVAL.as_millis()
                        );
                        told_down = true;
                    }
                    Err(_) => {}
                }
                std::thread::sleep(HEARTBEAT_INTERVAL);
            }
        })
        .map(drop)
}

/// One connection: Hello, then a registration every interval until an
/// exchange fails.
/// `told_down` is cleared once a heartbeat went through, so that the next
/// outage is reported again.
fn heartbeat_session(registration: &Registration, told_down: &mut bool) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| Error::io(what.to_string(), e);
    let addr = registration
        .mdt_addr
        .to_socket_addrs()
        .map_err(|e| fail("cannot resolve the MDT", e))?
        .next()
        .ok_or_else(|| Error::new(libc::EINVAL, "the MDT address resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, EXCHANGE_TIMEOUT)
        .map_err(|e| fail("cannot connect", e))?;
    stream
        .set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .map_err(|e| fail("socket", e))?;
    let mut decoder = Decoder::new();
    let welcome = exchange(
        &mut stream,
        &mut decoder,
        Opcode::Hello,
        1,
        &Hello::new(0, 0).encode(),
    )?;
    wire::welcomed(0, &welcome).map_err(|(errno, what)| Error::new(errno, what))?;
    for request_id in 2.. {
        let mut record = Record::new();
        entry(registration).put(&mut record, "");
        exchange(
            &mut stream,
            &mut decoder,
            Opcode::OstRegister,
            request_id,
            &record.encode(),
        )?;
        if std::mem::take(told_down) {
            eprintln!(
                "rawstor-ost: registered with mdt://{}",
                registration.mdt_addr
            );
        }
        std::thread::sleep(HEARTBEAT_INTERVAL);
    }
    Ok(())
}

fn exchange(
    stream: &mut TcpStream,
    decoder: &mut Decoder,
    op: Opcode,
    request_id: u64,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let header =
        Header::request(op, request_id, Uuid::from_bytes([0; 16]), 0, 0).with_payload(payload);
    let mut out = header.encode().to_vec();
    out.extend_from_slice(payload);
    stream
        .write_all(&out)
        .map_err(|e| Error::io("cannot send", e))?;
    let mut buf = [0u8; 4096];
    loop {
        match decoder.next_frame() {
            Ok(Some(Decoded::Frame(frame))) if frame.header.request_id == request_id => {
                if frame.header.status < 0 {
                    let message = String::from_utf8_lossy(&frame.payload).into_owned();
                    return Err(Error::new(-frame.header.status, message));
                }
                return Ok(frame.payload);
            }
            Ok(Some(_)) => return Err(Error::new(libc::EPROTO, "an unexpected reply")),
            Ok(None) => {}
            Err(e) => return Err(Error::new(e.errno(), e.to_string())),
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| Error::io("no reply", e))?;
        if n == 0 {
            return Err(Error::new(
                libc::ECONNRESET,
                "the MDT closed the connection",
            ));
        }
        decoder.push(&buf[..n]);
    }
}

/// This OST's entry now: capacity and usage of the filesystems under its
/// mountpaths (each filesystem counted once).
fn entry(registration: &Registration) -> OstEntry {
    let (mut capacity, mut used) = (0u64, 0u64);
    let mut seen = Vec::new();
    for mountpath in &registration.mountpaths {
        let Ok(path) = std::ffi::CString::new(mountpath.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: statvfs is plain data; all zeros is a valid value.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `st` is writable.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 || seen.contains(&st.f_fsid) {
            continue;
        }
        seen.push(st.f_fsid);
        let frsize = st.f_frsize;
        capacity += st.f_blocks * frsize;
        used += (st.f_blocks - st.f_bavail) * frsize;
    }
    OstEntry {
        id: registration.id,
        addr: registration.addr.clone(),
        domain: registration.domain.clone(),
        capacity_bytes: capacity,
        used_bytes: used,
        up: true,
    }
}
