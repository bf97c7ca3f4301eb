//! Where the gateway is and which address this host has toward it: the default route's gateway
//! from `/proc/net/route` (or the configured one), this host's address from the configured
//! interface or from the route the kernel picks toward the gateway. Nothing here sends a packet.

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use super::Route;

/// The IPv4 gateway of the default route (on `interface`, when given), read from the kernel's
/// routing table text (`/proc/net/route`).
pub(crate) fn default_gateway(route_table: &str, interface: Option<&str>) -> Option<Ipv4Addr> {
    const RTF_GATEWAY: u32 = 0x2;
    route_table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (iface, dest, gw, flags) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        if *dest != "00000000" || flags & RTF_GATEWAY == 0 || interface.is_some_and(|i| i != *iface) {
            return None;
        }
        // The kernel prints the address in host byte order (little-endian here).
        let gw = u32::from_str_radix(gw, 16).ok()?;
        Some(Ipv4Addr::from(gw.swap_bytes()))
    })
}

/// The first IPv4 address of a network interface.
pub(crate) fn interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let ifname = unsafe { CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if ifname.to_bytes() == name.as_bytes() && i32::from(family) == libc::AF_INET {
            // SAFETY: AF_INET means the sockaddr is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// The local address the kernel would use to reach `gateway` (a connected UDP socket; connecting
/// sends nothing).
pub(crate) fn local_address_toward(gateway: IpAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = match gateway {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect((gateway, 9))?;
    Ok(socket.local_addr()?.ip())
}

/// Why no route to a gateway was found.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// No default route (on the interface).
    #[error("no default route{} to take the gateway from; set [port_mapping] gateway", on(.0))]
    NoDefaultRoute(Option<String>),
    /// The interface has no IPv4 address.
    #[error("interface `{0}` has no IPv4 address")]
    NoInterfaceAddress(String),
    /// The kernel has no route to the gateway.
    #[error("no route to gateway {0}: {1}")]
    Unreachable(IpAddr, String),
}

fn on(interface: &Option<String>) -> String {
    interface.as_ref().map(|i| format!(" on `{i}`")).unwrap_or_default()
}

/// The gateway (configured, else the default route's) and this host's address toward it.
pub(crate) fn route(gateway: Option<IpAddr>, interface: Option<&str>) -> Result<Route, RouteError> {
    let gateway = match gateway {
        Some(g) => g,
        None => {
            let table = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
            IpAddr::V4(
                default_gateway(&table, interface)
                    .ok_or_else(|| RouteError::NoDefaultRoute(interface.map(str::to_owned)))?,
            )
        }
    };
    let local = match interface {
        Some(i) => IpAddr::V4(interface_ipv4(i).ok_or_else(|| RouteError::NoInterfaceAddress(i.to_owned()))?),
        None => local_address_toward(gateway).map_err(|e| RouteError::Unreachable(gateway, e.to_string()))?,
    };
    Ok(Route { gateway, local })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth1\t004DA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
        eth0\t00000000\t01004D0A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";

    #[test]
    fn the_default_route_gives_the_gateway() {
        assert_eq!(default_gateway(TABLE, None), Some(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(default_gateway(TABLE, Some("eth0")), Some(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(default_gateway(TABLE, Some("eth1")), None, "eth1 has no default route");
        assert_eq!(default_gateway("Iface\n", None), None);
        assert_eq!(default_gateway("Iface\ngarbage line\n", None), None);
    }

    #[test]
    fn loopback_has_its_address_and_a_route_to_itself() {
        assert_eq!(interface_ipv4("lo"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(interface_ipv4("no-such-if0"), None);
        let r = route(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), None).expect("loopback route");
        assert_eq!(r.local, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
