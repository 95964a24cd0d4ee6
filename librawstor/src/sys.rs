//! Thin wrappers over the OS calls std does not cover. All `unsafe` for
//! system calls lives here.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// Runs a libc call, turning `-1` into the thread's `errno`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every call site passes valid descriptors and pointers
        // to buffers that outlive the call; see the callers' comments.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Fills `buf` with random bytes from the kernel.
pub fn fill_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // `rest` is a valid writable buffer of the given length.
        match syscall!(getrandom(rest.as_mut_ptr().cast(), rest.len(), 0)) {
            Ok(n) => done += n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("getrandom failed: {e}"),
        }
    }
}

/// A random u64.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Whether a process with `pid` exists (signal 0 probes, sends nothing).
pub fn process_exists(pid: i32) -> bool {
    match syscall!(kill(pid, 0)) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// Frees `len` bytes at `offset` of `file`; the range then reads as zeros.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    syscall!(fallocate(
        file.as_raw_fd(),
        mode,
        offset as libc::off_t,
        len as libc::off_t
    ))?;
    Ok(())
}

/// Gives `file` disk blocks for `len` bytes at `offset` (holes only; the
/// bytes there do not change).
pub fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    syscall!(fallocate(
        file.as_raw_fd(),
        0,
        offset as libc::off_t,
        len as libc::off_t
    ))?;
    Ok(())
}

/// Where the first data at or after `offset` of `file` starts (`None`:
/// only a hole follows, up to the end of the file).
pub fn seek_data(file: &File, offset: u64) -> io::Result<Option<u64>> {
    seek(file, offset, libc::SEEK_DATA)
}

/// Where the first hole at or after `offset` of `file` starts (the end of
/// the file counts as one); `None` past the end.
pub fn seek_hole(file: &File, offset: u64) -> io::Result<Option<u64>> {
    seek(file, offset, libc::SEEK_HOLE)
}

fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: lseek on an open descriptor; it does not touch memory.
    let at = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if at >= 0 {
        return Ok(Some(at as u64));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(err),
    }
}

/// Makes a directory entry (a rename or create inside `dir`) durable.
pub fn fsync_dir(dir: &std::path::Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A non-blocking eventfd: readable while its counter is non-zero.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd with a zero counter.
    pub fn new() -> io::Result<Self> {
        let fd = syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?;
        // SAFETY: eventfd returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Makes the eventfd readable.
    pub fn signal(&self) {
        let one: u64 = 1;
        // Writing 8 bytes from a live u64. EAGAIN (counter saturated)
        // still leaves the fd readable, which is all a signal means.
        let _ = syscall!(write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8));
    }

    /// Makes the eventfd unreadable again (drains the counter).
    pub fn clear(&self) {
        let mut value: u64 = 0;
        // Reading 8 bytes into a live u64; EAGAIN means already clear.
        let _ = syscall!(read(
            self.fd.as_raw_fd(),
            (&mut value as *mut u64).cast(),
            8
        ));
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A shared, writable memory map of a whole file, viewed as 64-bit words.
///
/// Stores land in the page cache at once, so they survive the death of
/// the process; `sync` makes them durable.
pub struct MappedWords {
    ptr: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory accessed only through
// atomics; it may be used from any thread.
unsafe impl Send for MappedWords {}
// SAFETY: as above, all access goes through `AtomicU64`.
unsafe impl Sync for MappedWords {}

impl MappedWords {
    /// Maps the first `len` 64-bit words of `file`, which must be at
    /// least `len * 8` bytes long and must not shrink while mapped.
    pub fn map(file: &File, len: usize) -> io::Result<Self> {
        let file_len = file.metadata()?.len();
        let bytes = len.checked_mul(8).ok_or(io::ErrorKind::InvalidInput)?;
        if (file_len as usize) < bytes {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("checksum file holds {file_len} bytes, needs {bytes}"),
            ));
        }
        if len == 0 {
            return Ok(Self {
                ptr: NonNull::dangling(),
                len,
            });
        }
        // SAFETY: a fresh shared mapping of an open file; the kernel
        // chooses the address; the length was checked against the file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<AtomicU64>()).ok_or(io::ErrorKind::Other)?;
        Ok(Self { ptr, len })
    }

    /// The mapped words.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `len` page-aligned (thus 8-byte
        // aligned) words and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Writes dirty pages back and waits for them.
    pub fn sync(&self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        syscall!(msync(self.ptr.as_ptr().cast(), self.len * 8, libc::MS_SYNC))?;
        Ok(())
    }
}

impl Drop for MappedWords {
    fn drop(&mut self) {
        if self.len > 0 {
            // The region was mapped by `map` with this exact length.
            let _ = syscall!(munmap(self.ptr.as_ptr().cast(), self.len * 8));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn eventfd_readable_only_while_signalled() {
        let efd = EventFd::new().unwrap();
        let readable = |efd: &EventFd| {
            let mut pfd = libc::pollfd {
                fd: efd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            syscall!(poll(&mut pfd, 1, 0)).unwrap() == 1
        };
        assert!(!readable(&efd));
        efd.signal();
        efd.signal();
        assert!(readable(&efd));
        efd.clear();
        assert!(!readable(&efd));
    }

    #[test]
    fn mapped_words_reach_the_file() {
        let path = std::env::temp_dir().join(format!("rawstor-map-{}", random_u64()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(4096).unwrap();
        let map = MappedWords::map(&file, 512).unwrap();
        map.words()[3].store(0x1122_3344_5566_7788, Ordering::Release);
        map.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[24..32], &0x1122_3344_5566_7788u64.to_ne_bytes());
        assert!(MappedWords::map(&file, 513).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
