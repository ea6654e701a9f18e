//! What the `process` bench's inputs produce (decoded, enriched, encoded as RowBinary for the
//! 18.16 table) is pinned by a digest, so an edit meant to leave the output alone is checked in
//! every test run, not only when someone runs the bench.

#[path = "../benches/support/process_inputs.rs"]
#[allow(dead_code)]
mod inputs;

#[test]
fn the_bench_inputs_produce_the_pinned_output() {
    let (events, failures) = inputs::run(&inputs::processor(), &inputs::tp2_envelope(100));
    assert_eq!((events.len(), failures.len()), (100, 0), "{failures:?}");
    assert_eq!(inputs::output_digest(), inputs::OUTPUT_DIGEST);
}
