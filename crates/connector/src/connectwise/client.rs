//! The ConnectWise Manage REST client: codebase discovery, authentication, requests, paging,
//! and the [`Psa`] operations.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use casebridge_domain::text::utf16_len;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, LINK};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::classify::{classify_error, excerpt, has_code};
use super::conditions::{
    build_query, chunk_ids_for_url, datetime, id_in, is_plain_literal, quote, safe_literal_fragment,
};
use super::hosts::api_host_for;
use super::wire::{
    CompanyInfo, IdRef, IdentifierRef, PatchOp, PostCallback, PostNote, PostTicket, WireBoard,
    WireBoardStatus, WireCallback, WireCompany, WireNote, WirePriority, WireTicket,
};
use crate::{
    Board, BoardStatus, CallbackRegistration, Company, NewNote, NewTicket, Note, Priority, Psa,
    PsaError, Secret, TestCheck, TestReport, Ticket,
};

/// The API model version pinned in `Accept` unless configured otherwise.
pub const DEFAULT_ACCEPT_VERSION: &str = "2025.1";
/// Page size used for every list (ConnectWise's maximum).
pub const PAGE_SIZE: usize = 1000;
/// Every URL this client builds stays below this length (API.md pitfall 20).
pub const MAX_URL_LEN: usize = 1900;
/// Safety stop for paging.
const MAX_PAGES: usize = 10_000;
/// Largest response body read.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Longest summary / externalXRef ConnectWise accepts, in UTF-16 code units.
pub const MAX_SUMMARY_UTF16: usize = 100;
pub const MAX_EXTERNAL_XREF_UTF16: usize = 100;

/// The callback registration this client manages: all tickets.
const CALLBACK_TYPE: &str = "ticket";
const CALLBACK_LEVEL: &str = "owner";
const CALLBACK_OBJECT_ID: i64 = 1;
const CALLBACK_DESCRIPTION: &str = "Casebridge ticket sync";

/// Settings of one ConnectWise integration.
#[derive(Clone, Debug)]
pub struct ConnectWiseConfig {
    /// What the user types: `https://na.myconnectwise.net`, `https://cw.example.com`, or the
    /// cw-sim URL. Only its scheme, host and port are used.
    pub site_url: String,
    /// Login company id (`companyId`), e.g. `cbdemo`.
    pub company_id: String,
    pub public_key: String,
    pub private_key: Secret,
    /// The clientId GUID sent on every call.
    pub client_id: String,
    /// Allow http, loopback and private addresses (a ConnectWise on this machine or a private
    /// network; the demo's cw-sim).
    pub allow_private_hosts: bool,
    /// Per-request timeout (whole request, body included).
    pub timeout: Duration,
    /// API model version for `Accept` (default [`DEFAULT_ACCEPT_VERSION`]).
    pub accept_version: String,
}

impl ConnectWiseConfig {
    /// A config with a 30 s timeout, the default version and public hosts only.
    pub fn new(
        site_url: impl Into<String>,
        company_id: impl Into<String>,
        public_key: impl Into<String>,
        private_key: impl Into<Secret>,
        client_id: impl Into<String>,
    ) -> Self {
        ConnectWiseConfig {
            site_url: site_url.into(),
            company_id: company_id.into(),
            public_key: public_key.into(),
            private_key: private_key.into(),
            client_id: client_id.into(),
            allow_private_hosts: false,
            timeout: Duration::from_secs(30),
            accept_version: DEFAULT_ACCEPT_VERSION.to_owned(),
        }
    }
}

/// One HTTP answer, any status.
struct RawResponse {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The ConnectWise implementation of [`Psa`].
pub struct ConnectWiseClient {
    cfg: ConnectWiseConfig,
    http: reqwest::Client,
    /// `scheme://host[:port]` of the site (companyinfo).
    site_origin: String,
    /// `scheme://api-host[:port]` API calls go to.
    api_origin: String,
    auth: HeaderValue,
    accept: HeaderValue,
    client_id: HeaderValue,
    /// Discovered codebase without slashes (`v2025_1`), `Some("")` for none.
    codebase: tokio::sync::Mutex<Option<String>>,
    longest_url: AtomicUsize,
}

impl std::fmt::Debug for ConnectWiseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectWiseClient")
            .field("site", &self.site_origin)
            .field("api", &self.api_origin)
            .field("company_id", &self.cfg.company_id)
            .finish_non_exhaustive()
    }
}

fn origin_of(u: &Url, host: &str) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match u.port() {
        Some(p) => format!("{}://{}:{}", u.scheme(), host, p),
        None => format!("{}://{}", u.scheme(), host),
    }
}

fn header_value(name: &str, v: &str) -> Result<HeaderValue, PsaError> {
    HeaderValue::from_str(v).map_err(|_| {
        PsaError::config(format!(
            "the {name} contains characters not allowed in HTTP headers"
        ))
    })
}

