//! Values as the tables take them: NUL-free text of bounded length, NUL-free JSON.

/// Text for a `text` column: NUL (which PostgreSQL text cannot hold) replaced by U+FFFD.
pub(crate) fn text(value: &str) -> String {
    if value.contains('\0') {
        value.replace('\0', "\u{FFFD}")
    } else {
        value.to_owned()
    }
}

/// [`text`] of an optional value.
pub(crate) fn opt_text(value: Option<&str>) -> Option<String> {
    value.map(text)
}

/// [`text`], cut to at most `max` bytes at a character boundary: for indexed columns, whose
/// entries PostgreSQL limits in size. The full value stays in the record's JSON.
pub(crate) fn bounded(value: &str, max: usize) -> String {
    let mut cut = value.len().min(max);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    text(&value[..cut])
}

/// [`bounded`] of an optional value.
pub(crate) fn opt_bounded(value: Option<&str>, max: usize) -> Option<String> {
    value.map(|v| bounded(v, max))
}

/// A JSON value with NUL replaced in every string and key (`jsonb` refuses `\u0000`).
pub(crate) fn json(mut value: serde_json::Value) -> serde_json::Value {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) if s.contains('\0') => {
                *s = s.replace('\0', "\u{FFFD}");
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    let entries: Vec<_> = std::mem::take(map).into_iter().collect();
                    for (k, v) in entries {
                        map.insert(k.replace('\0', "\u{FFFD}"), v);
                    }
                }
                map.values_mut().for_each(walk);
            }
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_replaced_and_cuts_respect_characters() {
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
        assert_eq!(bounded("ééé", 3), "é");
        assert_eq!(bounded("abc", 10), "abc");
        let v = json(serde_json::json!({"k\u{0}": ["x\u{0}"]}));
        assert_eq!(v, serde_json::json!({"k\u{FFFD}": ["x\u{FFFD}"]}));
    }
}
