//! The PROXY protocol's configuration: the listener's list of trusted sources.

use ipnet::IpNet;

/// Parses `accept_proxy_protocol` (CIDRs, or bare addresses meaning one host) for a listener
/// that listens on TCP when `tcp`; the error completes "accept_proxy_protocol ...".
pub(crate) fn trusted_sources(list: &[String], tcp: bool) -> Result<Vec<IpNet>, String> {
    if !tcp {
        return Err(
            "applies to TCP only (a PROXY header opens a TCP connection); this listener has no \"tcp\" transport"
                .into(),
        );
    }
    if list.is_empty() {
        return Err("is an empty list: it trusts no source; remove the key to accept no PROXY header".into());
    }
    list.iter()
        .map(|item| {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("entry `{item}` is not an IP network (`10.0.0.0/8`) or address"))?;
            // An IPv4-mapped network would never match: peers are compared in canonical form.
            Ok(match net {
                IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                    Some(v4) if v6.prefix_len() >= 96 => {
                        ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4)
                    }
                    _ => net,
                },
                v4 => v4,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
