//! What the fuzz targets share.

use std::sync::OnceLock;

use sluice::publish::process::Processor;

/// One processor with the default configuration, built once per fuzzing process.
pub fn processor() -> &'static Processor {
    static P: OnceLock<Processor> = OnceLock::new();
    P.get_or_init(|| {
        Processor::new(
            &sluice::config::Config::default().enrich,
            sluice::config::Config::default().process_limits(),
            sluice::instance::InstanceId::from_u64(0),
        )
        .expect("default config")
    })
}
