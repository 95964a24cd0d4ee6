//! `ost://` connections: one per server address per instance, shared by
//! every object of the instance.
//!
//! Sending: the submitting thread encodes the request and, when nothing is
//! queued before it, writes it to the socket itself (no hand-off); what
//! the socket does not take waits in the connection's buffer for the loop
//! thread, which is told when the socket drains. Receiving: the loop
//! thread reads replies, matches them to requests by id (replies come in
//! any order), copies read data into the caller's buffer and completes.
//!
//! Failures: every request has a deadline (`timeout_ms`). A connection that
//! breaks or stops answering is dropped and re-made with exponential
//! backoff; its requests are sent again, up to `retries` attempts each.
//! Re-sending is safe: the server remembers the results of mutations per
//! session (`caps::DEDUP`), so a retried write, create or resize is
//! answered, not run twice. A server that comes back with a different
//! store identity is refused.

mod connect;
mod request;

use std::collections::BTreeMap;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::event_loop::{Handler, LoopContext, LoopHandle};
use crate::uuid::Uuid;
use crate::wire::{Decoded, Decoder, Header, Opcode, Welcome};
use connect::{connect_blocking, detail};
pub(crate) use request::{Dest, Done, Payload, Request};

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// How long the loop keeps checking deadlines after the last request.
const IDLE_GRACE: Duration = Duration::from_secs(2);

struct Pending {
    request: Request,
    /// Times sent.
    attempts: u32,
    deadline: Instant,
    /// When the caller stops waiting ([`Request::within`],
    /// [`Connection::hurry`]), and why.
    cutoff: Option<(Instant, Cutoff)>,
}

/// Why a request's caller stops waiting. The error is made only when it
/// does (a read's deadline is set on every read that has another copy).
enum Cutoff {
    Within(Duration),
    Hurried(Error),
}

struct State {
    stream: Option<TcpStream>,
    out: Vec<u8>,
    out_pos: usize,
    pending: BTreeMap<u64, Pending>,
    next_id: u64,
    decoder: Decoder,
    /// A send failed: the loop drops the connection at its next tick.
    broken: Option<Error>,
    connecting: bool,
    reconnect_at: Instant,
    backoff: Duration,
    last_error: Option<Error>,
    last_activity: Instant,
    /// Threads waiting in `Queue::reap` that read replies themselves;
    /// while there is one, the loop does not watch the socket for reading.
    driving: usize,
    /// What the loop watches the socket for now (`None`: the socket is
    /// not in the loop's epoll set).
    watching: Option<Interest>,
    /// Requests wait in `out` for the end of the loop's round.
    flush_after_round: bool,
}

/// A connection to one `rawstor-ost`.
pub(crate) struct Connection {
    addr: String,
    /// `ost://host:port` or `mdt://host:port`, for messages.
    name: String,
    token: Token,
    timeout: Duration,
    attempts: u32,
    session: u64,
    store_id: Uuid,
    handle: LoopHandle,
    me: std::sync::Weak<Connection>,
    /// The loop is ticking for this connection (checking deadlines).
    armed: AtomicBool,

    state: Mutex<State>,
}

