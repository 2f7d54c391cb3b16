//! Kubernetes memory/storage quantities (`256Mi`, `10Gi`, `1.5G`) as byte counts.

/// Bytes in a quantity, or `None` when it is not a plain non-negative size.
/// CPU-style suffixes (`m`) and exponents are not sizes and are rejected.
pub fn to_bytes(text: &str) -> Option<u64> {
    const SUFFIXES: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    let (number, multiplier) =
        SUFFIXES.iter().find_map(|(suffix, m)| text.strip_suffix(suffix).map(|n| (n, *m))).unwrap_or((text, 1));
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut bytes = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let scale = 10u64.pow(u32::try_from(fraction.len()).ok()?);
        let fraction: u64 = fraction.parse().ok()?;
        bytes = bytes
            .checked_add(u64::try_from(u128::from(fraction) * u128::from(multiplier) / u128::from(scale)).ok()?)?;
    }
    Some(bytes)
}

/// The value of any quantity (`250m`, `1.5`, `2Gi`, `1e3`), or `None` when it does not parse.
/// Used to compare resource requests with limits.
pub fn to_f64(text: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, multiplier) =
        SUFFIXES.iter().find_map(|(suffix, m)| text.strip_suffix(suffix).map(|n| (n, *m))).unwrap_or((text, 1.0));
    let valid = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-' | b'e' | b'E'))
        && number.bytes().next().is_some_and(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'));
    if !valid {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * multiplier).filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::{to_bytes, to_f64};

    #[test]
    fn any_quantity_has_a_value() {
        assert_eq!(to_f64("250m"), Some(0.25));
        assert_eq!(to_f64("2Gi"), Some(2_147_483_648.0));
        assert_eq!(to_f64("1e3"), Some(1000.0));
        assert_eq!(to_f64("-1"), Some(-1.0));
        assert_eq!(to_f64("lots"), None);
        assert_eq!(to_f64(""), None);
    }

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(to_bytes("256Mi"), Some(256 << 20));
        assert_eq!(to_bytes("10Gi"), Some(10 << 30));
        assert_eq!(to_bytes("1.5G"), Some(1_500_000_000));
        assert_eq!(to_bytes("512"), Some(512));
    }

    #[test]
    fn non_sizes_are_rejected() {
        assert_eq!(to_bytes("100m"), None);
        assert_eq!(to_bytes("Mi"), None);
        assert_eq!(to_bytes("-1Gi"), None);
        assert_eq!(to_bytes("1e3"), None);
    }
}
