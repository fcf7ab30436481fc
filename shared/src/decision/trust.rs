//! Who the peer is, and whether it is a trusted proxy: a forwarded certificate header is
//! believed only from the CIDRs listed, and only when the peer's address is one no header
//! could have chosen.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an IP address or CIDR"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a prefix length outside 0..={max}"))?,
        };
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != network {
            return Err(format!("{text:?} has host bits set; write the network address"));
        }
        Ok(cidr)
    }

    fn masked(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack listener;
        // it is compared as IPv4 with IPv4 CIDRs and in its mapped form with IPv6 ones, so
        // `10.0.0.0/8` and `::ffff:10.0.0.0/104` hold the same peers.
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => self.masked(addr) == self.network,
            (IpAddr::V6(_), IpAddr::V4(v4)) => self.masked(IpAddr::V6(v4.to_ipv6_mapped())) == self.network,
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

/// The property that names the TCP peer, and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerProperty {
    /// Envoy's `source.address`: `ip:port` or `[ipv6]:port`.
    EnvoySourceAddress,
    /// ngx_wasm_module's `ngx.realip_remote_addr`: a bare address.
    NginxRealipRemoteAddr,
}

impl PeerProperty {
    pub fn path(self) -> &'static [&'static str] {
        match self {
            PeerProperty::EnvoySourceAddress => &["source", "address"],
            PeerProperty::NginxRealipRemoteAddr => &["ngx", "realip_remote_addr"],
        }
    }

    /// The peer's address, or `None` when the text does not name a TCP peer.
    pub fn parse(self, text: &str) -> Option<IpAddr> {
        match self {
            PeerProperty::EnvoySourceAddress => envoy_peer(text),
            PeerProperty::NginxRealipRemoteAddr => text.parse().ok(),
        }
    }
}

/// The address of an Envoy `source.address`, which always carries the port for an IP peer.
/// Envoy writes port 0 when it took the address from a header (`X-Forwarded-For` without
/// `use_remote_address`, trusted hops, an original-IP detection extension): such an address is
/// the client's claim, not its socket, and is refused. So are a bare address and anything else
/// (a Unix socket path).
pub fn envoy_peer(text: &str) -> Option<IpAddr> {
    let (ip, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:")?;
        (ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)?, port)
    } else {
        let (ip, port) = text.split_once(':')?;
        (ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)?, port)
    };
    // Plain decimal digits without a leading zero (which also rules out port 0).
    let decimal = !port.is_empty() && !port.starts_with('0') && port.bytes().all(|b| b.is_ascii_digit());
    (decimal && port.parse::<u16>().is_ok()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_contain_what_they_should() {
        let cases = [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1/128", "::1", true),
            ("::ffff:10.0.0.0/104", "10.1.2.3", true),
            ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true),
            ("::ffff:10.0.0.0/104", "11.1.2.3", false),
            ("::/0", "10.1.2.3", true),
            ("10.0.0.0/8", "fd00::1", false),
        ];
        for (cidr, addr, expected) in cases {
            assert_eq!(Cidr::parse(cidr).unwrap().contains(addr.parse().unwrap()), expected, "{cidr} ∋ {addr}");
        }
    }

    #[test]
    fn malformed_cidrs_are_refused() {
        for bad in ["10.0.0.0/33", "10.0.0.1/8", "nope", "10.0.0.0/x", "::1/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_socket_peer_is_a_peer() {
        let envoy = PeerProperty::EnvoySourceAddress;
        assert_eq!(envoy.parse("10.0.0.1:443"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(envoy.parse("[::1]:443"), Some("::1".parse().unwrap()));
        assert_eq!(envoy.parse("[::ffff:10.0.0.1]:5"), Some("::ffff:10.0.0.1".parse().unwrap()));
        for refused in [
            "10.1.2.3:0",
            "[fd00::1]:0",
            "10.0.0.1",
            "::1",
            "garbage",
            "",
            "10.0.0.1:",
            "10.0.0.1:+80",
            "10.0.0.1:080",
            "10.0.0.1:65536",
            "[::1]",
            "[::1]:",
            "::1:443",
            "/var/run/envoy.sock",
            "10.0.0.1:443:1",
        ] {
            assert_eq!(envoy.parse(refused), None, "{refused:?}");
        }
        let nginx = PeerProperty::NginxRealipRemoteAddr;
        assert_eq!(nginx.parse("10.0.0.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(nginx.parse("10.0.0.1:5"), None);
    }
}
