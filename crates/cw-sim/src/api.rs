//! The ConnectWise REST surface: `/login/companyinfo/{company}` and `/{codebase}/apis/3.0/…`.
//!
//! Endpoints (under `/{codebase}/apis/3.0`, codebase `v4_6_release` or `v2025_1`):
//! `system/info`; `system/callbacks` (+`/count`, `/{id}` GET/PUT/PATCH/DELETE);
//! `service/boards` (+`/count`, `/{id}`, `/{id}/statuses|types|subtypes|items` (+`/count`, `/{sid}`));
//! `service/priorities` (+`/count`, `/{id}`); `company/companies` (+`/count`, `/{id}`);
//! `service/tickets` GET/POST, `/count`, `/search` (POST), `/{id}` GET/PATCH/PUT/DELETE,
//! `/{id}/notes` GET/POST (+`/count`, `/{noteId}`), `/{id}/allNotes`, `/{id}/merge` (POST).
//! Lists take `conditions`, `orderBy`, `fields`, `page`, `pageSize` (default 25, max 1000) and answer a
//! `Link` header; forward-only paging with header `pagination-type: forward-only` + `pageId`.
//! The callback signing key is served without auth at `/{codebase}/system/callbackkey/index.rails?id=…`.
use crate::error::{CwError, CwResult};
use crate::faults::Pre;
use crate::model::{Member, Perm};
use crate::{App, CODEBASE, CODEBASES, cond};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

pub async fn company_info(State(app): State<App>, Path(company): Path<String>) -> Response {
    let st = app.state();
    if company.eq_ignore_ascii_case(&st.company_id) {
        axum::Json(json!({
            "CompanyName": st.company_name, "Codebase": format!("{CODEBASE}/"), "VersionCode": "v2025.1",
            "VersionNumber": "v4.6.2025.1", "CompanyID": st.company_id, "IsCloud": false,
            "SiteUrl": app.authority, "AllowAccessToCloudOnPremSwitch": false
        }))
        .into_response()
    } else {
        axum::Json(Value::Null).into_response()
    }
}

fn plain_404() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "Cannot route. Codebase/company is invalid",
    )
        .into_response()
}

pub async fn fallback(State(app): State<App>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() >= 3 && segs[1].eq_ignore_ascii_case("apis") && segs[2] == "3.0" {
        if !CODEBASES.iter().any(|c| c.eq_ignore_ascii_case(segs[0])) {
            return plain_404();
        }
        let body = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
            Ok(b) => b,
            Err(_) => return CwError::bad_request("Request body too large.").into_response(),
        };
        let rest: Vec<String> = segs[3..].iter().map(|s| s.to_string()).collect();
        return cw_request(
            app,
            parts.method,
            rest,
            parts.uri.query().unwrap_or("").to_string(),
            parts.headers,
            body,
            &path,
        )
        .await;
    }
    if segs.len() == 4
        && CODEBASES.iter().any(|c| c.eq_ignore_ascii_case(segs[0]))
        && segs[1].eq_ignore_ascii_case("system")
        && segs[2].eq_ignore_ascii_case("callbackkey")
        && segs[3].eq_ignore_ascii_case("index.rails")
    {
        let q = parse_query(parts.uri.query().unwrap_or(""));
        let st = app.state();
        return match q.iter().find(|(k, _)| k == "id") {
            Some((_, id)) if *id == st.key_id => {
                axum::Json(json!({"signing_key": st.signing_key})).into_response()
            }
            _ => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"code": "NotFound", "message": "Callback key not found"})),
            )
                .into_response(),
        };
    }
    plain_404()
}

/// Query pairs with lower-cased keys (ConnectWise parameters are case-insensitive).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect()
}

fn qget<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