/// Describes a transport error without URL or credentials.
fn transport_error(e: &reqwest::Error) -> PsaError {
    if e.is_timeout() {
        return PsaError::Timeout;
    }
    let mut msg = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !t.is_empty() && !msg.contains(&t) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&t);
        }
        src = s.source();
    }
    if msg.is_empty() {
        msg = "connection failed".to_owned();
    }
    if e.is_connect() {
        PsaError::Unreachable { message: msg }
    } else {
        PsaError::Transient {
            status: None,
            message: format!("the connection broke off ({msg})"),
        }
    }
}

/// The `rel="next"` target of a `Link` header.
pub(crate) fn link_next(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(LINK) {
        let Ok(v) = v.to_str() else { continue };
        let mut rest = v;
        while let Some(start) = rest.find('<') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('>') else { break };
            let target = &after[..end];
            let params_all = &after[end + 1..];
            let params = match params_all.find('<') {
                Some(n) => &params_all[..n],
                None => params_all,
            };
            let is_next = params.split(';').any(|p| {
                let p = p.trim().trim_end_matches(',').trim();
                if let Some(val) = p.strip_prefix("rel=").or_else(|| p.strip_prefix("REL=")) {
                    val.trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                } else {
                    false
                }
            });
            if is_next {
                return Some(target.to_owned());
            }
            rest = &after[end + 1..];
        }
    }
    None
}

fn normalise_codebase(raw: &str) -> Result<String, PsaError> {
    let cb = raw.trim().trim_matches('/');
    let ok = cb.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    });
    if cb.is_empty() || ok {
        Ok(cb.to_owned())
    } else {
        Err(PsaError::config(format!(
            "ConnectWise reported an unusable codebase `{}`",
            excerpt(raw.as_bytes())
        )))
    }
}

fn parse_json<T: DeserializeOwned>(resp: &RawResponse) -> Result<T, PsaError> {
    serde_json::from_slice(&resp.body).map_err(|_| PsaError::UnexpectedResponse {
        status: resp.status,
        excerpt: excerpt(&resp.body),
    })
}

fn check_status(resp: RawResponse) -> Result<RawResponse, PsaError> {
    if (200..300).contains(&resp.status) {
        Ok(resp)
    } else {
        Err(classify_error(resp.status, &resp.headers, &resp.body))
    }
}

/// Condition matching a string field exactly when the value is expressible, else a
/// `contains` on its longest safe fragment (callers filter exactly afterwards).
fn string_condition(field: &str, value: &str) -> Option<String> {
    if is_plain_literal(value) {
        Some(format!("{field} = {}", quote(value)))
    } else {
        let frag = safe_literal_fragment(value);
        (!frag.is_empty()).then(|| format!("{field} contains {}", quote(frag)))
    }
}

const SEVERITIES: [&str; 3] = ["Low", "Medium", "High"];

fn validate_new_ticket(t: &NewTicket) -> Result<(), PsaError> {
    if t.summary.trim().is_empty() {
        return Err(PsaError::validation(
            "summary",
            "the ticket summary is empty",
        ));
    }
    let n = utf16_len(&t.summary);
    if n > MAX_SUMMARY_UTF16 {
        return Err(PsaError::validation(
            "summary",
            format!(
                "the ticket summary is {n} characters long; ConnectWise allows at most {MAX_SUMMARY_UTF16}"
            ),
        ));
    }
    let n = utf16_len(&t.external_xref);
    if n > MAX_EXTERNAL_XREF_UTF16 {
        return Err(PsaError::validation(
            "externalXRef",
            format!(
                "the external reference is {n} characters long; ConnectWise allows at most {MAX_EXTERNAL_XREF_UTF16}"
            ),
        ));
    }
    if t.company_identifier.trim().is_empty() {
        return Err(PsaError::validation(
            "company",
            "no company identifier was given",
        ));
    }
    for (field, v) in [("severity", &t.severity), ("impact", &t.impact)] {
        if let Some(v) = v
            && !SEVERITIES.contains(&v.as_str())
        {
            return Err(PsaError::validation(
                field,
                format!("`{v}` is not one of Low, Medium, High"),
            ));
        }
    }
    Ok(())
}

fn validate_new_note(n: &NewNote) -> Result<(), PsaError> {
    if n.text.trim().is_empty() {
        return Err(PsaError::validation("text", "the note is empty"));
    }
    if !(n.discussion || n.internal || n.resolution) {
        return Err(PsaError::validation(
            "detailDescriptionFlag",
            "a note must go to at least one of Discussion, Internal or Resolution",
        ));
    }
    Ok(())
}

