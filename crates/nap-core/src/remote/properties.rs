//! Properties of the URL and address checks over generated input: every
//! spelling of every non-global address, in every URL form, is found
//! non-global; every global one is found global; arbitrary text never
//! panics and what is accepted is what git would connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

/// Cases per property: enough to cover the spellings, quick on 2 cores.
const CASES: u32 = 512;

/// A number as one part of an `inet_aton` address: decimal, octal or hex,
/// with leading zeros and either case.
fn c_number(value: u32) -> impl Strategy<Value = String> {
    (0..3u8, 0..3usize, any::<bool>(), any::<bool>()).prop_map(
        move |(radix, zeros, upper, big_x)| {
            let zeros = "0".repeat(zeros);
            match radix {
                0 => value.to_string(),
                1 => format!("0{zeros}{value:o}"),
                _ => {
                    let x = if big_x { "0X" } else { "0x" };
                    if upper {
                        format!("{x}{zeros}{value:X}")
                    } else {
                        format!("{x}{zeros}{value:x}")
                    }
                }
            }
        },
    )
}

/// Every way `inet_aton` can be given `address`: one to four parts.
fn ipv4_spelling(address: Ipv4Addr) -> impl Strategy<Value = String> {
    let [a, b, c, d] = address.octets().map(u32::from);
    let whole = u32::from(address);
    (1..=4usize).prop_flat_map(move |parts| {
        let values: Vec<u32> = match parts {
            1 => vec![whole],
            2 => vec![a, whole & 0xff_ffff],
            3 => vec![a, b, (c << 8) | d],
            _ => vec![a, b, c, d],
        };
        values
            .into_iter()
            .map(c_number)
            .collect::<Vec<_>>()
            .prop_map(|parts| parts.join("."))
    })
}

/// An IPv6 address as text: compressed, all eight groups with leading
/// zeros in either case, or with its last 32 bits dotted.
fn ipv6_spelling(address: Ipv6Addr) -> impl Strategy<Value = String> {
    (0..3u8, any::<bool>()).prop_map(move |(form, upper)| {
        let segments = address.segments();
        let text = match form {
            0 => address.to_string(),
            1 => segments
                .iter()
                .map(|s| format!("{s:04x}"))
                .collect::<Vec<_>>()
                .join(":"),
            _ => {
                let low = Ipv4Addr::from(u128::from(address) as u32);
                let high: Vec<String> = segments[..6].iter().map(|s| format!("{s:x}")).collect();
                format!("{}:{low}", high.join(":"))
            }
        };
        if upper { text.to_uppercase() } else { text }
    })
}

/// `host` (already bracketed if IPv6) in one of the URL forms git takes.
fn in_url(host: String, port: u16) -> impl Strategy<Value = (String, Transport, u16)> {
    (0..6u8).prop_map(move |form| match form {
        0 => (format!("http://{host}:{port}/r.git"), Transport::Http, port),
        1 => (
            format!("https://bob:pw@{host}:{port}/r"),
            Transport::Https,
            port,
        ),
        2 => (format!("git://{host}:{port}/~bob/r"), Transport::Git, port),
        3 => (format!("ssh://git@{host}:{port}/r"), Transport::Ssh, port),
        4 => (format!("git+ssh://{host}/r"), Transport::Ssh, 22),
        _ => (format!("git@{host}:r.git"), Transport::Ssh, 22),
    })
}

/// The IPv4 networks that are not global, from IANA's registry.
const NOT_GLOBAL_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 88, 99, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

fn not_global_v4() -> impl Strategy<Value = Ipv4Addr> {
    (0..NOT_GLOBAL_V4.len(), any::<u32>()).prop_map(|(i, bits)| {
        let (network, prefix) = NOT_GLOBAL_V4[i];
        let host_mask = u32::MAX.checked_shr(prefix).unwrap_or(0);
        Ipv4Addr::from((u32::from(Ipv4Addr::from(network)) & !host_mask) | (bits & host_mask))
    })
}

