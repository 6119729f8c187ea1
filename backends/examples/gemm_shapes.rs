//! The matrix products of SmolLM2-135M's forward at 4×128 tokens, as Flex runs them (`gemm` 0.19
//! on rayon's pool, a row-major weight `[in, out]`, the output written, not accumulated), each
//! timed alone: best of a few repetitions, in GFLOP/s, one JSON line per shape. The other side of
//! `scripts/bench-gemm`, which runs the same shapes through onnxruntime (MLAS), numpy (OpenBLAS)
//! and PyTorch.
//!
//!     cargo run --release -p prunec-backends --example gemm_shapes [-- M,K,N[,LAYOUT] ...]
//!
//! LAYOUT (default `nn`) says how each operand lies: `n` row-major as the product reads it,
//! `t` its transpose row-major (read through strides): `nt` is the autodiff forward's `x · wᵀ`
//! with `w [out, in]`, `tn` a weight gradient's `gradᵀ · x`.

use std::time::Instant;

/// (tokens, in, out) of q/o, k/v, gate/up, down and the lm_head at 4×128 tokens.
const SHAPES: [(usize, usize, usize); 5] = [(512, 576, 576), (512, 576, 192), (512, 576, 1536), (512, 1536, 576), (512, 576, 49152)];

fn parse(arg: &str) -> Option<(usize, usize, usize, bool, bool)> {
    let (sizes, layout) = match arg.split_once(|c: char| c.is_ascii_alphabetic()) {
        Some(_) => arg.rsplit_once(',')?,
        None => (arg, "nn"),
    };
    let v: Vec<usize> = sizes.split(',').map(str::parse).collect::<Result<_, _>>().ok()?;
    let (ta, tb) = match layout {
        "nn" => (false, false),
        "nt" => (false, true),
        "tn" => (true, false),
        "tt" => (true, true),
        _ => return None,
    };
    match v[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => Some((m, k, n, ta, tb)),
        _ => None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shapes: Vec<(usize, usize, usize, bool, bool)> = if args.is_empty() {
        SHAPES.iter().map(|&(m, k, n)| (m, k, n, false, false)).collect()
    } else {
        match args.iter().map(|a| parse(a).ok_or(a)).collect::<Result<Vec<_>, _>>() {
            Ok(s) => s,
            Err(bad) => {
                eprintln!("gemm_shapes: `{bad}` is not M,K,N (three positive sizes)");
                std::process::exit(2);
            }
        }
    };
    for (m, k, n, ta, tb) in shapes {
        // (column stride, row stride) of a row-major matrix of `cols` columns, or of its transpose
        let strides = |t: bool, rows: usize, cols: usize| if t { (rows as isize, 1) } else { (1, cols as isize) };
        let ((acs, ars), (bcs, brs)) = (strides(ta, m, k), strides(tb, k, n));
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        // about 20 GFLOP of repetitions after one untimed run
        let reps = ((2e10 / flops) as usize).max(3);
        let mut best = f64::MAX;
        for r in 0..=reps {
            let t = Instant::now();
            // SAFETY: a is m×k, b is k×n and c is m×n, all row-major and alive for the call
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    acs,
                    ars,
                    b.as_ptr(),
                    bcs,
                    brs,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                );
            }
            if r > 0 {
                best = best.min(t.elapsed().as_secs_f64());
            }
        }
        // one entry against a plain dot product: the timed call computed the product
        let want: f32 = (0..k).map(|j| a[(j as isize * acs) as usize] * b[(j as isize * brs) as usize]).sum();
        assert!((c[0] - want).abs() <= 1e-3 * want.abs().max(1.0), "gemm gave {} for {want}", c[0]);
        println!("{{\"engine\": \"gemm\", \"m\": {m}, \"k\": {k}, \"n\": {n}, \"layout\": \"{}{}\", \"gflops\": {:.1}}}", if ta { 't' } else { 'n' }, if tb { 't' } else { 'n' }, flops / best / 1e9);
    }
}
