//! The Reed-Solomon code of `ec:K+M` (reed-solomon-simd): parity of K
//! data rows, and any lost rows rebuilt from any K others, position by
//! position, so that stripes concatenate.

use std::cell::RefCell;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::error::{Error, Result};

thread_local! {
    /// The thread's encoder and the shape it is set up for.
    static ENCODER: RefCell<Option<(ReedSolomonEncoder, Shape)>> = const { RefCell::new(None) };
    static DECODER: RefCell<Option<ReedSolomonDecoder>> = const { RefCell::new(None) };
}

fn codec_error(err: reed_solomon_simd::Error) -> Error {
    Error::new(libc::EINVAL, format!("Reed-Solomon: {err}"))
}

/// Parity shards handed to [`Codec::encode_with`]'s caller from the stack;
/// more take a `Vec`.
const INLINE_PARITY: usize = 8;

/// Data shards, parity shards and shard bytes an encoder is set up for.
type Shape = (usize, usize, usize);

/// Reed-Solomon over K data and M parity shards of equal, even length.
/// Encoders and decoders are kept per thread and reused.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    data: usize,
    parity: usize,
}

impl Codec {
    /// K: the data shards.
    pub fn data(&self) -> usize {
        self.data
    }

    /// M: the parity shards (how many may be lost).
    pub fn parity(&self) -> usize {
        self.parity
    }
}

impl Codec {
    pub fn new(data: usize, parity: usize) -> Result<Self> {
        if data == 0 || parity == 0 || !ReedSolomonEncoder::supports(data, parity) {
            return Err(Error::invalid(format!(
                "ec:{data}+{parity} is not a supported Reed-Solomon code"
            )));
        }
        Ok(Self { data, parity })
    }

    /// Encodes the data shards and hands the parity shards to `use_parity`
    /// (borrowed from the encoder: no copy).
    pub fn encode_with<R>(
        &self,
        data: &[&[u8]],
        use_parity: impl FnOnce(&[&[u8]]) -> R,
    ) -> Result<R> {
        let len = data.first().map_or(0, |d| d.len());
        let shape = (self.data, self.parity, len);
        ENCODER.with_borrow_mut(|slot| {
            let encoder = match slot {
                // An encoder is ready for more of the same after each
                // encode: only another shape needs a reset.
                Some((encoder, current)) if *current == shape => encoder,
                Some((encoder, current)) => {
                    encoder
                        .reset(self.data, self.parity, len)
                        .map_err(codec_error)?;
                    *current = shape;
                    encoder
                }
                None => {
                    let encoder = ReedSolomonEncoder::new(self.data, self.parity, len)
                        .map_err(codec_error)?;
                    &mut slot.insert((encoder, shape)).0
                }
            };
            let added = data
                .iter()
                .try_for_each(|shard| encoder.add_original_shard(shard));
            if let Err(err) = added {
                // The next encode starts from a new encoder.
                *slot = None;
                return Err(codec_error(err));
            }
            // Dropping the result readies the encoder for the next one.
            let failed = match encoder.encode() {
                Ok(result) => {
                    // Most layouts' parity shards, without an allocation
                    // per encode.
                    let mut few: [&[u8]; INLINE_PARITY] = [&[]; INLINE_PARITY];
                    if self.parity <= few.len() {
                        for (slot, shard) in few.iter_mut().zip(result.recovery_iter()) {
                            *slot = shard;
                        }
                        let parity = &few[..self.parity];
                        assert!(
                            parity.iter().all(|row| row.len() == len),
                            "parity rows as long as the data rows"
                        );
                        return Ok(use_parity(parity));
                    }
                    let parity: Vec<&[u8]> = result.recovery_iter().collect();
                    return Ok(use_parity(&parity));
                }
                Err(err) => err,
            };
            *slot = None;
            Err(codec_error(failed))
        })
    }

