//! Crash consistency: a writer process is killed with SIGKILL at random
//! points, again and again; after each kill every block must read back as
//! content some write put there no older than what was verified before
//! (old or new), or as zeros where nothing was written yet, and a
//! checksum mismatch must never be returned as data.
//!
//! The writer is this test binary re-run as a child (the ignored test
//! `crash_writer_child`), told what to do through environment variables.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TempDir;
use rawstor::{CreateSpec, Instance, Options, Target};

const BLOCK: usize = 4096;
const OBJECT_BYTES: u64 = 8 << 20;
const CHUNK_BYTES: u64 = 1 << 20;
const BLOCKS: usize = (OBJECT_BYTES as usize) / BLOCK;
const ITERATIONS: u64 = 60;
/// Blocks one write may cover (writes tear across blocks).
const MAX_WRITE_BLOCKS: usize = 32;
const MAGIC: u64 = 0x7261_7773_746f_7221;

/// Self-describing content of `block` written at `generation`.
fn block_content(block: usize, generation: u64) -> Vec<u8> {
    let mut out = vec![0u8; BLOCK];
    let mut state = (block as u64) ^ generation.rotate_left(32) ^ MAGIC;
    for (i, word) in out.chunks_exact_mut(8).enumerate() {
        let value = match i {
            0 => MAGIC,
            1 => block as u64,
            2 => generation,
            _ => {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            }
        };
        word.copy_from_slice(&value.to_le_bytes());
    }
    out
}

/// The generation of a valid block, `Some(0)` for zeros, `None` if the
/// content is not something any write produced for this block.
fn parse_block(block: usize, data: &[u8]) -> Option<u64> {
    if data.iter().all(|&b| b == 0) {
        return Some(0);
    }
    let generation = u64::from_le_bytes(data[16..24].try_into().unwrap());
    (block_content(block, generation) == data).then_some(generation)
}

#[test]
#[ignore = "child process of sigkill_at_random_points_never_yields_torn_or_corrupt_blocks"]
fn crash_writer_child() {
    let Ok(target) = std::env::var("RAWSTOR_CRASH_TARGET") else {
        return;
    };
    let iteration: u64 = std::env::var("RAWSTOR_CRASH_ITERATION")
        .unwrap()
        .parse()
        .unwrap();
    let target: Target = target.parse().unwrap();
    let instance = Instance::new(Options::default()).unwrap();
    let object = instance.open(&target).unwrap();
    let mut rng = iteration.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    println!("ready");
    let mut generation = iteration * 1_000_000;
    loop {
        generation += 1;
        let first = (next() % BLOCKS as u64) as usize;
        let count = 1 + (next() % MAX_WRITE_BLOCKS as u64) as usize;
        let count = count.min(BLOCKS - first);
        if next() % 16 == 0 {
            object
                .discard((first * BLOCK) as u64, (count * BLOCK) as u64)
                .unwrap();
            continue;
        }
        let data: Vec<u8> = (first..first + count)
            .flat_map(|b| block_content(b, generation))
            .collect();
        object.write_at(&data, (first * BLOCK) as u64).unwrap();
        if next() % 64 == 0 {
            object.flush().unwrap();
        }
    }
}

#[test]
fn sigkill_at_random_points_never_yields_torn_or_corrupt_blocks() {
    let dir = TempDir::new("crash");
    let target = {
        let instance = Instance::new(Options::default()).unwrap();
        let spec = CreateSpec {
            size: OBJECT_BYTES,
            uuid: None,
            chunk_size: Some(CHUNK_BYTES),
            layout: None,
            piece_size: None,
        };
        instance.create(&dir.location(), &spec).unwrap()
    };
    let exe = std::env::current_exe().unwrap();
    // Oldest generation each block may still show.
    let mut floor = vec![0u64; BLOCKS];
    let mut delay_state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut changed_blocks = 0usize;
    for iteration in 1..=ITERATIONS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RAWSTOR_CRASH_TARGET", target.to_string())
            .env("RAWSTOR_CRASH_ITERATION", iteration.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        while !line.contains("ready") {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "child ended before it was ready"
            );
        }
        delay_state ^= delay_state << 13;
        delay_state ^= delay_state >> 7;
        delay_state ^= delay_state << 17;
        std::thread::sleep(Duration::from_micros(500 + delay_state % 30_000));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "child must die by the signal, got {status}"
        );

        // A fresh instance: nothing cached from before the crash.
        let instance = Instance::new(Options::default()).unwrap();
        let object = instance.open(&target).unwrap();
        let mut data = vec![0u8; BLOCK];
        for (block, floor) in floor.iter_mut().enumerate() {
            let result = object.read_at(&mut data, (block * BLOCK) as u64);
            if let Err(err) = result {
                panic!("iteration {iteration}: block {block} unreadable after the crash: {err}");
            }
            let Some(generation) = parse_block(block, &data) else {
                panic!("iteration {iteration}: block {block} holds content no write produced");
            };
            let discarded = generation == 0;
            assert!(
                discarded || generation >= *floor,
                "iteration {iteration}: block {block} went back from generation {floor} to {generation}"
            );
            if generation > *floor {
                changed_blocks += 1;
            }
            // Later iterations may see this content or newer (or zeros
            // from a discard).
            *floor = generation;
        }
    }
    assert!(
        changed_blocks > BLOCKS,
        "the writers changed too little to test anything ({changed_blocks})"
    );
}
