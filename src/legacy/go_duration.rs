//! Go's `time.ParseDuration`, which the legacy helper used for `expiring-threshold`
//! (`15m`, `1h`, `1h30m`, `90s`, `0.5h`, `1500ms`, ...).

/// Parses a Go duration string into nanoseconds. Negative durations are refused (no legacy
/// value can be negative). The error says what is wrong, like Go's does.
pub fn parse(s: &str) -> Result<u128, String> {
    let orig = s;
    let mut s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("negative duration {orig:?}"));
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(format!("invalid duration {orig:?}"));
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        let (frac_part, rest) = match rest.strip_prefix('.') {
            Some(r) => {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                r.split_at(n)
            }
            None => ("", rest),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!("invalid duration {orig:?}"));
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let (unit, rest) = rest.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {orig:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {orig:?}")),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| format!("invalid duration {orig:?}"))?
        };
        let mut value = whole
            .checked_mul(scale)
            .ok_or_else(|| format!("invalid duration {orig:?}"))?;
        // Fractions: accumulate digit by digit, as Go does, truncating below a nanosecond.
        let mut frac_scale = scale;
        for d in frac_part.bytes() {
            frac_scale /= 10;
            value += u128::from(d - b'0') * frac_scale;
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| format!("invalid duration {orig:?}"))?;
        // Go caps durations at ~292 years (int64 nanoseconds).
        if total > i64::MAX as u128 {
            return Err(format!("invalid duration {orig:?}"));
        }
        s = rest;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const S: u128 = 1_000_000_000;

    #[test]
    fn parses_what_go_parses() {
        assert_eq!(parse("15m"), Ok(900 * S));
        assert_eq!(parse("1h"), Ok(3600 * S));
        assert_eq!(parse("1h30m"), Ok(5400 * S));
        assert_eq!(parse("15m0s"), Ok(900 * S));
        assert_eq!(parse("0.5h"), Ok(1800 * S));
        assert_eq!(parse("1.5m"), Ok(90 * S));
        assert_eq!(parse("1500ms"), Ok(1500 * 1_000_000));
        assert_eq!(parse("+10s"), Ok(10 * S));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("2us"), Ok(2000));
        assert_eq!(parse("1m1h"), Ok(3660 * S));
    }

    #[test]
    fn refuses_what_go_refuses_and_negatives() {
        for bad in ["", "15", "m", "1x", "-1m", "1 m", ".m", "15min"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse("15").unwrap_err().contains("missing unit"));
    }
}
