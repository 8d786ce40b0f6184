//! Prefixed, time-sortable identifiers (`case_…`, `acct_…`).
//!
//! The suffix is a UUIDv7 in lowercase hex: ids sort by creation time as plain strings, which is
//! what cursor paging relies on, and they stay well under ConnectWise's 100-character
//! `externalXRef` limit (a case id is 37 characters).

/// A new id with the given prefix, e.g. `new_id("case")` → `case_0190…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// True when `id` looks like an id of ours with this prefix (prefix, underscore, 32 hex digits).
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order_and_carry_their_prefix() {
        let a = new_id("case");
        let b = new_id("case");
        assert!(a < b, "{a} should sort before {b}");
        assert!(has_prefix(&a, "case"));
        assert!(!has_prefix(&a, "acct"));
        assert_eq!(a.len(), 37);
    }
}
