//! `parse_memory` and `format_memory`.

use nap_profile::{MAX_MEMORY_BYTES, MIN_MEMORY_BYTES, format_memory, parse_memory};

/// Compares `parse_memory(input)` with `expected`: the byte count, or the
/// error's Display.
fn check(input: &str, expected: &str) {
    let actual = match parse_memory(input) {
        Ok(bytes) => bytes.to_string(),
        Err(error) => error.to_string(),
    };
    assert_eq!(actual, expected, "input: {input:?}");
}

#[test]
fn sizes() {
    const K: u64 = 1024;
    const M: u64 = 1024 * K;
    const G: u64 = 1024 * M;
    let cases: &[(&str, String)] = &[
        ("256M", (256 * M).to_string()),
        ("256m", (256 * M).to_string()),
        ("256MB", (256 * M).to_string()),
        ("256mb", (256 * M).to_string()),
        ("256MiB", (256 * M).to_string()),
        ("1g", G.to_string()),
        ("1G", G.to_string()),
        ("1.5g", (3 * G / 2).to_string()),
        ("0.5G", (G / 2).to_string()),
        ("8192k", (8 * M).to_string()),
        ("8192KB", (8 * M).to_string()),
        ("4194304", (4 * M).to_string()),
        ("4194304b", (4 * M).to_string()),
        ("4194304B", (4 * M).to_string()),
        (" 64M ", (64 * M).to_string()),
        ("4M", MIN_MEMORY_BYTES.to_string()),
        ("1T", MAX_MEMORY_BYTES.to_string()),
        ("1024G", MAX_MEMORY_BYTES.to_string()),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn bad_sizes() {
    for (input, expected) in [
        ("12Q", "expected a size like 256M (K, M or G), found '12Q'"),
        ("", "expected a size like 256M (K, M or G), found ''"),
        ("M", "expected a size like 256M (K, M or G), found 'M'"),
        ("-5M", "expected a size like 256M (K, M or G), found '-5M'"),
        (
            "256 M",
            "expected a size like 256M (K, M or G), found '256 M'",
        ),
        ("1.5", "expected a size like 256M (K, M or G), found '1.5'"),
        ("1.G", "expected a size like 256M (K, M or G), found '1.G'"),
        ("1GG", "expected a size like 256M (K, M or G), found '1GG'"),
        ("1ib", "expected a size like 256M (K, M or G), found '1ib'"),
        ("1e9", "expected a size like 256M (K, M or G), found '1e9'"),
        (
            "0",
            "'0' is too small to start a process; the minimum is 4M",
        ),
        (
            "0M",
            "'0M' is too small to start a process; the minimum is 4M",
        ),
        (
            "4194303",
            "'4194303' is too small to start a process; the minimum is 4M",
        ),
        (
            "3.9M",
            "'3.9M' is too small to start a process; the minimum is 4M",
        ),
        ("1025G", "'1025G' is more than the maximum of 1T"),
        (
            "18446744073709551616",
            "'18446744073709551616' is more than the maximum of 1T",
        ),
        (
            "17179869184T",
            "'17179869184T' is more than the maximum of 1T",
        ),
    ] {
        check(input, expected);
    }
}

#[test]
fn format_picks_the_largest_exact_unit() {
    for (bytes, expected) in [
        (268_435_456, "256M"),
        (1 << 30, "1G"),
        (1536 << 20, "1536M"),
        (1 << 40, "1T"),
        (4096, "4K"),
        (4_194_305, "4194305"),
        (1000, "1000"),
        (0, "0"),
    ] {
        assert_eq!(format_memory(bytes), expected);
    }
}

#[test]
fn format_reads_back() {
    for bytes in [
        MIN_MEMORY_BYTES,
        MIN_MEMORY_BYTES + 1,
        256 << 20,
        (3 << 30) + (5 << 10),
        MAX_MEMORY_BYTES - 1,
        MAX_MEMORY_BYTES,
    ] {
        assert_eq!(parse_memory(&format_memory(bytes)), Ok(bytes));
    }
}
