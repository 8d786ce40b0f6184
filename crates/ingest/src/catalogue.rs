//! The detection-rule catalogue (the Sigma rules shipped in `data/sigma-rules.jsonl`) and the
//! suggested rule type of a rule, derived from its logsource.
//!
//! The derivation table is documented in `docs/rule-types.md`; keep the two in step.

use std::collections::HashMap;

use casebridge_domain::Criticality;
use serde::{Deserialize, Serialize};

/// The rule types an account starts with (editable per account). `Other` is the catch-all.
pub const DEFAULT_RULE_TYPES: [&str; 6] =
    ["Endpoint", "Network", "Cloud", "Identity", "Email", "Other"];

/// Where a rule's events come from (Sigma's `logsource`, without `definition`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logsource {
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
}

/// One rule of the catalogue: metadata only, no detection logic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueRule {
    pub id: String,
    pub title: String,
    pub level: Option<Criticality>,
    pub status: Option<String>,
    pub logsource: Logsource,
    pub tags: Vec<String>,
    /// The rule's file path in the Sigma repository (e.g. `rules/windows/process_creation/…yml`).
    pub path: Option<String>,
}

impl CatalogueRule {
    /// The rule type suggested from this rule's logsource and tags (one of [`DEFAULT_RULE_TYPES`]).
    pub fn suggested_rule_type(&self) -> &'static str {
        suggest_rule_type(&self.logsource, &self.tags)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("catalogue line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("catalogue line {line}: rule id {id} already appears on line {first_line}")]
    DuplicateId {
        line: usize,
        id: String,
        first_line: usize,
    },
    #[error("the catalogue is empty (no rule lines)")]
    Empty,
}

impl CatalogueError {
    /// The 1-based line the error is about, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Line { line, .. } | Self::DuplicateId { line, .. } => Some(*line),
            Self::Empty => None,
        }
    }
}

#[derive(Deserialize)]
struct RawRule {
    id: Option<String>,
    title: Option<String>,
    level: Option<String>,
    status: Option<String>,
    #[serde(default)]
    logsource: Option<Logsource>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    path: Option<String>,
}

/// Parses the catalogue's JSON Lines: one rule object per line; blank lines and lines starting
/// with `#` are ignored. Fails on the first bad line, naming its 1-based number: not JSON, a
/// missing or empty `id`/`title`, a `level` that is not one of the five criticality words, or an
/// id that appeared before.
pub fn parse_catalogue(jsonl: &str) -> Result<Vec<CatalogueRule>, CatalogueError> {
    let mut rules = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (idx, text) in jsonl.lines().enumerate() {
        let line = idx + 1;
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |message: String| CatalogueError::Line { line, message };
        let raw: RawRule =
            serde_json::from_str(trimmed).map_err(|e| err(format!("not a rule object: {e}")))?;
        let id = raw
            .id
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let Some(id) = id else {
            return Err(err("`id` is missing or empty".into()));
        };
        let title = raw
            .title
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let Some(title) = title else {
            return Err(err(format!("rule {id}: `title` is missing or empty")));
        };
        let level = match raw.level.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(word) => Some(Criticality::parse(word).ok_or_else(|| {
                err(format!(
                    "rule {id}: `level` {word:?} is not one of critical, high, medium, low, informational"
                ))
            })?),
        };
        if let Some(&first_line) = seen.get(&id) {
            return Err(CatalogueError::DuplicateId {
                line,
                id,
                first_line,
            });
        }
        seen.insert(id.clone(), line);
        rules.push(CatalogueRule {
            id,
            title,
            level,
            status: raw.status.filter(|s| !s.trim().is_empty()),
            logsource: raw.logsource.unwrap_or_default(),
            tags: raw.tags.unwrap_or_default(),
            path: raw.path.filter(|s| !s.trim().is_empty()),
        });
    }
    if rules.is_empty() {
        return Err(CatalogueError::Empty);
    }
    Ok(rules)
}

const ENDPOINT: &str = "Endpoint";
const NETWORK: &str = "Network";
const CLOUD: &str = "Cloud";
const IDENTITY: &str = "Identity";
const EMAIL: &str = "Email";
const OTHER: &str = "Other";

fn lower(s: &Option<String>) -> String {
    s.as_deref().unwrap_or("").trim().to_ascii_lowercase()
}

/// Host telemetry categories (Sysmon / EDR / OS audit style): an endpoint agent produces them.
fn is_endpoint_category(category: &str) -> bool {
    const PREFIXES: [&str; 6] = ["process_", "file_", "registry_", "ps_", "sysmon_", "image_"];
    const EXACT: [&str; 9] = [
        "antivirus",
        "create_remote_thread",
        "create_stream_hash",
        "driver_load",
        "pipe_created",
        "raw_access_thread",
        "wmi_event",
        "dns_query",
        "network_connection",
    ];
    PREFIXES.iter().any(|p| category.starts_with(p)) || EXACT.contains(&category)
}