    /// The shards `want` (indexes: data `0..K`, parity `K..K+M`) rebuilt
    /// from `present` (at least K other shards, each `(index, bytes)`).
    pub fn rebuild(&self, present: &[(usize, &[u8])], want: &[usize]) -> Result<Vec<Vec<u8>>> {
        let k = self.data;
        let len = present.first().map_or(0, |(_, b)| b.len());
        if present
            .iter()
            .any(|(i, b)| *i >= k + self.parity || b.len() != len)
        {
            return Err(Error::invalid(
                "rows to rebuild from must be shards of this layout, of one length",
            ));
        }
        if present.len() < k {
            return Err(Error::new(
                libc::EIO,
                format!("{} shards to rebuild from, {k} needed", present.len()),
            ));
        }
        let mut data: Vec<Option<Vec<u8>>> = vec![None; k];
        for &(i, bytes) in present.iter().filter(|(i, _)| *i < k) {
            data[i] = Some(bytes.to_vec());
        }
        if data.iter().any(Option::is_none) {
            DECODER.with_borrow_mut(|slot| -> Result<()> {
                let decoder = match slot {
                    Some(decoder) => {
                        decoder.reset(k, self.parity, len).map_err(codec_error)?;
                        decoder
                    }
                    None => slot
                        .insert(ReedSolomonDecoder::new(k, self.parity, len).map_err(codec_error)?),
                };
                for &(i, bytes) in present.iter().take(k) {
                    if i < k {
                        decoder.add_original_shard(i, bytes).map_err(codec_error)?;
                    } else {
                        decoder
                            .add_recovery_shard(i - k, bytes)
                            .map_err(codec_error)?;
                    }
                }
                let result = decoder.decode().map_err(codec_error)?;
                for (i, restored) in result.restored_original_iter() {
                    assert_eq!(restored.len(), len, "a rebuilt row as long as the others");
                    data[i] = Some(restored.to_vec());
                }
                Ok(())
            })?;
        }
        let data: Vec<Vec<u8>> = data
            .into_iter()
            .map(|d| d.ok_or_else(|| Error::new(libc::EIO, "a data shard was not rebuilt")))
            .collect::<Result<_>>()?;
        let parity = if want.iter().any(|&i| i >= k) {
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            self.encode_with(&refs, |p| p.iter().map(|s| s.to_vec()).collect())?
        } else {
            Vec::new()
        };
        Ok(want
            .iter()
            .map(|&i| {
                if i < k {
                    data[i].clone()
                } else {
                    parity[i - k].clone()
                }
            })
            .collect())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn encoding_is_position_wise_so_stripes_concatenate() {
        let codec = Codec::new(4, 2).unwrap();
        let data: Vec<Vec<u8>> = (0..4).map(|j| pattern(8192, j)).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let whole: Vec<Vec<u8>> = codec
            .encode_with(&refs, |p| p.iter().map(|s| s.to_vec()).collect())
            .unwrap();
        for half in [0..4096, 4096..8192] {
            let refs: Vec<&[u8]> = data.iter().map(|d| &d[half.clone()]).collect();
            let part: Vec<Vec<u8>> = codec
                .encode_with(&refs, |p| p.iter().map(|s| s.to_vec()).collect())
                .unwrap();
            for (w, p) in whole.iter().zip(&part) {
                assert_eq!(&w[half.clone()], p.as_slice());
            }
        }
    }

    #[test]
    fn a_failed_encode_leaves_the_next_one_right() {
        let codec = Codec::new(4, 2).unwrap();
        let data: Vec<Vec<u8>> = (0..4).map(|j| pattern(4096, j as u8)).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let parity = |refs: &[&[u8]]| {
            codec.encode_with(refs, |p| p.iter().map(|s| s.to_vec()).collect::<Vec<_>>())
        };
        let good = parity(&refs).unwrap();
        assert_eq!(good.len(), 2);
        // Too few shards, then shards of two sizes: refused.
        assert!(parity(&refs[..3]).is_err());
        let short = [refs[0], refs[1], refs[2], &refs[3][..2048]];
        assert!(parity(&short).is_err());
        // Shards of an odd length fit no Reed-Solomon shape: refused.
        let odd: Vec<&[u8]> = refs.iter().map(|r| &r[..4095]).collect();
        assert_eq!(parity(&odd).unwrap_err().errno(), libc::EINVAL);
        // The thread's encoder starts over: same parity as before, and
        // again for another shard size and back.
        assert_eq!(parity(&refs).unwrap(), good);
        let halves: Vec<&[u8]> = refs.iter().map(|r| &r[..2048]).collect();
        let half = parity(&halves).unwrap();
        assert_eq!(half[0], good[0][..2048], "position-wise");
        assert_eq!(parity(&refs).unwrap(), good);
    }

    #[test]
    fn rebuilds_any_two_lost_shards_of_four_plus_two() {
        let codec = Codec::new(4, 2).unwrap();
        let data: Vec<Vec<u8>> = (0..4).map(|j| pattern(4096, j + 1)).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let parity: Vec<Vec<u8>> = codec
            .encode_with(&refs, |p| p.iter().map(|s| s.to_vec()).collect())
            .unwrap();
        let all: Vec<&[u8]> = refs
            .iter()
            .copied()
            .chain(parity.iter().map(Vec::as_slice))
            .collect();
        for a in 0..6 {
            for b in a + 1..6 {
                let present: Vec<(usize, &[u8])> = (0..6)
                    .filter(|&i| i != a && i != b)
                    .map(|i| (i, all[i]))
                    .collect();
                let rebuilt = codec.rebuild(&present, &[a, b]).unwrap();
                assert_eq!(rebuilt[0], all[a], "shard {a} of lost {a},{b}");
                assert_eq!(rebuilt[1], all[b], "shard {b} of lost {a},{b}");
            }
        }
        let three: Vec<(usize, &[u8])> = (3..6).map(|i| (i, all[i])).collect();
        assert_eq!(codec.rebuild(&three, &[0]).unwrap_err().errno(), libc::EIO);
        assert!(Codec::new(0, 2).is_err());
    }
}
