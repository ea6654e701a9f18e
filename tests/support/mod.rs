//! Shared test support for the sink tests.

pub mod clickhouse;

/// Panics when `CI=true` and the test-only override `name` is set: an override changes what a
/// test runs against, and a CI run must prove the same thing on every runner.
pub fn refuse_override_in_ci(name: &str) {
    if std::env::var("CI").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        panic!(
            "{name} is set but CI=true: CI runs every test against the ClickHouse server \
             scripts/test.sh installs; unset {name} (it is for local runs only)"
        );
    }
}