fn authenticate(app: &App, headers: &HeaderMap) -> CwResult<Member> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(b64) = auth
        .strip_prefix("Basic ")
        .or_else(|| auth.strip_prefix("basic "))
    else {
        return Err(CwError::unauthorized(
            "Authorization header with Basic credentials is required.",
        ));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| CwError::unauthorized("Authorization header is malformed."))?;
    let (user, private) = decoded
        .split_once(':')
        .ok_or_else(|| CwError::unauthorized("Authorization header is malformed."))?;
    let (company, public) = user
        .split_once('+')
        .ok_or_else(|| CwError::unauthorized("Username must be company+publicKey."))?;
    let st = app.state();
    if !company.eq_ignore_ascii_case(&st.company_id) {
        return Err(CwError::unauthorized("Authentication failed."));
    }
    let m = st
        .authenticate(public, private)
        .cloned()
        .ok_or_else(|| CwError::unauthorized("Authentication failed."))?;
    if headers
        .get("clientid")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim().is_empty())
    {
        return Err(CwError::unauthorized(
            "A clientId header is required. Register one at developer.connectwise.com/ClientID.",
        ));
    }
    Ok(m)
}

async fn cw_request(
    app: App,
    method: Method,
    rest: Vec<String>,
    query: String,
    headers: HeaderMap,
    body: Bytes,
    full_path: &str,
) -> Response {
    let pre = app.faults().pre();
    match pre {
        Pre::TooMany { retry_after } => {
            let secs = retry_after.unwrap_or(30);
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"error": "ConnectWiseAPI", "message": format!("Too many requests. Please try again in {secs} seconds.")})),
            )
                .into_response();
            if let Some(s) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            return r;
        }
        Pre::Error500 { latency } => {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            return CwError::internal("An unexpected error occurred (injected fault).")
                .into_response();
        }
        Pre::Pass { latency } => {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
        }
    }
    let member = match authenticate(&app, &headers) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let sub_path = format!("/{}", rest.join("/"));
    let resp = match dispatch(
        &app, &method, &rest, &query, &headers, &body, &member, full_path,
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if resp.status().is_success() && method != Method::GET {
        let fault = app
            .faults()
            .take_apply_then_fail(method.as_str(), &sub_path);
        if let Some(f) = fault {
            if f.mode == "delay" {
                let d = app.faults().scaled(f.delay_ms);
                tokio::time::sleep(d).await;
                return resp;
            }
            return CwError::internal(
                "An unexpected error occurred (injected fault: applied then failed).",
            )
            .into_response();
        }
    }
    resp
}

fn parse_id(s: &str, what: &str) -> CwResult<u64> {
    s.parse::<u64>()
        .map_err(|_| CwError::not_found(format!("{what} {s} not found")))
}

fn json_body(body: &Bytes) -> CwResult<Value> {
    if body.is_empty() {
        return Err(CwError::bad_request("The request body is empty."));
    }
    serde_json::from_slice(body)
        .map_err(|e| CwError::bad_request(format!("The request body is not valid JSON: {e}")))
}

fn need(m: &Member, p: Perm) -> CwResult<()> {
    if m.role.allows(p) {
        Ok(())
    } else {
        Err(CwError::forbidden(p.label()))
    }
}

fn ok_json(v: Value) -> CwResult<Response> {
    Ok(axum::Json(v).into_response())
}

fn created(v: Value) -> CwResult<Response> {
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// Generic list handling: conditions, orderBy, fields, paging (navigable or forward-only), Link header.
struct ListReq<'a> {
    query: Vec<(String, String)>,
    conditions: Option<String>,
    order_by: Option<String>,
    headers: &'a HeaderMap,
    link_base: String,
    known: &'a [&'a str],
}

