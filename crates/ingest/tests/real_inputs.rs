//! The parsers and the catalogue over the real shipped files in `data/`.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use casebridge_domain::Criticality;
use casebridge_ingest::{
    AlertFormat, DEFAULT_MAX_LINE_BYTES, DEFAULT_RULE_TYPES, LineOutcome, ParseError, ParsedAlert,
    parse_alerts, parse_catalogue, suggest_rule_type,
};

fn data(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn alerts(outcomes: &[LineOutcome]) -> Vec<&ParsedAlert> {
    outcomes.iter().filter_map(LineOutcome::alert).collect()
}

fn errors(outcomes: &[LineOutcome]) -> Vec<(usize, &str)> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            LineOutcome::Error { line, reason } => Some((*line, reason.as_str())),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- catalogue

#[test]
fn the_catalogue_parses_and_every_rule_gets_a_rule_type() {
    let text = String::from_utf8(data("sigma-rules.jsonl")).unwrap();
    let rules = parse_catalogue(&text).unwrap();
    assert_eq!(rules.len(), 3141);

    let mut levels: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rules {
        *levels
            .entry(r.level.map_or("none", Criticality::as_str))
            .or_default() += 1;
    }
    let want: BTreeMap<&str, usize> = [
        ("high", 1420),
        ("medium", 1352),
        ("low", 273),
        ("critical", 71),
        ("informational", 25),
    ]
    .into();
    assert_eq!(levels, want);

    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rules {
        let t = r.suggested_rule_type();
        assert!(DEFAULT_RULE_TYPES.contains(&t), "{t}");
        *types.entry(t).or_default() += 1;
    }
    println!("rule types over sigma-rules.jsonl: {types:?}");
    assert_eq!(types.values().sum::<usize>(), 3141);
    // Every default type is used by the real catalogue, Endpoint dominating (2,407 windows rules).
    for t in DEFAULT_RULE_TYPES {
        assert!(
            types.get(t).copied().unwrap_or(0) > 0,
            "no rule suggested as {t}: {types:?}"
        );
    }
    let pinned: BTreeMap<&str, usize> = [
        ("Endpoint", 2702),
        ("Network", 124),
        ("Cloud", 168),
        ("Identity", 122),
        ("Email", 11),
        ("Other", 14),
    ]
    .into();
    assert_eq!(
        types, pinned,
        "the derivation table changed: update docs/rule-types.md too"
    );

    let by_id = |id: &str| {
        rules
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    // Spot checks against rules of the real file.
    assert_eq!(
        by_id("195e1b9d-bfc2-4ffa-ab4e-35aef69815f8").suggested_rule_type(),
        "Cloud"
    ); // Bitbucket export
    let spot = |product: &str, category: Option<&str>, service: Option<&str>, want: &str| {
        let r = rules
            .iter()
            .find(|r| {
                r.logsource.product.as_deref() == Some(product)
                    && r.logsource.category.as_deref() == category
                    && r.logsource.service.as_deref() == service
            })
            .unwrap_or_else(|| panic!("no {product}/{category:?}/{service:?} rule"));
        assert_eq!(
            suggest_rule_type(&r.logsource, &r.tags),
            want,
            "{} {:?}",
            r.title,
            r.logsource
        );
    };
    spot("windows", Some("process_creation"), None, "Endpoint");
    spot("windows", Some("network_connection"), None, "Endpoint");
    spot("windows", None, Some("msexchange-management"), "Email");
    spot("linux", None, Some("auditd"), "Endpoint");
    spot("zeek", None, Some("dns"), "Network");
    spot("aws", None, Some("cloudtrail"), "Cloud");
    spot("azure", None, Some("signinlogs"), "Identity");
    spot("azure", None, Some("activitylogs"), "Cloud");
    spot("okta", None, Some("okta"), "Identity");
    spot("m365", None, Some("exchange"), "Email");
    spot("jvm", Some("application"), None, "Other");

    // The extra folders parse too, and none of their ids collides with the main file.
    let extra =
        parse_catalogue(&String::from_utf8(data("sigma-rules-extra.jsonl")).unwrap()).unwrap();
    assert_eq!(extra.len(), 616);
    let mut extra_types: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &extra {
        *extra_types.entry(r.suggested_rule_type()).or_default() += 1;
    }
    println!("rule types over sigma-rules-extra.jsonl: {extra_types:?}");
    let want: BTreeMap<&str, usize> = [
        ("Endpoint", 494),
        ("Network", 114),
        ("Email", 3),
        ("Identity", 3),
        ("Other", 2),
    ]
    .into();
    assert_eq!(extra_types, want);
    let main_ids: HashSet<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    assert!(extra.iter().all(|r| !main_ids.contains(r.id.as_str())));
}

// ---------------------------------------------------------------- Sigma regression records

#[test]
fn all_202_sigma_records_become_202_alerts() {
    let body = data("alerts/sigma-regression-alerts.jsonl");
    let out = parse_alerts(&body, None, false).unwrap();
    assert_eq!(out.len(), 202);
    assert!(errors(&out).is_empty(), "{:?}", errors(&out));
    let got = alerts(&out);
    assert_eq!(got.len(), 202);

    let ids: HashSet<&str> = got.iter().map(|a| a.source_id.as_str()).collect();
    assert_eq!(ids.len(), 202, "identities must be distinct");

    let mut levels: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &got {
        assert_eq!(a.format, AlertFormat::Sigma);
        assert_eq!(a.rule.adhoc_source, None, "a catalogue rule");
        assert_eq!(a.criticality, a.rule.level);
        assert!(
            a.source_id.starts_with("regression_data/"),
            "{}",
            a.source_id
        );
        assert!(a.observed_at.is_some(), "{}", a.source_id);
        assert!(
            a.description.contains("Positive Detection Test")
                || a.description.contains("regression test")
        );
        assert!(a.observables.len() <= casebridge_ingest::parse::MAX_OBSERVABLES);
        assert!(a.observables.iter().all(|o| o.value.chars().count() <= 256));
        *levels
            .entry(a.criticality.map_or("none", Criticality::as_str))
            .or_default() += 1;
    }
    let want: BTreeMap<&str, usize> =
        [("high", 103), ("medium", 85), ("low", 11), ("critical", 3)].into();
    assert_eq!(levels, want);

    // Each record's rule is in one of the catalogue files.
    let mut catalogue: HashSet<String> = HashSet::new();
    for f in ["sigma-rules.jsonl", "sigma-rules-extra.jsonl"] {
        catalogue.extend(
            parse_catalogue(&String::from_utf8(data(f)).unwrap())
                .unwrap()
                .into_iter()
                .map(|r| r.id),
        );
    }
    assert!(got.iter().all(|a| catalogue.contains(&a.rule.id)));

    // The first record: a React2Shell process-creation rule, with host and process observables.
    let first = got[0];
    assert_eq!(first.rule.id, "271de298-cc0e-4842-acd8-079a0a99ea65");
    assert_eq!(first.criticality, Some(Criticality::High));
    assert_eq!(
        first.rule.logsource.as_ref().unwrap().category.as_deref(),
        Some("process_creation")
    );
    assert!(
        first.observables.iter().any(|o| o.kind == "hostname"),
        "{:?}",
        first.observables
    );
    assert!(
        first.observables.iter().any(|o| o.kind == "process"),
        "{:?}",
        first.observables
    );
    // A record with several events is still one alert, and says how many events it holds.
    let multi = got
        .iter()
        .find(|a| a.raw["events"].as_array().unwrap().len() > 1)
        .expect("a multi-event record");
    let n = multi.raw["events"].as_array().unwrap().len();
    assert!(
        multi.description.contains(&format!("{n} events")),
        "{}",
        multi.description
    );
}

// ---------------------------------------------------------------- OCSF

#[test]
fn every_ocsf_sample_gives_alerts_or_a_skip_with_the_reason() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/alerts/ocsf");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".ocsf.json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 9);
    let mut total_alerts = 0;
    for p in &files {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let body = std::fs::read(p).unwrap();
        let out = parse_alerts(&body, None, false).unwrap();
        // Explicit format gives the same outcomes as detection.
        assert_eq!(
            parse_alerts(&body, Some(AlertFormat::Ocsf), false).unwrap(),
            out,
            "{name}"
        );
        if name.contains("vulnerability_finding") || name.contains("compliance_finding") {
            assert_eq!(out.len(), 1, "{name}");
            let LineOutcome::Skipped { line: 1, reason } = &out[0] else {
                panic!("{name}: {out:?}")
            };
            assert!(reason.contains("opens no case"), "{name}: {reason}");
            let class = if name.contains("vulnerability") {
                "2002"
            } else {
                "2003"
            };
            assert!(reason.contains(class), "{name}: {reason}");
            continue;
        }
        let got = alerts(&out);
        assert_eq!(got.len(), out.len(), "{name}: {out:?}");
        for (i, a) in got.iter().enumerate() {
            assert_eq!(out[i].line(), i + 1);
            assert_eq!(a.format, AlertFormat::Ocsf);
            assert_eq!(a.rule.adhoc_source, Some(AlertFormat::Ocsf));
            assert!(!a.title.is_empty() && !a.rule.id.is_empty(), "{name}");
            assert!(a.observed_at.is_some(), "{name}");
            let uid = a.raw.get("finding_info").or(a.raw.get("finding")).unwrap()["uid"]
                .as_str()
                .unwrap();
            assert_eq!(a.source_id, uid, "{name}");
        }
        total_alerts += got.len();
        if name.starts_with("ssc-malware-sinkhole") {
            assert_eq!(got.len(), 4);
            assert!(
                got.iter()
                    .all(|a| a.criticality == Some(Criticality::Informational))
            );
            assert_eq!(got[0].title, "Infection found on 198.51.100.11");
            assert!(
                got[0]
                    .observables
                    .iter()
                    .any(|o| o.kind == "ip" && o.value == "198.51.100.11")
            );
        } else {
            assert_eq!(got.len(), 1, "{name}");
        }
        if name.starts_with("okta-threat") {
            assert_eq!(
                got[0].criticality, None,
                "severity_id 0 leaves the criticality to the rule"
            );
            assert_eq!(got[0].title, "Login Failures");
            assert_eq!(got[0].rule.id, "Okta System Log: Login Failures");
            assert_eq!(
                got[0].observed_at.unwrap().unix_timestamp(),
                1_723_564_700,
                "time in seconds"
            );
        }
        if name.starts_with("guardduty") {
            assert_eq!(got[0].criticality, Some(Criticality::Low));
            assert_eq!(got[0].observed_at.unwrap().unix_timestamp(), 1_695_135_922);
            assert!(
                got[0]
                    .observables
                    .iter()
                    .any(|o| o.kind == "ip" && o.value == "52.94.133.131")
            );
        }
        if name.starts_with("prowler") {
            assert_eq!(got[0].criticality, Some(Criticality::High));
        }
        if name.starts_with("falco") {
            assert_eq!(got[0].criticality, Some(Criticality::Medium));
            assert_eq!(
                got[0].rule.id,
                "Falco: Linux Kernel Module Injection Detected"
            );
            // Falco's unfilled templates (value = name) are not observables; the hostname is.
            let kinds: Vec<&str> = got[0]
                .observables
                .iter()
                .map(|o| o.value.as_str())
                .collect();
            assert_eq!(kinds, vec!["host0.local"]);
        }
        if name.starts_with("qradar") {
            assert_eq!(got[0].criticality, None, "no severity_id");
            assert_eq!(
                got[0].title,
                "BLEEDING-EDGE DOS -ISC- ICMP blind TCP reset DoS guessing attempt"
            );
        }
    }
    assert_eq!(
        total_alerts, 10,
        "12 finding objects minus the 2 classes that open no case"
    );
}

