//! Placement: which OSTs hold the copies or shards of one piece of an
//! object, computed from the cluster map alone by a weighted,
//! failure-domain-aware straw2 draw (as Ceph's CRUSH does in a straw2
//! bucket). For a key, every candidate draws a straw, `ln(u) / weight`
//! with `u` uniform in (0, 1] from a hash of the key and the candidate;
//! the longest straw wins. So:
//!
//! * keys spread over candidates in proportion to their weights
//!   (capacity), whatever the order objects are created in;
//! * a candidate that joins, leaves or changes weight changes only the
//!   draws it wins or loses: about the share of data the change makes
//!   necessary moves, nothing else;
//! * copies go to distinct failure domains first (a domain draws with the
//!   sum of its OSTs' weights, then an OST of the domain draws), and only
//!   when every domain holds one does a second copy share a domain.

use crate::Uuid;
use crate::error::{Error, Result};

/// One OST that may be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its id (a store UUID).
    pub id: Uuid,
    /// Its failure domain (a host, a rack).
    pub domain: &'a str,
    /// Its weight: capacity in any unit; 0 takes nothing.
    pub weight: u64,
}

/// The key of one piece of one object: the same everywhere, always.
pub fn piece_key(object: Uuid, piece: u64) -> u64 {
    let (hi, lo) = object.as_u64_pair();
    mix(mix(hi ^ mix(lo)) ^ piece)
}

