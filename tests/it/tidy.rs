//! Architecture rules that code review would otherwise have to remember:
//! crate boundaries from ARCHITECTURE.md, and a `//!` header on every module.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The names of the `[dependencies]` of a crate's manifest (not dev-dependencies).
fn dependencies(crate_dir: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join(crate_dir).join("Cargo.toml")).expect("manifest");
    let mut in_dependencies = false;
    let mut names = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies && let Some((name, _)) = line.split_once(['=', '.']) {
            names.push(name.trim().to_owned());
        }
    }
    names
}

#[track_caller]
fn assert_no_dependency(crate_dir: &str, forbidden: &[&str]) {
    let found: Vec<String> = dependencies(crate_dir)
        .into_iter()
        .filter(|name| forbidden.iter().any(|f| name == f || name.starts_with(&format!("{f}-"))))
        .collect();
    assert!(found.is_empty(), "{crate_dir}/ must not depend on {found:?} (see ARCHITECTURE.md)");
}

#[test]
fn the_domain_depends_on_no_runtime_broker_database_or_http_crate() {
    assert!(!dependencies("domain").is_empty(), "the manifest parser found nothing");
    assert_no_dependency(
        "domain",
        &["tokio", "async-nats", "sqlx", "axum", "reqwest", "hyper", "aws-sdk", "aws-config", "gps-nats"],
    );
}

#[test]
fn crates_keep_to_their_side_of_the_architecture() {
    assert_no_dependency("nats", &["sqlx", "axum"]);
    assert_no_dependency("commands", &["sqlx", "axum"]);
    assert_no_dependency("projections", &["axum"]);
    assert_no_dependency("compute-agents", &["axum"]);
    assert_no_dependency("ui", &["sqlx", "async-nats", "gps-nats"]);
    // Storage is linked by every role (gateway, agents, exports): no framework,
    // database or broker rides along with it.
    assert_no_dependency("storage", &["axum", "sqlx", "async-nats", "gps-nats", "gps-commands"]);
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_module_comment() {
    let mut files = Vec::new();
    for dir in [
        "src",
        "domain/src",
        "nats/src",
        "commands/src",
        "projections/src",
        "compute-agents/src",
        "gateway/src",
        "ui/src",
        "schemas/src",
        "storage/src",
        "tests/it",
    ] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 10);
    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("read");
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.strip_prefix(root()).unwrap_or(path).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not start with a //! comment saying what they own: {missing:?}"
    );
}
