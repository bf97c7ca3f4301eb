use std::sync::Arc;
use std::time::Duration;

use super::render::escape;
use super::*;
use crate::routing::router::Decision;
use crate::tcp::error::Blame;

#[test]
fn histogram_buckets_are_cumulative_and_end_with_the_count() {
    let h = Histogram::default();
    for us in [50, 200, 200, 3_000, 2_000_000] {
        h.observe(Duration::from_micros(us));
    }
    h.observe(Duration::from_secs(60));
    let (buckets, sum, count) = h.snapshot();
    assert_eq!(buckets.len(), DETECTION_BUCKETS.len() + 1);
    assert_eq!(count, 6);
    assert_eq!(*buckets.last().unwrap(), 6, "+Inf holds everything");
    assert_eq!(buckets[0], 1, "50 µs <= 100 µs");
    assert_eq!(buckets[1], 3, "200 µs <= 250 µs, cumulative");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    let five_s = DETECTION_BUCKETS.iter().position(|&b| b == 5.0).unwrap();
    assert_eq!(buckets[five_s], 5, "60 s is only in +Inf");
    assert!((sum - 62.00345).abs() < 1e-6, "sum {sum}");
}

#[test]
fn a_bucket_bound_is_inclusive() {
    let h = Histogram::default();
    h.observe(Duration::from_millis(1));
    let (buckets, _, _) = h.snapshot();
    let one_ms = DETECTION_BUCKETS.iter().position(|&b| b == 0.001).unwrap();
    assert_eq!(buckets[one_ms], 1);
    assert_eq!(buckets[one_ms - 1], 0);
}

#[test]
fn by_name_makes_counters_once_and_shares_them() {
    let m: ByName<Outcomes> = ByName::default();
    m.get("ssh").add(ConnOutcome::Closed);
    m.get("ssh").add(ConnOutcome::Closed);
    m.get("web").add(ConnOutcome::UpstreamError);
    let all = m.sorted();
    assert_eq!(all.len(), 2);
    assert_eq!(&*all[0].0, "ssh");
    assert_eq!(all[0].1.get(ConnOutcome::Closed), 2);
    assert_eq!(all[1].1.get(ConnOutcome::UpstreamError), 1);
    assert_eq!(all[1].1.get(ConnOutcome::Closed), 0);
}

#[test]
fn by_name_is_consistent_under_concurrent_first_use() {
    let m: Arc<ByName<Outcomes>> = Arc::default();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for i in 0..1000 {
                    m.get(&format!("b{}", i % 8)).add(ConnOutcome::Closed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = m.sorted();
    assert_eq!(all.len(), 8);
    let total: u64 = all.iter().map(|(_, o)| o.get(ConnOutcome::Closed)).sum();
    assert_eq!(total, 4000, "no increment lost to a racing insert");
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    assert_eq!(escape("x\ny"), "x\\ny");
    assert_eq!(escape("plain-name_1.2"), "plain-name_1.2");
}

#[test]
fn preview_ends_are_counted_by_outcome() {
    let l = ListenerMetrics::new(Arc::default());
    let ms = Duration::from_millis(2);
    l.previewed(&Ok(Preview::Routed(Decision::NoMatch)), ms, false);
    l.previewed(&Ok(Preview::Silent), ms, false);
    l.previewed(&Ok(Preview::Silent), ms, true);
    l.previewed(&Ok(Preview::Closed), ms, false);
    l.previewed(
        &Ok(Preview::Routed(Decision::Route {
            index: 0,
            properties: Default::default(),
        })),
        ms,
        false,
    );
    let none = l.outcomes.get("");
    assert_eq!(none.get(ConnOutcome::NoMatch), 1);
    assert_eq!(
        none.get(ConnOutcome::Timeout),
        1,
        "a silent client with on_timeout is routed"
    );
    assert_eq!(none.get(ConnOutcome::Aborted), 1);
    assert_eq!(l.global.preview_timeouts.load(Ordering::Relaxed), 2);
    assert_eq!(l.global.detection.snapshot().2, 2, "decisions only");
    l.finished(
        "web",
        Ok(&Transferred {
            up: 10,
            down: 20,
            cut: None,
        }),
    );
    l.finished("web", Err(Blame::Client));
    l.finished("web", Err(Blame::Plugin));
    let web = l.outcomes.get("web");
    assert_eq!(web.get(ConnOutcome::Closed), 1);
    assert_eq!(web.get(ConnOutcome::ClientError), 1);
    assert_eq!(web.get(ConnOutcome::PluginError), 1);
    assert_eq!(web.get(ConnOutcome::UpstreamError), 0);
    let bytes = l.global.bytes.get("web");
    assert_eq!(
        (bytes.up.load(Ordering::Relaxed), bytes.down.load(Ordering::Relaxed)),
        (10, 20)
    );
}