// ---------------------------------------------------------------- Wazuh

#[test]
fn both_wazuh_alerts_parse() {
    let out = parse_alerts(&data("alerts/wazuh/wazuh4-alerts.jsonl"), None, false).unwrap();
    assert_eq!(out.len(), 2);
    let got = alerts(&out);
    assert_eq!(got.len(), 2);
    let (fim, ssh) = (got[0], got[1]);
    assert_eq!(fim.format, AlertFormat::Wazuh);
    assert_eq!(fim.rule.id, "wazuh:554");
    assert_eq!(fim.rule.adhoc_source, Some(AlertFormat::Wazuh));
    assert_eq!(fim.criticality, Some(Criticality::Low), "level 5");
    assert_eq!(fim.title, "File added to the system.");
    assert_eq!(fim.source_id, "1657551196.2754");
    assert_eq!(fim.observed_at.unwrap().unix_timestamp(), 1_658_328_796);
    assert!(
        fim.observables
            .iter()
            .any(|o| o.kind == "file" && o.value == "/test_folder/TEST_VALID_ALERT.txt")
    );

    assert_eq!(ssh.rule.id, "wazuh:5712");
    assert_eq!(ssh.criticality, Some(Criticality::High), "level 10");
    assert_eq!(ssh.rule.level, Some(Criticality::High));
    assert_eq!(ssh.rule.tags, vec!["attack.t1110".to_string()]);
    assert_eq!(ssh.source_id, "1652272159.1549653");
    for (kind, value) in [
        ("ip", "172.17.1.1"),
        ("user", "user4"),
        ("hostname", "localhost.localdomain"),
    ] {
        assert!(
            ssh.observables
                .iter()
                .any(|o| o.kind == kind && o.value == value),
            "{kind} {value}"
        );
    }
    assert_eq!(
        parse_alerts(
            &data("alerts/wazuh/wazuh4-alerts.jsonl"),
            Some(AlertFormat::Wazuh),
            true
        )
        .unwrap(),
        out
    );
}

