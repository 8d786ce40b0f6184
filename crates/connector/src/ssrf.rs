//! Where this service may send requests with an integration's credentials (site URL) or to
//! fetch signing keys: public https hosts only, unless the integration is marked
//! `allow_private_hosts` (DESIGN §6: a ConnectWise on this machine or a private network, e.g.
//! the demo's cw-sim).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use url::{Host, Url};

/// Whether an address is loopback, private, CGNAT, link-local, unique-local, unspecified,
/// broadcast, multicast, documentation or otherwise not a public unicast address.
pub fn is_non_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_non_public_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
                || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64 (embeds v4)
                || (seg[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d
        }
    }
}

fn is_non_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // 0.0.0.0/8 "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // 240.0.0.0/4 reserved
}

fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// Checks a ConnectWise site URL (or any URL we will send credentials to) without DNS:
/// https only (http too with `allow_private_hosts`), no credentials in the URL, a host, and
/// — unless `allow_private_hosts` — no `localhost` and no non-public IP literal.
pub fn check_site_url(url: &str, allow_private_hosts: bool) -> Result<Url, String> {
    let parsed = Url::parse(url.trim()).map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private_hosts => {}
        "http" => {
            return Err(
                "the site URL must use https (http is only allowed for a ConnectWise on a private network)"
                    .to_owned(),
            );
        }
        other => return Err(format!("the site URL must use https, not `{other}`")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the site URL must not contain a user name or password".to_owned());
    }
    let host = parsed
        .host()
        .ok_or_else(|| "the site URL has no host".to_owned())?;
    if allow_private_hosts {
        return Ok(parsed);
    }
    match host {
        Host::Ipv4(ip) if is_non_public_ip(IpAddr::V4(ip)) => Err(format!(
            "the site URL points at a private or reserved address ({ip})"
        )),
        Host::Ipv6(ip) if is_non_public_ip(IpAddr::V6(ip)) => Err(format!(
            "the site URL points at a private or reserved address ({ip})"
        )),
        Host::Domain(d) if is_localhost_name(d) => {
            Err("the site URL points at this machine (localhost)".to_owned())
        }
        Host::Domain(d) if d.trim_end_matches('.').is_empty() => {
            Err("the site URL has no host".to_owned())
        }
        _ => Ok(parsed),
    }
}

/// [`check_site_url`] plus, for a host name and unless `allow_private_hosts`, a DNS lookup:
/// refused if it does not resolve or if any address it resolves to is not public.
pub async fn check_site_url_resolved(url: &str, allow_private_hosts: bool) -> Result<Url, String> {
    let parsed = check_site_url(url, allow_private_hosts)?;
    if allow_private_hosts {
        return Ok(parsed);
    }
    if let Some(Host::Domain(d)) = parsed.host() {
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((d, port))
            .await
            .map_err(|e| format!("the host `{d}` could not be resolved: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("the host `{d}` has no addresses"));
        }
        if let Some(bad) = addrs.iter().find(|a| is_non_public_ip(a.ip())) {
            return Err(format!(
                "the host `{d}` resolves to a private or reserved address ({})",
                bad.ip()
            ));
        }
    }
    Ok(parsed)
}

/// A DNS resolver for reqwest that refuses names resolving to non-public addresses, so a
/// host that passed [`check_site_url`] cannot be re-pointed at an internal address later (DNS
/// rebinding).
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if is_localhost_name(&host) {
                return Err(boxed(format!("refusing to connect to {host}")));
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| boxed(e.to_string()))?
                .collect();
            if addrs.is_empty() {
                return Err(boxed(format!("{host} has no addresses")));
            }
            if let Some(bad) = addrs.iter().find(|a| is_non_public_ip(a.ip())) {
                return Err(boxed(format!(
                    "refusing to connect to {host}: it resolves to a private or reserved address ({})",
                    bad.ip()
                )));
            }
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        }) as Pin<Box<_>>
    }
}

fn boxed(msg: String) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(std::io::Error::other(msg))
}

/// The resolver to install on a client: public-only unless private hosts are allowed.
pub(crate) fn resolver_for(allow_private_hosts: bool) -> Option<Arc<PublicOnlyResolver>> {
    (!allow_private_hosts).then(|| Arc::new(PublicOnlyResolver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_public_https() {
        let u = check_site_url("https://na.myconnectwise.net", false).unwrap();
        assert_eq!(u.host_str(), Some("na.myconnectwise.net"));
        assert!(check_site_url("https://cw.example.com:8443/", false).is_ok());
        assert!(check_site_url("https://8.8.8.8", false).is_ok());
        assert!(check_site_url("https://[2606:4700::1111]", false).is_ok());
    }

    #[test]
    fn refuses_bad_schemes_and_credentials() {
        assert!(check_site_url("http://na.myconnectwise.net", false).is_err());
        assert!(check_site_url("ftp://na.myconnectwise.net", false).is_err());
        assert!(check_site_url("file:///etc/passwd", true).is_err());
        assert!(check_site_url("https://user:pw@na.myconnectwise.net", false).is_err());
        assert!(check_site_url("http://user@127.0.0.1:8080", true).is_err());
        assert!(check_site_url("not a url", false).is_err());
    }

    #[test]
    fn refuses_private_literals_and_localhost() {
        for u in [
            "https://127.0.0.1",
            "https://127.1.2.3:8443",
            "https://10.1.2.3",
            "https://172.16.0.1",
            "https://172.31.255.255",
            "https://192.168.1.1",
            "https://100.64.0.1",
            "https://100.127.255.254",
            "https://169.254.169.254",
            "https://0.0.0.0",
            "https://255.255.255.255",
            "https://224.0.0.1",
            "https://[::1]",
            "https://[::]",
            "https://[fc00::1]",
            "https://[fd12:3456::1]",
            "https://[fe80::1]",
            "https://[ff02::1]",
            "https://[::ffff:127.0.0.1]",
            "https://[::ffff:10.0.0.1]",
            "https://localhost",
            "https://LOCALHOST.:443",
            "https://foo.localhost",
            "https://2130706433", // 127.0.0.1 as a number, normalised by the URL parser
            "https://0x7f.1",
        ] {
            assert!(check_site_url(u, false).is_err(), "{u} should be refused");
        }
        assert!(check_site_url("https://172.32.0.1", false).is_ok());
        assert!(check_site_url("https://100.128.0.1", false).is_ok());
    }

    #[test]
    fn private_allowed_when_marked() {
        assert!(check_site_url("http://127.0.0.1:9000", true).is_ok());
        assert!(check_site_url("http://localhost:9000", true).is_ok());
        assert!(check_site_url("https://10.0.0.5", true).is_ok());
    }

    #[tokio::test]
    async fn resolved_check_refuses_names_of_loopback() {
        // `localhost` is refused before DNS; a literal is checked without DNS.
        assert!(
            check_site_url_resolved("https://localhost", false)
                .await
                .is_err()
        );
        assert!(
            check_site_url_resolved("https://127.0.0.1", false)
                .await
                .is_err()
        );
        assert!(
            check_site_url_resolved("http://localhost:1", true)
                .await
                .is_ok()
        );
        // A name that cannot resolve is refused (the .invalid TLD never resolves).
        assert!(
            check_site_url_resolved("https://cw.example.invalid", false)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn resolver_refuses_loopback_names() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(PublicOnlyResolver.resolve(name).await.is_err());
    }
}
