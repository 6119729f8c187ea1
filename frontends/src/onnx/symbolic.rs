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

/// A size as `constant + Σ coefficient·term`, a term being a symbol or a product of symbols.
fn linear(d: &Dim) -> (i64, BTreeMap<String, i64>) {
    let mut terms = BTreeMap::new();
    let mut constant = 0;
    match d {
        Dim::Fixed(n) => constant = *n as i64,
        Dim::Sym(s) => {
            for (sign, term) in split_terms(s) {
                let (coef, names): (i64, Vec<&str>) = term.split('*').fold((sign, Vec::new()), |(c, mut n), f| match f.parse::<i64>() {
                    Ok(k) => (c * k, n),
                    Err(_) => {
                        n.push(f);
                        (c, n)
                    }
                });
                if names.is_empty() {
                    constant += coef;
                } else {
                    *terms.entry(names.join("*")).or_insert(0) += coef;
                }
            }
        }
    }
    terms.retain(|_, c| *c != 0);
    (constant, terms)
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
/// (so that `seq+1-1` is `seq` again).
pub fn dim_op(op: SizeOp, a: &Dim, b: &Dim) -> Dim {
    let ((ca, ta), (cb, tb)) = (linear(a), linear(b));
    match op {
        SizeOp::Add | SizeOp::Sub => {
            let sign = if op == SizeOp::Sub { -1 } else { 1 };
            let mut t = ta;
            for (k, c) in tb {
                *t.entry(k).or_insert(0) += sign * c;
            }
            t.retain(|_, c| *c != 0);
            from_linear(ca + sign * cb, &t)
        }
        SizeOp::Mul => {
            if tb.is_empty() {
                from_linear(ca * cb, &ta.into_iter().map(|(k, c)| (k, c * cb)).collect())
            } else if ta.is_empty() {
                from_linear(ca * cb, &tb.into_iter().map(|(k, c)| (k, c * ca)).collect())
            } else {
                let mut names = [a.to_string(), b.to_string()];
                names.sort();
                Dim::Sym(names.join("*"))
            }
        }
    }
}

/// The value of a size (`batch`, `seq`, `seq+1`, `8*batch`) at the given symbols' sizes;
/// `None` when it names another symbol.
pub fn eval_dim(d: &Dim, sizes: &HashMap<String, i64>) -> Option<i64> {
    match d {
        Dim::Fixed(n) => Some(*n as i64),
        Dim::Sym(s) => {
            let mut total = 0;
            for (sign, term) in split_terms(s.trim()) {
                let mut product = sign;
                for f in term.split('*') {
                    product *= match f.parse::<i64>() {
                        Ok(k) => k,
                        Err(_) => *sizes.get(f)?,
                    };
                }
                total += product;
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
        let seq_plus_one = dim_op(SizeOp::Add, &Dim::seq(), &Dim::Fixed(1));
        assert_eq!(seq_plus_one, Dim::Sym("seq+1".into()));
        assert_eq!(dim_op(SizeOp::Sub, &seq_plus_one, &Dim::Fixed(1)), Dim::seq());
        assert_eq!(dim_op(SizeOp::Mul, &Dim::Fixed(8), &Dim::batch()), Dim::Sym("8*batch".into()));
        assert_eq!(dim_op(SizeOp::Mul, &Dim::Fixed(3), &Dim::Fixed(4)), Dim::Fixed(12));
    }
}
