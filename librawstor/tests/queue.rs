//! Queues: batching, back-pressure, the eventfd, durability operations
//! and several threads each with its own queue.

mod common;

use std::os::fd::RawFd;
use std::time::Duration;

use common::TempDir;
use rawstor::queue::opcode::RAWSTOR_SQE_FUA;
use rawstor::{Cqe, CreateSpec, Instance, Options, Sqe};

const MIB: u64 = 1 << 20;

fn readable(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
}

fn setup(tag: &str) -> (TempDir, Instance, rawstor::Target) {
    let dir = TempDir::new(tag);
    let instance = Instance::new(Options::default()).unwrap();
    let spec = CreateSpec {
        size: 16 * MIB,
        uuid: None,
        chunk_size: Some(MIB),
        layout: None,
        piece_size: None,
    };
    let target = instance.create(&dir.location(), &spec).unwrap();
    (dir, instance, target)
}

#[test]
fn full_queue_says_eagain_and_eventfd_tracks_completions() {
    let (_dir, instance, target) = setup("qfull");
    let object = instance.open(&target).unwrap();
    let queue = instance.queue(4).unwrap();
    let fd = queue.eventfd().unwrap();
    let bufs = vec![[0u8; 4096]; 6];
    let sqes: Vec<Sqe> = (0..6)
        .map(|i| Sqe::write(&object, i * 4096, bufs[i as usize].as_ptr(), 4096).user_data(i))
        .collect();
    assert!(!readable(fd));
    // SAFETY: `bufs` outlives the reaps below.
    assert_eq!(unsafe { queue.submit(&sqes) }.unwrap(), 4);
    // SAFETY: as above.
    let full = unsafe { queue.submit(&sqes[4..]) };
    assert_eq!(full.unwrap_err().errno(), libc::EAGAIN);
    assert!(readable(fd));
    let mut cqes = [Cqe::default(); 8];
    assert_eq!(queue.reap(&mut cqes, 4, None), 4);
    assert!(!readable(fd));
    let tags: Vec<u64> = cqes[..4].iter().map(|c| c.user_data).collect();
    assert_eq!(tags, [0, 1, 2, 3]);
    assert!(cqes[..4].iter().all(|c| c.result == 4096));
    // Nothing outstanding: reap returns at once even with min > 0.
    assert_eq!(queue.reap(&mut cqes, 1, None), 0);
}

#[test]
fn flush_and_fua_complete_on_the_loop_thread() {
    let (_dir, instance, target) = setup("qflush");
    let object = instance.open(&target).unwrap();
    let queue = instance.queue(8).unwrap();
    let buf = [9u8; 4096];
    let sqes = [
        Sqe::write(&object, 0, buf.as_ptr(), 4096)
            .flags(RAWSTOR_SQE_FUA)
            .user_data(1),
        Sqe::flush(&object).user_data(2),
    ];
    // SAFETY: `buf` outlives the reap.
    assert_eq!(unsafe { queue.submit(&sqes) }.unwrap(), 2);
    let mut cqes = [Cqe::default(); 2];
    assert_eq!(queue.reap(&mut cqes, 2, Some(Duration::from_secs(10))), 2);
    cqes.sort_by_key(|c| c.user_data);
    assert_eq!(
        cqes,
        [
            Cqe {
                user_data: 1,
                result: 4096
            },
            Cqe {
                user_data: 2,
                result: 0
            }
        ]
    );
    assert_eq!(object.pending(), 0);
}

#[test]
fn errors_complete_entries_instead_of_failing_the_batch() {
    let (_dir, instance, target) = setup("qerr");
    let object = instance.open(&target).unwrap();
    let queue = instance.queue(8).unwrap();
    let mut buf = [0u8; 8192];
    let mut bad_opcode = Sqe::flush(&object).user_data(3);
    bad_opcode.opcode = 99;
    let sqes = [
        Sqe::read(&object, 16 * MIB - 4096, buf.as_mut_ptr(), 8192).user_data(1),
        Sqe::read(&object, 0, std::ptr::null_mut(), 4096).user_data(2),
        bad_opcode,
        Sqe::read(&object, 0, buf.as_mut_ptr(), 4096).user_data(4),
    ];
    // SAFETY: `buf` outlives the reap.
    assert_eq!(unsafe { queue.submit(&sqes) }.unwrap(), 4);
    let mut cqes = [Cqe::default(); 4];
    assert_eq!(queue.reap(&mut cqes, 4, None), 4);
    let results: Vec<i64> = cqes.iter().map(|c| c.result).collect();
    assert_eq!(
        results,
        [
            -i64::from(libc::ENXIO),
            -i64::from(libc::EINVAL),
            -i64::from(libc::EINVAL),
            4096
        ]
    );
}

