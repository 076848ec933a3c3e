//! The API's duration strings (`renewBefore`, `assumeRole.duration`): hours, minutes and seconds,
//! in that order, each optional, for example `15m`, `1h30m`, `90s`.
//!
//! The format is a subset of Go's `time.ParseDuration` (and of CEL's `duration()`), so the
//! server-side CEL rules and this parser agree on every string the schema pattern admits.

use std::time::Duration;

/// Parses an API duration string. `None` when it is not of the form `[<n>h][<n>m][<n>s]` with
/// at least one part.
pub fn parse(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: u64 = 0;
    // Units must appear in this order, each at most once.
    for (unit, seconds) in [('h', 3600u64), ('m', 60), ('s', 1)] {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || rest.as_bytes().get(digits) != Some(&(unit as u8)) {
            continue;
        }
        let value: u64 = rest.get(..digits)?.parse().ok()?;
        total = total.checked_add(value.checked_mul(seconds)?)?;
        rest = rest.get(digits + 1..)?;
    }
    rest.is_empty().then(|| Duration::from_secs(total))
}

/// Formats whole seconds the way the API writes durations: `1h30m`, `15m`, `45s`, `0s`.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_combinations() {
        assert_eq!(parse("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("1h0m5s"), Some(Duration::from_secs(3605)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "", "h", "15", "1m1h", "1.5h", "-1h", "1d", "15 m", "1h1h", "15M",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format(Duration::from_secs(900)), "15m");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(43200)), "12h");
        assert_eq!(format(Duration::from_secs(61)), "1m1s");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
