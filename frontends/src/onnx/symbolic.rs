//! Arithmetic on sizes that may be symbolic ([`Dim`]): the shape arithmetic exporters emit
//! adds, subtracts and multiplies sizes such as `seq` and `batch`, and folding keeps the
//! result as a canonical sum (`seq+1`, `8*batch`) so that `seq+1-1` is `seq` again; the probe
//! evaluates such a sum at concrete sizes.

use std::collections::{BTreeMap, HashMap};

use prunec_ir::Dim;

/// The arithmetic operations on sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
}

/// A size as `constant + Σ coefficient·term`, a term being a symbol or a product of symbols;
/// `None` when a number in it does not fit an `i64`.
fn linear(d: &Dim) -> Option<(i64, BTreeMap<String, i64>)> {
    let mut terms = BTreeMap::new();
    let mut constant = 0i64;
    match d {
        Dim::Fixed(n) => constant = i64::try_from(*n).ok()?,
        Dim::Sym(s) => {
            for (sign, term) in split_terms(s) {
                let mut coef = sign;
                let mut names = Vec::new();
                for f in term.split('*') {
                    match factor(f)? {
                        Some(k) => coef = coef.checked_mul(k)?,
                        None => names.push(f),
                    }
                }
                let slot = if names.is_empty() { &mut constant } else { terms.entry(names.join("*")).or_insert(0) };
                *slot = slot.checked_add(coef)?;
            }
        }
    }
    terms.retain(|_, c| *c != 0);
    Some((constant, terms))
}

/// A factor of a term: `Some(Some(k))` for a number, `Some(None)` for a symbol, `None` for a
/// number too large for an `i64`.
fn factor(f: &str) -> Option<Option<i64>> {
    match f.parse::<i64>() {
        Ok(k) => Some(Some(k)),
        Err(_) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => None,
        Err(_) => Some(None),
    }
}

/// The signed terms of `a+b-c`.
fn split_terms(s: &str) -> Vec<(i64, &str)> {
    let mut out = Vec::new();
    let (mut sign, mut start) = (1, 0);
    for (i, c) in s.char_indices() {
        if (c == '+' || c == '-') && i > start {
            out.push((sign, &s[start..i]));
            sign = if c == '-' { -1 } else { 1 };
            start = i + 1;
        } else if (c == '+' || c == '-') && i == start {
            sign = if c == '-' { -sign } else { sign };
            start = i + 1;
        }
    }
    if start < s.len() {
        out.push((sign, &s[start..]));
    }
    out
}

fn from_linear(constant: i64, terms: &BTreeMap<String, i64>) -> Dim {
    if terms.is_empty() && constant >= 0 {
        return Dim::Fixed(constant as usize);
    }
    let mut s = String::new();
    for (name, c) in terms {
        let sep = if s.is_empty() { "" } else { "+" };
        match *c {
            1 => s.push_str(&format!("{sep}{name}")),
            -1 => s.push_str(&format!("-{name}")),
            c if c < 0 => s.push_str(&format!("{c}*{name}")),
            c => s.push_str(&format!("{sep}{c}*{name}")),
        }
    }
    if constant != 0 || s.is_empty() {
        s.push_str(&format!("{}{constant}", if constant >= 0 && !s.is_empty() { "+" } else { "" }));
    }
    Dim::Sym(s)
}

/// `a op b` of sizes: a number when both are, else a canonical symbolic sum such as `seq+1`
/// (so that `seq+1-1` is `seq` again); `None` when a coefficient overflows an `i64`.
pub fn dim_op(op: SizeOp, a: &Dim, b: &Dim) -> Option<Dim> {
    let ((ca, ta), (cb, tb)) = (linear(a)?, linear(b)?);
    let scaled = |terms: BTreeMap<String, i64>, k: i64| -> Option<BTreeMap<String, i64>> {
        terms.into_iter().map(|(name, c)| Some((name, c.checked_mul(k)?))).collect()
    };
    Some(match op {
        SizeOp::Add | SizeOp::Sub => {
            let sign = if op == SizeOp::Sub { -1 } else { 1 };
            let mut t = ta;
            for (k, c) in tb {
                let slot = t.entry(k).or_insert(0);
                *slot = slot.checked_add(c.checked_mul(sign)?)?;
            }
            t.retain(|_, c| *c != 0);
            from_linear(ca.checked_add(cb.checked_mul(sign)?)?, &t)
        }
        SizeOp::Mul if tb.is_empty() => from_linear(ca.checked_mul(cb)?, &scaled(ta, cb)?),
        SizeOp::Mul if ta.is_empty() => from_linear(ca.checked_mul(cb)?, &scaled(tb, ca)?),
        SizeOp::Mul => {
            let mut names = [a.to_string(), b.to_string()];
            names.sort();
            Dim::Sym(names.join("*"))
        }
    })
}

