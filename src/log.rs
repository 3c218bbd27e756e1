//! The daemon's log lines: `2026-11-24T09:59:01Z LEVEL message` on standard error, which is the
//! log file when the daemon runs detached.

use std::io::Write;

use crate::os;

/// Informational.
pub fn info(message: &str) {
    line("INFO", message);
}

/// Something was wrong but the daemon carries on.
pub fn warn(message: &str) {
    line("WARN", message);
}

/// An operation failed.
pub fn error(message: &str) {
    line("ERROR", message);
}

fn line(level: &str, message: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{} {level} {message}", timestamp(os::unix_now()));
}

/// RFC 3339 UTC time of `unix` seconds.
pub fn timestamp(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::timestamp(1_795_515_541), "2026-11-24T10:19:01Z");
    }
}
