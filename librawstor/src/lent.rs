//! Buffers a caller lends to an operation until it completes: the one
//! place that slices, splits, scatters into and gathers from them.
//!
//! A [`RawBuf`] is a pointer and a length, with no lifetime: the caller
//! of an asynchronous operation promises that the bytes stay valid (and,
//! for a read, writable) and untouched by anyone else until the
//! operation's completion has run. Making one and cutting it into pieces
//! is safe; touching the bytes it names is not, and happens only here,
//! behind `unsafe fn`s that say what they need.

/// A caller's buffer lent until the operation completes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawBuf {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
}

// SAFETY: the lender guarantees the buffer stays valid and untouched
// until the operation completes; only the completing thread writes it.
unsafe impl Send for RawBuf {}

impl RawBuf {
    /// Lends `bytes` to be written into (a read's destination).
    pub(crate) fn of_mut(bytes: &mut [u8]) -> Self {
        Self {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
        }
    }

    /// Lends `bytes` to be read from only (a write's source).
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr().cast_mut(),
            len: bytes.len(),
        }
    }
}

/// Bytes in `bufs`.
pub(crate) fn total(bufs: &[RawBuf]) -> u64 {
    bufs.iter().map(|b| b.len as u64).sum()
}

/// Splits `bufs` (in order) into pieces of at most `max` bytes each.
pub(crate) fn split(bufs: &[RawBuf], max: usize) -> Vec<Vec<RawBuf>> {
    assert!(max > 0, "pieces hold at least a byte");
    let mut pieces = vec![Vec::new()];
    let mut room = max;
    for buf in bufs {
        let mut at = 0;
        while at < buf.len {
            if room == 0 {
                pieces.push(Vec::new());
                room = max;
            }
            let n = (buf.len - at).min(room);
            pieces.last_mut().expect("one piece").push(RawBuf {
                ptr: buf.ptr.wrapping_add(at),
                len: n,
            });
            at += n;
            room -= n;
        }
    }
    pieces.retain(|p| !p.is_empty());
    debug_assert_eq!(
        pieces.iter().map(|p| total(p)).sum::<u64>(),
        total(bufs),
        "split keeps every byte"
    );
    pieces
}

/// Calls `f` with each piece of `bufs` covering `len` bytes at `pos`, and
/// the piece's position from `pos`.
pub(crate) fn for_pieces(
    bufs: &[RawBuf],
    mut pos: u64,
    mut len: u64,
    mut f: impl FnMut(RawBuf, usize),
) {
    let mut done = 0;
    for b in bufs {
        if len == 0 {
            break;
        }
        let blen = b.len as u64;
        if pos >= blen {
            pos -= blen;
            continue;
        }
        let n = (blen - pos).min(len);
        // `pos < b.len`: the piece stays inside the lent buffer.
        let piece = RawBuf {
            ptr: b.ptr.wrapping_add(pos as usize),
            len: n as usize,
        };
        f(piece, done);
        done += n as usize;
        len -= n;
        pos = 0;
    }
}

/// Appends to `out` the pieces of `bufs` covering `len` bytes at `pos`.
pub(crate) fn slice(bufs: &[RawBuf], pos: u64, len: u64, out: &mut Vec<RawBuf>) {
    for_pieces(bufs, pos, len, |piece, _| out.push(piece));
}

/// Copies `data` into `bufs` from position `pos` on.
///
/// # Safety
///
/// `bufs` are lent, valid and writable, and nobody else touches the
/// bytes `pos..pos + data.len()` of them during the call.
pub(crate) unsafe fn scatter(bufs: &[RawBuf], pos: u64, data: &[u8]) {
    for_pieces(bufs, pos, data.len() as u64, |p, at| {
        // SAFETY: per the function's contract; `at + p.len <= data.len()`.
        unsafe { std::ptr::copy_nonoverlapping(data[at..].as_ptr(), p.ptr, p.len) };
    });
}

/// Copies from `bufs` at position `pos` into `out`.
///
/// # Safety
///
/// `bufs` are lent and valid for reading, and nobody writes the bytes
/// `pos..pos + out.len()` of them during the call.
pub(crate) unsafe fn gather(bufs: &[RawBuf], pos: u64, out: &mut [u8]) {
    for_pieces(bufs, pos, out.len() as u64, |p, at| {
        // SAFETY: per the function's contract; `at + p.len <= out.len()`.
        unsafe { std::ptr::copy_nonoverlapping(p.ptr, out[at..].as_mut_ptr(), p.len) };
    });
}

/// The bytes of one lent buffer, to read.
///
/// # Safety
///
/// `buf` is lent and valid for reading for `'a`, and nobody writes it
/// meanwhile.
pub(crate) unsafe fn bytes<'a>(buf: &RawBuf) -> &'a [u8] {
    if buf.len == 0 {
        return &[];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }
}

/// The bytes of one lent buffer, to write.
///
/// # Safety
///
/// `buf` is lent, valid and writable for `'a`, and nobody else touches
/// it meanwhile.
pub(crate) unsafe fn bytes_mut<'a>(buf: &RawBuf) -> &'a mut [u8] {
    if buf.len == 0 {
        return &mut [];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts_mut(buf.ptr, buf.len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_at_the_limit_across_buffers() {
        let mut a = [0u8; 5];
        let mut b = [0u8; 7];
        let bufs = [RawBuf::of_mut(&mut a), RawBuf::of_mut(&mut b)];
        let pieces = split(&bufs, 4);
        let lens: Vec<Vec<usize>> = pieces
            .iter()
            .map(|p| p.iter().map(|b| b.len).collect())
            .collect();
        assert_eq!(lens, [vec![4], vec![1, 3], vec![4]]);
        assert_eq!(pieces[1][1].ptr, bufs[1].ptr);
    }

    #[test]
    fn scatter_and_gather_meet_at_any_position() {
        let mut a = [0u8; 3];
        let mut b = [0u8; 5];
        let bufs = [RawBuf::of_mut(&mut a), RawBuf::of_mut(&mut b)];
        // SAFETY: the arrays outlive the calls and nothing else uses them.
        unsafe { scatter(&bufs, 2, &[1, 2, 3, 4]) };
        let mut out = [0u8; 6];
        // SAFETY: as above.
        unsafe { gather(&bufs, 1, &mut out) };
        assert_eq!(out, [0, 1, 2, 3, 4, 0]);
        let mut pieces = Vec::new();
        slice(&bufs, 2, 4, &mut pieces);
        assert_eq!(pieces.iter().map(|p| p.len).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(total(&pieces), 4);
    }
}
