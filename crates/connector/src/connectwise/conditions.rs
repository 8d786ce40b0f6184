//! Building ConnectWise `conditions` and query strings (API.md §3).
//!
//! Strings go in double quotes; a literal `[` inside a string is written `[[]`; datetimes go in
//! square brackets; every query value is percent-encoded (RFC 3986 unreserved characters
//! only), so `&`, `+`, `"`, `'`, `*`, `%`, `#` and spaces reach ConnectWise intact.

use time::OffsetDateTime;

/// A string literal for a condition: `"value"` with `[` → `[[]`. A `"` or `\` inside the
/// value has no documented escape in ConnectWise (API.md §3, UNVERIFIED); they are
/// backslash-escaped here, and callers that must match exactly avoid such literals (see
/// [`safe_literal_fragment`]).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '[' => out.push_str("[[]"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether [`quote`] can express `value` without relying on undocumented escapes.
pub fn is_plain_literal(value: &str) -> bool {
    !value.contains(['"', '\\'])
}

/// The longest part of `value` that contains neither `"` nor `\` — usable with `contains` and
/// followed by exact client-side filtering.
pub fn safe_literal_fragment(value: &str) -> &str {
    value
        .split(['"', '\\'])
        .max_by_key(|s| s.len())
        .unwrap_or("")
}

/// A datetime literal: `[2024-01-02T03:04:05Z]` (UTC, whole seconds).
pub fn datetime(t: OffsetDateTime) -> String {
    format!("[{}]", super::wire::format_time(t))
}

/// Percent-encodes a query component, leaving only RFC 3986 unreserved characters.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => {
                out.push('%');
                out.push(char::from(HEX[(b >> 4) as usize]));
                out.push(char::from(HEX[(b & 0xf) as usize]));
            }
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `k1=v1&k2=v2` with every key and value percent-encoded.
pub fn build_query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `id in (1,2,3)`.
pub fn id_in(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    format!("id in ({})", list.join(","))
}

/// Splits `ids` into chunks whose `conditions` value, once percent-encoded, is at most
/// `max_encoded_len` characters including `extra` (the rest of the condition, e.g.
/// ` and lastUpdated > [...]`). Every chunk holds at least one id.
pub fn chunk_ids_for_url(ids: &[i64], extra: &str, max_encoded_len: usize) -> Vec<Vec<i64>> {
    // "id in (" + ")" + extra, encoded; each id adds its digits plus an encoded comma (3).
    let fixed = encode_component(&format!("id in (){extra}")).len();
    let mut chunks = Vec::new();
    let mut cur: Vec<i64> = Vec::new();
    let mut len = fixed;
    for &id in ids {
        let add = id.to_string().len() + if cur.is_empty() { 0 } else { 3 };
        if !cur.is_empty() && len + add > max_encoded_len {
            chunks.push(std::mem::take(&mut cur));
            len = fixed;
            cur.push(id);
            len += id.to_string().len();
        } else {
            cur.push(id);
            len += add;
        }
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn quoting() {
        assert_eq!(quote("SMITH & SONS"), "\"SMITH & SONS\"");
        assert_eq!(quote("a[b]"), "\"a[[]b]\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert!(is_plain_literal("A+B [x] & 'y' *%"));
        assert!(!is_plain_literal("a\"b"));
        assert_eq!(safe_literal_fragment("ab\"cdef\"g"), "cdef");
    }

    #[test]
    fn encoding_keeps_special_characters_distinct() {
        let q = build_query(&[(
            "conditions",
            format!("identifier = {}", quote("A+B & C's *50% #1")),
        )]);
        assert_eq!(
            q,
            "conditions=identifier%20%3D%20%22A%2BB%20%26%20C%27s%20%2A50%25%20%231%22"
        );
        assert_eq!(encode_component("ü"), "%C3%BC");
    }

    #[test]
    fn datetime_literal() {
        assert_eq!(
            datetime(datetime!(2024-01-02 03:04:05 UTC)),
            "[2024-01-02T03:04:05Z]"
        );
    }

    #[test]
    fn chunks_respect_the_length_budget() {
        let ids: Vec<i64> = (0..2000).map(|i| 3_000_000_000 + i).collect();
        let extra = " and lastUpdated > [2024-01-02T03:04:05Z]";
        let chunks = chunk_ids_for_url(&ids, extra, 1000);
        assert!(chunks.len() > 1);
        let flat: Vec<i64> = chunks.iter().flatten().copied().collect();
        assert_eq!(flat, ids);
        for c in &chunks {
            let enc = encode_component(&format!("{}{extra}", id_in(c)));
            assert!(enc.len() <= 1000, "{}", enc.len());
        }
        // Nearly full chunks, not one id each.
        assert!(chunks[0].len() > 50);
        assert_eq!(chunk_ids_for_url(&[], "", 100), Vec::<Vec<i64>>::new());
        assert_eq!(chunk_ids_for_url(&[1, 2], "", 10_000), vec![vec![1, 2]]);
    }
}