impl ListReq<'_> {
    fn filter(&self, items: Vec<Value>) -> CwResult<Vec<Value>> {
        let conds = self
            .conditions
            .clone()
            .or_else(|| qget(&self.query, "conditions").map(String::from))
            .unwrap_or_default();
        let expr = cond::parse(&conds).map_err(|e| {
            CwError::bad_request(format!("Invalid conditions: {e}. Conditions: {conds}"))
        })?;
        if let Some(e) = &expr {
            cond::check_fields(e, self.known)
                .map_err(|m| CwError::bad_request(format!("Invalid conditions: {m}.")))?;
        }
        Ok(items
            .into_iter()
            .filter(|v| crate::model::eval_ok(&expr, v))
            .collect())
    }

    fn count(&self, items: Vec<Value>) -> CwResult<Response> {
        let n = self.filter(items)?.len();
        ok_json(json!({"count": n}))
    }

    fn respond(&self, items: Vec<Value>) -> CwResult<Response> {
        let mut items = self.filter(items)?;
        let page_size = match qget(&self.query, "pagesize") {
            None => 25,
            Some(s) => match s.trim().parse::<i64>() {
                Ok(n) if n > 1000 => {
                    return Err(CwError::bad_request(
                        "pageSize cannot be greater than 1000.",
                    ));
                }
                Ok(n) if n < 1 => 25,
                Ok(n) => n as usize,
                Err(_) => {
                    return Err(CwError::bad_request(format!(
                        "pageSize '{s}' is not a number."
                    )));
                }
            },
        };
        let order = self
            .order_by
            .clone()
            .or_else(|| qget(&self.query, "orderby").map(String::from));
        let forward_only = self
            .headers
            .get("pagination-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("forward-only"));
        let fields: Option<Vec<Vec<String>>> = qget(&self.query, "fields").map(|f| {
            f.split(',')
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(|p| p.split('/').map(String::from).collect())
                .collect()
        });
        let (page, link) = if forward_only {
            if order.as_deref().is_some_and(|o| !o.trim().is_empty()) {
                return Err(CwError::bad_request(
                    "orderBy is not supported with forward-only pagination.",
                ));
            }
            let after = match qget(&self.query, "pageid") {
                None => 0,
                Some(s) => s
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| CwError::bad_request(format!("pageId '{s}' is not a number.")))?,
            };
            cond::sort(&mut items, &[]);
            let rest: Vec<Value> = items
                .into_iter()
                .filter(|v| v["id"].as_u64().unwrap_or(0) > after)
                .collect();
            let more = rest.len() > page_size;
            let page: Vec<Value> = rest.into_iter().take(page_size).collect();
            let mut links = vec![format!(
                "<{}>; rel=\"first\"",
                self.link(&[("pageid", None), ("page", None)])
            )];
            if more && let Some(last) = page.last().and_then(|v| v["id"].as_u64()) {
                let last = last.to_string();
                links.push(format!(
                    "<{}>; rel=\"next\"",
                    self.link(&[("pageid", Some(&last)), ("page", None)])
                ));
            }
            (page, links.join(", "))
        } else {
            let order = cond::parse_order(order.as_deref().unwrap_or(""))
                .map_err(|m| CwError::bad_request(format!("Invalid orderBy: {m}.")))?;
            cond::sort(&mut items, &order);
            let page_no = match qget(&self.query, "page") {
                None => 1,
                Some(s) => s
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| CwError::bad_request(format!("page '{s}' is not valid.")))?,
            };
            let total = items.len();
            let last_page = total.div_ceil(page_size).max(1);
            let page: Vec<Value> = items
                .into_iter()
                .skip((page_no - 1).saturating_mul(page_size))
                .take(page_size)
                .collect();
            let mut links = Vec::new();
            let p = |n: usize| n.to_string();
            if page_no > 1 {
                links.push(format!(
                    "<{}>; rel=\"first\"",
                    self.link(&[("page", Some(&p(1)))])
                ));
                links.push(format!(
                    "<{}>; rel=\"prev\"",
                    self.link(&[("page", Some(&p((page_no - 1).min(last_page))))])
                ));
            }
            if page_no < last_page {
                links.push(format!(
                    "<{}>; rel=\"next\"",
                    self.link(&[("page", Some(&p(page_no + 1)))])
                ));
                links.push(format!(
                    "<{}>; rel=\"last\"",
                    self.link(&[("page", Some(&p(last_page)))])
                ));
            }
            (page, links.join(", "))
        };
        let page: Vec<Value> = match &fields {
            Some(f) if !f.is_empty() => page.iter().map(|v| cond::project(v, f)).collect(),
            _ => page,
        };
        let mut r = axum::Json(Value::Array(page)).into_response();
        if !link.is_empty()
            && let Ok(h) = HeaderValue::from_str(&link)
        {
            r.headers_mut().insert(header::LINK, h);
        }
        Ok(r)
    }

    fn link(&self, set: &[(&str, Option<&str>)]) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        let mut have_size = false;
        for (k, v) in &self.query {
            if set.iter().any(|(s, _)| s == k) {
                continue;
            }
            have_size |= k == "pagesize";
            let key = match k.as_str() {
                "pagesize" => "pageSize",
                "orderby" => "orderBy",
                "pageid" => "pageId",
                other => other,
            };
            ser.append_pair(key, v);
        }
        if !have_size {
            ser.append_pair("pageSize", "25");
        }
        for (k, v) in set {
            if let Some(v) = v {
                ser.append_pair(if *k == "pageid" { "pageId" } else { k }, v);
            }
        }
        format!("{}?{}", self.link_base, ser.finish())
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch(
    app: &App,
    method: &Method,
    rest: &[String],
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
    member: &Member,
    full_path: &str,
) -> CwResult<Response> {
    let segs: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let s: Vec<&str> = segs.iter().map(|s| s.as_str()).collect();
    let list = |known: &'static [&'static str]| ListReq {
        query: parse_query(query),
        conditions: None,
        order_by: None,
        headers,
        link_base: format!("{}{}", app.base_url, full_path),
        known,
    };
    let get = *method == Method::GET;
    let only = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(CwError::method_not_allowed())
        }
    };
    match s.as_slice() {
        ["system", "info"] => {
            only(get)?;
            need(member, Perm::SystemInfo)?;
            ok_json(
                json!({"version": "v2025.1.108640", "isCloud": false, "serverTimeZone": "Eastern Standard Time",
                           "licenseBits": [], "cloudRegion": "NA", "maxWorkFlowRecordsAllowed": 1000}),
            )
        }
        ["system", "callbacks", rest @ ..] => {
            need(member, Perm::Callbacks)?;
            callbacks_api(app, method, rest, body, member, list(&[]))
        }
        ["service", "boards", rest @ ..] => {
            only(get)?;
            need(member, Perm::ReadService)?;
            let st = app.state();
            match rest {
                [] | ["count"] => {
                    let items: Vec<Value> = st.boards.iter().map(|b| st.render_board(b)).collect();
                    drop(st);
                    if rest.is_empty() {
                        list(&[]).respond(items)
                    } else {
                        list(&[]).count(items)
                    }
                }
                [id] => {
                    let id = parse_id(id, "Board")?;
                    let b = st
                        .board(id)
                        .ok_or_else(|| CwError::not_found(format!("Board {id} not found")))?;
                    ok_json(st.render_board(b))
                }
                [id, kind, more @ ..] => {
                    let bid = parse_id(id, "Board")?;
                    if st.board(bid).is_none() {
                        return Err(CwError::not_found(format!("Board {bid} not found")));
                    }
                    let items: Vec<Value> = match *kind {
                        "statuses" => st
                            .board_statuses(bid)
                            .into_iter()
                            .map(|x| st.render_status(x))
                            .collect(),
                        "types" => st
                            .types
                            .iter()
                            .filter(|x| x.board_id == bid)
                            .map(|x| st.render_board_item(x))
                            .collect(),
                        "subtypes" => st
                            .subtypes
                            .iter()
                            .filter(|x| x.board_id == bid)
                            .map(|x| st.render_board_item(x))
                            .collect(),
                        "items" => st
                            .items
                            .iter()
                            .filter(|x| x.board_id == bid)
                            .map(|x| st.render_board_item(x))
                            .collect(),
                        _ => return Err(CwError::no_endpoint()),
                    };
                    drop(st);
                    match more {
                        [] => list(&[]).respond(items),
                        ["count"] => list(&[]).count(items),
                        [sid] => {
                            let sid = parse_id(sid, "Record")?;
                            items
                                .into_iter()
                                .find(|v| v["id"].as_u64() == Some(sid))
                                .map(axum::Json)
                                .map(IntoResponse::into_response)
                                .ok_or_else(|| {
                                    CwError::not_found(format!("Record {sid} not found"))
                                })
                        }
                        _ => Err(CwError::no_endpoint()),
                    }
                }
            }
        }
        ["service", "priorities", rest @ ..] => {
            only(get)?;
            need(member, Perm::ReadService)?;
            let st = app.state();
            let items: Vec<Value> = st
                .priorities
                .iter()
                .map(|p| st.render_priority(p))
                .collect();
            drop(st);
            match rest {
                [] => list(&[]).respond(items),
                ["count"] => list(&[]).count(items),
                [id] => {
                    let id = parse_id(id, "Priority")?;
                    items
                        .into_iter()
                        .find(|v| v["id"].as_u64() == Some(id))
                        .map(|v| axum::Json(v).into_response())
                        .ok_or_else(|| CwError::not_found(format!("Priority {id} not found")))
                }
                _ => Err(CwError::no_endpoint()),
            }
        }
        ["company", "companies", rest @ ..] => {
            only(get)?;
            need(member, Perm::ReadCompanies)?;
            let st = app.state();
            match rest {
                [] | ["count"] => {
                    let items: Vec<Value> =
                        st.companies.iter().map(|c| st.render_company(c)).collect();
                    drop(st);
                    if rest.is_empty() {
                        list(&[]).respond(items)
                    } else {
                        list(&[]).count(items)
                    }
                }
                [id] => {
                    let id = parse_id(id, "Company")?;
                    let c = st
                        .company(id)
                        .ok_or_else(|| CwError::not_found(format!("Company {id} not found")))?;
                    ok_json(st.render_company(c))
                }
                _ => Err(CwError::no_endpoint()),
            }
        }
        ["service", "tickets", rest @ ..] => tickets_api(
            app,
            method,
            rest,
            body,
            member,
            list(crate::model::TICKET_FIELDS),
        ),
        _ => Err(CwError::no_endpoint()),
    }
}

