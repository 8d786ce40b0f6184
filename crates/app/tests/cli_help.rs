//! `--help` everywhere (DESIGN §6): the binary and each subcommand exit 0 and describe their
//! options.

mod common;

use common::run;

fn help(args: &[&str]) -> String {
    let mut full = args.to_vec();
    full.push("--help");
    let out = run(&full);
    assert!(
        out.status.success(),
        "casebridge {full:?} exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 help")
}

fn assert_mentions(text: &str, what: &[&str], of: &str) {
    for w in what {
        assert!(
            text.contains(w),
            "`casebridge {of} --help` does not mention {w:?}:\n{text}"
        );
    }
}

#[test]
fn the_top_level_help_lists_every_command_and_the_global_options() {
    let h = help(&[]);
    assert_mentions(
        &h,
        &[
            "serve",
            "demo",
            "migrate",
            "ingest",
            "account",
            "token",
            "--data-dir",
            "--database-url",
            "--config",
            "CASEBRIDGE_",
        ],
        "",
    );
}

#[test]
fn serve_help_describes_bind_public_url_and_role() {
    let h = help(&["serve"]);
    assert_mentions(&h, &["--bind", "--public-url", "--role", "worker"], "serve");
}

#[test]
fn demo_help_describes_its_ports_and_the_data_dir() {
    let h = help(&["demo"]);
    assert_mentions(
        &h,
        &["--port", "--sim-port", "--data-dir", "demo.json"],
        "demo",
    );
}

#[test]
fn migrate_help_describes_the_database_url() {
    let h = help(&["migrate"]);
    assert_mentions(&h, &["--database-url", "--data-dir"], "migrate");
}

#[test]
fn ingest_help_describes_the_file_account_and_format() {
    let h = help(&["ingest"]);
    assert_mentions(&h, &["FILE", "--account", "--format"], "ingest");
}

#[test]
fn token_create_help_describes_account_and_role() {
    let h = help(&["token", "create"]);
    assert_mentions(
        &h,
        &["--account", "--role", "admin", "analyst", "viewer"],
        "token create",
    );
}

#[test]
fn account_create_help_describes_name_kind_and_parent() {
    let h = help(&["account", "create"]);
    assert_mentions(
        &h,
        &["--name", "--kind", "--parent", "partner", "subtenant"],
        "account create",
    );
}

#[test]
fn an_unknown_subcommand_fails_with_a_usage_error() {
    let out = run(&["no-such-command"]);
    assert!(!out.status.success(), "an unknown subcommand succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-command"),
        "the error does not name the bad subcommand: {err}"
    );
}
