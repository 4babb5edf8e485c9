//! Host addresses as the programs that connect read them, and whether an
//! address is on the public internet.
//!
//! git hands an http(s) URL to curl and a git:// or ssh host to
//! `getaddrinfo`; both read a dotted IPv4 address the way C's `inet_aton`
//! does, so `2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1` and
//! `0x7f.0.0.01` are all 127.0.0.1. A check that only knows `127.0.0.1`
//! lets every other spelling through: [`parse_ipv4`] reads them all.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Reads `text` as an IPv4 address in every spelling `inet_aton` (glibc
/// 2.28 and later) and curl accept: one to four parts separated by dots,
/// each decimal, octal (a leading `0`) or hexadecimal (`0x`); the last part
/// fills the remaining bytes (`a`, `a.b` with b 24 bits, `a.b.c` with c 16
/// bits, `a.b.c.d`). `None` for anything else, including a trailing dot
/// (which both programs take for a host name).
pub fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u32; 4];
    let mut count = 0;
    for part in text.split('.') {
        if count == 4 {
            return None;
        }
        parts[count] = parse_c_number(part)?;
        count += 1;
    }
    let (leading, last) = (&parts[..count - 1], parts[count - 1]);
    if leading.iter().any(|&part| part > 0xff) {
        return None;
    }
    // The last part fills the bytes the others left: 32, 24, 16 or 8 bits.
    let last_bits = 32 - 8 * (count as u32 - 1);
    if last_bits < 32 && last >> last_bits != 0 {
        return None;
    }
    let mut address = 0u32;
    for (i, &part) in leading.iter().enumerate() {
        address |= part << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(address | last))
}

/// One part of an `inet_aton` address: what C's `strtoul(part, _, 0)` reads
/// when it reads the whole part and the part starts with a digit.
fn parse_c_number(part: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    // `from_str_radix` also takes a sign; the check above has ruled it out.
    u32::from_str_radix(digits, radix).ok()
}

/// Reads the inside of `[...]` in a URL: an IPv6 address with an optional
/// zone id (`fe80::1%25eth0` as RFC 6874 writes it, or `fe80::1%eth0`).
/// Returns the address and the zone.
pub fn parse_ipv6(text: &str) -> Option<(Ipv6Addr, Option<&str>)> {
    let (address, zone) = match text.split_once('%') {
        Some((address, zone)) => {
            let zone = match zone.strip_prefix("25") {
                Some(rest) if !rest.is_empty() => rest,
                _ => zone,
            };
            let valid = !zone.is_empty()
                && zone
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !valid {
                return None;
            }
            (address, Some(zone))
        }
        None => (text, None),
    };
    Some((address.parse().ok()?, zone))
}

/// Why an address is not on the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKind {
    /// 127.0.0.0/8, ::1: this machine.
    Loopback,
    /// 0.0.0.0, ::: connecting to it reaches this machine.
    Unspecified,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), fc00::/7, fec0::/10 and
    /// local-use NAT64 (64:ff9b:1::/48): a private network.
    Private,
    /// 100.64.0.0/10 (RFC 6598): a carrier's or a cloud's shared network.
    SharedAddressSpace,
    /// 169.254.0.0/16 (cloud metadata lives here), fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18.0.0/15.
    Benchmarking,
    /// Everything else that is not global: 0/8, 192.0.0/24, 192.88.99/24,
    /// 240/4, IPv4-compatible IPv6, 100::/64, 2001::/23, 5f00::/16, and
    /// all of IPv6 outside 2000::/3.
    Reserved,
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressKind::Loopback => "a loopback address",
            AddressKind::Unspecified => "the unspecified address (this machine)",
            AddressKind::Private => "a private address",
            AddressKind::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            AddressKind::LinkLocal => "a link-local address",
            AddressKind::Multicast => "a multicast address",
            AddressKind::Broadcast => "the broadcast address",
            AddressKind::Documentation => "a documentation address",
            AddressKind::Benchmarking => "a benchmarking address",
            AddressKind::Reserved => "a reserved address",
        })
    }
}

