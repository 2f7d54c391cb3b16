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

#[cfg(test)]
mod tests {
    use super::to_bytes;

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
