//! The store under a low descriptor limit (`RLIMIT_NOFILE`): more chunk
//! files than descriptors are written, read and flushed without an error
//! (issue 18, item 10: writes failed with "Too many open files"). In a
//! test binary of its own, one test: lowering the process's limit would
//! starve tests running beside it.

mod common;

use std::sync::Arc;

use common::TempDir;
use rawstor::store::{MIN_CHUNK_SIZE, MIN_OPEN_CHUNKS, NOFILE_SHARE_DIVISOR, Store};

fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the call to fill in.
    let res = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(res, 0, "getrlimit: {}", std::io::Error::last_os_error());
    limit
}

fn set_nofile_soft(soft: u64) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        ..nofile()
    };
    // SAFETY: `limit` is a valid rlimit, read by the call.
    let res = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(res, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

/// 4 KiB of a pattern of its own for chunk `index`.
fn pattern(index: u64) -> Vec<u8> {
    (0..4096u64).map(|i| (index * 11 + i * 7) as u8).collect()
}

/// Writes a pattern into each of `chunks` chunks of a new object, flushes,
/// reads them all back, writes them again and flushes again.
fn write_and_read_every_chunk(store: &Arc<Store>, chunks: u64) {
    let uuid = rawstor::Uuid::now_v7();
    store
        .create_object(uuid, chunks * MIN_CHUNK_SIZE, MIN_CHUNK_SIZE)
        .unwrap();
    let object = store.open_object(uuid).unwrap();
    let at = |index: u64| index * MIN_CHUNK_SIZE + (index % 16) * 4096;
    for index in 0..chunks {
        object.write(at(index), &pattern(index)).unwrap();
    }
    object.flush().unwrap();
    let mut buf = vec![0u8; 4096];
    for index in (0..chunks).rev() {
        object.read(at(index), &mut buf).unwrap();
        assert!(buf == pattern(index), "chunk {index}");
        object.write(at(index), &pattern(index + 1)).unwrap();
    }
    object.flush().unwrap();
    for index in 0..chunks {
        object.read(at(index), &mut buf).unwrap();
        assert!(buf == pattern(index + 1), "chunk {index}");
    }
}

#[test]
fn more_chunk_files_than_descriptors() {
    let saved = nofile();
    let soft = open_descriptors() + 40;
    let chunks = 5 * soft;
    set_nofile_soft(soft);

    // The process's cache is sized when its first store opens: now.
    let dir = TempDir::new("nofile");
    let store = Store::open(vec![dir.path().to_path_buf()], true).unwrap();
    let expected = (soft / NOFILE_SHARE_DIVISOR).max(MIN_OPEN_CHUNKS as u64);
    assert_eq!(store.open_chunk_limit() as u64, expected);
    write_and_read_every_chunk(&store, chunks);
    assert!(store.open_chunks() as u64 <= expected);

    // A cache allowed more chunks than there are descriptors: opens fail
    // with EMFILE, close idle chunks and succeed.
    let dir = TempDir::new("nofile-big");
    let big = Store::open_with_chunk_limit(vec![dir.path().to_path_buf()], true, 10_000).unwrap();
    write_and_read_every_chunk(&big, chunks);
    assert!((big.open_chunks() as u64) < soft);

    set_nofile_soft(saved.rlim_cur);
}
