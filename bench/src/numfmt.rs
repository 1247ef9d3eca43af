//! Numbers as the report prints them: Python's `format` mini-language for the few
//! conversions BENCHMARKS.md has always used (`,.0f`, `.1f`, `.2f`, `g`, `.3g`, `.2g`), so the
//! table reads the same as before the harness moved to Rust.

/// `{x:,.0f}`, `{x:.1f}` or `{x:.2f}` by magnitude; "—" for nothing.
pub fn fmt(x: Option<f64>) -> String {
    let Some(x) = x else {
        return "—".to_owned();
    };
    if x.abs() >= 100.0 {
        thousands(&format!("{x:.0}"))
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Inserts `,` between groups of three digits of the integer part of a formatted number.
pub fn thousands(number: &str) -> String {
    let (sign, rest) = match number.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", number),
    };
    let (int, frac) = match rest.find('.') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let mut out = String::with_capacity(number.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}{frac}")
}

/// An integer with thousands separators (`{n:,}`).
pub fn int_thousands(n: u64) -> String {
    thousands(&n.to_string())
}

/// `{x:.Pg}`: `precision` significant digits, fixed or scientific notation by the exponent,
/// trailing zeros removed. `{x:g}` is `g(x, 6)`.
pub fn g(x: f64, precision: usize) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let p = precision.max(1);
    // The exponent after rounding to p significant digits.
    let sci = format!("{:.*e}", p - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if -4 <= exp && exp < p as i32 {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{x:.decimals$}"))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip_zeros(mantissa), exp.abs())
    }
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s.to_owned()
    }
}

/// `1.5 GiB`, `49.3 MiB`, `100 KiB`, `12 B`: three significant digits of the largest unit
/// that fits.
pub fn human_bytes(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size {
            return format!("{} {unit}", g(n as f64 / size as f64, 3));
        }
    }
    format!("{n} B")
}

/// A ratio: two decimals, or two significant digits below 0.01 (not 0.00).
pub fn ratio(r: f64) -> String {
    if r >= 0.01 || r == 0.0 {
        format!("{r:.2}×")
    } else {
        format!("{}×", g(r, 2))
    }
}

/// The median of `v` (the mean of the middle two for an even count); None when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_picks_decimals_by_magnitude() {
        assert_eq!(fmt(None), "—");
        assert_eq!(fmt(Some(1594.4)), "1,594");
        assert_eq!(fmt(Some(1_234_567.0)), "1,234,567");
        assert_eq!(fmt(Some(-1234.0)), "-1,234");
        assert_eq!(fmt(Some(100.0)), "100");
        assert_eq!(fmt(Some(22.66)), "22.7");
        assert_eq!(fmt(Some(3.125)), "3.12", "ties to even, as Python");
        assert_eq!(fmt(Some(0.0)), "0.00");
        assert_eq!(fmt(Some(2.5e-3)), "0.00");
        assert_eq!(fmt(Some(0.5)), "0.50");
    }

    #[test]
    fn g_matches_python() {
        assert_eq!(g(1.3, 6), "1.3");
        assert_eq!(g(1.0, 6), "1");
        assert_eq!(g(64.0, 6), "64");
        assert_eq!(g(1000.0, 6), "1000");
        assert_eq!(g(0.5, 6), "0.5");
        assert_eq!(g(49.3469, 3), "49.3");
        assert_eq!(g(2.0, 3), "2");
        assert_eq!(g(1023.5, 3), "1.02e+03");
        assert_eq!(g(0.0049, 2), "0.0049");
        assert_eq!(g(0.00004567, 2), "4.6e-05");
        assert_eq!(g(0.0, 2), "0");
        assert_eq!(g(999.7, 3), "1e+03");
    }

    #[test]
    fn sizes_name_their_largest_unit() {
        assert_eq!(human_bytes(2 << 30), "2 GiB");
        assert_eq!(human_bytes(51_744_893), "49.3 MiB");
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(100_000), "97.7 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }

    #[test]
    fn ratios_keep_two_digits() {
        assert_eq!(ratio(0.7127), "0.71×");
        assert_eq!(ratio(2.0), "2.00×");
        assert_eq!(ratio(0.0), "0.00×");
        assert_eq!(ratio(0.0047), "0.0047×");
    }

    #[test]
    fn medians_average_the_middle_pair() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn thousands_group_the_integer_part_only() {
        assert_eq!(thousands("1234567.891"), "1,234,567.891");
        assert_eq!(thousands("123"), "123");
        assert_eq!(int_thousands(1_000_000), "1,000,000");
    }
}
