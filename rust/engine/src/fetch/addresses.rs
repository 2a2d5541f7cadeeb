//! Which addresses are internal: a host name of an allowed origin that resolves to one of them
//! is refused (the origin must name the address itself to reach it).
//!
//! One table, taken from the IANA IPv4 and IPv6 Special-Purpose Address Registries
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry>): every block whose
//! "Globally Reachable" column is not `True`. To those are added the multicast blocks (their
//! own registries), the deprecated site-local `fec0::/10` (RFC 3879), and the IPv6 prefixes
//! that embed an IPv4 address, refused as a whole whatever address they carry: IPv4-mapped
//! (already in the registry), IPv4-compatible `::/96`, IPv4-translated `::ffff:0:0:0/96`, the
//! NAT64 well-known prefix `64:ff9b::/96` (globally reachable in the registry, but where a
//! translator sends its traffic is decided inside someone's network), 6to4 and Teredo.
//!
//! Blocks the registries mark globally reachable (the AS112 and AMT blocks, the PCP and TURN
//! anycast addresses, ORCHIDv2) stay reachable, except where they lie inside a block that is
//! not (`192.0.0.0/24`, `2001::/23`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One special-purpose block: (network, prefix length, name, defining RFC).
#[derive(Debug)]
pub(crate) struct Block {
    pub network: IpAddr,
    pub prefix: u8,
    pub name: &'static str,
    pub rfc: &'static str,
}

const fn v4(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    prefix: u8,
    name: &'static str,
    rfc: &'static str,
) -> Block {
    Block {
        network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        prefix,
        name,
        rfc,
    }
}

const fn v6(segments: [u16; 8], prefix: u8, name: &'static str, rfc: &'static str) -> Block {
    let [a, b, c, d, e, f, g, h] = segments;
    Block {
        network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
        prefix,
        name,
        rfc,
    }
}

/// The internal blocks. Order does not matter: the most specific block containing an address
/// names it.
pub(crate) static INTERNAL: &[Block] = &[
    // IANA IPv4 Special-Purpose Address Registry, "Globally Reachable" not True.
    v4(0, 0, 0, 0, 8, "\"this network\"", "RFC 791"),
    v4(10, 0, 0, 0, 8, "private-use", "RFC 1918"),
    v4(100, 64, 0, 0, 10, "shared address space", "RFC 6598"),
    v4(127, 0, 0, 0, 8, "loopback", "RFC 1122"),
    v4(169, 254, 0, 0, 16, "link-local", "RFC 3927"),
    v4(172, 16, 0, 0, 12, "private-use", "RFC 1918"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments", "RFC 6890"),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)", "RFC 5737"),
    v4(
        192,
        88,
        99,
        0,
        24,
        "6to4 relay anycast (deprecated)",
        "RFC 7526",
    ),
    v4(192, 168, 0, 0, 16, "private-use", "RFC 1918"),
    v4(198, 18, 0, 0, 15, "benchmarking", "RFC 2544"),
    v4(
        198,
        51,
        100,
        0,
        24,
        "documentation (TEST-NET-2)",
        "RFC 5737",
    ),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)", "RFC 5737"),
    v4(240, 0, 0, 0, 4, "reserved", "RFC 1112"),
    v4(255, 255, 255, 255, 32, "limited broadcast", "RFC 919"),
    // IANA IPv4 Multicast Address Space Registry.
    v4(224, 0, 0, 0, 4, "multicast", "RFC 5771"),
    // IANA IPv6 Special-Purpose Address Registry, "Globally Reachable" not True.
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291"),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped", "RFC 4291"),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use IPv4/IPv6 translation",
        "RFC 8215",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666"),
    v6(
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        "dummy IPv6 prefix",
        "RFC 9780",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments",
        "RFC 2928",
    ),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", "RFC 4380"),
    v6(
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        "benchmarking",
        "RFC 5180",
    ),
    v6(
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        "ORCHID (deprecated)",
        "RFC 4843",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation",
        "RFC 3849",
    ),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "RFC 3056"),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "documentation",
        "RFC 9637",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "segment routing (SRv6) SIDs",
        "RFC 9602",
    ),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local", "RFC 4193"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", "RFC 4291"),
    // Prefixes that embed an IPv4 address, outside the registry or marked reachable there.
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "IPv4-compatible (deprecated)",
        "RFC 4291",
    ),
    v6(
        [0, 0, 0, 0, 0xffff, 0, 0, 0],
        96,
        "IPv4-translated",
        "RFC 2765",
    ),
    v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        "NAT64 well-known prefix",
        "RFC 6052",
    ),
    // Deprecated site-local, and multicast (IANA IPv6 Multicast Address Space Registry).
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local (deprecated)",
        "RFC 3879",
    ),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "RFC 4291"),
];

