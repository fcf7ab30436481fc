//! RFC 3339 timestamps, the one time format the database and the API use (UTC, whole
//! seconds, `Z`), so that text order equals time order on both backends.

/// Now, as stored: `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    format_epoch(certbind_shared::clock::now_seconds())
}

/// Earliest and latest instants accepted: years 0000 to 9999, the range a four-digit year
/// can spell (X.509 GeneralizedTime has the same range).
const MIN_EPOCH: i64 = -62_167_219_200;
const MAX_EPOCH: i64 = 253_402_300_799;

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`, clamped to years 0000–9999.
pub fn format_epoch(epoch: i64) -> String {
    let epoch = epoch.clamp(MIN_EPOCH, MAX_EPOCH);
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Parses an RFC 3339 date-time (`2025-01-15T00:00:00Z`, `2025-01-15t00:00:00.5+02:00`) into
/// seconds since the epoch; fractions of a second are dropped.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter().try_fold(0i64, |acc, d| Some(acc * 10 + i64::from(d - b'0')))
    };
    let year = num(0..4)?;
    let month = num(5..7)?;
    let day = num(8..10)?;
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let second = num(17..19)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second; it is read as the last second of the minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let oh = i64::from(h1 - b'0') * 10 + i64::from(h2 - b'0');
            let om = i64::from(m1 - b'0') * 10 + i64::from(m2 - b'0');
            if oh > 23 || om > 59 {
                return None;
            }
            let magnitude = oh * 3600 + om * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let epoch = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset;
    (MIN_EPOCH..=MAX_EPOCH).contains(&epoch).then_some(epoch)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date. Counts in 400-year eras starting in
/// March, so the leap day is the last day of its "year" and needs no special case.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_round_trip() {
        // 2025-01-15T00:00:00Z, the seed's not_before.
        assert_eq!(parse_rfc3339("2025-01-15T00:00:00Z"), Some(1_736_899_200));
        assert_eq!(format_epoch(1_736_899_200), "2025-01-15T00:00:00Z");
        assert_eq!(format_epoch(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2000-02-29T23:59:59Z"), Some(951_868_799));
        assert_eq!(format_epoch(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(format_epoch(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn offsets_and_fractions_are_normalised() {
        assert_eq!(parse_rfc3339("2025-01-15T02:30:00.123+02:30"), Some(1_736_899_200));
        assert_eq!(parse_rfc3339("2025-01-14T19:00:00-05:00"), Some(1_736_899_200));
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "2025-01-15",
            "2025-01-15T00:00:00",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-01-15T24:00:00Z",
            "2025-01-15T00:00:00.Z",
            "2025-01-15T00:00:00+2:00",
            "2025/01/15T00:00:00Z",
            "+025-01-15T00:00:00Z",
            "2025-01-15T00:00:00Z; DROP TABLE orgs",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
