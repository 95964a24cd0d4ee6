//! `rawstor bench-ec`: Reed-Solomon encode throughput of the client's codec
//! (what an ec:K+M write runs) next to reed-solomon-simd called directly on
//! the same buffers, alternating, medians of several rounds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rawstor::erasure::Codec;
use reed_solomon_simd::ReedSolomonEncoder;

/// Shard sizes measured: one 4 KiB stripe unit up to a 1 MiB write's.
const SHARD_BYTES: [usize; 4] = [4 << 10, 64 << 10, 256 << 10, 1 << 20];
const ROUNDS: usize = 5;
const ROUND_TIME: Duration = Duration::from_millis(300);

/// Encodes for ROUND_TIME with `encode`; returns data bytes per second.
fn rate(data_bytes: usize, mut encode: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < ROUND_TIME {
        encode();
        n += 1;
    }
    (n as f64 * data_bytes as f64) / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints the table; returns the lowest ratio (client / library).
pub fn run(k: usize, m: usize) -> rawstor::Result<f64> {
    let codec = Codec::new(k, m)?;
    println!(
        "Reed-Solomon encode ec:{k}+{m}, GB/s of data (medians of {ROUNDS} alternating rounds)"
    );
    println!(
        "{:>12} {:>16} {:>18} {:>8}",
        "shard bytes", "rawstor Codec", "reed-solomon-simd", "ratio"
    );
    let mut lowest = f64::MAX;
    for shard in SHARD_BYTES {
        let data: Vec<Vec<u8>> = (0..k)
            .map(|j| (0..shard).map(|i| (i * 7 + j * 13) as u8).collect())
            .collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut raw = ReedSolomonEncoder::new(k, m, shard).expect("supported");
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let measure_ours = || {
                rate(k * shard, || {
                    codec
                        .encode_with(&refs, |parity| {
                            black_box(parity[0][0]);
                        })
                        .expect("encode");
                })
            };
            let mut measure_theirs = || {
                rate(k * shard, || {
                    for d in &refs {
                        raw.add_original_shard(d).expect("add");
                    }
                    let result = raw.encode().expect("encode");
                    black_box(result.recovery(0).expect("parity")[0]);
                })
            };
            if round % 2 == 0 {
                ours.push(measure_ours());
                theirs.push(measure_theirs());
            } else {
                theirs.push(measure_theirs());
                ours.push(measure_ours());
            }
        }
        let (o, t) = (median(ours), median(theirs));
        lowest = lowest.min(o / t);
        println!(
            "{shard:>12} {:>16.2} {:>18.2} {:>7.2}x",
            o / 1e9,
            t / 1e9,
            o / t
        );
    }
    Ok(lowest)
}
