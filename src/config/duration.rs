//! Duration strings shared by the environment (`CACHE_EXTENSION_TTL`, `SECRETS_CACHE_MAX_STALE`)
//! and the config file (`ttl: 5m`): Go-style `1h30m`, `250ms`, or a bare number of seconds.

use std::time::Duration;

use crate::escape::quoted;

/// Parses `90`, `90s`, `1m30s`, `250ms`, `2h`, `1d`. Whitespace is not allowed inside.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {}: expected a number before {}",
                quoted(text),
                quoted(rest)
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {}: number too large", quoted(text)))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "d" => Duration::from_secs(value.saturating_mul(86_400)),
            "" => {
                return Err(format!(
                    "invalid duration {}: missing unit after {value} (use ms, s, m, h or d)",
                    quoted(text)
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration {}: unknown unit {} (use ms, s, m, h or d)",
                    quoted(text),
                    quoted(other)
                ));
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// Renders a duration the way `parse` reads it, for `check` output.
pub fn display(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_style_and_bare_seconds() {
        assert_eq!(parse("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86_400));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("5x").unwrap_err().contains("unknown unit \"x\""));
        assert!(parse("m5").unwrap_err().contains("expected a number"));
        assert!(parse("5m3").unwrap_err().contains("missing unit"));
        assert!(parse("-5s").is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "30s", "5m", "2h", "1d", "1500ms"] {
            assert_eq!(display(parse(text).unwrap()), text);
        }
    }
}