#[test]
fn the_malformed_wazuh_file_reports_the_bad_lines_and_the_overlong_limit() {
    let body = data("alerts/wazuh/wazuh4-alerts-malformed.txt");
    let out = parse_alerts(&body, None, false).unwrap();
    // Comment headers on lines 1, 3, 5, 7 are skipped silently; 2 and 6 are invalid JSON; the
    // overlong templates on lines 4 and 8 are valid (and short) as shipped.
    let lines: Vec<usize> = out.iter().map(LineOutcome::line).collect();
    assert_eq!(lines, vec![2, 4, 6, 8]);
    let errs = errors(&out);
    assert_eq!(errs.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 6]);
    for (_, reason) in &errs {
        assert!(
            reason.contains("invalid JSON") && reason.contains("column"),
            "{reason}"
        );
    }
    assert_eq!(alerts(&out).len(), 2);

    // Pad the overlong templates past 64 KiB, as the Wazuh test meant.
    let text = String::from_utf8(body).unwrap();
    let padded: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == 4 || i + 1 == 8 {
                l.replacen(
                    "\"location\":",
                    &format!("\"padding\":\"{}\",\"location\":", "A".repeat(70 * 1024)),
                    1,
                )
            } else {
                l.to_string()
            }
        })
        .collect();
    let padded = padded.join("\n");
    let out = parse_alerts(padded.as_bytes(), None, true).unwrap();
    let errs = errors(&out);
    assert_eq!(
        errs.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![2, 4, 6, 8]
    );
    for line in [4, 8] {
        let reason = errs.iter().find(|e| e.0 == line).unwrap().1;
        assert!(
            reason.contains(&format!("limit of {DEFAULT_MAX_LINE_BYTES} bytes")),
            "{reason}"
        );
        assert!(reason.contains("64 KiB"), "{reason}");
    }
    assert!(alerts(&out).is_empty());
}

