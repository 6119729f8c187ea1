//! The one random generator of prunec: SplitMix64 (Steele, Lea & Flood, 2014), whose output
//! for a seed is fixed by this code, so a seed gives the same calibration samples, random
//! importances, sampled tokens and synthetic weights in every version and on every machine.

/// What SplitMix64's state advances by at each draw.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A generator of this one's next `n` draws, which this one skips: the two give what this
    /// one alone would have (a stream cut into pieces that can be drawn in parallel).
    pub fn take(&mut self, n: u64) -> SplitMix64 {
        let head = self.clone();
        self.state = self.state.wrapping_add(n.wrapping_mul(GAMMA));
        head
    }

    /// A uniform draw from `0..bound` (unbiased: draws that would favour small values are
    /// rejected); 0 when `bound` is 0.
    pub fn below(&mut self, bound: usize) -> usize {
        let bound = bound as u64;
        if bound <= 1 {
            return 0;
        }
        // 2^64 mod bound: the top `rem` values would favour small results, so they are redrawn.
        let rem = (u64::MAX % bound + 1) % bound;
        loop {
            let x = self.next_u64();
            if x <= u64::MAX - rem {
                return (x % bound) as usize;
            }
        }
    }

    /// A uniform draw from `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Two independent standard normal draws, by Marsaglia's polar form of the Box–Muller
    /// transform (a point drawn uniformly in the unit disc: one `ln`, one `sqrt`, no `sin`/`cos`).
    pub fn normal_pair(&mut self) -> (f64, f64) {
        loop {
            let x = 2.0 * self.next_f64() - 1.0;
            let y = 2.0 * self.next_f64() - 1.0;
            let s = x * x + y * y;
            if s < 1.0 && s > 0.0 {
                let f = (-2.0 * s.ln() / s).sqrt();
                return (x * f, y * f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // Vigna's splitmix64.c seeded with 1234567.
        let mut rng = SplitMix64::new(1234567);
        let got: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(got, [6457827717110365317, 3203168211198807973, 9817491932198370423]);
    }

    /// Pieces taken off a generator, drawn in any order, give the one stream it alone gives.
    #[test]
    fn pieces_taken_give_the_one_stream() {
        let mut whole = SplitMix64::new(1234567);
        let stream: Vec<u64> = (0..10).map(|_| whole.next_u64()).collect();
        let mut cut = SplitMix64::new(1234567);
        let (mut a, mut b) = (cut.take(3), cut.take(0));
        let mut c = cut.take(4);
        let mut got: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        got.splice(0..0, (0..3).map(|_| a.next_u64()));
        got.extend((0..3).map(|_| cut.next_u64()));
        assert_eq!(got, stream);
        assert_eq!(b.next_u64(), stream[3], "an empty piece starts where the next one does");
    }

    #[test]
    fn uniform_and_normal_draws_look_right() {
        let mut r = SplitMix64::new(7);
        let n = 20_000;
        let u: Vec<f64> = (0..n).map(|_| r.next_f64()).collect();
        assert!(u.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = u.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let z: Vec<f64> = (0..n / 2).flat_map(|_| { let (a, b) = r.normal_pair(); [a, b] }).collect();
        let m = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{m} {var}");
    }
}