/// An address that is not global, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotGlobal {
    /// What kind of address decided it.
    pub kind: AddressKind,
    /// The IPv4 address inside an IPv6 one (mapped, translated, NAT64,
    /// 6to4, compatible) when that is what decided.
    pub embedded: Option<Ipv4Addr>,
}

impl fmt::Display for NotGlobal {
    /// `127.0.0.1, a loopback address` reads after "is ADDRESS", as in
    /// "is ::ffff:127.0.0.1, which is 127.0.0.1, a loopback address".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some(inner) => write!(f, "which is {inner}, {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

/// Whether `address` is on the public internet: `Ok` if it is, else what it
/// is. IPv6 forms that carry an IPv4 address (mapped, translated, NAT64,
/// 6to4) are judged by that address.
pub fn check_global(address: IpAddr) -> Result<(), NotGlobal> {
    match address {
        IpAddr::V4(v4) => check_v4(v4).map_err(|kind| NotGlobal {
            kind,
            embedded: None,
        }),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

fn in_v4(address: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(address) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn check_v4(address: Ipv4Addr) -> Result<(), AddressKind> {
    use AddressKind::*;
    // Most specific first: 255.255.255.255 lies inside 240/4, 0.0.0.0 in 0/8.
    const RANGES: &[([u8; 4], u32, AddressKind)] = &[
        ([255, 255, 255, 255], 32, Broadcast),
        ([0, 0, 0, 0], 32, Unspecified),
        ([0, 0, 0, 0], 8, Reserved),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    match RANGES
        .iter()
        .find(|(network, prefix, _)| in_v4(address, *network, *prefix))
    {
        Some((_, _, kind)) => Err(*kind),
        None => Ok(()),
    }
}

fn in_v6(address: Ipv6Addr, network: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(address) & mask == u128::from(Ipv6Addr::from(network)) & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(address: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from(u128::from(address) as u32)
}

fn check_v6(address: Ipv6Addr) -> Result<(), NotGlobal> {
    use AddressKind::*;
    let plain = |kind| {
        Err(NotGlobal {
            kind,
            embedded: None,
        })
    };
    let judged_by = |inner: Ipv4Addr| {
        check_v4(inner).map_err(|kind| NotGlobal {
            kind,
            embedded: Some(inner),
        })
    };
    if address == Ipv6Addr::UNSPECIFIED {
        return plain(Unspecified);
    }
    if address == Ipv6Addr::LOCALHOST {
        return plain(Loopback);
    }
    // ::ffff:a.b.c.d (mapped: the kernel connects to a.b.c.d),
    // ::ffff:0:a.b.c.d (SIIT's translated form) and 64:ff9b::a.b.c.d
    // (NAT64's well-known prefix) all reach the IPv4 address.
    if in_v6(address, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(address, [0, 0, 0, 0, 0xffff, 0, 0, 0], 96)
        || in_v6(address, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return judged_by(low_v4(address));
    }
    // ::a.b.c.d, the deprecated IPv4-compatible form: never global, but
    // named by its IPv4 address when that says more.
    if in_v6(address, [0; 8], 96) {
        let inner = low_v4(address);
        return Err(NotGlobal {
            kind: check_v4(inner).err().unwrap_or(Reserved),
            embedded: Some(inner),
        });
    }
    // 6to4: 2002:AABB:CCDD::/48 tunnels to AA.BB.CC.DD.
    if in_v6(address, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return judged_by(Ipv4Addr::from((u128::from(address) >> 80) as u32));
    }
    const RANGES: &[([u16; 8], u32, AddressKind)] = &[
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Private),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Reserved),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, Reserved),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, Reserved),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Private),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Private),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
    ];
    if let Some((_, _, kind)) = RANGES
        .iter()
        .find(|(network, prefix, _)| in_v6(address, *network, *prefix))
    {
        return plain(*kind);
    }
    // Only 2000::/3 is handed out for global unicast.
    if in_v6(address, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        Ok(())
    } else {
        plain(Reserved)
    }
}

/// Whether `name` is `localhost` or a name under it (RFC 6761), which
/// resolvers and curl answer with this machine whatever DNS says.
pub fn name_is_loopback(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// A network an operator names, `ADDRESS/PREFIX` (`10.20.0.0/16`,
/// `fd00:1::/64`) or a single address, e.g. a company's own git server that
/// non-admins may deploy from although it is not on the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    /// The address, its host bits cleared.
    address: IpAddr,
    /// Leading bits that name the network.
    prefix: u8,
}

/// A network that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "network '{0}': expected ADDRESS/PREFIX such as 10.20.0.0/16 or fd00:1::/64, or one address"
)]
pub struct NetworkError(String);

