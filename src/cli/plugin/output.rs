//! How the plugin prints: the `-o` choice, tables aligned the way kubectl aligns them, and times
//! relative to now in kubectl's own short form (`47m`, `3h12m`, `2d`). Pure functions.

use clap::ValueEnum;
use jiff::{SignedDuration, Timestamp};

/// What `kubectl get` prints for a value that is not there.
pub const NONE: &str = "<none>";

/// Spaces between table columns (kubectl's printer pads with three).
const GAP: usize = 3;

/// The output format of `-o/--output`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per object, columns aligned.
    #[default]
    Table,
    /// A JSON array of objects with the documented fields.
    Json,
}

/// A table: upper-case headers, then rows, columns separated by at least three spaces and the
/// last column not padded. Every line ends with a newline.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count()) + GAP;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `at` relative to `now`: the time left (`47m`) for a time to come, `3m ago` for a time past.
/// `<none>` when there is no time.
pub fn relative(at: Option<Timestamp>, now: Timestamp) -> String {
    let Some(at) = at else {
        return NONE.to_owned();
    };
    let d = at.duration_since(now);
    // Up to a second in the past still counts as now, as kubectl tolerates clock skew.
    if d >= SignedDuration::from_secs(-1) {
        human_duration(d.max(SignedDuration::ZERO))
    } else {
        format!("{} ago", human_duration(-d))
    }
}

/// A non-negative duration the way kubectl prints ages (apimachinery's `HumanDuration`): two
/// significant units at most, coarser as the duration grows.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs().max(0);
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_rest(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_rest(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_rest(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_rest(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

/// `3m` or `3m20s`: the smaller unit only when it is not zero.
fn with_rest(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    /// The figures of apimachinery's own HumanDuration tests.
    #[test]
    fn durations_read_like_kubectl_ages() {
        let cases = [
            (0, "0s"),
            (1, "1s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 30 * 60, "3h30m"),
            (8 * 3600 - 1, "7h59m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 59 * 60, "47h"),
            (48 * 3600, "2d"),
            (48 * 3600 + 3600, "2d1h"),
            (8 * 86400, "8d"),
            (2 * 365 * 86400 - 1, "729d"),
            (2 * 365 * 86400, "2y"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (8 * 365 * 86400, "8y"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(secs(s)), want, "{s}s");
        }
    }

    #[test]
    fn times_to_come_show_what_is_left_and_past_ones_say_ago() {
        let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        assert_eq!(relative(at("2026-03-01T12:47:00Z"), now), "47m");
        assert_eq!(relative(at("2026-03-01T11:57:00Z"), now), "3m ago");
        // A second of skew is still "now".
        assert_eq!(relative(at("2026-03-01T11:59:59Z"), now), "0s");
        assert_eq!(relative(None, now), "<none>");
    }

    #[test]
    fn tables_align_columns_with_three_spaces_and_leave_the_last_unpadded() {
        let rows = vec![
            vec!["a-long-name".to_owned(), "True".to_owned(), "x".to_owned()],
            vec!["b".to_owned(), "False".to_owned(), "yz".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "READY", "LAST"], &rows),
            "NAME          READY   LAST\n\
             a-long-name   True    x\n\
             b             False   yz\n"
        );
        assert_eq!(table(&["NAME"], &[]), "NAME\n");
    }
}
