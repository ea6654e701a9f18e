//! Field mappings: what each protocol's stored request becomes as rows.
//!
//! One module per protocol, each documenting its mapping table; they share the steps of
//! [`crate::publish::enrich`] and are picked by [`crate::publish::process::Processor`].

pub mod collect;
pub mod pycolytics;
pub mod segment;
pub mod snowplow;
