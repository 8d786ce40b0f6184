//! Criticality: the five levels a case can have, and how each alert format's severity maps to one.

use serde::{Deserialize, Serialize};

/// A case's criticality, highest first. Ordered so that `Critical > High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Criticality {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Criticality {
    pub const ALL: [Criticality; 5] = [
        Self::Critical,
        Self::High,
        Self::Medium,
        Self::Low,
        Self::Informational,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
            Self::Informational => "informational",
        }
    }

    /// Parses our own names and Sigma's `level` values (the same five words).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Some(Self::Critical),
            "high" => Some(Self::High),
            "medium" => Some(Self::Medium),
            "low" => Some(Self::Low),
            "informational" | "info" => Some(Self::Informational),
            _ => None,
        }
    }

    /// OCSF `severity_id`: 1–6 → informational, low, medium, high, critical, critical.
    /// 0 (unknown) and 99 (other) have no criticality of their own: `None`.
    pub fn from_ocsf_severity_id(id: i64) -> Option<Self> {
        match id {
            1 => Some(Self::Informational),
            2 => Some(Self::Low),
            3 => Some(Self::Medium),
            4 => Some(Self::High),
            5 | 6 => Some(Self::Critical),
            _ => None,
        }
    }

    /// Wazuh `rule.level` 0–15: 0–3 informational, 4–6 low, 7–9 medium, 10–12 high, 13–15 critical.
    pub fn from_wazuh_level(level: i64) -> Option<Self> {
        match level {
            0..=3 => Some(Self::Informational),
            4..=6 => Some(Self::Low),
            7..=9 => Some(Self::Medium),
            10..=12 => Some(Self::High),
            13..=15 => Some(Self::Critical),
            _ => None,
        }
    }

    /// ConnectWise's `severity` / `impact` words for this criticality (documented in docs/ticket-content.md).
    pub fn connectwise_severity_impact(self) -> (&'static str, &'static str) {
        match self {
            Self::Critical => ("High", "High"),
            Self::High => ("High", "Medium"),
            Self::Medium => ("Medium", "Medium"),
            Self::Low => ("Low", "Low"),
            Self::Informational => ("Low", "Low"),
        }
    }
}

impl std::fmt::Display for Criticality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocsf_severity_ids_map_as_the_design_says() {
        let got: Vec<_> = (0..=7).map(Criticality::from_ocsf_severity_id).collect();
        use Criticality::*;
        assert_eq!(
            got,
            vec![
                None,
                Some(Informational),
                Some(Low),
                Some(Medium),
                Some(High),
                Some(Critical),
                Some(Critical),
                None
            ]
        );
        assert_eq!(Criticality::from_ocsf_severity_id(99), None);
    }

    #[test]
    fn wazuh_levels_map_in_bands_of_three() {
        use Criticality::*;
        let bands = [
            (0, Informational),
            (3, Informational),
            (4, Low),
            (6, Low),
            (7, Medium),
            (9, Medium),
            (10, High),
            (12, High),
            (13, Critical),
            (15, Critical),
        ];
        for (level, want) in bands {
            assert_eq!(
                Criticality::from_wazuh_level(level),
                Some(want),
                "level {level}"
            );
        }
        assert_eq!(Criticality::from_wazuh_level(16), None);
        assert_eq!(Criticality::from_wazuh_level(-1), None);
    }

    #[test]
    fn criticalities_order_from_informational_to_critical() {
        assert!(Criticality::Critical > Criticality::High);
        assert!(Criticality::Low > Criticality::Informational);
        for c in Criticality::ALL {
            assert_eq!(Criticality::parse(c.as_str()), Some(c));
        }
    }
}