/// Global by the standard library's stable checks plus the ranges it
/// has no stable check for: a second opinion, not a copy of `check_v4`.
fn is_global_by_std(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    !(address.is_private()
        || address.is_loopback()
        || address.is_link_local()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_documentation()
        || address.is_unspecified()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 88 && c == 99))
}

fn global_v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("global", |a| is_global_by_std(*a))
}

/// IPv6 forms that carry an IPv4 address the kernel or a translator
/// connects to in its stead.
fn carrying(v4: Ipv4Addr) -> impl Strategy<Value = Ipv6Addr> {
    let low = u128::from(u32::from(v4));
    (0..4u8, any::<u64>()).prop_map(move |(form, tail)| {
        Ipv6Addr::from(match form {
            0 => (0xffff << 32) | low,
            1 => (0xffff << 48) | low,
            2 => (0x64_ff9b << 96) | low,
            // 6to4: 2002:V4::/48, anything in the rest.
            _ => (0x2002 << 112) | (low << 80) | u128::from(tail),
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Whatever the spelling, the parser reads the address inet_aton reads.
    #[test]
    fn every_ipv4_spelling_reads_as_its_address(
        (address, spelling) in any::<u32>()
            .prop_map(Ipv4Addr::from)
            .prop_flat_map(|a| (Just(a), ipv4_spelling(a)))
    ) {
        prop_assert_eq!(parse_ipv4(&spelling), Some(address), "{}", spelling);
    }

    /// Every spelling of every non-global IPv4 address, in every URL form,
    /// is found not global.
    #[test]
    fn non_global_ipv4_in_any_spelling_and_form_is_refused(
        (address, (url, transport, port)) in not_global_v4().prop_flat_map(|a| {
            (Just(a), ipv4_spelling(a).prop_flat_map(|h| in_url(h, 8080)))
        })
    ) {
        let parsed = parse_git_url(&url);
        let Ok(GitUrl::Remote(remote)) = parsed else {
            return Err(TestCaseError::fail(format!("{url}: {parsed:?}")));
        };
        prop_assert_eq!(&remote.host, &Host::Address(IpAddr::V4(address)), "{}", url);
        prop_assert_eq!((remote.transport, remote.port), (transport, port));
        prop_assert!(check_global(IpAddr::V4(address)).is_err(), "{}", url);
    }

    /// IPv6 forms that carry a non-global IPv4 address are refused, and
    /// the message names the IPv4 address.
    #[test]
    fn ipv6_forms_of_non_global_ipv4_are_refused(
        (v4, v6, (url, _, _)) in not_global_v4().prop_flat_map(|v4| {
            carrying(v4).prop_flat_map(move |v6| {
                (Just(v4), Just(v6), ipv6_spelling(v6).prop_flat_map(|h| in_url(format!("[{h}]"), 443)))
            })
        })
    ) {
        let parsed = parse_git_url(&url);
        let Ok(GitUrl::Remote(remote)) = parsed else {
            return Err(TestCaseError::fail(format!("{url}: {parsed:?}")));
        };
        prop_assert_eq!(&remote.host, &Host::Address(IpAddr::V6(v6)), "{}", url);
        let refused = check_global(IpAddr::V6(v6));
        prop_assert_eq!(refused.map_err(|n| n.embedded), Err(Some(v4)), "{}", url);
    }

    /// Global addresses pass, as themselves and in the IPv6 forms that
    /// carry them.
    #[test]
    fn global_addresses_are_allowed(
        (v4, v6) in global_v4().prop_flat_map(|v4| (Just(v4), carrying(v4)))
    ) {
        prop_assert_eq!(check_global(IpAddr::V4(v4)), Ok(()), "{}", v4);
        prop_assert_eq!(check_global(IpAddr::V6(v6)), Ok(()), "{}", v6);
    }

    /// Global unicast IPv6 outside the special blocks passes.
    #[test]
    fn global_ipv6_is_allowed(bits in any::<u128>()) {
        // Into 2000::/3, then out of the blocks IANA sets apart in it.
        let address = Ipv6Addr::from((bits & (u128::MAX >> 3)) | (1 << 125));
        let top = address.segments()[0];
        let second = address.segments()[1];
        let special = (top == 0x2001 && (second < 0x200 || second == 0xdb8))
            || top == 0x2002
            || (top == 0x3fff && second < 0x1000);
        prop_assume!(!special);
        prop_assert_eq!(check_global(IpAddr::V6(address)), Ok(()), "{}", address);
    }

    /// Arbitrary text never panics, and what is accepted as a network URL
    /// names a host that git reads the same way.
    #[test]
    fn arbitrary_urls_parse_safely(
        url in prop_oneof![
            ".{0,40}",
            "(https?|git|ssh|git\\+ssh|ftp|file)://[a-zA-Z0-9@:%.\\[\\]_-]{0,24}(/[a-z~]{0,6})?",
            "[a-z0-9@\\[\\]:.-]{0,16}:[a-z/]{0,6}",
        ]
    ) {
        let Ok(GitUrl::Remote(remote)) = parse_git_url(&url) else {
            return Ok(());
        };
        prop_assert!(remote.port != 0);
        prop_assert!(url[remote.host_span.clone()].contains(&remote.host_text), "{}: {:?}", url, remote);
        if let Host::Name(name) = &remote.host {
            prop_assert!(!name.starts_with(['-', '.']), "{}", url);
            prop_assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
                "{}", url
            );
        }
        if !remote.scp_like {
            // Pinning rewrites the host; the rewritten URL names the pin.
            let pinned: IpAddr = "192.0.2.1".parse().expect("an address");
            let rewritten = remote.with_address(&url, pinned);
            let reparsed = parse_git_url(&rewritten);
            let Ok(GitUrl::Remote(again)) = reparsed else {
                return Err(TestCaseError::fail(format!("{rewritten}: {reparsed:?}")));
            };
            prop_assert_eq!(again.host, Host::Address(pinned));
            prop_assert_eq!((again.transport, again.port), (remote.transport, remote.port));
        }
    }
}

/// The parser against the real `inet_aton` (glibc's, through Python's
/// `socket.inet_aton`) on a few thousand generated strings, in one run of
/// python3. Whitespace is left out: `inet_aton` stops at a space, and URLs
/// with spaces are refused before any address is read.
#[test]
fn the_parser_agrees_with_inet_aton() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::io::Write;

    let mut runner = TestRunner::deterministic();
    let strategy = proptest::collection::vec(
        prop_oneof![
            "[0-9a-fA-FxX.]{1,14}",
            "(0[xX]?)?[0-9a-f]{1,10}(\\.(0[xX]?)?[0-9a-f]{1,4}){0,4}",
            any::<u32>()
                .prop_map(Ipv4Addr::from)
                .prop_flat_map(ipv4_spelling),
        ],
        4000,
    );
    let texts = strategy
        .new_tree(&mut runner)
        .expect("strings are generated")
        .current();
    let script = "import socket, sys\n\
        for line in sys.stdin:\n\
        \x20   t = line.rstrip('\\n')\n\
        \x20   try: print(socket.inet_ntoa(socket.inet_aton(t)))\n\
        \x20   except OSError: print('-')\n";
    let mut python = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut input = python.stdin.take().expect("stdin");
    let lines = texts.join("\n") + "\n";
    let writer = std::thread::spawn(move || input.write_all(lines.as_bytes()));
    let output = python.wait_with_output().expect("python3 answers");
    writer.join().expect("writer").expect("written");
    let answers: Vec<&str> = std::str::from_utf8(&output.stdout)
        .expect("utf-8")
        .lines()
        .collect();
    assert_eq!(
        answers.len(),
        texts.len(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let mut addresses = 0;
    for (text, answer) in texts.iter().zip(answers) {
        let ours = parse_ipv4(text).map(|a| a.to_string());
        let theirs = (answer != "-").then(|| answer.to_owned());
        assert_eq!(ours, theirs, "{text:?}");
        addresses += usize::from(ours.is_some());
    }
    assert!(
        addresses > 1000,
        "only {addresses} of the strings were addresses"
    );
}
