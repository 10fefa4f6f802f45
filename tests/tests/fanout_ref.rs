//! The fan-out comparison of issue 12 (`tests::fanout`) at its quick size, so the benchmark's
//! code runs in CI: hostwatch (debug build here) and both reference broadcasters of
//! `bench/ref-broadcaster/` each deliver every event to every viewer. It asserts delivery, never
//! timings; the figures come from `cargo bench -p tests --bench collector -- fanout-ref`.

use tests::fanout::{Broadcaster, Sizes, compare, print_table};

#[test]
fn every_broadcaster_delivers_every_event_at_the_quick_size() {
    let sizes = Sizes::quick();
    let broadcasters = [
        Broadcaster::Hostwatch(tests::binary("hostwatch-collector")),
        Broadcaster::NodeWs,
        Broadcaster::PythonWebsockets,
    ];
    let reports = compare(&sizes, &broadcasters);
    print_table(&reports);
    assert_eq!(reports.len(), 3);
    for (name, report) in &reports {
        let report = report.as_ref().unwrap_or_else(|err| panic!("{name}: {err:#}"));
        // A step whose p99 passes 100 ms ends the run early (a busy machine); timings are the
        // benchmark's business, so only delivery is asserted, step by step.
        assert!(!report.steps.is_empty(), "{name}: no step ran");
        for step in &report.steps {
            assert!(step.sent > 0, "{name}: nothing sent at {}/s", step.rate);
            assert_eq!(step.viewers, sizes.viewers, "{name}: viewers at {}/s", step.rate);
            assert_eq!(
                step.delivered,
                step.sent * sizes.viewers as u64,
                "{name}: deliveries at {}/s",
                step.rate
            );
            assert!(step.cpu_seconds >= 0.0, "{name}: CPU at {}/s", step.rate);
        }
    }
}