fn all_tickets(app: &App) -> Vec<Value> {
    let st = app.state();
    st.tickets.values().map(|t| st.render_ticket(t)).collect()
}

fn tickets_api(
    app: &App,
    method: &Method,
    rest: &[&str],
    body: &Bytes,
    member: &Member,
    mut list: ListReq,
) -> CwResult<Response> {
    let m = method.clone();
    match rest {
        [] if m == Method::GET => {
            need(member, Perm::ReadTickets)?;
            list.respond(all_tickets(app))
        }
        [] if m == Method::POST => {
            need(member, Perm::AddTickets)?;
            let b = json_body(body)?;
            let (v, ch) = app.state().create_ticket(&b, member)?;
            app.commit(ch);
            created(v)
        }
        ["count"] if m == Method::GET => {
            need(member, Perm::ReadTickets)?;
            list.count(all_tickets(app))
        }
        ["search"] if m == Method::POST => {
            need(member, Perm::ReadTickets)?;
            let b = if body.is_empty() {
                json!({})
            } else {
                json_body(body)?
            };
            let get = |k: &str| {
                b.as_object()
                    .and_then(|o| o.iter().find(|(kk, _)| kk.eq_ignore_ascii_case(k)))
                    .and_then(|(_, v)| v.as_str())
                    .map(String::from)
            };
            list.conditions = Some(get("conditions").unwrap_or_default());
            list.order_by = get("orderBy");
            list.respond(all_tickets(app))
        }
        [] | ["count"] | ["search"] => Err(CwError::method_not_allowed()),
        [id, more @ ..] => {
            let id = parse_id(id, "Ticket")?;
            match (more, m) {
                ([], Method::GET) => {
                    need(member, Perm::ReadTickets)?;
                    let st = app.state();
                    ok_json(st.render_ticket(st.get_ticket(id)?))
                }
                ([], Method::PATCH) => {
                    need(member, Perm::EditTickets)?;
                    let b = json_body(body)?;
                    let (v, ch) = app.state().patch_ticket(id, &b, member)?;
                    app.commit(ch);
                    ok_json(v)
                }
                ([], Method::PUT) => {
                    need(member, Perm::EditTickets)?;
                    let b = json_body(body)?;
                    let (v, ch) = app.state().put_ticket(id, &b, member)?;
                    app.commit(ch);
                    ok_json(v)
                }
                ([], Method::DELETE) => {
                    need(member, Perm::DeleteTickets)?;
                    let ch = app.state().delete_ticket(id, member)?;
                    app.commit(ch);
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                (["notes"], Method::GET) | (["notes", "count"], Method::GET) => {
                    need(member, Perm::ReadTickets)?;
                    let st = app.state();
                    st.get_ticket(id)?;
                    let items: Vec<Value> = st
                        .notes
                        .get(&id)
                        .map(|ns| ns.iter().map(|n| st.render_note(n)).collect())
                        .unwrap_or_default();
                    drop(st);
                    if more.len() == 1 {
                        list.respond(items)
                    } else {
                        list.count(items)
                    }
                }
                (["notes"], Method::POST) => {
                    need(member, Perm::EditTickets)?;
                    let b = json_body(body)?;
                    let moves = app.faults().cfg.note_moves_last_updated;
                    let (v, ch) = app.state().add_note(id, &b, member, moves)?;
                    app.commit(ch);
                    created(v)
                }
                (["notes", nid], Method::GET) => {
                    need(member, Perm::ReadTickets)?;
                    let nid = parse_id(nid, "Note")?;
                    let st = app.state();
                    st.get_ticket(id)?;
                    let n = st
                        .notes
                        .get(&id)
                        .and_then(|ns| ns.iter().find(|n| n.id == nid))
                        .ok_or_else(|| CwError::not_found(format!("Note {nid} not found")))?;
                    ok_json(st.render_note(n))
                }
                (["allnotes"], Method::GET) => {
                    need(member, Perm::ReadTickets)?;
                    let st = app.state();
                    st.get_ticket(id)?;
                    let items: Vec<Value> = st
                        .notes
                        .get(&id)
                        .map(|ns| ns.iter().map(|n| st.render_all_note(n)).collect())
                        .unwrap_or_default();
                    drop(st);
                    list.respond(items)
                }
                (["merge"], Method::POST) => {
                    need(member, Perm::EditTickets)?;
                    let b = json_body(body)?;
                    let (v, ch) = app.state().merge(id, &b, member)?;
                    app.commit(ch);
                    ok_json(v)
                }
                ([] | ["notes"] | ["notes", _] | ["allnotes"] | ["merge"], _) => {
                    Err(CwError::method_not_allowed())
                }
                _ => Err(CwError::no_endpoint()),
            }
        }
    }
}

fn callbacks_api(
    app: &App,
    method: &Method,
    rest: &[&str],
    body: &Bytes,
    member: &Member,
    list: ListReq,
) -> CwResult<Response> {
    match (rest, method.clone()) {
        ([], Method::GET) | (["count"], Method::GET) => {
            let st = app.state();
            let items: Vec<Value> = st
                .callbacks
                .values()
                .map(|c| st.render_callback(c))
                .collect();
            drop(st);
            if rest.is_empty() {
                list.respond(items)
            } else {
                list.count(items)
            }
        }
        ([], Method::POST) => {
            let b = json_body(body)?;
            let v = app.state().create_callback(&b, member)?;
            app.mark_dirty();
            created(v)
        }
        ([id], m) => {
            let id = parse_id(id, "Callback")?;
            match m {
                Method::GET => {
                    let st = app.state();
                    ok_json(st.render_callback(st.get_callback(id)?))
                }
                Method::PUT | Method::PATCH => {
                    let b = json_body(body)?;
                    let v = app
                        .state()
                        .update_callback(id, &b, m == Method::PATCH, member)?;
                    app.mark_dirty();
                    ok_json(v)
                }
                Method::DELETE => {
                    app.state().delete_callback(id)?;
                    app.mark_dirty();
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Err(CwError::method_not_allowed()),
            }
        }
        ([], _) => Err(CwError::method_not_allowed()),
        _ => Err(CwError::no_endpoint()),
    }
}