impl Connection {
    /// Connects to `addr` (`host:port`) and registers with the loop.
    pub(crate) fn connect(
        scheme: &str,
        addr: &str,
        timeout: Duration,
        attempts: u32,
        session: u64,
        handle: LoopHandle,
        token: Token,
    ) -> Result<Arc<Self>> {
        let name = format!("{scheme}://{addr}");
        let (stream, welcome) = connect_blocking(&name, addr, session, timeout)?;
        let connection = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            addr: addr.to_string(),
            name,
            token,
            timeout,
            attempts: attempts.max(1),
            session,
            store_id: welcome.store_id,
            handle: handle.clone(),
            armed: AtomicBool::new(false),
            state: Mutex::new(State {
                stream: None,
                out: Vec::new(),
                out_pos: 0,
                pending: BTreeMap::new(),
                next_id: 1,
                decoder: Decoder::new(),
                broken: None,
                connecting: true,
                reconnect_at: Instant::now(),
                backoff: FIRST_BACKOFF,
                last_error: None,
                last_activity: Instant::now(),
                driving: 0,
                watching: None,
                flush_after_round: false,
            }),
        });
        let installed = Arc::clone(&connection);
        handle.execute(Box::new(move |ctx| {
            ctx.add_handler(installed.token, Arc::clone(&installed) as Arc<dyn Handler>);
            installed.install(ctx, Ok((stream, welcome)));
        }));
        Ok(connection)
    }

    /// A thread starts reading replies itself (while it waits for its
    /// own): the loop thread stops watching the socket for reading, so a
    /// reply costs one wake-up (the waiter's) instead of two (the loop's,
    /// then the waiter's), as in a blocking ping-pong.
    pub(crate) fn drive_begin(&self) {
        let mut st = self.state.lock();
        st.driving += 1;
        if st.driving == 1 {
            self.watch(&mut st);
        }
    }

    /// The thread stops reading replies; the loop watches again (and is
    /// told at once if a reply is already waiting).
    pub(crate) fn drive_end(&self) {
        let mut st = self.state.lock();
        st.driving -= 1;
        if st.driving == 0 {
            self.watch(&mut st);
        }
    }

    /// Makes the loop watch the socket for what is needed now. When
    /// nothing is, the socket leaves the loop's epoll set altogether: a
    /// mere change of interest would still wake the loop thread inside
    /// the kernel on every reply.
    fn watch(&self, st: &mut State) {
        let interest = self.interest(st);
        if interest == st.watching {
            return;
        }
        let Some(stream) = st.stream.as_mut() else {
            return;
        };
        let registry = self.handle.registry();
        let result = match (st.watching, interest) {
            (Some(_), None) => registry.deregister(stream),
            (None, Some(i)) => registry.register(stream, self.token, i),
            (Some(_), Some(i)) => registry.reregister(stream, self.token, i),
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => st.watching = interest,
            Err(e) => {
                st.broken = Some(Error::io(
                    format!("{}: cannot watch the socket", self.name),
                    e,
                ));
                self.handle.wake();
            }
        }
    }

    /// Readable unless a waiting thread reads; writable only while bytes
    /// wait to be sent (a writable watch would wake the loop on every
    /// acknowledgement).
    fn interest(&self, st: &State) -> Option<Interest> {
        let read = (st.driving == 0).then_some(Interest::READABLE);
        let write = (st.out_pos < st.out.len()).then_some(Interest::WRITABLE);
        match (read, write) {
            (Some(r), Some(w)) => Some(r | w),
            (r, w) => r.or(w),
        }
    }

    /// Reads and completes whatever replies have arrived, without
    /// waiting; returns the socket to poll for more.
    pub(crate) fn drain(&self) -> Option<RawFd> {
        let mut done = Vec::new();
        let mut st = self.state.lock();
        if st.stream.is_some() && st.broken.is_none() {
            self.receive(&mut st, &mut done);
        }
        if st.broken.is_some() {
            self.handle.wake(); // the loop drops and re-makes the connection
        }
        let fd = st.stream.as_ref().map(|s| s.as_raw_fd());
        drop(st);
        run(done);
        fd
    }

    /// `ost://host:port` or `mdt://host:port`, for messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The identity of the server's store (an OST's id in a cluster map).
    pub(crate) fn store_id(&self) -> Uuid {
        self.store_id
    }

    fn error(&self, errno: i32, what: impl std::fmt::Display) -> Error {
        Error::new(errno, format!("{}: {what}", self.name))
    }

    /// Sends a request; its `done` runs exactly once, on some thread.
    pub(crate) fn submit(&self, mut request: Request) {
        let now = Instant::now();
        let mut st = self.state.lock();
        let id = st.next_id;
        st.next_id += 1;
        request.header.request_id = id;
        request.header = request.header.with_payload_parts(&request.payload.parts());
        st.last_activity = now;
        let within = request.within;
        // A caller with another copy to ask does not wait for a server
        // this connection cannot reach now.
        if within.is_some() && st.stream.is_none() {
            if let Some(err) = st.last_error.clone() {
                drop(st);
                return (request.done)(Err(err));
            }
        }
        let mut attempts = 0;
        if st.stream.is_some() && st.broken.is_none() {
            if !self.send_after_round(&mut st, &request) {
                self.send_locked(&mut st, &request);
            }
            attempts = 1;
        }
        st.pending.insert(
            id,
            Pending {
                request,
                attempts,
                deadline: now + self.timeout,
                cutoff: within.map(|w| (now + w, Cutoff::Within(w))),
            },
        );
        let reconnect = st.stream.is_none() && !st.connecting;
        if reconnect {
            // New work: try at once rather than after the backoff grown
            // while nobody needed the server (it may be back by now).
            st.reconnect_at = now;
        }
        drop(st);
        if !self.armed.swap(true, Ordering::AcqRel) || reconnect {
            self.handle.wake();
        }
    }

    /// Fails the requests on `object` still waiting here at `at` with
    /// `err`, leaving the connection as it is: a caller whose other copies
    /// or shards answered stops waiting for this one. A request already
    /// sent is not taken back (the server may still run it; the caller
    /// marks this copy stale first), and is not sent again: its lent
    /// buffers are the caller's once its completion has run.
    /// Only changes and flushes are hurried: reads set their own cutoff
    /// ([`Request::within`]).
    pub(crate) fn hurry(&self, object: Uuid, at: Instant, err: &Error) {
        let object = *object.as_bytes();
        let changes = |h: &Header| {
            matches!(
                h.op(),
                Some(
                    Opcode::Write
                        | Opcode::Discard
                        | Opcode::WriteZeroes
                        | Opcode::Flush
                        | Opcode::Mark
                )
            )
        };
        let mut st = self.state.lock();
        let mut any = false;
        for p in st.pending.values_mut() {
            let header = &p.request.header;
            if header.object == object
                && changes(header)
                && p.cutoff.as_ref().is_none_or(|(t, _)| at < *t)
            {
                p.cutoff = Some((at, Cutoff::Hurried(err.clone())));
                any = true;
            }
        }
        drop(st);
        if any {
            // The loop ticks for this connection and sees the cutoff.
            self.armed.store(true, Ordering::Release);
            self.handle.wake();
        }
    }

    /// Fails the requests whose cutoff has come (see [`Connection::hurry`]).
    fn cut_off(&self, st: &mut State, now: Instant, done: &mut Vec<(Done, Result<Vec<u8>>)>) {
        let due: Vec<u64> = st
            .pending
            .iter()
            .filter(|(_, p)| p.cutoff.as_ref().is_some_and(|(t, _)| *t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let p = st.pending.remove(&id).expect("listed");
            let err = match p.cutoff.expect("due").1 {
                Cutoff::Hurried(err) => err,
                Cutoff::Within(w) => self.error(
                    libc::ETIMEDOUT,
                    format!("no answer within {} ms; asking another copy", w.as_millis()),
                ),
            };
            done.push((p.request.done, Err(err)));
        }
    }

    /// On the loop thread, in the middle of a round of completions that
    /// may start more requests to this server: a small request is queued,
    /// and the round's end sends everything queued with one `write`
    /// instead of one per request. False when it was not queued.
    fn send_after_round(&self, st: &mut State, request: &Request) -> bool {
        if !crate::event_loop::in_round() {
            return false;
        }
        let parts = request.payload.parts();
        if parts.iter().map(|p| p.len()).sum::<usize>() > ROUND_SEND_MAX {
            return false;
        }
        if !st.flush_after_round {
            let Some(me) = self.me.upgrade() else {
                return false;
            };
            let flush = Box::new(move || {
                let mut st = me.state.lock();
                st.flush_after_round = false;
                if st.stream.is_some() && st.broken.is_none() {
                    me.flush_out(&mut st);
                    // What the socket did not take goes when it is writable.
                    me.watch(&mut st);
                }
            });
            if crate::event_loop::after_round(flush).is_err() {
                return false;
            }
            st.flush_after_round = true;
        }
        st.out.extend_from_slice(&request.header.encode());
        for part in parts {
            st.out.extend_from_slice(part);
        }
        true
    }

    /// Writes a request, or queues what the socket does not take.
    fn send_locked(&self, st: &mut State, request: &Request) {
        let head = request.header.encode();
        let mut parts = request.payload.parts();
        parts.insert(0, &head);
        let mut written = 0;
        if st.out_pos == st.out.len() {
            st.out.clear();
            st.out_pos = 0;
            let stream = st.stream.as_mut().expect("connected");
            match write_parts(stream, &parts) {
                Ok(n) => written = n,
                Err(e) => {
                    st.broken = Some(self.error(
                        e.raw_os_error().unwrap_or(libc::EIO),
                        format!("send failed{}", detail(&e)),
                    ));
                    self.handle.wake();
                    return;
                }
            }
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if written < total {
            let mut skip = written;
            for part in parts {
                let from = skip.min(part.len());
                st.out.extend_from_slice(&part[from..]);
                skip -= from;
            }
            self.watch(st);
        }
    }

    /// Writes queued bytes until the socket is full.
    fn flush_out(&self, st: &mut State) {
        while st.out_pos < st.out.len() {
            let Some(stream) = st.stream.as_mut() else {
                return;
            };
            match crate::sys::send_vectored(stream, &[IoSlice::new(&st.out[st.out_pos..])]) {
                Ok(0) => {
                    st.broken = Some(self.error(libc::EPIPE, "connection closed while sending"));
                    return;
                }
                Ok(n) => st.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    st.broken = Some(self.error(
                        e.raw_os_error().unwrap_or(libc::EIO),
                        format!("send failed{}", detail(&e)),
                    ));
                    return;
                }
            }
        }
        st.out.clear();
        st.out_pos = 0;
        self.watch(st);
    }

    /// Reads what arrived; returns the completions to run (after the lock).
    fn receive(&self, st: &mut State, done: &mut Vec<(Done, Result<Vec<u8>>)>) {
        let mut buf = [0u8; 64 << 10];
        loop {
            let Some(stream) = st.stream.as_mut() else {
                return;
            };
            match stream.read(&mut buf) {
                Ok(0) => {
                    st.broken =
                        Some(self.error(libc::ECONNRESET, "the server closed the connection"));
                    break;
                }
                Ok(n) => st.decoder.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    st.broken = Some(self.error(
                        e.raw_os_error().unwrap_or(libc::EIO),
                        format!("receive failed{}", detail(&e)),
                    ));
                    break;
                }
            }
            self.dispatch(st, done);
        }
        self.dispatch(st, done);
    }

    fn dispatch(&self, st: &mut State, done: &mut Vec<(Done, Result<Vec<u8>>)>) {
        loop {
            let frame = match st.decoder.next_frame() {
                Ok(Some(Decoded::Frame(frame))) => frame,
                Ok(Some(Decoded::Bad(header, err))) => {
                    // A reply whose payload was damaged in transit: the
                    // request is sent again.
                    if let Some(p) = st.pending.get_mut(&header.request_id) {
                        p.deadline = Instant::now();
                    }
                    crate::log::warn(&format!("{}: {err} in a reply; retrying", self.name));
                    continue;
                }
                Ok(None) => return,
                Err(err) => {
                    st.broken = Some(self.error(libc::EPROTO, format!("bad reply stream: {err}")));
                    return;
                }
            };
            let header = frame.header;
            if header.request_id == 0 && header.status < 0 {
                let message = String::from_utf8_lossy(&frame.payload).into_owned();
                st.broken = Some(self.error(
                    -header.status,
                    format!("the server refused the connection: {message}"),
                ));
                return;
            }
            let Some(pending) = st.pending.remove(&header.request_id) else {
                continue; // a late reply to a request already failed or retried
            };
            let request = pending.request;
            if !header.is_reply() || header.opcode != request.header.opcode {
                let err = self.error(libc::EPROTO, "a reply does not match its request");
                st.broken = Some(err.clone());
                // Completions run after the state lock is released.
                done.push((request.done, Err(err)));
                return;
            }
            if header.status < 0 {
                let message = String::from_utf8_lossy(&frame.payload).into_owned();
                done.push((
                    request.done,
                    Err(Error::new(
                        -header.status,
                        format!("{}: {message}", self.name),
                    )),
                ));
                continue;
            }
            match request.dest {
                Dest::None => done.push((request.done, Ok(frame.payload))),
                Dest::Bufs(bufs) => {
                    let want: usize = bufs.iter().map(|b| b.len).sum();
                    if frame.payload.len() != want {
                        let err = self.error(
                            libc::EPROTO,
                            format!("read reply of {} bytes, {want} asked", frame.payload.len()),
                        );
                        done.push((request.done, Err(err)));
                        continue;
                    }
                    // SAFETY: the caller lent the buffers, writable,
                    // until this completion.
                    unsafe { crate::lent::scatter(&bufs, 0, &frame.payload) };
                    done.push((request.done, Ok(Vec::new())));
                }
            }
        }
    }

    /// Drops the socket; requests out of attempts fail, the rest wait for
    /// the next connection.
    fn disconnect(
        &self,
        st: &mut State,
        registry: &Registry,
        err: Error,
        done: &mut Vec<(Done, Result<Vec<u8>>)>,
    ) {
        if let Some(mut stream) = st.stream.take() {
            if st.watching.take().is_some() {
                let _ = registry.deregister(&mut stream);
            }
        }
        st.out.clear();
        st.out_pos = 0;
        st.decoder = Decoder::new();
        st.broken = None;
        let now = Instant::now();
        st.reconnect_at = now + st.backoff;
        st.backoff = (st.backoff * 2).min(MAX_BACKOFF);
        let failed: Vec<u64> = st
            .pending
            .iter()
            .filter(|(_, p)| p.attempts >= self.attempts)
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            let p = st.pending.remove(&id).expect("listed");
            done.push((p.request.done, Err(err.clone())));
        }
        st.last_error = Some(err);
    }

    /// Takes a new connection (or its failure) from the connector.
    fn install(&self, ctx: &mut LoopContext<'_>, result: Result<(TcpStream, Welcome)>) {
        let mut done = Vec::new();
        let mut st = self.state.lock();
        st.connecting = false;
        match result {
            Ok((_, welcome)) if welcome.store_id != self.store_id => {
                let err = self.error(
                    libc::ESTALE,
                    format!(
                        "now serves store {} instead of {}",
                        welcome.store_id, self.store_id
                    ),
                );
                self.fail_all(&mut st, err, &mut done);
            }
            Ok((mut stream, _)) => {
                let interest = self.interest(&st);
                let registered = match interest {
                    Some(i) => ctx.registry.register(&mut stream, self.token, i),
                    None => Ok(()),
                };
                st.watching = interest;
                if let Err(e) = registered {
                    st.last_error = Some(Error::io(
                        format!("{}: cannot watch the socket", self.name),
                        e,
                    ));
                } else {
                    st.stream = Some(stream);
                    st.backoff = FIRST_BACKOFF;
                    let ids: Vec<u64> = st.pending.keys().copied().collect();
                    for id in ids {
                        let mut p = st.pending.remove(&id).expect("listed");
                        if p.attempts >= self.attempts {
                            let err = st
                                .last_error
                                .clone()
                                .unwrap_or_else(|| self.error(libc::EIO, "out of attempts"));
                            done.push((p.request.done, Err(err)));
                            continue;
                        }
                        p.attempts += 1;
                        p.deadline = Instant::now() + self.timeout;
                        self.send_locked(&mut st, &p.request);
                        st.pending.insert(id, p);
                    }
                }
            }
            Err(err) => {
                st.reconnect_at = Instant::now() + st.backoff;
                st.backoff = (st.backoff * 2).min(MAX_BACKOFF);
                st.last_error = Some(err);
            }
        }
        drop(st);
        run(done);
    }

    fn fail_all(&self, st: &mut State, err: Error, done: &mut Vec<(Done, Result<Vec<u8>>)>) {
        for (_, p) in std::mem::take(&mut st.pending) {
            done.push((p.request.done, Err(err.clone())));
        }
        st.last_error = Some(err);
    }

    fn start_connector(&self, st: &mut State) {
        let Some(connection) = self.me.upgrade() else {
            return;
        };
        st.connecting = true;
        let spawned = std::thread::Builder::new()
            .name("rawstor-connect".into())
            .spawn(move || {
                let result = connect_blocking(
                    &connection.name,
                    &connection.addr,
                    connection.session,
                    connection.timeout,
                );
                let handle = connection.handle.clone();
                handle.execute(Box::new(move |ctx| connection.install(ctx, result)));
            });
        if let Err(e) = spawned {
            st.connecting = false;
            st.last_error = Some(Error::io("cannot start a connector thread", e));
        }
    }

    /// Requests past their deadline: the connection is dropped (no reply
    /// within the timeout), and each uses up an attempt; those out of
    /// attempts fail with the last connection error.
    fn time_out(
        &self,
        st: &mut State,
        registry: &Registry,
        now: Instant,
        done: &mut Vec<(Done, Result<Vec<u8>>)>,
    ) {
        if !st.pending.values().any(|p| p.deadline <= now) {
            return;
        }
        if st.stream.is_some() {
            let err = self.error(
                libc::ETIMEDOUT,
                format!("no reply within {} ms", self.timeout.as_millis()),
            );
            self.disconnect(st, registry, err, done);
        }
        let ids: Vec<u64> = st
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let p = st.pending.get_mut(&id).expect("listed");
            p.attempts += 1;
            p.deadline = now + self.timeout;
            if p.attempts >= self.attempts {
                let p = st.pending.remove(&id).expect("listed");
                let err = match &st.last_error {
                    Some(e) => e.clone(),
                    None => self.error(libc::ETIMEDOUT, "no connection"),
                };
                done.push((p.request.done, Err(err)));
            }
        }
    }
}

