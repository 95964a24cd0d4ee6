//! `rawstor bench` and `rawstor testio`: I/O through a queue, the way an
//! application drives the library.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use rawstor::{Cqe, Object, Queue, Result, Sqe};

/// What to run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pattern {
    RandRead,
    RandWrite,
    Read,
    Write,
}

impl Pattern {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "randread" => Self::RandRead,
            "randwrite" => Self::RandWrite,
            "read" => Self::Read,
            "write" => Self::Write,
            _ => return None,
        })
    }

    fn is_write(self) -> bool {
        matches!(self, Self::RandWrite | Self::Write)
    }

    fn is_random(self) -> bool {
        matches!(self, Self::RandRead | Self::RandWrite)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::RandRead => "randread",
            Self::RandWrite => "randwrite",
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

pub struct BenchSpec {
    pub pattern: Pattern,
    pub block_size: usize,
    pub iodepth: usize,
    pub runtime: Duration,
    /// Bytes of the object (or file) the offsets range over.
    pub span: u64,
}

/// Offsets: a xorshift sequence for random patterns, a wrapping cursor
/// for sequential ones.
struct Offsets {
    state: u64,
    cursor: u64,
    blocks: u64,
    block_size: u64,
    random: bool,
}

impl Offsets {
    fn new(spec: &BenchSpec) -> Self {
        Self {
            state: 0x9e37_79b9_7f4a_7c15,
            cursor: 0,
            blocks: (spec.span / spec.block_size as u64).max(1),
            block_size: spec.block_size as u64,
            random: spec.pattern.is_random(),
        }
    }

    fn next(&mut self) -> u64 {
        let block = if self.random {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            self.state % self.blocks
        } else {
            let block = self.cursor;
            self.cursor = (self.cursor + 1) % self.blocks;
            block
        };
        block * self.block_size
    }
}

/// Results of one run.
pub struct Report {
    pub ios: u64,
    pub elapsed: Duration,
    pub latencies_ns: Vec<u64>,
    pub block_size: usize,
}

impl Report {
    fn percentile_us(&self, p: f64) -> f64 {
        if self.latencies_ns.is_empty() {
            return 0.0;
        }
        let at = ((self.latencies_ns.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_ns[at] as f64 / 1000.0
    }

    pub fn print(&mut self, label: &str, spec: &BenchSpec) {
        self.latencies_ns.sort_unstable();
        let secs = self.elapsed.as_secs_f64();
        let iops = self.ios as f64 / secs;
        let mbps = iops * self.block_size as f64 / 1e6;
        println!(
            "{label}: {} bs={} iodepth={}: {:.0} IOPS, {:.1} MB/s, latency p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us ({} I/Os in {:.2} s)",
            spec.pattern.name(),
            self.block_size,
            spec.iodepth,
            iops,
            mbps,
            self.percentile_us(0.5),
            self.percentile_us(0.99),
            self.percentile_us(0.999),
            self.ios,
            secs
        );
        println!(
            "result label={label} rw={} bs={} iodepth={} iops={iops:.0} mbps={mbps:.1} p50_us={:.2} p99_us={:.2} p999_us={:.2}",
            spec.pattern.name(),
            self.block_size,
            spec.iodepth,
            self.percentile_us(0.5),
            self.percentile_us(0.99),
            self.percentile_us(0.999)
        );
    }
}

fn fill_pattern(buf: &mut [u8], seed: u64) {
    let mut state = seed | 1;
    for word in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
    }
}

/// Runs the benchmark through a queue of `spec.iodepth` entries.
pub fn run_queue(object: &Object, queue: &Queue, spec: &BenchSpec) -> Result<Report> {
    let depth = spec.iodepth;
    let mut buffers: Vec<Vec<u8>> = (0..depth).map(|_| vec![0u8; spec.block_size]).collect();
    if spec.pattern.is_write() {
        for (i, buf) in buffers.iter_mut().enumerate() {
            fill_pattern(buf, i as u64 + 1);
        }
    }
    let mut started = vec![Instant::now(); depth];
    let mut free: Vec<usize> = (0..depth).collect();
    let mut offsets = Offsets::new(spec);
    let mut cqes = vec![Cqe::default(); depth];
    let mut sqes = Vec::with_capacity(depth);
    let mut latencies_ns = Vec::with_capacity(1 << 20);
    let begin = Instant::now();
    let deadline = begin + spec.runtime;
    let mut submitting = true;
    loop {
        if submitting && Instant::now() >= deadline {
            submitting = false;
        }
        if submitting {
            sqes.clear();
            for &slot in &free {
                let offset = offsets.next();
                let buf = &mut buffers[slot];
                let sqe = if spec.pattern.is_write() {
                    Sqe::write(object, offset, buf.as_ptr(), buf.len())
                } else {
                    Sqe::read(object, offset, buf.as_mut_ptr(), buf.len())
                };
                sqes.push(sqe.user_data(slot as u64));
                started[slot] = Instant::now();
            }
            free.clear();
            let mut done = 0;
            while done < sqes.len() {
                // SAFETY: every buffer lives in `buffers` until the run
                // ends, and a slot is reused only after it is reaped.
                done += unsafe { queue.submit(&sqes[done..]) }?;
            }
        }
        if queue.outstanding() == 0 {
            break;
        }
        let reaped = queue.reap(&mut cqes, 1, None);
        let now = Instant::now();
        for cqe in &cqes[..reaped] {
            if cqe.result < 0 {
                let errno = -cqe.result as i32;
                return Err(rawstor::Error::new(errno, "benchmark I/O failed"));
            }
            let slot = cqe.user_data as usize;
            latencies_ns.push((now - started[slot]).as_nanos() as u64);
            free.push(slot);
        }
    }
    Ok(Report {
        ios: latencies_ns.len() as u64,
        elapsed: begin.elapsed(),
        latencies_ns,
        block_size: spec.block_size,
    })
}

/// The baseline: plain `pread`/`pwrite` on a file, one at a time.
pub fn run_plain(file: &File, spec: &BenchSpec) -> std::io::Result<Report> {
    let mut buf = vec![0u8; spec.block_size];
    fill_pattern(&mut buf, 1);
    let mut offsets = Offsets::new(spec);
    let mut latencies_ns = Vec::with_capacity(1 << 20);
    let begin = Instant::now();
    let deadline = begin + spec.runtime;
    while Instant::now() < deadline {
        let offset = offsets.next();
        let start = Instant::now();
        if spec.pattern.is_write() {
            file.write_all_at(&buf, offset)?;
        } else {
            file.read_exact_at(&mut buf, offset)?;
        }
        latencies_ns.push(start.elapsed().as_nanos() as u64);
    }
    Ok(Report {
        ios: latencies_ns.len() as u64,
        elapsed: begin.elapsed(),
        latencies_ns,
        block_size: spec.block_size,
    })
}

/// `testio`: writes `count` blocks with `iodepth` in flight, reads them
/// back the same way and compares. Returns the number of mismatches.
pub fn testio(
    object: &Object,
    queue: &Queue,
    block_size: usize,
    iodepth: usize,
    count: usize,
) -> Result<usize> {
    let blocks_in_object = (object.size() / block_size as u64) as usize;
    let offset_of = |i: usize| ((i % blocks_in_object) * block_size) as u64;
    let count = count.min(blocks_in_object);
    let mut expected: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut buf = vec![0u8; block_size];
            fill_pattern(&mut buf, 0x5eed ^ i as u64);
            buf
        })
        .collect();
    let mut actual: Vec<Vec<u8>> = (0..count).map(|_| vec![0u8; block_size]).collect();
    for write in [true, false] {
        let mut next = 0;
        let mut cqes = vec![Cqe::default(); iodepth];
        while next < count || queue.outstanding() > 0 {
            let room = iodepth - queue.outstanding() as usize;
            let batch: Vec<Sqe> = (next..count.min(next + room))
                .map(|i| {
                    let sqe = if write {
                        Sqe::write(object, offset_of(i), expected[i].as_ptr(), block_size)
                    } else {
                        Sqe::read(object, offset_of(i), actual[i].as_mut_ptr(), block_size)
                    };
                    sqe.user_data(i as u64)
                })
                .collect();
            // SAFETY: `expected` and `actual` outlive every I/O; each
            // buffer is used by one entry at a time.
            next += unsafe { queue.submit(&batch) }?;
            let reaped = queue.reap(&mut cqes, 1, None);
            for cqe in &cqes[..reaped] {
                if cqe.result != block_size as i64 {
                    let what = if write { "write" } else { "read" };
                    return Err(rawstor::Error::new(
                        (-cqe.result).clamp(1, 4095) as i32,
                        format!("{what} of block {} failed", cqe.user_data),
                    ));
                }
            }
        }
        if write {
            object.flush()?;
        }
    }
    expected.truncate(count);
    Ok(expected.iter().zip(&actual).filter(|(e, a)| e != a).count())
}