impl std::str::FromStr for Network {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Network, NetworkError> {
        let bad = || NetworkError(text.escape_debug().to_string());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        // Plain dotted or colon forms only: an operator's list is read as written.
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) if prefix.bytes().all(|b| b.is_ascii_digit()) && !prefix.is_empty() => {
                prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= bits)
                    .ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
            None => bits,
        };
        let address = match address {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        Ok(Network { address, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Network {
    /// Whether `address` lies in this network. A mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is its IPv4 one, which is where the kernel connects.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                in_v4(address, network.octets(), u32::from(self.prefix))
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                in_v6(address, network.segments(), u32::from(self.prefix))
            }
            _ => false,
        }
    }

    /// Whether this network holds a loopback or the unspecified address, that
    /// is reaches this machine's own services.
    pub fn reaches_this_machine(&self) -> bool {
        match self.address {
            IpAddr::V4(network) => {
                in_v4(network, [127, 0, 0, 0], u32::from(self.prefix.min(8)))
                    || self.contains(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            }
            IpAddr::V6(_) => {
                self.contains(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
                    || self.contains(IpAddr::V6(Ipv6Addr::LOCALHOST))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_an_operator_names() {
        let net = |text: &str| text.parse::<Network>().expect(text);
        let ip = |text: &str| text.parse::<IpAddr>().expect(text);
        assert!(net("10.20.0.0/16").contains(ip("10.20.255.1")));
        assert!(!net("10.20.0.0/16").contains(ip("10.21.0.1")));
        assert!(
            net("10.20.3.4/16").contains(ip("10.20.0.9")),
            "host bits ignored"
        );
        assert_eq!(net("10.20.3.4/16").to_string(), "10.20.0.0/16");
        assert!(net("127.0.0.2").contains(ip("::ffff:127.0.0.2")), "mapped");
        assert!(!net("127.0.0.2").contains(ip("127.0.0.1")));
        assert!(net("fd00:1::/64").contains(ip("fd00:1::7")));
        assert!(!net("fd00:1::/64").contains(ip("10.0.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        for (text, reaches) in [
            ("127.0.0.2", true),
            ("0.0.0.0/0", true),
            ("64.0.0.0/2", true),
            ("10.0.0.0/8", false),
            ("::1", true),
            ("fd00::/8", false),
        ] {
            assert_eq!(net(text).reaches_this_machine(), reaches, "{text}");
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "0x7f000001",
            "::/129",
            "a/8",
        ] {
            let error = bad.parse::<Network>().expect_err(bad).to_string();
            assert!(error.contains("expected ADDRESS/PREFIX"), "{bad}: {error}");
        }
    }

    #[track_caller]
    fn v4(text: &str, expected: Option<[u8; 4]>) {
        assert_eq!(parse_ipv4(text), expected.map(Ipv4Addr::from), "{text:?}");
    }

    #[test]
    fn every_inet_aton_spelling_of_an_ipv4_address() {
        let loopback = Some([127, 0, 0, 1]);
        for text in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "017700000001",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "0x7f.0.0.0x1",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0177.1",
            "127.000.000.001",
            "0x7f.0x0.0.01",
            "00000000000000000000177.1",
        ] {
            v4(text, loopback);
        }
        v4("0", Some([0, 0, 0, 0]));
        v4("00", Some([0, 0, 0, 0]));
        v4("0x0", Some([0, 0, 0, 0]));
        v4("4294967295", Some([255, 255, 255, 255]));
        v4("169.254.43518", Some([169, 254, 169, 254]));
        v4("10.1", Some([10, 0, 0, 1]));
        v4("1.2.65535", Some([1, 2, 255, 255]));
        v4("1.16777215", Some([1, 255, 255, 255]));
    }

    #[test]
    fn what_is_no_ipv4_address() {
        for text in [
            "",
            ".",
            "1.2.3.4.",
            ".1.2.3",
            "1..2",
            "1.2.3.4.5",
            "4294967296",
            "0x100000000",
            "256.1",
            "1.256.1.1",
            "1.2.65536",
            "1.16777216",
            "08",
            "0119",
            "0x",
            "0xg",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1e3",
            "localhost",
            "::1",
            "0x7f.0.0.1x",
        ] {
            v4(text, None);
        }
    }

    #[test]
    fn ipv6_with_zones() {
        assert_eq!(parse_ipv6("::1"), Some((Ipv6Addr::LOCALHOST, None)));
        let link: Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(parse_ipv6("fe80::1%25eth0"), Some((link, Some("eth0"))));
        assert_eq!(parse_ipv6("fe80::1%eth0"), Some((link, Some("eth0"))));
        assert_eq!(parse_ipv6("fe80::1%25"), Some((link, Some("25"))));
        assert_eq!(parse_ipv6("fe80::1%"), None);
        assert_eq!(parse_ipv6("fe80::1%e/0"), None);
        assert_eq!(parse_ipv6("127.0.0.1"), None);
        assert_eq!(parse_ipv6("host"), None);
    }

    #[track_caller]
    fn kind(text: &str, expected: Option<AddressKind>) {
        let address: IpAddr = text.parse().unwrap();
        assert_eq!(
            check_global(address).err().map(|n| n.kind),
            expected,
            "{text}"
        );
    }

    #[test]
    fn every_range_that_is_not_global() {
        use AddressKind::*;
        for (text, expected) in [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Reserved),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("169.254.169.254", LinkLocal),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.0.0.8", Reserved),
            ("192.0.2.1", Documentation),
            ("192.88.99.1", Reserved),
            ("192.168.1.1", Private),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("255.255.255.255", Broadcast),
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:0:10.0.0.1", Private),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b:1::1", Private),
            ("::127.0.0.1", Loopback),
            ("::8.8.8.8", Reserved),
            ("2002:7f00:1::", Loopback),
            ("2002:a00:1::5", Private),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("2001:1ff::1", Reserved),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("5f00::1", Reserved),
            ("fc00::1", Private),
            ("fd00::1", Private),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("4000::1", Reserved),
            ("1::1", Reserved),
        ] {
            kind(text, Some(expected));
        }
    }

    #[test]
    fn global_addresses() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "2001:200::1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "3ffe::1",
        ] {
            kind(text, None);
        }
    }

    #[test]
    fn messages_name_the_embedded_address() {
        let mapped: IpAddr = "::ffff:7f00:1".parse().unwrap();
        let refused = check_global(mapped).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "which is 127.0.0.1, a loopback address"
        );
        let plain = check_global("10.1.2.3".parse().unwrap()).unwrap_err();
        assert_eq!(plain.to_string(), "a private address");
    }

    #[test]
    fn localhost_names() {
        for name in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "a.localhost",
            "x.y.localhost.",
        ] {
            assert!(name_is_loopback(name), "{name}");
        }
        for name in [
            "localhost.example.com",
            "notlocalhost",
            "local",
            "example.com",
        ] {
            assert!(!name_is_loopback(name), "{name}");
        }
    }
}