#[test]
fn reap_times_out_when_nothing_completes() {
    let (_dir, instance, target) = setup("qtimeout");
    let object = instance.open(&target).unwrap();
    let queue = instance.queue(8).unwrap();
    let mut cqes = [Cqe::default(); 4];
    let started = std::time::Instant::now();
    assert_eq!(queue.reap(&mut cqes, 1, Some(Duration::from_millis(50))), 0);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(object);
}

#[test]
fn threads_with_their_own_queues_share_an_object() {
    let (_dir, instance, target) = setup("qthreads");
    let object = instance.open(&target).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let (instance, object) = (&instance, &object);
            scope.spawn(move || {
                let queue = instance.queue(16).unwrap();
                let base = u64::from(t) * 4 * MIB;
                let bufs: Vec<Vec<u8>> = (0..256u32).map(|i| vec![t ^ (i as u8); 4096]).collect();
                let mut cqes = [Cqe::default(); 16];
                for batch in bufs.chunks(16).enumerate() {
                    let sqes: Vec<Sqe> = batch
                        .1
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            let index = (batch.0 * 16 + i) as u64;
                            Sqe::write(object, base + index * 4096, b.as_ptr(), 4096)
                        })
                        .collect();
                    // SAFETY: `bufs` outlives the reap.
                    assert_eq!(unsafe { queue.submit(&sqes) }.unwrap(), 16);
                    assert_eq!(queue.reap(&mut cqes, 16, None), 16);
                    assert!(cqes.iter().all(|c| c.result == 4096));
                }
                let mut back = vec![0u8; 4096];
                for (i, expected) in bufs.iter().enumerate() {
                    object.read_at(&mut back, base + i as u64 * 4096).unwrap();
                    assert_eq!(&back, expected);
                }
            });
        }
    });
}

#[test]
fn a_failed_completion_tells_why_until_the_next_reap() {
    let (_dir, instance, target) = setup("qwhy");
    let object = instance.open(&target).unwrap();
    let queue = instance.queue(8).unwrap();
    let mut buf = [0u8; 4096];
    let sqes = [
        Sqe::read(&object, 0, buf.as_mut_ptr(), 4096).user_data(1),
        Sqe::read(&object, 16 * MIB, buf.as_mut_ptr(), 4096).user_data(2),
        Sqe::read(&object, 0, buf.as_mut_ptr(), 4096).user_data(3),
        Sqe::read(&object, u64::MAX - 1, buf.as_mut_ptr(), 4096).user_data(4),
    ];
    // SAFETY: `buf` outlives the reap below.
    assert_eq!(unsafe { queue.submit(&sqes) }.unwrap(), 4);
    let mut cqes = [Cqe::default(); 4];
    assert_eq!(queue.reap(&mut cqes, 4, None), 4);
    let results: Vec<(u64, i64)> = cqes.iter().map(|c| (c.user_data, c.result)).collect();
    let enxio = -i64::from(libc::ENXIO);
    assert_eq!(results, [(1, 4096), (2, enxio), (3, 4096), (4, enxio)]);
    let why = queue.error_message(2).expect("a message for the failure");
    assert!(why.contains("past the end of object"), "{why}");
    assert!(why.contains(&format!("offset {}", 16 * MIB)), "{why}");
    assert!(queue.error_message(4).unwrap().contains("largest offset"));
    assert_eq!(queue.error_message(1), None, "a success has none");
    // The next reap replaces them.
    assert_eq!(queue.reap(&mut cqes, 0, Some(Duration::ZERO)), 0);
    assert_eq!(queue.error_message(2), None);
}
