//! The progress line of finite runs, shown on standard error when it is a terminal.

use std::time::Duration;

use crate::topology::Summary;

/// Formats one progress line: the rate since the previous line, the totals by outcome, and the bytes
/// read of the total when the input size is known.
pub fn format_progress(current: &Summary, previous: &Summary, elapsed: Duration, bytes: (u64, Option<u64>)) -> String {
    let seconds = elapsed.as_secs_f64().max(0.001);
    let rate = (current.received.saturating_sub(previous.received)) as f64 / seconds;
    let mut line = format!(
        "{rate:.0} events/s | received {} sent {} dead-lettered {} skipped {}",
        current.received, current.sent, current.dead_lettered, current.skipped
    );
    match bytes {
        (read, Some(total)) if total > 0 => {
            let percent = read as f64 * 100.0 / total as f64;
            line.push_str(&format!(" | read {} of {} ({percent:.0}%)", human_bytes(read), human_bytes(total)));
        }
        (read, _) if read > 0 => line.push_str(&format!(" | read {}", human_bytes(read))),
        _ => {}
    }
    line
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(received: u64, sent: u64) -> Summary {
        Summary { received, sent, dead_lettered: 2, skipped: 1, undelivered: 0 }
    }

    #[test]
    fn line_with_known_total() {
        let line = format_progress(
            &summary(3000, 2500),
            &summary(1000, 900),
            Duration::from_secs(2),
            (512 * 1024, Some(1024 * 1024)),
        );
        assert_eq!(
            line,
            "1000 events/s | received 3000 sent 2500 dead-lettered 2 skipped 1 | read 512.0 KiB of 1.0 MiB (50%)"
        );
    }

    #[test]
    fn line_without_total() {
        let line = format_progress(&summary(10, 10), &summary(0, 0), Duration::from_secs(1), (2048, None));
        assert_eq!(line, "10 events/s | received 10 sent 10 dead-lettered 2 skipped 1 | read 2.0 KiB");
    }
}
