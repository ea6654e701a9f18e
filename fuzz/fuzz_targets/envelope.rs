//! The envelope decoder: arbitrary WAL record bytes decode or fail cleanly; decoded envelopes
//! re-encode to something that decodes to the same envelope, and go through the processor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::envelope::Envelope;
use sluice_fuzz::processor;

fuzz_target!(|data: &[u8]| {
    match Envelope::decode(data) {
        Ok(env) => {
            let again = Envelope::decode(&env.encode()).expect("re-encoded envelope decodes");
            assert_eq!(again, env);
            let (mut events, mut failures) = (Vec::new(), Vec::new());
            processor().process(&env, 0, sluice_wal::Lsn(1), &mut events, &mut failures);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