/// Indexes into `candidates` of the `width` OSTs that hold the piece with
/// `key`, in copy (or shard) order: distinct OSTs, on distinct failure
/// domains while there are domains left. Fails when fewer than `width`
/// candidates have a weight.
pub fn choose(candidates: &[Candidate<'_>], key: u64, width: usize) -> Result<Vec<usize>> {
    let usable = candidates.iter().filter(|c| c.weight > 0).count();
    if usable < width {
        return Err(Error::new(
            libc::ENOSPC,
            format!("{width} OSTs needed, {usable} can take data"),
        ));
    }
    let mut domains: Vec<&str> = candidates
        .iter()
        .filter(|c| c.weight > 0)
        .map(|c| c.domain)
        .collect();
    domains.sort_unstable();
    domains.dedup();
    let mut chosen: Vec<usize> = Vec::with_capacity(width);
    let mut used_domains: Vec<&str> = Vec::with_capacity(width);
    for position in 0..width as u64 {
        let free_domain = |d: &&str| !used_domains.contains(d);
        let pick = if domains.iter().any(&free_domain) {
            let domain = longest(
                domains.iter().copied().filter(free_domain),
                |d| {
                    let weight = candidates
                        .iter()
                        .filter(|c| c.domain == d)
                        .map(|c| c.weight)
                        .sum();
                    (name_hash(d), weight)
                },
                key,
                position,
            );
            let in_domain = (0..candidates.len()).filter(|&i| candidates[i].domain == domain);
            longest(in_domain, |i| draw_of(&candidates[i]), key, position)
        } else {
            let left = (0..candidates.len()).filter(|i| !chosen.contains(i));
            longest(left, |i| draw_of(&candidates[i]), key, position)
        };
        assert!(!chosen.contains(&pick), "an OST holds one copy of a piece");
        used_domains.push(candidates[pick].domain);
        chosen.push(pick);
    }
    assert_eq!(chosen.len(), width, "a candidate per copy");
    Ok(chosen)
}

/// What a candidate draws with: its identity's hash and its weight.
fn draw_of(candidate: &Candidate<'_>) -> (u64, u64) {
    let (hi, lo) = candidate.id.as_u64_pair();
    (mix(hi) ^ lo, candidate.weight)
}

/// The item of `items` with the longest straw for `key` at `position`;
/// `identity(item)` gives its hash and weight. Items of weight 0 never
/// win; ties (equal straws) go to the first.
fn longest<T: Copy>(
    items: impl Iterator<Item = T>,
    identity: impl Fn(T) -> (u64, u64),
    key: u64,
    position: u64,
) -> T {
    let mut best: Option<(f64, T)> = None;
    for item in items {
        let (id, weight) = identity(item);
        if weight == 0 {
            continue;
        }
        let straw = straw(key, position, id, weight);
        if best.is_none_or(|(b, _)| straw > b) {
            best = Some((straw, item));
        }
    }
    best.expect("a candidate with weight (checked by the caller)")
        .1
}

/// `ln(u) / weight` for `u` in (0, 1] drawn from the hash of `key`,
/// `position` and `id`: the straw2 draw.
fn straw(key: u64, position: u64, id: u64, weight: u64) -> f64 {
    let bits = mix(mix(key ^ mix(position)) ^ id);
    // 53 bits, never 0: ln is finite.
    let u = ((bits >> 11) + 1) as f64 / (1u64 << 53) as f64;
    u.ln() / weight as f64
}

/// A failure domain's name as a number.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Cluster {
        ids: Vec<Uuid>,
        domains: Vec<String>,
        weights: Vec<u64>,
    }

    impl Cluster {
        /// `n` OSTs of weight 100, OST `i` in domain `i % domains`.
        fn new(n: usize, domains: usize) -> Self {
            Self {
                ids: (0..n)
                    .map(|i| Uuid::from_u64_pair(7, i as u64 + 1))
                    .collect(),
                domains: (0..n).map(|i| format!("host{}", i % domains)).collect(),
                weights: vec![100; n],
            }
        }

        fn candidates(&self) -> Vec<Candidate<'_>> {
            (0..self.ids.len())
                .map(|i| Candidate {
                    id: self.ids[i],
                    domain: &self.domains[i],
                    weight: self.weights[i],
                })
                .collect()
        }

        /// For each piece of `objects` objects of `pieces` pieces: the ids
        /// of its `width` OSTs.
        fn place(&self, objects: u64, pieces: u64, width: usize) -> Vec<Vec<Uuid>> {
            let candidates = self.candidates();
            let mut out = Vec::new();
            for o in 0..objects {
                let object = Uuid::from_u64_pair(o * 7919 + 1, 0x5eed);
                for p in 0..pieces {
                    let chosen = choose(&candidates, piece_key(object, p), width).unwrap();
                    out.push(chosen.iter().map(|&i| self.ids[i]).collect());
                }
            }
            out
        }

        fn counts(&self, placed: &[Vec<Uuid>]) -> Vec<usize> {
            self.ids
                .iter()
                .map(|id| placed.iter().flatten().filter(|p| *p == id).count())
                .collect()
        }
    }

    /// Copies that are not where they were, as a share of all copies.
    fn moved(before: &[Vec<Uuid>], after: &[Vec<Uuid>]) -> f64 {
        let total: usize = before.iter().map(Vec::len).sum();
        let moved: usize = before
            .iter()
            .zip(after)
            .map(|(b, a)| b.iter().filter(|id| !a.contains(id)).count())
            .sum();
        moved as f64 / total as f64
    }

    #[test]
    fn objects_created_back_to_back_spread_evenly_on_distinct_domains() {
        let cluster = Cluster::new(8, 4);
        // 40 objects of 64 pieces, replicas:3 and ec:4+2.
        for width in [3, 6] {
            let placed = cluster.place(40, 64, width);
            let counts = cluster.counts(&placed);
            let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
            for &c in &counts {
                assert!((c as f64 - mean).abs() < 0.1 * mean, "{counts:?}");
            }
            let domain =
                |id: &Uuid| &cluster.domains[cluster.ids.iter().position(|i| i == id).unwrap()];
            for piece in &placed {
                let mut domains: Vec<_> = piece.iter().map(domain).collect();
                domains.sort();
                domains.dedup();
                assert_eq!(domains.len(), width.min(4), "{piece:?}");
                let mut ids = piece.clone();
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), width, "distinct OSTs");
            }
        }
        // Even one object's pieces reach every OST.
        let one = cluster.place(1, 256, 3);
        assert!(cluster.counts(&one).iter().all(|&c| c > 0));
    }

    #[test]
    fn shares_follow_weights() {
        let mut cluster = Cluster::new(8, 8);
        cluster.weights[0] = 200;
        let placed = cluster.place(20, 100, 1);
        let counts = cluster.counts(&placed);
        let others = counts[1..].iter().sum::<usize>() as f64 / 7.0;
        let ratio = counts[0] as f64 / others;
        assert!((1.8..2.2).contains(&ratio), "{counts:?}");
    }

    #[test]
    fn adding_or_removing_osts_moves_only_their_share() {
        let before = Cluster::new(8, 4);
        let placed = before.place(20, 100, 3);
        // Two OSTs join (in two of the domains): a fifth of the capacity.
        let mut grown = Cluster::new(8, 4);
        for i in 8..10 {
            grown.ids.push(Uuid::from_u64_pair(7, i as u64 + 1));
            grown.domains.push(format!("host{}", i % 4));
            grown.weights.push(100);
        }
        let after = grown.place(20, 100, 3);
        let share = moved(&placed, &after);
        assert!((0.1..0.3).contains(&share), "moved {share}");
        let counts = grown.counts(&after);
        assert!(
            counts[8] > 0 && counts[9] > 0,
            "new OSTs take data: {counts:?}"
        );
        // One OST leaves (weight 0): its eighth moves, and part of its
        // domain-mate's copies, as their domain now draws with half the
        // weight (it has half the room).
        let mut shrunk = Cluster::new(8, 4);
        shrunk.weights[3] = 0;
        let after = shrunk.place(20, 100, 3);
        let share = moved(&placed, &after);
        assert!((0.12..0.25).contains(&share), "moved {share}");
        assert_eq!(shrunk.counts(&after)[3], 0);
    }

    #[test]
    fn too_few_osts_is_an_error() {
        let cluster = Cluster::new(2, 2);
        let err = choose(&cluster.candidates(), 1, 3).unwrap_err();
        assert_eq!(err.errno(), libc::ENOSPC);
        assert!(err.to_string().contains("3 OSTs needed, 2 can take data"));
    }
}
