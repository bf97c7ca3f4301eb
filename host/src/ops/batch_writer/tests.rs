use std::sync::mpsc;

use super::*;

/// Records each write; optionally blocks every write until the test lets it go.
#[derive(Clone, Default)]
struct Recorder {
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
    reopens: Arc<Mutex<u32>>,
    gate: Option<Arc<Mutex<mpsc::Receiver<()>>>>,
}

impl Sink for Recorder {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(gate) = &self.gate {
            let _ = gate.lock().unwrap().recv();
        }
        self.writes.lock().unwrap().push(bytes.to_vec());
        Ok(())
    }
    fn reopen(&mut self) -> io::Result<()> {
        *self.reopens.lock().unwrap() += 1;
        Ok(())
    }
    fn describe(&self) -> String {
        "the recorder".into()
    }
}

fn joined(r: &Recorder) -> Vec<u8> {
    r.writes.lock().unwrap().concat()
}

#[test]
fn a_burst_of_lines_is_written_in_order_in_few_writes() {
    let rec = Recorder::default();
    let writer = BatchWriter::<Vec<u8>>::start("t-burst", rec.clone()).unwrap();
    let handle = writer.handle();
    let mut expected = Vec::new();
    for i in 0..10_000 {
        let line = format!("line {i}\n");
        assert!(handle.push(line.as_bytes(), false));
        expected.extend_from_slice(line.as_bytes());
    }
    writer.finish(Duration::from_secs(10));
    assert_eq!(joined(&rec), expected);
    let writes = rec.writes.lock().unwrap().len();
    // One write per line would be 10,000; a batch holds up to HIGH_WATER bytes or FLUSH_DELAY.
    assert!(writes < 1_000, "{writes} writes for 10,000 lines");
}

#[test]
fn a_stuck_destination_never_blocks_callers_and_drops_are_counted() {
    let (open, gate) = mpsc::channel();
    let rec = Recorder {
        gate: Some(Arc::new(Mutex::new(gate))),
        ..Recorder::default()
    };
    let writer = BatchWriter::<Vec<u8>>::start("t-stuck", rec.clone()).unwrap();
    let handle = writer.handle();
    let line = [b'x'; 1023];
    let mut refused = 0;
    let started = Instant::now();
    // 12 MiB into a writer that holds 4 MiB while its destination takes nothing. The thread may
    // have taken up to MAX_PENDING as the batch it is stuck writing (how much depends on when it
    // woke), so at most 8 MiB gets in, whatever the timing.
    for _ in 0..12 * 1024 {
        if !handle.push(&line, false) {
            refused += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5), "pushing blocked");
    // What the thread took before its write blocked (≤ MAX_PENDING), plus MAX_PENDING, got in;
    // the rest did not: at least 12 MiB − 8 MiB.
    assert!(refused >= 4 * 1024 - 16, "only {refused} refused");
    for _ in 0..100 {
        let _ = open.send(());
    }
    drop(open);
    writer.finish(Duration::from_secs(10));
    let text = String::from_utf8(joined(&rec)).unwrap();
    // Drops are reported as the writer gets to it: in one notice, or in several when some came
    // while it was writing the first; together they count every refused record.
    let noticed: usize = text
        .split(" log record(s) dropped")
        .filter_map(|before| {
            before
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert_eq!(
        noticed,
        refused,
        "drop notices count {noticed}, {refused} were refused: {}",
        &text[text.len().saturating_sub(200)..]
    );
}

#[test]
fn reopen_is_passed_to_the_destination_after_what_waits_is_written() {
    let rec = Recorder::default();
    let writer = BatchWriter::<Vec<u8>>::start("t-reopen", rec.clone()).unwrap();
    let handle = writer.handle();
    handle.push(b"before\n", false);
    handle.reopen();
    let deadline = Instant::now() + Duration::from_secs(10);
    while *rec.reopens.lock().unwrap() == 0 {
        assert!(Instant::now() < deadline, "no reopen");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(joined(&rec), b"before\n");
    handle.push(b"after\n", true);
    writer.finish(Duration::from_secs(10));
    assert_eq!(joined(&rec), b"before\nafter\n");
}
