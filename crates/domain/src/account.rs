//! Accounts and the roles a token or user holds on one.

use serde::{Deserialize, Serialize};

/// What an account is: a partner (MSSP), one of its sub-tenants, or a standalone tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    Partner,
    Subtenant,
    Standalone,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Partner => "partner",
            Self::Subtenant => "subtenant",
            Self::Standalone => "standalone",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "partner" => Some(Self::Partner),
            "subtenant" => Some(Self::Subtenant),
            "standalone" => Some(Self::Standalone),
            _ => None,
        }
    }
}

/// A role on an account. Ordered: an admin may do everything an analyst may, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Analyst,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Analyst => "analyst",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "analyst" => Some(Self::Analyst),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}
