//! Durations as people write them in a runbook: `500ms`, `30s`, `2m`, `1h30m`, `7d`.

use std::time::Duration;

/// Parse a duration such as `30s`, `2m`, `1h30m`; `None` when it is not one.
pub fn parse(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(Duration::from_millis(number.checked_mul(unit_ms)?))?;
    }
    Some(total)
}

/// Print a duration the short way people read it: `850ms`, `12.3s`, `4m05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", d.as_secs_f64()),
        60_000..=3_599_999 => format!("{}m{:02}s", secs / 60, secs % 60),
        3_600_000..=86_399_999 => trim_zero(format!("{}h{:02}m", secs / 3600, (secs / 60) % 60)),
        _ => trim_zero(format!("{}d{}h", secs / 86_400, (secs / 3600) % 24)),
    }
}

/// `7d0h` reads better as `7d`, `2h00m` as `2h`.
fn trim_zero(text: String) -> String {
    for zero in ["00m", "0h"] {
        if let Some(t) = text.strip_suffix(zero) {
            return t.to_string();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("7d"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
    }

    #[test]
    fn prints_the_way_people_read() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
        assert_eq!(human(Duration::from_secs(7200)), "2h");
        assert_eq!(human(Duration::from_secs(7 * 86400)), "7d");
        assert_eq!(human(Duration::from_secs(86400 + 3 * 3600)), "1d3h");
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "30", "s", "3x", "1.5s", "-1s", "m30"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parts_that_add_past_the_largest_duration_are_rejected_not_a_panic() {
        let huge = "18446744073709551615ms".repeat(1001);
        assert_eq!(parse(&huge), None);
    }
}