// ---------------------------------------------------------------- mixed batches and identity

#[test]
fn a_mixed_ndjson_batch_with_a_broken_line_keeps_the_others() {
    let wazuh = String::from_utf8(data("alerts/wazuh/wazuh4-alerts.jsonl")).unwrap();
    let sigma = String::from_utf8(data("alerts/sigma-regression-alerts.jsonl")).unwrap();
    let okta: serde_json::Value =
        serde_json::from_slice(&data("alerts/ocsf/okta-threat.detection_finding.ocsf.json"))
            .unwrap();
    let plain =
        r#"{"rule_id":"custom-1","title":"Manual alert","criticality":"medium","account":"acc_2"}"#;
    let body = [
        wazuh.lines().next().unwrap().to_string(),
        sigma.lines().next().unwrap().to_string(),
        String::new(),
        r#"{"rule_id": "x", "title": oops}"#.to_string(),
        "# a comment".to_string(),
        serde_json::to_string(&okta).unwrap(),
        plain.to_string(),
        r#"{"something": "else"}"#.to_string(),
    ]
    .join("\n");
    for ndjson in [true, false] {
        let out = parse_alerts(body.as_bytes(), None, ndjson).unwrap();
        let lines: Vec<(usize, &str)> = out
            .iter()
            .map(|o| {
                (
                    o.line(),
                    match o {
                        LineOutcome::Alert { alert, .. } => alert.format.as_str(),
                        LineOutcome::Skipped { .. } => "skipped",
                        LineOutcome::Error { .. } => "error",
                    },
                )
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                (1, "wazuh"),
                (2, "sigma"),
                (4, "error"),
                (6, "ocsf"),
                (7, "json"),
                (8, "error")
            ]
        );
        let errs = errors(&out);
        assert!(
            errs[0]
                .1
                .contains("invalid JSON: expected value at line 1 column"),
            "{}",
            errs[0].1
        );
        assert!(
            errs[1].1.contains("cannot tell the alert format")
                && errs[1].1.contains("ocsf (class_uid"),
            "{}",
            errs[1].1
        );
        assert_eq!(out[4].alert().unwrap().account.as_deref(), Some("acc_2"));
    }
}

