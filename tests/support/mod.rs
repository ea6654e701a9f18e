//! Shared test support for the sink tests.

pub mod clickhouse;