impl ConnectWiseClient {
    /// Checks the settings (URL rules of [`crate::ssrf::check_site_url`], header-safe keys)
    /// and builds the client. Nothing is sent yet: the codebase is discovered on first use.
    pub fn new(cfg: ConnectWiseConfig) -> Result<Self, PsaError> {
        crate::install_crypto_provider();
        let site = crate::ssrf::check_site_url(&cfg.site_url, cfg.allow_private_hosts)
            .map_err(PsaError::config)?;
        let host = site
            .host_str()
            .ok_or_else(|| PsaError::config("the site URL has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        for (name, v) in [
            ("login company id", cfg.company_id.as_str()),
            ("public key", cfg.public_key.as_str()),
            ("private key", cfg.private_key.expose()),
            ("clientId", cfg.client_id.as_str()),
        ] {
            if v.trim().is_empty() {
                return Err(PsaError::config(format!("the {name} is missing")));
            }
            if v.chars().any(char::is_control) {
                return Err(PsaError::config(format!(
                    "the {name} contains a line break or control character"
                )));
            }
        }
        if cfg.company_id.contains(':') || cfg.public_key.contains(':') {
            return Err(PsaError::config(
                "the login company id and the public key cannot contain `:`",
            ));
        }
        let site_origin = origin_of(&site, &host);
        let api_origin = origin_of(&site, &api_host_for(&host));
        let creds = format!(
            "{}+{}:{}",
            cfg.company_id,
            cfg.public_key,
            cfg.private_key.expose()
        );
        let mut auth = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        ))
        .map_err(|_| {
            PsaError::config("the API keys contain characters not allowed in HTTP headers")
        })?;
        auth.set_sensitive(true);
        let accept = header_value(
            "API version",
            &format!(
                "application/vnd.connectwise.com+json; version={}",
                cfg.accept_version.trim()
            ),
        )?;
        let client_id = header_value("clientId", cfg.client_id.trim())?;
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)));
        if let Some(r) = crate::ssrf::resolver_for(cfg.allow_private_hosts) {
            b = b.dns_resolver(r);
        }
        let http = b
            .build()
            .map_err(|e| PsaError::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(ConnectWiseClient {
            cfg,
            http,
            site_origin,
            api_origin,
            auth,
            accept,
            client_id,
            codebase: tokio::sync::Mutex::new(None),
            longest_url: AtomicUsize::new(0),
        })
    }

    pub fn config(&self) -> &ConnectWiseConfig {
        &self.cfg
    }

    /// `scheme://host[:port]` API calls go to (the `api-` host on cloud).
    pub fn api_origin(&self) -> &str {
        &self.api_origin
    }

    /// Length of the longest URL sent so far (for tests of the URL budget).
    #[doc(hidden)]
    pub fn longest_url_sent(&self) -> usize {
        self.longest_url.load(Ordering::Relaxed)
    }

    /// Replaces the cached codebase (tests of the codebase refresh, API.md pitfall 21).
    #[doc(hidden)]
    pub async fn override_codebase(&self, codebase: &str) {
        *self.codebase.lock().await = Some(codebase.trim_matches('/').to_owned());
    }

    /// The API base, `{api origin}/{codebase}/apis/3.0`, discovering the codebase if needed.
    pub async fn api_base(&self) -> Result<String, PsaError> {
        let cb = self.codebase().await?;
        Ok(self.base_for(&cb))
    }

    fn base_for(&self, codebase: &str) -> String {
        if codebase.is_empty() {
            format!("{}/apis/3.0", self.api_origin)
        } else {
            format!("{}/{}/apis/3.0", self.api_origin, codebase)
        }
    }

    async fn codebase(&self) -> Result<String, PsaError> {
        let mut guard = self.codebase.lock().await;
        if let Some(cb) = guard.as_ref() {
            return Ok(cb.clone());
        }
        let cb = self.discover_codebase().await?;
        *guard = Some(cb.clone());
        Ok(cb)
    }

    /// Re-reads companyinfo after a 404 with `used` (pitfall 21); true if the codebase changed.
    async fn refresh_codebase(&self, used: &str) -> bool {
        let mut guard = self.codebase.lock().await;
        if guard.as_deref() != Some(used) {
            // Someone else refreshed already.
            return guard.is_some();
        }
        match self.discover_codebase().await {
            Ok(cb) if cb != used => {
                tracing::info!(old = used, new = %cb, "ConnectWise codebase changed");
                *guard = Some(cb);
                true
            }
            _ => false,
        }
    }

    fn companyinfo_url(&self) -> String {
        format!(
            "{}/login/companyinfo/{}",
            self.site_origin,
            super::conditions::encode_component(self.cfg.company_id.trim())
        )
    }

    async fn fetch_companyinfo(&self) -> Result<RawResponse, PsaError> {
        let url = self.companyinfo_url();
        let req = self
            .http
            .get(&url)
            .header("clientId", self.client_id.clone())
            .header(ACCEPT, "application/json");
        self.send(req, url.len()).await
    }

    fn codebase_from(&self, resp: &RawResponse) -> Result<String, PsaError> {
        if resp.status == 404 {
            return Err(PsaError::config(format!(
                "{} does not answer /login/companyinfo (404): is the site URL a ConnectWise server?",
                self.site_origin
            )));
        }
        if !(200..300).contains(&resp.status) {
            return Err(classify_error(resp.status, &resp.headers, &resp.body));
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|_| {
            let text = String::from_utf8_lossy(&resp.body);
            if text.contains("Cannot route") {
                classify_error(resp.status, &resp.headers, &resp.body)
            } else {
                PsaError::config(format!(
                    "{} answered /login/companyinfo with something that is not ConnectWise company information ({}): is the site URL a ConnectWise server?",
                    self.site_origin,
                    excerpt(&resp.body)
                ))
            }
        })?;
        if v.is_null() {
            return Err(PsaError::config(format!(
                "ConnectWise does not know the login company id `{}`: check the company id",
                self.cfg.company_id.trim()
            )));
        }
        let info: CompanyInfo =
            serde_json::from_value(v).map_err(|_| PsaError::UnexpectedResponse {
                status: resp.status,
                excerpt: excerpt(&resp.body),
            })?;
        let cb = info
            .codebase
            .ok_or_else(|| PsaError::config("ConnectWise's company information has no codebase"))?;
        normalise_codebase(&cb)
    }

    async fn discover_codebase(&self) -> Result<String, PsaError> {
        let resp = self.fetch_companyinfo().await?;
        self.codebase_from(&resp)
    }

    /// Sends a prepared request and reads the answer (any status).
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url_len: usize,
    ) -> Result<RawResponse, PsaError> {
        self.longest_url.fetch_max(url_len, Ordering::Relaxed);
        let started = Instant::now();
        let mut resp = req.send().await.map_err(|e| transport_error(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(PsaError::UnexpectedResponse {
                    status,
                    excerpt: "the answer is larger than 32 MiB".to_owned(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ConnectWise answered"
        );
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone())
            .header("clientId", self.client_id.clone())
            .header(ACCEPT, self.accept.clone());
        if let Some(b) = body {
            r = r
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(b).unwrap_or_default());
        }
        r
    }

    /// An API call relative to the base (`service/tickets`); on a 404 the codebase is
    /// re-discovered once and the call repeated if it changed.
    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, PsaError> {
        let mut refreshed = false;
        loop {
            let cb = self.codebase().await?;
            let mut url = format!("{}/{}", self.base_for(&cb), path);
            if !query.is_empty() {
                url.push('?');
                url.push_str(&build_query(query));
            }
            tracing::debug!(method = %method, path, "ConnectWise request");
            let resp = self
                .send(self.request(method.clone(), &url, body), url.len())
                .await?;
            if resp.status == 404 && !refreshed {
                refreshed = true;
                if self.refresh_codebase(&cb).await {
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, PsaError> {
        let resp = check_status(self.call_raw(method, path, query, body).await?)?;
        parse_json(&resp)
    }

    /// All pages of a list: `pageSize=1000`, following `Link rel="next"` when it stays on the
    /// API origin, else asking for the next page number while pages come back full.
    async fn get_all<T: DeserializeOwned>(
        &self,
        path: &str,
        conditions: Option<&str>,
    ) -> Result<Vec<T>, PsaError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(c) = conditions {
            query.push(("conditions", c.to_owned()));
        }
        query.push(("orderBy", "id asc".to_owned()));
        query.push(("pageSize", PAGE_SIZE.to_string()));
        let mut page = 1usize;
        let first = check_status(self.call_raw(Method::GET, path, &query, None).await?)?;
        let mut items: Vec<T> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut resp = first;
        loop {
            let batch: Vec<T> = parse_json(&resp)?;
            let n = batch.len();
            items.extend(batch);
            if n == 0 || page >= MAX_PAGES {
                break;
            }
            let raw_next = link_next(&resp.headers);
            let had_next = raw_next.is_some();
            let no_link = resp.headers.get(LINK).is_none();
            let next = raw_next
                .and_then(|l| self.same_api_origin(&l))
                .filter(|u| seen.insert(u.clone()));
            page += 1;
            resp = match next {
                Some(url) => check_status(
                    self.send(self.request(Method::GET, &url, None), url.len())
                        .await?,
                )?,
                // No Link at all, or a next link we will not follow: ask by page number.
                None if n >= PAGE_SIZE && (no_link || had_next) => {
                    let mut q = query.clone();
                    q.push(("page", page.to_string()));
                    check_status(self.call_raw(Method::GET, path, &q, None).await?)?
                }
                None => break,
            };
        }
        Ok(items)
    }

    /// `link` resolved against the API origin if it stays on it (scheme, host, port).
    fn same_api_origin(&self, link: &str) -> Option<String> {
        let base = Url::parse(&format!("{}/", self.api_origin)).ok()?;
        let u = base.join(link).ok()?;
        let same = u.scheme() == base.scheme()
            && u.host_str() == base.host_str()
            && u.port_or_known_default() == base.port_or_known_default()
            && u.username().is_empty()
            && u.password().is_none();
        if same {
            Some(u.to_string())
        } else {
            tracing::warn!("ignoring a Link header that leaves the ConnectWise API host");
            None
        }
    }

    async fn reactivate(&self, c: CallbackRegistration) -> Result<CallbackRegistration, PsaError> {
        if !c.inactive {
            return Ok(c);
        }
        let ops = serde_json::to_value([PatchOp {
            op: "replace",
            path: "inactiveFlag",
            value: serde_json::Value::Bool(false),
        }])
        .expect("serialisable");
        let w: WireCallback = self
            .call(
                Method::PATCH,
                &format!("system/callbacks/{}", c.id),
                &[],
                Some(&ops),
            )
            .await?;
        Ok(w.into_registration())
    }

    fn matching_callback(
        list: Vec<CallbackRegistration>,
        url: &str,
    ) -> Option<CallbackRegistration> {
        list.into_iter()
            .filter(|c| {
                c.url == url
                    && c.kind.eq_ignore_ascii_case(CALLBACK_TYPE)
                    && c.level.eq_ignore_ascii_case(CALLBACK_LEVEL)
                    && c.object_id == CALLBACK_OBJECT_ID
            })
            .min_by_key(|c| (c.inactive, c.id))
    }

    async fn check<F, Fut, T>(name: &'static str, f: F) -> (TestCheck, bool)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, PsaError>>,
        T: CheckMessage,
    {
        match f().await {
            Ok(v) => (
                TestCheck {
                    name,
                    ok: true,
                    message: v.message(),
                },
                true,
            ),
            Err(e) => (
                TestCheck {
                    name,
                    ok: false,
                    message: e.to_string(),
                },
                false,
            ),
        }
    }
}

/// What a passing check says.
trait CheckMessage {
    fn message(&self) -> String;
}

impl CheckMessage for String {
    fn message(&self) -> String {
        self.clone()
    }
}

fn skipped(name: &'static str, why: &str) -> TestCheck {
    TestCheck {
        name,
        ok: false,
        message: format!("not checked: {why}"),
    }
}

#[async_trait]
impl Psa for ConnectWiseClient {
    async fn test_connection(&self) -> TestReport {
        let mut checks = Vec::new();
        let rest_after = |checks: &mut Vec<TestCheck>, from: usize, why: &str| {
            for name in &crate::TEST_CHECKS[from..] {
                checks.push(skipped(name, why));
            }
        };

        // reachable
        if let Err(m) =
            crate::ssrf::check_site_url_resolved(&self.cfg.site_url, self.cfg.allow_private_hosts)
                .await
        {
            checks.push(TestCheck {
                name: "reachable",
                ok: false,
                message: format!("The site URL is not allowed: {m}"),
            });
            rest_after(&mut checks, 1, "the site is not reachable");
            return TestReport { checks };
        }
        let info = match self.fetch_companyinfo().await {
            Ok(r) => {
                checks.push(TestCheck {
                    name: "reachable",
                    ok: true,
                    message: format!("{} answered", self.site_origin),
                });
                r
            }
            Err(e) => {
                checks.push(TestCheck {
                    name: "reachable",
                    ok: false,
                    message: e.to_string(),
                });
                rest_after(&mut checks, 1, "the site is not reachable");
                return TestReport { checks };
            }
        };

        // codebase
        match self.codebase_from(&info) {
            Ok(cb) => {
                *self.codebase.lock().await = Some(cb.clone());
                checks.push(TestCheck {
                    name: "codebase",
                    ok: true,
                    message: format!(
                        "company `{}` found; API at {}",
                        self.cfg.company_id.trim(),
                        self.base_for(&cb)
                    ),
                });
            }
            Err(e) => {
                checks.push(TestCheck {
                    name: "codebase",
                    ok: false,
                    message: e.to_string(),
                });
                rest_after(&mut checks, 2, "the company's codebase is unknown");
                return TestReport { checks };
            }
        }

        // auth
        let auth = self
            .call::<serde_json::Value>(Method::GET, "system/info", &[], None)
            .await;
        match auth {
            Ok(v) => checks.push(TestCheck {
                name: "auth",
                ok: true,
                message: match v.get("version").and_then(|x| x.as_str()) {
                    Some(ver) => format!("API keys accepted (ConnectWise {ver})"),
                    None => "API keys accepted".to_owned(),
                },
            }),
            Err(PsaError::PermissionDenied { .. }) => checks.push(TestCheck {
                name: "auth",
                ok: true,
                message: "API keys accepted (the member may not read system information)"
                    .to_owned(),
            }),
            Err(e) => {
                checks.push(TestCheck {
                    name: "auth",
                    ok: false,
                    message: e.to_string(),
                });
                rest_after(&mut checks, 3, "the API keys were not accepted");
                return TestReport { checks };
            }
        }

        let (c, _) = Self::check("read_boards", || async {
            let b = self.boards().await?;
            let active = b.iter().filter(|b| !b.inactive).count();
            Ok(format!("{} boards readable ({active} active)", b.len()))
        })
        .await;
        checks.push(c);
        let (c, _) = Self::check("read_priorities", || async {
            let p = self.priorities().await?;
            Ok(format!("{} priorities readable", p.len()))
        })
        .await;
        checks.push(c);
        let (c, _) = Self::check("read_companies", || async {
            let q = [("pageSize", "1".to_owned())];
            let _: Vec<WireCompany> = self
                .call(Method::GET, "company/companies", &q, None)
                .await?;
            Ok("companies readable".to_owned())
        })
        .await;
        checks.push(c);
        let (c, _) = Self::check("callbacks", || async {
            let c = self.callbacks().await?;
            Ok(format!(
                "callback registrations readable ({} registered)",
                c.len()
            ))
        })
        .await;
        checks.push(c);
        TestReport { checks }
    }

    async fn boards(&self) -> Result<Vec<Board>, PsaError> {
        let w: Vec<WireBoard> = self.get_all("service/boards", None).await?;
        Ok(w.into_iter().map(WireBoard::into_board).collect())
    }

    async fn board_statuses(&self, board_id: i64) -> Result<Vec<BoardStatus>, PsaError> {
        let w: Vec<WireBoardStatus> = self
            .get_all(&format!("service/boards/{board_id}/statuses"), None)
            .await?;
        Ok(w.into_iter().map(WireBoardStatus::into_status).collect())
    }

    async fn priorities(&self) -> Result<Vec<Priority>, PsaError> {
        let w: Vec<WirePriority> = self.get_all("service/priorities", None).await?;
        Ok(w.into_iter().map(WirePriority::into_priority).collect())
    }

    async fn company_by_identifier(&self, identifier: &str) -> Result<Option<Company>, PsaError> {
        if identifier.trim().is_empty() {
            return Err(PsaError::validation(
                "identifier",
                "the company identifier is empty",
            ));
        }
        let cond = string_condition("identifier", identifier);
        let list: Vec<WireCompany> = self.get_all("company/companies", cond.as_deref()).await?;
        let companies: Vec<Company> = list.into_iter().map(WireCompany::into_company).collect();
        let exact = companies.iter().find(|c| c.identifier == identifier);
        let found = exact.or_else(|| {
            companies
                .iter()
                .find(|c| c.identifier.eq_ignore_ascii_case(identifier))
        });
        Ok(found.cloned())
    }

    async fn create_ticket(&self, t: &NewTicket) -> Result<Ticket, PsaError> {
        validate_new_ticket(t)?;
        let body = PostTicket {
            summary: t.summary.clone(),
            board: IdRef { id: t.board_id },
            status: t.status_id.map(|id| IdRef { id }),
            company: IdentifierRef {
                identifier: t.company_identifier.clone(),
            },
            priority: t.priority_id.map(|id| IdRef { id }),
            kind: t.type_id.map(|id| IdRef { id }),
            sub_type: t.subtype_id.map(|id| IdRef { id }),
            item: t.item_id.map(|id| IdRef { id }),
            external_xref: t.external_xref.clone(),
            initial_description: t.initial_description.clone(),
            initial_internal_analysis: t.initial_internal_analysis.clone(),
            severity: t.severity.clone(),
            impact: t.impact.clone(),
            process_notifications: t.process_notifications,
        };
        let body = serde_json::to_value(&body).expect("serialisable");
        let w: WireTicket = self
            .call(Method::POST, "service/tickets", &[], Some(&body))
            .await?;
        Ok(w.into_ticket())
    }

    async fn find_ticket_by_external_ref(&self, xref: &str) -> Result<Option<Ticket>, PsaError> {
        Ok(self
            .find_tickets_by_external_ref(xref)
            .await?
            .into_iter()
            .next())
    }

    async fn find_tickets_by_external_ref(&self, xref: &str) -> Result<Vec<Ticket>, PsaError> {
        if xref.is_empty() {
            return Ok(Vec::new());
        }
        let cond = string_condition("externalXRef", xref);
        let list: Vec<WireTicket> = self.get_all("service/tickets", cond.as_deref()).await?;
        let mut found: Vec<Ticket> = list
            .into_iter()
            .map(WireTicket::into_ticket)
            .filter(|t| t.external_xref.as_deref() == Some(xref))
            .collect();
        found.sort_by_key(|t| t.id);
        Ok(found)
    }

    async fn get_ticket(&self, id: i64) -> Result<Option<Ticket>, PsaError> {
        match self
            .call::<WireTicket>(Method::GET, &format!("service/tickets/{id}"), &[], None)
            .await
        {
            Ok(w) => Ok(Some(w.into_ticket())),
            Err(PsaError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn set_ticket_status(&self, id: i64, status_id: i64) -> Result<Ticket, PsaError> {
        let ops = serde_json::to_value([PatchOp {
            op: "replace",
            path: "status",
            value: serde_json::json!({ "id": status_id }),
        }])
        .expect("serialisable");
        let w: WireTicket = self
            .call(
                Method::PATCH,
                &format!("service/tickets/{id}"),
                &[],
                Some(&ops),
            )
            .await?;
        Ok(w.into_ticket())
    }

    async fn add_note(&self, ticket_id: i64, n: &NewNote) -> Result<Note, PsaError> {
        validate_new_note(n)?;
        let body = serde_json::to_value(PostNote {
            text: n.text.clone(),
            detail_description_flag: n.discussion,
            internal_analysis_flag: n.internal,
            resolution_flag: n.resolution,
            process_notifications: n.process_notifications,
        })
        .expect("serialisable");
        let w: WireNote = self
            .call(
                Method::POST,
                &format!("service/tickets/{ticket_id}/notes"),
                &[],
                Some(&body),
            )
            .await?;
        Ok(w.into_note())
    }

    async fn notes(&self, ticket_id: i64) -> Result<Vec<Note>, PsaError> {
        let w: Vec<WireNote> = self
            .get_all(&format!("service/tickets/{ticket_id}/notes"), None)
            .await?;
        Ok(w.into_iter().map(WireNote::into_note).collect())
    }

    async fn tickets_updated_since(
        &self,
        ids: &[i64],
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<Ticket>, PsaError> {
        let mut uniq: Vec<i64> = ids.to_vec();
        uniq.sort_unstable();
        uniq.dedup();
        if uniq.is_empty() {
            return Ok(Vec::new());
        }
        let extra = since
            .map(|t| format!(" and lastUpdated > {}", datetime(t)))
            .unwrap_or_default();
        // Budget for the encoded conditions value: the whole URL (base, path, the other
        // parameters, a page number ConnectWise may add) stays under MAX_URL_LEN.
        let base = self.api_base().await?;
        let fixed = format!(
            "{base}/service/tickets?conditions=&orderBy=id%20asc&pageSize={PAGE_SIZE}&page=99999"
        )
        .len();
        let budget = MAX_URL_LEN.saturating_sub(fixed + 1).max(64);
        let mut out = Vec::new();
        for chunk in chunk_ids_for_url(&uniq, &extra, budget) {
            let cond = format!("{}{extra}", id_in(&chunk));
            let list: Vec<WireTicket> = self.get_all("service/tickets", Some(&cond)).await?;
            out.extend(list.into_iter().map(WireTicket::into_ticket));
        }
        Ok(out)
    }

    async fn callbacks(&self) -> Result<Vec<CallbackRegistration>, PsaError> {
        let w: Vec<WireCallback> = self.get_all("system/callbacks", None).await?;
        Ok(w.into_iter().map(WireCallback::into_registration).collect())
    }

    async fn ensure_callback(&self, url: &str) -> Result<CallbackRegistration, PsaError> {
        match Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(PsaError::validation(
                    "url",
                    format!("`{url}` is not an absolute http(s) URL"),
                ));
            }
        }
        if let Some(c) = Self::matching_callback(self.callbacks().await?, url) {
            return self.reactivate(c).await;
        }
        let body = serde_json::to_value(PostCallback {
            description: CALLBACK_DESCRIPTION.to_owned(),
            url: url.to_owned(),
            object_id: CALLBACK_OBJECT_ID,
            kind: CALLBACK_TYPE.to_owned(),
            level: CALLBACK_LEVEL.to_owned(),
            inactive_flag: false,
        })
        .expect("serialisable");
        let resp = self
            .call_raw(Method::POST, "system/callbacks", &[], Some(&body))
            .await?;
        if resp.status == 400 && has_code(&resp.body, "ObjectExists") {
            // Created concurrently (or by an earlier attempt whose answer we lost).
            return match Self::matching_callback(self.callbacks().await?, url) {
                Some(c) => self.reactivate(c).await,
                None => Err(classify_error(resp.status, &resp.headers, &resp.body)),
            };
        }
        let resp = check_status(resp)?;
        let w: WireCallback = parse_json(&resp)?;
        Ok(w.into_registration())
    }

    async fn delete_ticket(&self, id: i64) -> Result<(), PsaError> {
        let resp = self
            .call_raw(Method::DELETE, &format!("service/tickets/{id}"), &[], None)
            .await?;
        match check_status(resp) {
            Ok(_) | Err(PsaError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(site: &str) -> ConnectWiseConfig {
        ConnectWiseConfig::new(site, "cbdemo", "pub", "priv-SECRET", "client-guid")
    }

    #[test]
    fn cloud_site_maps_to_api_host() {
        let c = ConnectWiseClient::new(cfg("https://na.myconnectwise.net/")).unwrap();
        assert_eq!(c.api_origin(), "https://api-na.myconnectwise.net");
        assert_eq!(c.site_origin, "https://na.myconnectwise.net");
        assert_eq!(
            c.companyinfo_url(),
            "https://na.myconnectwise.net/login/companyinfo/cbdemo"
        );
        assert_eq!(
            c.base_for("v2025_1"),
            "https://api-na.myconnectwise.net/v2025_1/apis/3.0"
        );
        let c = ConnectWiseClient::new(cfg("https://cw.example.com:8443/some/path")).unwrap();
        assert_eq!(c.api_origin(), "https://cw.example.com:8443");
    }

    #[test]
    fn new_refuses_bad_settings() {
        assert_eq!(
            ConnectWiseClient::new(cfg("http://127.0.0.1:1"))
                .unwrap_err()
                .kind(),
            "config"
        );
        let mut c = cfg("http://127.0.0.1:1");
        c.allow_private_hosts = true;
        assert!(ConnectWiseClient::new(c.clone()).is_ok());
        c.public_key = String::new();
        assert!(ConnectWiseClient::new(c.clone()).is_err());
        c.public_key = "a\nb".into();
        assert!(ConnectWiseClient::new(c).is_err());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let c = ConnectWiseClient::new(cfg("https://na.myconnectwise.net")).unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
        assert!(!format!("{:?}", c.config()).contains("SECRET"));
        assert!(c.auth.is_sensitive());
    }

    #[test]
    fn codebase_normalisation() {
        assert_eq!(normalise_codebase("v2025_1/").unwrap(), "v2025_1");
        assert_eq!(
            normalise_codebase("/v4_6_release/").unwrap(),
            "v4_6_release"
        );
        assert_eq!(normalise_codebase("").unwrap(), "");
        assert!(normalise_codebase("../x/").is_err());
        assert!(normalise_codebase("v1?x=1").is_err());
    }

    #[test]
    fn link_header_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(
                r#"<https://h/apis/3.0/x?pageSize=2&page=1>; rel="first", <https://h/apis/3.0/x?pageSize=2&page=3>; rel="next", <https://h/apis/3.0/x?page=9>; rel="last""#,
            ),
        );
        assert_eq!(
            link_next(&h).as_deref(),
            Some("https://h/apis/3.0/x?pageSize=2&page=3")
        );
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(r#"<https://h/x?page=1>; rel="first""#),
        );
        assert_eq!(link_next(&h), None);
        assert_eq!(link_next(&HeaderMap::new()), None);
    }

    #[test]
    fn foreign_link_targets_are_not_followed() {
        let c = ConnectWiseClient::new(cfg("https://na.myconnectwise.net")).unwrap();
        assert!(
            c.same_api_origin("https://api-na.myconnectwise.net/v1/apis/3.0/x?page=2")
                .is_some()
        );
        assert!(c.same_api_origin("/v1/apis/3.0/x?page=2").is_some());
        assert!(c.same_api_origin("https://evil.example/x?page=2").is_none());
        assert!(
            c.same_api_origin("http://api-na.myconnectwise.net/x?page=2")
                .is_none()
        );
    }

    #[test]
    fn ticket_and_note_pre_validation() {
        let mut t = NewTicket {
            summary: "x".repeat(100),
            board_id: 1,
            company_identifier: "ACME".into(),
            external_xref: "case_1".into(),
            ..Default::default()
        };
        assert!(validate_new_ticket(&t).is_ok());
        t.summary = "é".repeat(100); // 100 UTF-16 units
        assert!(validate_new_ticket(&t).is_ok());
        t.summary = "😀".repeat(51); // 102 UTF-16 units
        match validate_new_ticket(&t) {
            Err(PsaError::Validation { field, .. }) => {
                assert_eq!(field.as_deref(), Some("summary"))
            }
            r => panic!("{r:?}"),
        }
        t.summary = "ok".into();
        t.severity = Some("urgent".into());
        assert!(validate_new_ticket(&t).is_err());
        let n = NewNote {
            text: "x".into(),
            ..Default::default()
        };
        assert!(validate_new_note(&n).is_err());
        let n = NewNote {
            text: "x".into(),
            internal: true,
            ..Default::default()
        };
        assert!(validate_new_note(&n).is_ok());
    }

    #[test]
    fn string_conditions() {
        assert_eq!(
            string_condition("identifier", "SMITH & SONS").as_deref(),
            Some("identifier = \"SMITH & SONS\"")
        );
        assert_eq!(
            string_condition("identifier", "A\"B\"CD").as_deref(),
            Some("identifier contains \"CD\"")
        );
        assert_eq!(string_condition("identifier", "\""), None);
    }
}