#[test]
fn identities_are_stable_and_key_order_does_not_matter() {
    let body = data("alerts/sigma-regression-alerts.jsonl");
    let a = parse_alerts(&body, None, false).unwrap();
    let b = parse_alerts(&body, None, true).unwrap();
    let ids = |o: &[LineOutcome]| {
        alerts(o)
            .iter()
            .map(|a| a.source_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));

    // Without an id of its own, the identity is the canonical hash: stable across key order and
    // whitespace, different for different content.
    let one = br#"{"rule_id":"r","title":"t","criticality":"high","observables":[{"kind":"ip","value":"10.0.0.1"}],"x":{"b":1,"a":[1,2]}}"#;
    let two = b"{ \"x\": {\"a\": [1, 2], \"b\": 1},\n \"observables\": [{\"value\": \"10.0.0.1\", \"kind\": \"ip\"}],\n \"criticality\": \"high\", \"title\": \"t\", \"rule_id\": \"r\" }";
    let id = |body: &[u8]| {
        parse_alerts(body, None, false).unwrap()[0]
            .alert()
            .unwrap()
            .source_id
            .clone()
    };
    assert_eq!(id(one), id(one));
    assert_eq!(id(one), id(two));
    assert_eq!(id(one).len(), 64);
    assert_ne!(
        id(one),
        id(br#"{"rule_id":"r","title":"t","criticality":"high"}"#)
    );

    // OCSF and Wazuh use their own ids; the same alert twice has the same identity.
    let okta = data("alerts/ocsf/okta-threat.detection_finding.ocsf.json");
    assert_eq!(id(&okta), "dc9fd3c0-598c-11ef-8478-2b7584bf8d5a");
    assert_eq!(id(&okta), id(&okta));
}

// ---------------------------------------------------------------- whole-body problems and explicit formats

#[test]
fn whole_body_problems_are_parse_errors() {
    assert_eq!(
        parse_alerts(b"", None, false).unwrap_err(),
        ParseError::Empty
    );
    assert_eq!(
        parse_alerts(b"  \n\n# only comments\n", None, true).unwrap_err(),
        ParseError::Empty
    );
    assert_eq!(
        parse_alerts(b"[]", None, false).unwrap_err(),
        ParseError::Empty
    );
    assert_eq!(
        parse_alerts(b"42", None, false).unwrap_err(),
        ParseError::NotAnAlert { found: "number" }
    );
    // A pretty-printed document with a syntax error is one bad body, not a line per fragment.
    let e = parse_alerts(
        b"{\n  \"class_uid\": 2004,\n  \"finding_info\": \n}\n",
        None,
        false,
    )
    .unwrap_err();
    assert!(matches!(e, ParseError::NotJson { line: 4, .. }), "{e:?}");
    assert!(e.to_string().contains("not JSON"), "{e}");
    let e = parse_alerts(b"hello", None, false).unwrap_err();
    assert!(matches!(e, ParseError::NotJson { .. }), "{e:?}");
    let e = "xml".parse::<AlertFormat>().unwrap_err();
    assert!(
        e.to_string().contains("accepted: ocsf, wazuh, sigma, json"),
        "{e}"
    );
    // The same broken text sent as NDJSON is a per-line error instead.
    let out = parse_alerts(b"hello", None, true).unwrap();
    assert!(matches!(&out[0], LineOutcome::Error { line: 1, .. }));
}

#[test]
fn an_explicit_format_that_does_not_fit_names_the_missing_fields() {
    let wazuh = data("alerts/wazuh/wazuh4-alerts.jsonl");
    let out = parse_alerts(&wazuh, Some(AlertFormat::Ocsf), false).unwrap();
    let errs = errors(&out);
    assert_eq!(errs.len(), 2);
    assert!(
        errs[0]
            .1
            .contains("not a ocsf alert: missing class_uid, finding_info|finding"),
        "{}",
        errs[0].1
    );

    let out = parse_alerts(&wazuh, Some(AlertFormat::Sigma), false).unwrap();
    assert!(
        errors(&out)[0].1.contains("missing events, source_path"),
        "{:?}",
        errors(&out)
    );

    let out = parse_alerts(&wazuh, Some(AlertFormat::Json), false).unwrap();
    let reason = errors(&out)[0].1;
    for f in [
        "`rule_id` is required",
        "`title` is required",
        "`criticality` is required",
    ] {
        assert!(reason.contains(f), "{reason}");
    }

    let okta = data("alerts/ocsf/okta-threat.detection_finding.ocsf.json");
    let out = parse_alerts(&okta, Some(AlertFormat::Wazuh), false).unwrap();
    assert!(
        errors(&out)[0]
            .1
            .contains("missing rule.id, rule.level, agent|manager|decoder"),
        "{:?}",
        errors(&out)
    );

    // An OCSF event of a non-finding class is skipped, not an error, when OCSF is asked for.
    let out = parse_alerts(
        br#"{"class_uid": 3002, "class_name": "Authentication"}"#,
        Some(AlertFormat::Ocsf),
        false,
    )
    .unwrap();
    assert!(
        matches!(&out[0], LineOutcome::Skipped { reason, .. } if reason.contains("3002 (Authentication)"))
    );
}
