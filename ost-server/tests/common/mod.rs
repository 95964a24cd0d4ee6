//! Real `rawstor-ost` processes on loopback for the tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "rawstor-ost-{tag}-{}-{:x}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(rand_u64())
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("urandom");
    u64::from_le_bytes(b)
}

/// A running `rawstor-ost`; killed (SIGKILL) on drop if still running.
pub struct Ost {
    pub child: Child,
    pub addr: String,
    pub mountpaths: Vec<PathBuf>,
}

impl Ost {
    /// Starts a server on `bind` (port 0: any) serving `mountpaths`.
    pub fn start_on(bind: &str, mountpaths: &[PathBuf], extra: &[&str]) -> Self {
        let location = mountpaths
            .iter()
            .map(|p| format!("file://{}", p.display()))
            .collect::<Vec<_>>()
            .join(",");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rawstor-ost"))
            .args(["--bind", bind])
            .args(extra)
            .arg(&location)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rawstor-ost");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self {
            child,
            addr,
            mountpaths: mountpaths.to_vec(),
        }
    }

    pub fn start(mountpaths: &[PathBuf]) -> Self {
        Self::start_on("127.0.0.1:0", mountpaths, &[])
    }

    pub fn location(&self) -> rawstor::Location {
        format!("ost://{}", self.addr).parse().expect("location")
    }

    /// Whether the server still runs, or how it ended (for failure
    /// messages: a server that died by a signal says which).
    #[allow(dead_code)]
    pub fn state(&mut self) -> String {
        match self.child.try_wait() {
            Ok(None) => "is running".into(),
            Ok(Some(status)) => format!("has ended ({status})"),
            Err(e) => format!("cannot be asked ({e})"),
        }
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Stops the server (SIGSTOP) and waits until the kernel has.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        let stat = format!("/proc/{}/stat", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            if text
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('T'))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("rawstor-ost did not stop");
    }

    /// Waits for the exit up to `limit`; returns the status code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Ost {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Deterministic bytes for block `index` of generation `generation`.
pub fn pattern(index: u64, generation: u64, len: usize) -> Vec<u8> {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ generation.wrapping_mul(0xD1B5_4A32_D192_ED03)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn instance() -> rawstor::Instance {
    rawstor::Instance::new(rawstor::Options {
        timeout_ms: 2000,
        ..Default::default()
    })
    .expect("instance")
}
