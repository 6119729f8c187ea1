//! Element-wise loops on rayon's pool (prunec's patch, see PRUNEC.md).
//!
//! Upstream 0.21.0 runs every element-wise op, the scalar ops and the strided copies on the
//! calling thread; only matmul, softmax, layer norm and some reductions use the pool. On a
//! small model most of a forward's and a backward's wall time was spent there on one core.
//!
//! Every helper here computes each output element exactly as the sequential loop did: the
//! work is only split into chunks, so results are bit for bit the same on any thread count.

use alloc::vec::Vec;

#[cfg(feature = "rayon")]
use rayon::prelude::*;

/// Below this many elements a loop stays on the calling thread: handing work to the pool
/// costs a few microseconds, about what 32 Ki elements of an add take on one core.
pub(crate) const MIN_PARALLEL: usize = 1 << 15;

/// Whether a loop over `n` elements is worth splitting.
#[inline]
pub(crate) fn worth_splitting(n: usize) -> bool {
    #[cfg(feature = "rayon")]
    {
        n >= MIN_PARALLEL && rayon::current_num_threads() > 1
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = n;
        false
    }
}

/// Chunk length for `n` elements: a few chunks per thread (so one slow thread does not hold
/// the others), a multiple of `align`.
#[cfg(feature = "rayon")]
fn chunk_len(n: usize, align: usize) -> usize {
    let align = align.max(1);
    let per = n
        .div_ceil(rayon::current_num_threads() * 4)
        .max(MIN_PARALLEL / 4);
    per.div_ceil(align) * align
}

/// Runs `f(offset, chunk)` over consecutive chunks of `dst` whose lengths are multiples of
/// `align` (but for the last), on the pool when `dst` is large enough.
pub(crate) fn for_chunks_mut<E, F>(dst: &mut [E], align: usize, f: F)
where
    E: Send,
    F: Fn(usize, &mut [E]) + Sync + Send,
{
    #[cfg(feature = "rayon")]
    {
        if worth_splitting(dst.len()) {
            let chunk = chunk_len(dst.len(), align);
            dst.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, c)| f(i * chunk, c));
            return;
        }
    }
    let _ = align;
    f(0, dst)
}

/// `src` mapped element by element into a new vector.
pub(crate) fn map<E, R, F>(src: &[E], f: F) -> Vec<R>
where
    E: Copy + Send + Sync,
    R: Send,
    F: Fn(E) -> R + Sync + Send,
{
    #[cfg(feature = "rayon")]
    {
        if worth_splitting(src.len()) {
            let min = chunk_len(src.len(), 1);
            return src.par_iter().with_min_len(min).map(|&x| f(x)).collect();
        }
    }
    src.iter().map(|&x| f(x)).collect()
}

/// `a` and `b` (of one length) combined element by element into a new vector.
pub(crate) fn zip_map<E, R, F>(a: &[E], b: &[E], f: F) -> Vec<R>
where
    E: Copy + Send + Sync,
    R: Send,
    F: Fn(E, E) -> R + Sync + Send,
{
    debug_assert_eq!(a.len(), b.len());
    #[cfg(feature = "rayon")]
    {
        if worth_splitting(a.len()) {
            let min = chunk_len(a.len(), 1);
            return a
                .par_iter()
                .zip(b.par_iter())
                .with_min_len(min)
                .map(|(&x, &y)| f(x, y))
                .collect();
        }
    }
    a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
}

/// (prunec) A new vector of `n` elements written on the pool, `chunk` elements a task: each task
/// fills its chunk with `fill` and hands it to `f(index of the chunk, chunk)`. The calling thread
/// clears nothing alone first (as `vec![fill; n]` would, while the pool waits), and every page is
/// first touched by a write.
#[cfg(feature = "rayon")]
pub(crate) fn written<T, F>(n: usize, chunk: usize, fill: T, f: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    use core::mem::MaybeUninit;
    let mut out: Vec<T> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, piece)| {
            piece.fill(MaybeUninit::new(fill));
            // SAFETY: every element of `piece` was just written, and MaybeUninit<T> has T's layout
            let piece = unsafe { &mut *(piece as *mut [MaybeUninit<T>] as *mut [T]) };
            f(i, piece);
        });
    // SAFETY: the chunks cover the first `n` elements, each written above
    unsafe { out.set_len(n) };
    out
}
