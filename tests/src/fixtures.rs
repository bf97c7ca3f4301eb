//! Fixture plugins built on demand by the tests: crates under `tests/fixtures/` that are their own
//! workspaces (so test-only plugin-api features and build-time versions never reach the real build).
//! They share one target folder, `<target>/fixtures`; builds are serialised in this process and each
//! result is copied under its own name before the next build can overwrite it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::paths::{target_dir, workspace_root};
use crate::process::{run_cmd, OutputExt};

/// How long one fixture build may take (the first one compiles abi_stable).
pub const FIXTURE_BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Builds `tests/fixtures/<crate_dir>` with `features` and `env`, and returns a copy of its library
/// `lib<lib_name>.so` named `copy_as` in `<target>/fixtures`.
pub fn build_fixture(
    crate_dir: &str,
    features: &[&str],
    env: &[(&str, &str)],
    lib_name: &str,
    copy_as: &str,
) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let target = target_dir().join("fixtures");
    let manifest = workspace_root()
        .join("tests/fixtures")
        .join(crate_dir)
        .join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_cmd(cmd, None, FIXTURE_BUILD_TIMEOUT).expect_success(&format!("build fixture {crate_dir}"));
    let built = target.join(format!("debug/lib{lib_name}.so"));
    let copy = target.join(copy_as);
    std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    copy
}

/// The `abi-changed` fixture built with one feature (`appended` or `major2`).
pub fn abi_fixture(feature: &str) -> PathBuf {
    build_fixture(
        "abi-changed",
        &[feature],
        &[],
        "fixture_abi_changed",
        &format!("libfixture_abi_{feature}.so"),
    )
}

/// The `versioned` fixture built as `version`.
pub fn versioned_fixture(version: &str) -> PathBuf {
    build_fixture(
        "versioned",
        &[],
        &[("PMMUX_FIXTURE_VERSION", version)],
        "fixture_versioned",
        &format!("libfixture_versioned_v{version}.so"),
    )
}

/// A plugin (protocol `old`) built against the frozen plugin-api 1.0.0, ABI revision 1: what every
/// plugin built before the appended methods looks like to this host.
pub fn api_1_0_fixture() -> PathBuf {
    build_fixture("api-1.0-plugin", &[], &[], "fixture_api_1_0", "libfixture_api_1_0.so")
}
