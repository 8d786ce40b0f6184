//! Fault injection (`GET/PUT /__sim/faults`).
//!
//! Shape (every field optional on PUT; a PUT replaces the whole configuration and resets counters
//! and the RNG; an absent `time_scale` keeps the current one):
//! ```json
//! {"latency_ms": 0, "error_rate": 0.0,
//!  "rate_limit_429": {"every_n": 3, "rate": null, "retry_after_secs": 30},
//!  "quota_per_minute": 100,
//!  "apply_then_fail": {"mode": "500", "delay_ms": 0, "count": 1, "method": "POST", "path_prefix": "/service/tickets"},
//!  "callbacks": {"drop_rate": 0.0, "duplicate_rate": 0.0, "delay_ms": 0, "reorder": false,
//!                "inactivate_after_failures": 20, "inactivate_after_secs": 259200.0},
//!  "note_moves_last_updated": false, "time_scale": 1.0, "seed": 42}
//! ```
//! Faults apply to `/{codebase}/apis/3.0/…` only. Order per request: quota → 429 → latency → error_rate
//! → (auth, handling) → apply_then_fail. `path_prefix` is matched against the path after `/apis/3.0`.
//! `latency_ms`, `apply_then_fail.delay_ms`, callback `delay_ms`, the quota window (60 s) and
//! `inactivate_after_secs` are all multiplied by `time_scale`.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct RateLimit429 {
    /// Every n-th API request gets a 429 (deterministic).
    pub every_n: Option<u64>,
    /// Probability (0..1) of a 429 (seeded RNG).
    pub rate: Option<f64>,
    /// `Retry-After` header value; none → no header.
    pub retry_after_secs: Option<u64>,
}

impl Default for RateLimit429 {
    fn default() -> Self {
        RateLimit429 {
            every_n: None,
            rate: None,
            retry_after_secs: Some(30),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct ApplyThenFail {
    /// "500": the write is applied, the answer is a 500. "delay": applied, answered after `delay_ms`.
    pub mode: String,
    pub delay_ms: u64,
    /// How many matching requests are affected.
    pub count: u32,
    /// HTTP method to match (any when absent), e.g. "POST".
    pub method: Option<String>,
    /// Prefix of the path after `/apis/3.0`, e.g. "/service/tickets" (any when absent).
    pub path_prefix: Option<String>,
}

impl Default for ApplyThenFail {
    fn default() -> Self {
        ApplyThenFail {
            mode: "500".into(),
            delay_ms: 10_000,
            count: 1,
            method: None,
            path_prefix: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct CallbackFaults {
    pub drop_rate: f64,
    pub duplicate_rate: f64,
    pub delay_ms: u64,
    /// Hold each delivery until the next one and send the newer first.
    pub reorder: bool,
    /// A registration is set inactive after this many consecutive failed deliveries.
    pub inactivate_after_failures: u32,
    /// … or after failing for this long (seconds × time_scale; ConnectWise: three days).
    pub inactivate_after_secs: f64,
}

impl Default for CallbackFaults {
    fn default() -> Self {
        CallbackFaults {
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            delay_ms: 0,
            reorder: false,
            inactivate_after_failures: 20,
            inactivate_after_secs: 3.0 * 86400.0,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Faults {
    pub latency_ms: u64,
    pub error_rate: f64,
    pub rate_limit_429: Option<RateLimit429>,
    pub quota_per_minute: Option<u32>,
    pub apply_then_fail: Option<ApplyThenFail>,
    pub callbacks: CallbackFaults,
    pub note_moves_last_updated: bool,
    pub time_scale: f64,
    pub seed: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            error_rate: 0.0,
            rate_limit_429: None,
            quota_per_minute: None,
            apply_then_fail: None,
            callbacks: CallbackFaults::default(),
            note_moves_last_updated: false,
            time_scale: 1.0,
            seed: None,
        }
    }
}

pub struct FaultRuntime {
    pub cfg: Faults,
    pub requests: u64,
    pub quota_window: Instant,
    pub quota_used: u32,
    pub apply_remaining: u32,
    pub rng: StdRng,
}

/// What the pre-handling fault step decided.
pub enum Pre {
    Pass { latency: Duration },
    TooMany { retry_after: Option<u64> },
    Error500 { latency: Duration },
}

impl FaultRuntime {
    pub fn new(cfg: Faults) -> Self {
        let rng = match cfg.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        FaultRuntime {
            apply_remaining: cfg.apply_then_fail.as_ref().map(|a| a.count).unwrap_or(0),
            cfg,
            requests: 0,
            quota_window: Instant::now(),
            quota_used: 0,
            rng,
        }
    }

    pub fn scaled(&self, ms: u64) -> Duration {
        Duration::from_secs_f64(ms as f64 / 1000.0 * self.cfg.time_scale.max(0.0))
    }

    pub fn pre(&mut self) -> Pre {
        self.requests += 1;
        if let Some(q) = self.cfg.quota_per_minute {
            let window = Duration::from_secs_f64((60.0 * self.cfg.time_scale).max(0.001));
            let elapsed = self.quota_window.elapsed();
            if elapsed >= window {
                self.quota_window = Instant::now();
                self.quota_used = 0;
            }
            if self.quota_used >= q {
                let left = window
                    .saturating_sub(self.quota_window.elapsed())
                    .as_secs_f64()
                    .ceil()
                    .max(1.0) as u64;
                return Pre::TooMany {
                    retry_after: Some(left),
                };
            }
            self.quota_used += 1;
        }
        if let Some(rl) = &self.cfg.rate_limit_429 {
            let by_n = rl
                .every_n
                .is_some_and(|n| n > 0 && self.requests.is_multiple_of(n));
            let by_rate = rl
                .rate
                .is_some_and(|r| r > 0.0 && self.rng.random::<f64>() < r);
            if by_n || by_rate {
                return Pre::TooMany {
                    retry_after: rl.retry_after_secs,
                };
            }
        }
        let latency = self.scaled(self.cfg.latency_ms);
        if self.cfg.error_rate > 0.0 && self.rng.random::<f64>() < self.cfg.error_rate {
            return Pre::Error500 { latency };
        }
        Pass { latency }
    }

    /// Whether this (applied) request should be answered with the apply-then-fail fault.
    pub fn take_apply_then_fail(&mut self, method: &str, path: &str) -> Option<ApplyThenFail> {
        let a = self.cfg.apply_then_fail.clone()?;
        if self.apply_remaining == 0 {
            return None;
        }
        if a.method
            .as_ref()
            .is_some_and(|m| !m.eq_ignore_ascii_case(method))
        {
            return None;
        }
        if a.path_prefix.as_ref().is_some_and(|p| {
            !path
                .to_ascii_lowercase()
                .starts_with(&p.to_ascii_lowercase())
        }) {
            return None;
        }
        self.apply_remaining -= 1;
        Some(a)
    }

    pub fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }
}

use Pre::Pass;
