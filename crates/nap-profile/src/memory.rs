//! Memory sizes as `docker -m` writes them: `256M`, `1g`, `512k`, `1048576`.

use crate::error::quote_found;

/// The smallest memory limit accepted: 4M. Below this even `/bin/sh` cannot
/// start, so the instance would only ever be killed.
pub const MIN_MEMORY_BYTES: u64 = 4 * 1024 * 1024;

/// The largest memory limit accepted: 1T. Anything above is a typo.
pub const MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024 * 1024;

/// Why a memory size was rejected. Each message quotes the value as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// Not a size at all.
    #[error("expected a size like 256M (K, M or G), found {}", quote_found(.found))]
    Malformed {
        /// The value as given.
        found: String,
    },
    /// Below [`MIN_MEMORY_BYTES`] (zero included).
    #[error("{} is too small to start a process; the minimum is 4M", quote_found(.found))]
    TooSmall {
        /// The value as given.
        found: String,
    },
    /// Above [`MAX_MEMORY_BYTES`].
    #[error("{} is more than the maximum of 1T", quote_found(.found))]
    TooLarge {
        /// The value as given.
        found: String,
    },
}

/// Parses a memory size into bytes.
///
/// The grammar follows `docker -m` (binary units, so `1K` is 1024 bytes):
/// a whole number, optionally a fraction when a unit follows (`1.5G`), then
/// an optional unit `K`, `M`, `G` or `T`, an optional `i` after the unit and
/// an optional `B`, all case-insensitive. So `256M`, `256m`, `256MB`,
/// `256MiB`, `1g` and `1048576` (plain bytes, also `1048576b`) are all
/// accepted; `256 M`, `-5M`, `1.5` (a fraction of a byte) and `12Q` are not.
/// Surrounding whitespace is ignored. A fraction is rounded down to whole bytes.
///
/// The result lies from [`MIN_MEMORY_BYTES`] to [`MAX_MEMORY_BYTES`].
pub fn parse_memory(value: &str) -> Result<u64, MemoryError> {
    let trimmed = value.trim();
    let bytes = parse_size(trimmed).ok_or_else(|| MemoryError::Malformed {
        found: trimmed.to_owned(),
    })?;
    match bytes {
        Size::Overflow => Err(MemoryError::TooLarge {
            found: trimmed.to_owned(),
        }),
        Size::Bytes(n) if n < MIN_MEMORY_BYTES => Err(MemoryError::TooSmall {
            found: trimmed.to_owned(),
        }),
        Size::Bytes(n) if n > MAX_MEMORY_BYTES => Err(MemoryError::TooLarge {
            found: trimmed.to_owned(),
        }),
        Size::Bytes(n) => Ok(n),
    }
}

/// Formats a byte count in the largest unit that divides it exactly:
/// `268435456` is `256M`, `1536 * 1024 * 1024` is `1536M`, `1000` is `1000`.
/// [`parse_memory`] reads the result back as the same number.
pub fn format_memory(bytes: u64) -> String {
    const UNITS: [(u64, char); 4] = [
        (1 << 40, 'T'),
        (1 << 30, 'G'),
        (1 << 20, 'M'),
        (1 << 10, 'K'),
    ];
    if bytes != 0 {
        for (size, unit) in UNITS {
            if bytes.is_multiple_of(size) {
                return format!("{}{unit}", bytes / size);
            }
        }
    }
    bytes.to_string()
}

enum Size {
    Bytes(u64),
    Overflow,
}

/// The grammar of [`parse_memory`] without the bounds; `None` when malformed.
fn parse_size(text: &str) -> Option<Size> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (whole, rest) = text.split_at(digits_end);
    if whole.is_empty() {
        return None;
    }
    let (fraction, rest) = match rest.strip_prefix('.') {
        Some(after_dot) => {
            let end = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            let (fraction, rest) = after_dot.split_at(end);
            if fraction.is_empty() {
                return None;
            }
            (Some(fraction), rest)
        }
        None => (None, rest),
    };
    let mut suffix = rest.chars();
    let multiplier: u64 = match suffix.clone().next().map(|c| c.to_ascii_uppercase()) {
        Some('K') => 1 << 10,
        Some('M') => 1 << 20,
        Some('G') => 1 << 30,
        Some('T') => 1 << 40,
        _ => 1,
    };
    if multiplier != 1 {
        suffix.next();
        if matches!(suffix.clone().next(), Some('i' | 'I')) {
            suffix.next();
        }
    } else if fraction.is_some() {
        // A fraction of a byte means nothing.
        return None;
    }
    if matches!(suffix.clone().next(), Some('b' | 'B')) {
        suffix.next();
    }
    if suffix.next().is_some() {
        return None;
    }

    // Overflowing u64 is reported as "too large", not as malformed: the
    // number is well-formed, just absurd.
    let Ok(whole) = whole.parse::<u64>() else {
        return Some(Size::Overflow);
    };
    let Some(mut bytes) = whole.checked_mul(multiplier) else {
        return Some(Size::Overflow);
    };
    if let Some(fraction) = fraction {
        // The multiplier is at most 2^40 and the fraction is cut to 9 digits
        // (below 10^9 < 2^30), so the product fits in u128 with room to spare.
        let digits = &fraction[..fraction.len().min(9)];
        let numerator: u128 = digits.parse().ok()?;
        let denominator = 10u128.pow(u32::try_from(digits.len()).ok()?);
        let part = numerator * u128::from(multiplier) / denominator;
        let part = u64::try_from(part).ok()?;
        let Some(sum) = bytes.checked_add(part) else {
            return Some(Size::Overflow);
        };
        bytes = sum;
    }
    Some(Size::Bytes(bytes))
}
