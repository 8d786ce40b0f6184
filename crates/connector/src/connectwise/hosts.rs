//! ConnectWise cloud host names (API.md §1.1): users type the site host (`na.myconnectwise.net`);
//! API calls go to its `api-` sibling (`api-na.myconnectwise.net`). On-premise hosts (and
//! cw-sim) are used as they are.

/// The cloud domains whose hosts come in `X` / `api-X` pairs.
pub const CLOUD_DOMAINS: [&str; 2] = ["myconnectwise.net", "connectwisedev.com"];

/// Cloud site hosts that have a known `api-` host.
const CLOUD_SITES: [(&str, &str); 6] = [
    ("na", "myconnectwise.net"),
    ("eu", "myconnectwise.net"),
    ("au", "myconnectwise.net"),
    ("aus", "myconnectwise.net"),
    ("za", "myconnectwise.net"),
    ("staging", "connectwisedev.com"),
];

/// The host API calls go to for a site host: `na.myconnectwise.net` → `api-na.myconnectwise.net`
/// (likewise eu, au, aus, za, `staging.connectwisedev.com`); any other host unchanged.
pub fn api_host_for(site_host: &str) -> String {
    let host = site_host.trim_end_matches('.').to_ascii_lowercase();
    for (label, domain) in CLOUD_SITES {
        if host == format!("{label}.{domain}") {
            return format!("api-{label}.{domain}");
        }
    }
    host
}

/// Splits `x.domain` for a cloud domain into (`x`, domain); `None` for other hosts or deeper names.
fn cloud_parts(host: &str) -> Option<(&str, &'static str)> {
    for domain in CLOUD_DOMAINS {
        if let Some(label) = host.strip_suffix(domain).and_then(|h| h.strip_suffix('.'))
            && !label.is_empty()
            && !label.contains('.')
        {
            return Some((label, domain));
        }
    }
    None
}

/// Whether `a` and `b` are the same ConnectWise host or cloud siblings (`na.…` ↔ `api-na.…`
/// within `myconnectwise.net` / `connectwisedev.com`). Case-insensitive.
pub fn same_or_cloud_sibling(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    if a == b {
        return true;
    }
    match (cloud_parts(&a), cloud_parts(&b)) {
        (Some((la, da)), Some((lb, db))) if da == db => {
            let la = la.strip_prefix("api-").unwrap_or(la);
            let lb = lb.strip_prefix("api-").unwrap_or(lb);
            la == lb
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_hosts() {
        assert_eq!(
            api_host_for("na.myconnectwise.net"),
            "api-na.myconnectwise.net"
        );
        assert_eq!(
            api_host_for("EU.myconnectwise.net"),
            "api-eu.myconnectwise.net"
        );
        assert_eq!(
            api_host_for("aus.myconnectwise.net"),
            "api-aus.myconnectwise.net"
        );
        assert_eq!(
            api_host_for("staging.connectwisedev.com"),
            "api-staging.connectwisedev.com"
        );
        assert_eq!(
            api_host_for("api-na.myconnectwise.net"),
            "api-na.myconnectwise.net"
        );
        assert_eq!(api_host_for("cw.example.com"), "cw.example.com");
        assert_eq!(api_host_for("127.0.0.1"), "127.0.0.1");
        assert_eq!(
            api_host_for("sandbox-na.myconnectwise.net"),
            "sandbox-na.myconnectwise.net"
        );
    }

    #[test]
    fn siblings() {
        assert!(same_or_cloud_sibling(
            "na.myconnectwise.net",
            "api-na.myconnectwise.net"
        ));
        assert!(same_or_cloud_sibling(
            "api-na.myconnectwise.net",
            "na.myconnectwise.net"
        ));
        assert!(same_or_cloud_sibling("cw.example.com", "CW.example.com"));
        assert!(!same_or_cloud_sibling(
            "na.myconnectwise.net",
            "api-eu.myconnectwise.net"
        ));
        assert!(!same_or_cloud_sibling(
            "na.myconnectwise.net",
            "api-na.connectwisedev.com"
        ));
        assert!(!same_or_cloud_sibling(
            "na.myconnectwise.net",
            "evil.api-na.myconnectwise.net"
        ));
        assert!(!same_or_cloud_sibling(
            "na.myconnectwise.net",
            "api-na.myconnectwise.net.evil.com"
        ));
        assert!(!same_or_cloud_sibling(
            "cw.example.com",
            "api-cw.example.com"
        ));
    }
}