impl Handler for Connection {
    fn ready(&self, registry: &Registry, event: &Event) {
        let mut done = Vec::new();
        let mut st = self.state.lock();
        if event.is_writable() {
            self.flush_out(&mut st);
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.receive(&mut st, &mut done);
        }
        if let Some(err) = st.broken.take() {
            self.disconnect(&mut st, registry, err, &mut done);
        }
        drop(st);
        run(done);
    }

    fn tick(&self, registry: &Registry, now: Instant) -> Option<Instant> {
        let mut done = Vec::new();
        let mut st = self.state.lock();
        if st.driving > 0 && !st.pending.is_empty() && st.stream.is_some() {
            // A thread holds the drive but may not be reading right now:
            // take what arrived, so that no reply waits for it unread.
            self.receive(&mut st, &mut done);
        }
        if let Some(err) = st.broken.take() {
            self.disconnect(&mut st, registry, err, &mut done);
        }
        self.cut_off(&mut st, now, &mut done);
        self.time_out(&mut st, registry, now, &mut done);
        let mut next = None;
        if st.stream.is_none() && !st.connecting && !st.pending.is_empty() {
            if st.reconnect_at <= now {
                self.start_connector(&mut st);
            } else {
                next = Some(st.reconnect_at);
            }
        }
        let busy = !st.pending.is_empty()
            || st.connecting
            || now.duration_since(st.last_activity) < IDLE_GRACE;
        if busy {
            let check = now
                + (self.timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
            let earliest = st
                .pending
                .values()
                .map(|p| {
                    p.cutoff
                        .as_ref()
                        .map_or(p.deadline, |(t, _)| p.deadline.min(*t))
                })
                .min()
                .unwrap_or(check);
            let due = earliest.min(check);
            next = Some(next.map_or(due, |n: Instant| n.min(due)));
        } else {
            self.armed.store(false, Ordering::Release);
            // A request submitted between the check and the store would
            // have seen `armed` true: look again.
            if !st.pending.is_empty() {
                self.armed.store(true, Ordering::Release);
                next = Some(now);
            }
        }
        drop(st);
        run(done);
        next
    }
}

fn run(done: Vec<(Done, Result<Vec<u8>>)>) {
    for (f, result) in done {
        f(result);
    }
}

/// Largest payload a request started on the loop thread waits for the
/// end of the round with (it is copied).
const ROUND_SEND_MAX: usize = 16 << 10;

/// Most slices one `writev` takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Writes `parts` in order until the socket is full; returns the bytes
/// written.
fn write_parts(stream: &mut TcpStream, parts: &[&[u8]]) -> io::Result<usize> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    let mut written = 0;
    while !rest.is_empty() {
        let batch = rest.len().min(IOV_MAX);
        match crate::sys::send_vectored(stream, &rest[..batch]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut rest, n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