impl Block {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_bits(u32::from(ip) as u128, 32, self.prefix)
                    == prefix_bits(u32::from(net) as u128, 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_bits(u128::from(ip), 128, self.prefix)
                    == prefix_bits(u128::from(net), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn prefix_bits(address: u128, width: u32, prefix: u8) -> u128 {
    let prefix = u32::from(prefix).min(width);
    if prefix == 0 {
        0
    } else {
        address >> (width - prefix)
    }
}

/// The most specific internal block containing `ip`, or `None` for a public address.
pub(crate) fn internal(ip: IpAddr) -> Option<&'static Block> {
    INTERNAL
        .iter()
        .filter(|block| block.contains(ip))
        .max_by_key(|block| block.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(ip: &str) -> Option<&'static str> {
        internal(ip.parse().unwrap()).map(|b| b.name)
    }

    /// One address inside each block, named by that block (the most specific one), and the
    /// addresses just outside it public unless another block holds them.
    #[test]
    fn each_block_holds_its_addresses_and_names_them() {
        let cases: &[(&str, &str)] = &[
            ("0.1.2.3", "\"this network\""),
            ("10.200.0.1", "private-use"),
            ("100.64.0.1", "shared address space"),
            ("100.127.255.254", "shared address space"),
            ("127.0.0.2", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.31.255.255", "private-use"),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.2.1", "documentation (TEST-NET-1)"),
            ("192.88.99.1", "6to4 relay anycast (deprecated)"),
            ("192.168.1.1", "private-use"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation (TEST-NET-2)"),
            ("203.0.113.9", "documentation (TEST-NET-3)"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "limited broadcast"),
            ("224.0.0.251", "multicast"),
            ("239.255.255.250", "multicast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:8.8.8.8", "IPv4-mapped"),
            ("::ffff:10.0.0.1", "IPv4-mapped"),
            ("64:ff9b:1::a00:1", "local-use IPv4/IPv6 translation"),
            ("100::1", "discard-only"),
            ("100:0:0:1::1", "dummy IPv6 prefix"),
            ("2001:1::1", "IETF protocol assignments"),
            ("2001:1ff::1", "IETF protocol assignments"),
            ("2001:0:4136:e378::1", "Teredo"),
            ("2001:2::1", "benchmarking"),
            ("2001:10::1", "ORCHID (deprecated)"),
            ("2001:db8::1", "documentation"),
            ("2002:a00:1::1", "6to4"),
            ("2002:808:808::1", "6to4"),
            ("3fff::1", "documentation"),
            ("3fff:fff::1", "documentation"),
            ("5f00::1", "segment routing (SRv6) SIDs"),
            ("fc00::1", "unique-local"),
            ("fdff::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("::8.8.8.8", "IPv4-compatible (deprecated)"),
            ("::a00:1", "IPv4-compatible (deprecated)"),
            ("::ffff:0:808:808", "IPv4-translated"),
            ("64:ff9b::808:808", "NAT64 well-known prefix"),
            ("64:ff9b::a00:1", "NAT64 well-known prefix"),
            ("fec0::1", "site-local (deprecated)"),
            ("feff::1", "site-local (deprecated)"),
            ("ff02::1", "multicast"),
        ];
        for (ip, name) in cases {
            assert_eq!(named(ip), Some(*name), "{ip}");
        }
        // Every block of the table is exercised above.
        for block in INTERNAL {
            assert!(
                cases
                    .iter()
                    .any(|(ip, _)| internal(ip.parse().unwrap())
                        .is_some_and(|b| std::ptr::eq(b, block))),
                "no case for {}/{}",
                block.network,
                block.prefix
            );
        }
    }

    #[test]
    fn public_addresses_and_the_edges_of_blocks() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.31.196.1", // AS112, globally reachable
            "192.167.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2001:200::1", // past 2001::/23
            "2606:4700::1111",
            "2620:4f:8000::1", // AS112 direct delegation, globally reachable
            "3ffe::1",
            "3fff:1000::1", // past 3fff::/20
            "64:ff9c::1",
            "2003::1",
        ] {
            assert_eq!(named(ip), None, "{ip}");
        }
    }
}