fn has_email_tag(tags: &[String]) -> bool {
    // ATT&CK T1114 (Email Collection) and T1566 (Phishing), including sub-techniques.
    tags.iter().any(|t| {
        let t = t.trim().to_ascii_lowercase();
        t.starts_with("attack.t1114") || t.starts_with("attack.t1566")
    })
}

/// Suggests one of [`DEFAULT_RULE_TYPES`] for a rule from its logsource (and, for Microsoft 365
/// rules only, its ATT&CK tags). Comparisons ignore case. The table, in order:
///
/// 1. mail: a service or category naming Exchange or mail (`m365`/`exchange`,
///    `windows`/`msexchange-management`, category `email`) → **Email**; `m365` rules tagged
///    T1114 (email collection) or T1566 (phishing) → **Email**.
/// 2. product `windows` / `linux` / `macos` → **Endpoint** (including `network_connection`,
///    `dns_query` and the host firewall: it is host telemetry from an endpoint agent, and the
///    responder acts on the host), except Windows `dns-server*` services → **Network**.
/// 3. identity providers: `okta`, `onelogin`, `cisco`/`duo`, `azure` `signinlogs` / `auditlogs` /
///    `riskdetection` / `pim`, `gcp` `google_workspace.*` → **Identity**.
/// 4. cloud and SaaS platforms: `aws`, `azure`, `gcp`, `m365`, `github`, `gitlab`, `bitbucket`,
///    `kubernetes`, `google_workspace` → **Cloud**.
/// 5. network devices and sensors: `zeek`, `cisco`, `fortigate`, `fortios`, `paloalto`, `juniper`,
///    `huawei`, `checkpoint`, `opencanary` (honeypot network services); categories `firewall`,
///    `dns`, `proxy`, `webserver`, `network_connection` (without an OS product); services
///    `netflow`, `apache`, `nginx` → **Network**.
/// 6. `rpc_firewall` (a host-based RPC filter on Windows) and host-telemetry categories without a
///    product (`antivirus`, `process_creation`, `file_*`, `registry_*`, …) → **Endpoint**.
/// 7. anything else (application logs, databases, scanners such as `qualys`, no logsource) → **Other**.
pub fn suggest_rule_type(ls: &Logsource, tags: &[String]) -> &'static str {
    let product = lower(&ls.product);
    let category = lower(&ls.category);
    let service = lower(&ls.service);

    // 1. Email.
    if service.contains("exchange")
        || service.contains("mail")
        || category == "email"
        || category == "mail"
    {
        return EMAIL;
    }
    if product == "m365" && has_email_tag(tags) {
        return EMAIL;
    }

    // 2. Operating systems: endpoint telemetry.
    if matches!(product.as_str(), "windows" | "linux" | "macos") {
        if service.starts_with("dns-server") {
            return NETWORK;
        }
        return ENDPOINT;
    }

    // 3. Identity providers.
    match product.as_str() {
        "okta" | "onelogin" => return IDENTITY,
        "cisco" if service == "duo" => return IDENTITY,
        "azure"
            if matches!(
                service.as_str(),
                "signinlogs" | "auditlogs" | "riskdetection" | "pim"
            ) =>
        {
            return IDENTITY;
        }
        "gcp" if service.starts_with("google_workspace") => return IDENTITY,
        _ => {}
    }

    // 4. Cloud and SaaS platforms.
    if matches!(
        product.as_str(),
        "aws"
            | "azure"
            | "gcp"
            | "m365"
            | "github"
            | "gitlab"
            | "bitbucket"
            | "kubernetes"
            | "google_workspace"
    ) {
        return CLOUD;
    }

    // 5. Network devices, sensors and network-visible traffic.
    if matches!(
        product.as_str(),
        "zeek"
            | "cisco"
            | "fortigate"
            | "fortios"
            | "paloalto"
            | "juniper"
            | "huawei"
            | "checkpoint"
            | "opencanary"
    ) || matches!(
        category.as_str(),
        "firewall" | "dns" | "proxy" | "webserver" | "network_connection"
    ) || matches!(service.as_str(), "netflow" | "apache" | "nginx")
    {
        return NETWORK;
    }

    // 6. Host telemetry without an OS product.
    if product == "rpc_firewall" || (product.is_empty() && is_endpoint_category(&category)) {
        return ENDPOINT;
    }

    OTHER
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(product: Option<&str>, category: Option<&str>, service: Option<&str>) -> Logsource {
        Logsource {
            product: product.map(str::to_string),
            category: category.map(str::to_string),
            service: service.map(str::to_string),
        }
    }

    #[test]
    fn table_spot_checks() {
        let cases = [
            (
                ls(Some("windows"), Some("process_creation"), None),
                "Endpoint",
            ),
            (
                ls(Some("windows"), Some("network_connection"), None),
                "Endpoint",
            ),
            (ls(Some("windows"), None, Some("dns-server")), "Network"),
            (
                ls(Some("windows"), None, Some("msexchange-management")),
                "Email",
            ),
            (ls(Some("linux"), None, Some("auditd")), "Endpoint"),
            (ls(Some("macos"), Some("file_event"), None), "Endpoint"),
            (ls(None, Some("proxy"), None), "Network"),
            (ls(None, Some("firewall"), None), "Network"),
            (ls(None, Some("network_connection"), None), "Network"),
            (ls(Some("zeek"), None, Some("dns")), "Network"),
            (ls(Some("aws"), None, Some("cloudtrail")), "Cloud"),
            (ls(Some("azure"), None, Some("activitylogs")), "Cloud"),
            (ls(Some("azure"), None, Some("signinlogs")), "Identity"),
            (ls(Some("okta"), None, Some("okta")), "Identity"),
            (ls(Some("cisco"), None, Some("duo")), "Identity"),
            (ls(Some("cisco"), None, Some("aaa")), "Network"),
            (ls(Some("m365"), None, Some("exchange")), "Email"),
            (ls(Some("m365"), None, Some("threat_management")), "Cloud"),
            (ls(None, Some("antivirus"), None), "Endpoint"),
            (
                ls(Some("rpc_firewall"), Some("application"), None),
                "Endpoint",
            ),
            (ls(Some("jvm"), Some("application"), None), "Other"),
            (ls(Some("qualys"), None, None), "Other"),
            (Logsource::default(), "Other"),
            (
                ls(Some("WINDOWS"), Some("Process_Creation"), None),
                "Endpoint",
            ),
        ];
        for (l, want) in cases {
            assert_eq!(suggest_rule_type(&l, &[]), want, "{l:?}");
            assert!(DEFAULT_RULE_TYPES.contains(&want));
        }
        let phishing = vec![
            "attack.initial-access".to_string(),
            "attack.t1566.001".to_string(),
        ];
        assert_eq!(
            suggest_rule_type(&ls(Some("m365"), None, Some("audit")), &phishing),
            "Email"
        );
        // Tags do not move host telemetry: a phishing-tagged process rule stays on the endpoint.
        assert_eq!(
            suggest_rule_type(
                &ls(Some("windows"), Some("process_creation"), None),
                &phishing
            ),
            "Endpoint"
        );
    }

    #[test]
    fn catalogue_errors_name_the_line() {
        let good =
            r#"{"id":"a","title":"A","level":"high","logsource":{"product":"windows"},"tags":[]}"#;
        assert_eq!(parse_catalogue(good).unwrap().len(), 1);

        let text = format!("{good}\n\n{{not json\n");
        let e = parse_catalogue(&text).unwrap_err();
        assert_eq!(e.line(), Some(3), "{e}");
        assert!(e.to_string().contains("line 3"), "{e}");

        let text = format!("{good}\n{}", r#"{"id":"b","title":"B","level":"severe"}"#);
        let e = parse_catalogue(&text).unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("level"), "{e}");

        let text = format!("{good}\n{}", r#"{"title":"no id"}"#);
        assert!(
            parse_catalogue(&text)
                .unwrap_err()
                .to_string()
                .contains("`id`")
        );

        let text = format!("{good}\n{}", r#"{"id":"c"}"#);
        assert!(
            parse_catalogue(&text)
                .unwrap_err()
                .to_string()
                .contains("`title`")
        );

        let text = format!("{good}\n{good}");
        let e = parse_catalogue(&text).unwrap_err();
        assert_eq!(
            e,
            CatalogueError::DuplicateId {
                line: 2,
                id: "a".into(),
                first_line: 1
            }
        );

        assert_eq!(
            parse_catalogue("\n# only a comment\n").unwrap_err(),
            CatalogueError::Empty
        );
    }

    #[test]
    fn missing_optional_fields_default() {
        let r = parse_catalogue(r#"{"id":"x","title":"X"}"#)
            .unwrap()
            .remove(0);
        assert_eq!(r.level, None);
        assert_eq!(r.logsource, Logsource::default());
        assert!(r.tags.is_empty());
        assert_eq!(r.suggested_rule_type(), "Other");
    }
}
