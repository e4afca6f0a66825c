//! Text from outside (ids a function asked for, answers from the platform and from AWS) on its
//! way into a log line: control characters escaped and the length capped, so no value can
//! forge a log line, split one, or flood the log. JSON logs escape on their own; text logs
//! (outside Lambda) and the init error the platform shows do not.

/// The longest piece of outside text a log line carries, in characters.
pub const MAX_CHARS: usize = 256;

/// `text` with control characters escaped (`\n`, `\u{0}`, …), cut at `MAX_CHARS` characters
/// (marked with `…`).
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_CHARS + 8));
    for (i, c) in text.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `escaped(text)` in double quotes, for quoting a value in a message.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", escaped(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_length_is_capped() {
        assert_eq!(escaped("Bad\nCode\0\u{1b}[31m"), "Bad\\nCode\\u{0}\\u{1b}[31m");
        assert_eq!(escaped("prod/db"), "prod/db");
        let long = escaped(&"é".repeat(1000));
        assert_eq!(long.chars().count(), MAX_CHARS + 1);
        assert!(long.ends_with('…'));
    }
}
