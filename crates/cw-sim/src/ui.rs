//! A small server-rendered HTML view for demos: `GET /ui` (tickets), `GET /ui/tickets/{id}` (ticket +
//! notes), and forms posting to `/ui/tickets/{id}/notes` (`text`, `section` = discussion|internal|resolution)
//! and `/ui/tickets/{id}/status` (`status_id`). The forms act as the technician member (`jtech`, else the
//! first member with the technician role) through the same rules as the REST API, so callbacks carry the
//! technician's `MemberId`.
use crate::App;
use crate::model::{Member, Role};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} · cw-sim</title><style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.note{{border:1px solid #ddd;padding:.5em;margin:.5em 0;white-space:pre-wrap}}.tag{{font-size:.8em;color:#555}}</style></head><body><p><a href=\"/ui\">cw-sim tickets</a></p><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

fn technician(app: &App) -> Option<Member> {
    let st = app.state();
    st.members
        .iter()
        .find(|m| m.identifier == "jtech")
        .or_else(|| st.members.iter().find(|m| m.role == Role::Technician))
        .cloned()
}

pub async fn list(State(app): State<App>) -> Response {
    let st = app.state();
    let mut rows = String::new();
    for t in st.tickets.values().rev() {
        let status = st
            .status(t.status_id)
            .map(|s| s.name.as_str())
            .unwrap_or("?");
        let board = st.board(t.board_id).map(|b| b.name.as_str()).unwrap_or("?");
        let company = st
            .company(t.company_id)
            .map(|c| c.identifier.as_str())
            .unwrap_or("?");
        rows.push_str(&format!(
            "<tr><td><a href=\"/ui/tickets/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.summary),
            esc(board),
            esc(status),
            esc(company),
            esc(&t.last_updated),
            id = t.id
        ));
    }
    page(
        &format!("Tickets ({})", st.tickets.len()),
        &format!("<table><tr><th>#</th><th>Summary</th><th>Board</th><th>Status</th><th>Company</th><th>Last updated</th></tr>{rows}</table>"),
    )
    .into_response()
}

pub async fn ticket(State(app): State<App>, Path(id): Path<u64>) -> Response {
    let st = app.state();
    let Some(t) = st.tickets.get(&id) else {
        return (
            StatusCode::NOT_FOUND,
            page("Not found", &format!("<p>Ticket {id} not found</p>")),
        )
            .into_response();
    };
    let mut notes = String::new();
    for n in st.notes.get(&id).map(|v| v.as_slice()).unwrap_or(&[]) {
        let mut tags = Vec::new();
        if n.detail {
            tags.push("Discussion");
        }
        if n.internal {
            tags.push("Internal");
        }
        if n.resolution {
            tags.push("Resolution");
        }
        notes.push_str(&format!(
            "<div class=\"note\"><div class=\"tag\">{} · {} · {}</div>{}</div>",
            esc(&n.created_by),
            esc(&n.date_created),
            tags.join(", "),
            esc(&n.text)
        ));
    }
    let mut opts = String::new();
    for s in st.board_statuses(t.board_id) {
        if s.inactive {
            continue;
        }
        opts.push_str(&format!(
            "<option value=\"{}\"{}>{}{}</option>",
            s.id,
            if s.id == t.status_id { " selected" } else { "" },
            esc(&s.name),
            if s.closed_status { " (closed)" } else { "" }
        ));
    }
    let status = st
        .status(t.status_id)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let body = format!(
        "<p><b>Board:</b> {board} · <b>Status:</b> {status} · <b>Company:</b> {company} · <b>Priority:</b> {prio}</p>\
         <p class=\"tag\">entered {de} by {eb} · updated {lu} by {ub}{merged}</p>\
         <form method=\"post\" action=\"/ui/tickets/{id}/status\"><select name=\"status_id\">{opts}</select> <button>Change status (as technician)</button></form>\
         <h2>Notes</h2>{notes}\
         <form method=\"post\" action=\"/ui/tickets/{id}/notes\"><textarea name=\"text\" rows=\"4\" cols=\"70\"></textarea><br>\
         <select name=\"section\"><option value=\"discussion\">Discussion</option><option value=\"internal\">Internal</option><option value=\"resolution\">Resolution</option></select> \
         <button>Add note (as technician)</button></form>",
        board = esc(&st
            .board(t.board_id)
            .map(|b| b.name.clone())
            .unwrap_or_default()),
        status = esc(&status),
        company = esc(&st
            .company(t.company_id)
            .map(|c| c.identifier.clone())
            .unwrap_or_default()),
        prio = esc(&t
            .priority_id
            .and_then(|p| st.priority(p))
            .map(|p| p.name.clone())
            .unwrap_or_else(|| "-".into())),
        de = esc(&t.date_entered),
        eb = esc(&t.entered_by),
        lu = esc(&t.last_updated),
        ub = esc(&t.updated_by),
        merged = t
            .merged_parent
            .map(|p| format!(" · merged into <a href=\"/ui/tickets/{p}\">{p}</a>"))
            .unwrap_or_default(),
    );
    page(&format!("#{id} {}", t.summary), &body).into_response()
}

fn error_page(e: crate::error::CwError) -> Response {
    (
        e.status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page(
            "Refused",
            &format!("<pre>{}</pre>", esc(&e.body.to_string())),
        )
        .0,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct NoteForm {
    text: String,
    section: Option<String>,
}

pub async fn add_note(
    State(app): State<App>,
    Path(id): Path<u64>,
    Form(f): Form<NoteForm>,
) -> Response {
    let Some(tech) = technician(&app) else {
        return (
            StatusCode::BAD_REQUEST,
            page("No technician", "<p>No technician member is seeded.</p>"),
        )
            .into_response();
    };
    let section = f.section.unwrap_or_else(|| "discussion".into());
    let body = json!({"text": f.text, "detailDescriptionFlag": section == "discussion",
                      "internalAnalysisFlag": section == "internal", "resolutionFlag": section == "resolution"});
    let moves = app.faults().cfg.note_moves_last_updated;
    let r = app.state().add_note(id, &body, &tech, moves);
    match r {
        Ok((_, ch)) => {
            app.commit(ch);
            Redirect::to(&format!("/ui/tickets/{id}")).into_response()
        }
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
pub struct StatusForm {
    status_id: u64,
}

pub async fn set_status(
    State(app): State<App>,
    Path(id): Path<u64>,
    Form(f): Form<StatusForm>,
) -> Response {
    let Some(tech) = technician(&app) else {
        return (
            StatusCode::BAD_REQUEST,
            page("No technician", "<p>No technician member is seeded.</p>"),
        )
            .into_response();
    };
    let ops = json!([{"op": "replace", "path": "status", "value": {"id": f.status_id}}]);
    let r = app.state().patch_ticket(id, &ops, &tech);
    match r {
        Ok((_, ch)) => {
            app.commit(ch);
            Redirect::to(&format!("/ui/tickets/{id}")).into_response()
        }
        Err(e) => error_page(e),
    }
}