/// The value of a size (`batch`, `seq`, `seq+1`, `8*batch`) at the given symbols' sizes;
/// `None` when it names another symbol or the value overflows an `i64`.
pub fn eval_dim(d: &Dim, sizes: &HashMap<String, i64>) -> Option<i64> {
    match d {
        Dim::Fixed(n) => i64::try_from(*n).ok(),
        Dim::Sym(s) => {
            let mut total = 0i64;
            for (sign, term) in split_terms(s.trim()) {
                let mut product = sign;
                for f in term.split('*') {
                    product = product.checked_mul(match factor(f)? {
                        Some(k) => k,
                        None => *sizes.get(f)?,
                    })?;
                }
                total = total.checked_add(product)?;
            }
            Some(total)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(b: i64, s: i64) -> HashMap<String, i64> {
        [("batch".to_string(), b), ("seq".to_string(), s)].into_iter().collect()
    }

    #[test]
    fn symbolic_sizes_evaluate() {
        assert_eq!(eval_dim(&Dim::Sym("seq+1".into()), &sizes(2, 5)), Some(6));
        assert_eq!(eval_dim(&Dim::Sym("8*batch-1".into()), &sizes(2, 5)), Some(15));
        assert_eq!(eval_dim(&Dim::Sym("batch*seq".into()), &sizes(2, 5)), Some(10));
        assert_eq!(eval_dim(&Dim::Sym("heads".into()), &sizes(2, 5)), None);
    }

    #[test]
    fn sums_are_canonical() {
        let seq_plus_one = dim_op(SizeOp::Add, &Dim::seq(), &Dim::Fixed(1)).unwrap();
        assert_eq!(seq_plus_one, Dim::Sym("seq+1".into()));
        assert_eq!(dim_op(SizeOp::Sub, &seq_plus_one, &Dim::Fixed(1)), Some(Dim::seq()));
        assert_eq!(dim_op(SizeOp::Mul, &Dim::Fixed(8), &Dim::batch()), Some(Dim::Sym("8*batch".into())));
        assert_eq!(dim_op(SizeOp::Mul, &Dim::Fixed(3), &Dim::Fixed(4)), Some(Dim::Fixed(12)));
    }

    #[test]
    fn overflowing_sizes_give_none_not_a_panic() {
        let big = Dim::Sym(format!("{}*seq", i64::MAX));
        assert_eq!(dim_op(SizeOp::Add, &big, &big), None);
        assert_eq!(dim_op(SizeOp::Sub, &Dim::Sym(format!("{}*seq", i64::MIN + 1)), &big), None);
        assert_eq!(dim_op(SizeOp::Mul, &big, &Dim::Fixed(2)), None);
        assert_eq!(dim_op(SizeOp::Add, &Dim::Fixed(usize::MAX), &Dim::Fixed(1)), None);
        assert_eq!(dim_op(SizeOp::Add, &Dim::Sym(format!("{}", i64::MAX)), &Dim::Fixed(1)), None);
        assert_eq!(dim_op(SizeOp::Add, &Dim::Sym("99999999999999999999*seq".into()), &Dim::Fixed(1)), None);
        assert_eq!(eval_dim(&big, &sizes(2, 5)), None);
        assert_eq!(eval_dim(&Dim::Fixed(usize::MAX), &sizes(2, 5)), None);
    }
}
