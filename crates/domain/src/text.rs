//! Text limits counted the way ConnectWise counts them: UTF-16 code units.

/// Length of `s` in UTF-16 code units (what ConnectWise's `maxLength` counts).
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Cuts `s` to at most `max` UTF-16 code units, on a character boundary (a surrogate pair is
/// never split). When it has to cut and there is room, it ends with `…` so readers see the cut.
pub fn truncate_utf16(s: &str, max: usize) -> String {
    if utf16_len(s) <= max {
        return s.to_string();
    }
    let ellipsis = '…';
    let budget = max.saturating_sub(ellipsis.len_utf16());
    let mut used = 0;
    let mut out = String::new();
    for ch in s.chars() {
        let w = ch.len_utf16();
        if used + w > budget {
            break;
        }
        used += w;
        out.push(ch);
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if max >= ellipsis.len_utf16() {
        out.push(ellipsis);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_text_is_left_alone() {
        assert_eq!(
            truncate_utf16("Mimikatz on HOST-1", 100),
            "Mimikatz on HOST-1"
        );
    }

    #[test]
    fn long_text_is_cut_to_exactly_the_limit_with_an_ellipsis() {
        let s = "x".repeat(150);
        let t = truncate_utf16(&s, 100);
        assert_eq!(utf16_len(&t), 100);
        assert!(t.ends_with('…'));
    }

    #[test]
    fn a_surrogate_pair_is_never_split() {
        // 99 ASCII + one emoji (2 code units) = 101 units: the emoji must go whole.
        let s = format!("{}😀", "a".repeat(99));
        let t = truncate_utf16(&s, 100);
        assert!(utf16_len(&t) <= 100);
        assert!(!t.contains('😀'));
        assert!(t.starts_with(&"a".repeat(90)));
    }

    proptest! {
        #[test]
        fn truncation_never_exceeds_the_limit_and_is_a_prefix(s in "\\PC{0,300}", max in 1usize..120) {
            let t = truncate_utf16(&s, max);
            prop_assert!(utf16_len(&t) <= max);
            let body = t.strip_suffix('…').unwrap_or(&t);
            prop_assert!(s.starts_with(body));
        }
    }
}
