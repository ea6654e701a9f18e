//! Where published events go. Today one sink: [`clickhouse`].

pub mod clickhouse;
