// The SQL of the store, shared by both backends. This file is `include!`d by `sqlite.rs` and
// `postgres.rs`, each of which defines `Db`, `ThisStore`, `BACKEND`, `MIGRATIONS`, `FOR_UPDATE`,
// `SKIP_LOCKED` and `begin_write`. All statements use `$n` placeholders, which both backends
// accept, and only types both agree on (TEXT, 64-bit integers; JSON as TEXT; times as Unix ms).

use async_trait::async_trait;
use casebridge_domain::{
    AccountKind, Criticality, Direction, NoteOrigin, Role, StatusMappings, TicketState, Visibility,
    ids::new_id,
};
use sqlx::{AssertSqlSafe, Row};

use crate::model::*;
use crate::{Store, StoreError, parse_status};

type DbRow = <Db as sqlx::Database>::Row;
type Tx = sqlx::Transaction<'static, Db>;

/// Inbox rows one INSERT carries (4 parameters each, well under both backends' limits).
const INBOX_ROWS_PER_STATEMENT: usize = 500;

macro_rules! case_cols {
    () => {
        "id, account_id, rule_id, title, description, criticality, status, close_reason, source_format, \
         source_key, alert_count, observables, raw_alert, routing, ticket_id, ticket_integration_id, \
         ticket_board_id, ticket_status_id, ticket_priority_id, ticket_company, ticket_url, ticket_state, \
         created_at, updated_at"
    };
}

macro_rules! job_cols {
    () => {
        "o.seq, o.id, o.case_id, o.account_id, o.kind, o.payload, o.state, o.attempts, o.due_at, o.last_error, \
         o.created_at, CAST(CASE WHEN EXISTS (SELECT 1 FROM outbox e WHERE e.case_id = o.case_id AND e.seq < o.seq \
         AND e.state IN ('pending', 'running', 'dead')) THEN 1 ELSE 0 END AS BIGINT) AS blocked"
    };
}

macro_rules! integration_cols {
    () => {
        "id, account_id, kind, site_url, company_id, public_key, private_key_enc, client_id, \
         parent_company_identifier, apply_to_all_subtenants, uniform_subtenant_mappings, allow_private_hosts, \
         process_notifications, active, last_test, tested_ok, callback_id, sync_mode, last_callback_at, watermark, \
         created_at, updated_at"
    };
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value:?}"))
}

fn json_col(row: &DbRow, col: &str) -> crate::Result<serde_json::Value> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn opt_json_col(row: &DbRow, col: &str) -> crate::Result<Option<serde_json::Value>> {
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
        .transpose()
}

fn account_from(row: &DbRow) -> crate::Result<Account> {
    let kind: String = row.try_get("kind")?;
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: AccountKind::parse(&kind).ok_or_else(|| corrupt("account kind", &kind))?,
        parent_id: row.try_get("parent_id")?,
        created_at: row.try_get("created_at")?,
    })
}

fn case_from(row: &DbRow) -> crate::Result<Case> {
    let crit: String = row.try_get("criticality")?;
    let status: String = row.try_get("status")?;
    let ticket_id: Option<i64> = row.try_get("ticket_id")?;
    let ticket = match ticket_id {
        None => None,
        Some(id) => {
            let state: Option<String> = row.try_get("ticket_state")?;
            let state = state.unwrap_or_else(|| "linked".into());
            Some(TicketLink {
                id,
                integration_id: row
                    .try_get::<Option<String>, _>("ticket_integration_id")?
                    .unwrap_or_default(),
                board_id: row.try_get("ticket_board_id")?,
                status_id: row.try_get("ticket_status_id")?,
                priority_id: row.try_get("ticket_priority_id")?,
                company_identifier: row.try_get("ticket_company")?,
                url: row.try_get("ticket_url")?,
                state: TicketState::parse(&state).ok_or_else(|| corrupt("ticket state", &state))?,
            })
        }
    };
    Ok(Case {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        rule_id: row.try_get("rule_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        criticality: Criticality::parse(&crit).ok_or_else(|| corrupt("criticality", &crit))?,
        status: parse_status(&status)?,
        close_reason: row.try_get("close_reason")?,
        source_format: row.try_get("source_format")?,
        source_key: row.try_get("source_key")?,
        alert_count: row.try_get("alert_count")?,
        observables: json_col(row, "observables")?,
        raw_alert: json_col(row, "raw_alert")?,
        routing: opt_json_col(row, "routing")?,
        ticket,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn note_from(row: &DbRow) -> crate::Result<Note> {
    let vis: String = row.try_get("visibility")?;
    let origin: String = row.try_get("origin")?;
    Ok(Note {
        id: row.try_get("id")?,
        case_id: row.try_get("case_id")?,
        text: row.try_get("text")?,
        visibility: Visibility::parse(&vis).ok_or_else(|| corrupt("visibility", &vis))?,
        origin: NoteOrigin::parse(&origin).ok_or_else(|| corrupt("origin", &origin))?,
        author: row.try_get("author")?,
        cw_note_id: row.try_get("cw_note_id")?,
        created_at: row.try_get("created_at")?,
    })
}

fn direction_parse(s: &str) -> crate::Result<Direction> {
    match s {
        "outbound" => Ok(Direction::Outbound),
        "inbound" => Ok(Direction::Inbound),
        "local" => Ok(Direction::Local),
        _ => Err(corrupt("direction", s)),
    }
}

fn job_from(row: &DbRow) -> crate::Result<Job> {
    let state: String = row.try_get("state")?;
    Ok(Job {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        case_id: row.try_get("case_id")?,
        account_id: row.try_get("account_id")?,
        kind: row.try_get("kind")?,
        payload: json_col(row, "payload")?,
        state: JobState::parse(&state).ok_or_else(|| corrupt("job state", &state))?,
        attempts: row.try_get("attempts")?,
        due_at: row.try_get("due_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        blocked: row.try_get::<i64, _>("blocked")? != 0,
    })
}

fn integration_from(row: &DbRow) -> crate::Result<Integration> {
    let flag = |c: &str| -> crate::Result<bool> { Ok(row.try_get::<i64, _>(c)? != 0) };
    Ok(Integration {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        kind: row.try_get("kind")?,
        site_url: row.try_get("site_url")?,
        company_id: row.try_get("company_id")?,
        public_key: row.try_get("public_key")?,
        private_key_enc: row.try_get("private_key_enc")?,
        client_id: row.try_get("client_id")?,
        parent_company_identifier: row.try_get("parent_company_identifier")?,
        apply_to_all_subtenants: flag("apply_to_all_subtenants")?,
        uniform_subtenant_mappings: flag("uniform_subtenant_mappings")?,
        allow_private_hosts: flag("allow_private_hosts")?,
        process_notifications: flag("process_notifications")?,
        active: flag("active")?,
        last_test: opt_json_col(row, "last_test")?,
        tested_ok: flag("tested_ok")?,
        callback_id: row.try_get("callback_id")?,
        sync_mode: row.try_get("sync_mode")?,
        last_callback_at: row.try_get("last_callback_at")?,
        watermark: row.try_get("watermark")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn insert_audit(tx: &mut Tx, a: &AuditEntry) -> crate::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (account_id, actor, at, action, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&a.account_id)
    .bind(&a.actor)
    .bind(a.at)
    .bind(&a.action)
    .bind(a.detail.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_activity(tx: &mut Tx, case_id: &str, a: &Activity) -> crate::Result<()> {
    sqlx::query("INSERT INTO activity (case_id, at, actor, direction, kind, message) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(case_id)
        .bind(a.at)
        .bind(&a.actor)
        .bind(a.direction.as_str())
        .bind(&a.kind)
        .bind(&a.message)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn case_in(tx: &mut Tx, id: &str) -> crate::Result<Case> {
    let row = sqlx::query(concat!(
        "SELECT ",
        case_cols!(),
        " FROM cases WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("case {id}")))?;
    case_from(&row)
}

async fn apply_change_in(tx: &mut Tx, case_id: &str, change: &CaseChange) -> crate::Result<Case> {
    let now = now_millis();
    let sql = format!("SELECT status, account_id FROM cases WHERE id = $1{FOR_UPDATE}");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(case_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))?;
    let current: String = row.try_get("status")?;
    let account_id: String = row.try_get("account_id")?;
    if let Some(expected) = change.expect_status
        && expected.as_str() != current
    {
        return Err(StoreError::Conflict(format!(
            "case {case_id} is {current}, not {}",
            expected.as_str()
        )));
    }
    if let Some(status) = change.status {
        sqlx::query("UPDATE cases SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now)
            .bind(case_id)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(reason) = &change.close_reason {
        sqlx::query("UPDATE cases SET close_reason = $1 WHERE id = $2")
            .bind(reason.as_deref())
            .bind(case_id)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(routing) = &change.routing {
        sqlx::query("UPDATE cases SET routing = $1, updated_at = $2 WHERE id = $3")
            .bind(routing.to_string())
            .bind(now)
            .bind(case_id)
            .execute(&mut **tx)
            .await?;
    }
    if change.raise_alert_count {
        sqlx::query(
            "UPDATE cases SET alert_count = alert_count + 1, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(case_id)
        .execute(&mut **tx)
        .await?;
    }
    match &change.ticket {
        None => {}
        Some(TicketLinkChange::Set(t)) => {
            sqlx::query(
                "UPDATE cases SET ticket_id = $1, ticket_integration_id = $2, ticket_board_id = $3, ticket_status_id = $4, \
                 ticket_priority_id = $5, ticket_company = $6, ticket_url = $7, ticket_state = $8, updated_at = $9 WHERE id = $10",
            )
            .bind(t.id)
            .bind(&t.integration_id)
            .bind(t.board_id)
            .bind(t.status_id)
            .bind(t.priority_id)
            .bind(t.company_identifier.as_deref())
            .bind(t.url.as_deref())
            .bind(t.state.as_str())
            .bind(now)
            .bind(case_id)
            .execute(&mut **tx)
            .await?;
        }
        Some(TicketLinkChange::UpdateStatus(status_id)) => {
            sqlx::query("UPDATE cases SET ticket_status_id = $1, updated_at = $2 WHERE id = $3")
                .bind(*status_id)
                .bind(now)
                .bind(case_id)
                .execute(&mut **tx)
                .await?;
        }
        Some(TicketLinkChange::State(state)) => {
            sqlx::query("UPDATE cases SET ticket_state = $1, updated_at = $2 WHERE id = $3")
                .bind(state.as_str())
                .bind(now)
                .bind(case_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    if let Some(n) = &change.note {
        sqlx::query(
            "INSERT INTO notes (id, case_id, text, visibility, origin, author, cw_note_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&n.id)
        .bind(case_id)
        .bind(&n.text)
        .bind(n.visibility.as_str())
        .bind(n.origin.as_str())
        .bind(&n.author)
        .bind(n.cw_note_id)
        .bind(n.created_at)
        .execute(&mut **tx)
        .await?;
    }
    if let Some((note_id, cw_note_id)) = &change.note_delivered {
        // Guarded so a ConnectWise note already linked to another note of the case (it cannot
        // be, but a unique violation would fail the whole change) leaves the link unset.
        sqlx::query(
            "UPDATE notes SET cw_note_id = $1 WHERE id = $2 AND case_id = $3 \
             AND NOT EXISTS (SELECT 1 FROM notes o WHERE o.case_id = $3 AND o.cw_note_id = $1)",
        )
        .bind(cw_note_id)
        .bind(note_id)
        .bind(case_id)
        .execute(&mut **tx)
        .await?;
    }
    for a in &change.activity {
        insert_activity(tx, case_id, a).await?;
    }
    for j in &change.jobs {
        sqlx::query(
            "INSERT INTO outbox (id, case_id, account_id, kind, payload, state, attempts, due_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)",
        )
        .bind(new_id("job"))
        .bind(case_id)
        .bind(&account_id)
        .bind(&j.kind)
        .bind(j.payload.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    case_in(tx, case_id).await
}

fn bool_i64(b: bool) -> i64 {
    i64::from(b)
}

#[async_trait]
impl Store for ThisStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(migrations::CREATE_TABLE)
            .execute(&mut *tx)
            .await?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>("version"))
            .collect::<Result<_, _>>()?;
        for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                backend = BACKEND,
                version = m.version,
                name = m.name,
                "migration applied"
            );
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ready(&self) -> crate::Result<bool> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM schema_migrations")
            .fetch_optional(&self.pool)
            .await;
        match row {
            Ok(Some(r)) => Ok(
                r.try_get::<Option<i64>, _>("v")?.unwrap_or(0) >= migrations::latest(MIGRATIONS)
            ),
            Ok(None) => Ok(false),
            Err(sqlx::Error::Database(_)) => Ok(false), // no migrations table yet
            Err(e) => Err(e.into()),
        }
    }

    async fn create_account(
        &self,
        name: &str,
        kind: AccountKind,
        parent_id: Option<&str>,
    ) -> crate::Result<Account> {
        let a = Account {
            id: new_id("acct"),
            name: name.to_string(),
            kind,
            parent_id: parent_id.map(str::to_string),
            created_at: now_millis(),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO accounts (id, name, kind, parent_id, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&a.id)
            .bind(&a.name)
            .bind(a.kind.as_str())
            .bind(a.parent_id.as_deref())
            .bind(a.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(a)
    }

    async fn account(&self, id: &str) -> crate::Result<Option<Account>> {
        sqlx::query("SELECT id, name, kind, parent_id, created_at FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| account_from(&r))
            .transpose()
    }

    async fn account_by_name(&self, name: &str) -> crate::Result<Option<Account>> {
        sqlx::query("SELECT id, name, kind, parent_id, created_at FROM accounts WHERE name = $1 ORDER BY id LIMIT 1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| account_from(&r))
            .transpose()
    }

    async fn subtenants(&self, partner_id: &str) -> crate::Result<Vec<Account>> {
        sqlx::query("SELECT id, name, kind, parent_id, created_at FROM accounts WHERE parent_id = $1 ORDER BY id")
            .bind(partner_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(account_from)
            .collect()
    }

    async fn all_accounts(&self) -> crate::Result<Vec<Account>> {
        sqlx::query("SELECT id, name, kind, parent_id, created_at FROM accounts ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(account_from)
            .collect()
    }

    async fn create_user(&self, user: &NewUser) -> crate::Result<String> {
        let id = new_id("user");
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO users (id, account_id, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&id)
            .bind(&user.account_id)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn user_exists(&self, email: &str) -> crate::Result<bool> {
        Ok(sqlx::query("SELECT 1 AS one FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    async fn create_token(
        &self,
        account_id: &str,
        role: Role,
        token_hash: &str,
        label: &str,
    ) -> crate::Result<String> {
        let id = new_id("tok");
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO api_tokens (id, account_id, role, token_hash, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&id)
            .bind(account_id)
            .bind(role.as_str())
            .bind(token_hash)
            .bind(label)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn token_grant(&self, token_hash: &str) -> crate::Result<Option<TokenGrant>> {
        let Some(row) =
            sqlx::query("SELECT id, account_id, role FROM api_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let role: String = row.try_get("role")?;
        Ok(Some(TokenGrant {
            token_id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
        }))
    }

    async fn upsert_rules(&self, rules: &[Rule]) -> crate::Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut n = 0;
        let now = now_millis();
        for r in rules {
            let done = sqlx::query(
                "INSERT INTO rules (id, title, level, source, logsource, tags, suggested_rule_type, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title, level = excluded.level, source = excluded.source, \
                 logsource = excluded.logsource, tags = excluded.tags, suggested_rule_type = excluded.suggested_rule_type",
            )
            .bind(&r.id)
            .bind(&r.title)
            .bind(r.level.map(|l| l.as_str()))
            .bind(&r.source)
            .bind(r.logsource.to_string())
            .bind(serde_json::to_string(&r.tags).unwrap_or_else(|_| "[]".into()))
            .bind(&r.suggested_rule_type)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            n += done.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn rule(&self, id: &str) -> crate::Result<Option<Rule>> {
        sqlx::query("SELECT id, title, level, source, logsource, tags, suggested_rule_type FROM rules WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| rule_from(&r))
            .transpose()
    }

    async fn rules(&self) -> crate::Result<Vec<Rule>> {
        sqlx::query("SELECT id, title, level, source, logsource, tags, suggested_rule_type FROM rules ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rule_from)
            .collect()
    }

    async fn insert_alert_case(&self, c: &NewCase, actor: &str) -> crate::Result<AlertInsert> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO cases (id, account_id, rule_id, title, description, criticality, status, source_format, source_key, \
             alert_count, observables, raw_alert, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, 1, $9, $10, $11, $11) \
             ON CONFLICT (account_id, source_key) DO NOTHING",
        )
        .bind(&c.id)
        .bind(&c.account_id)
        .bind(&c.rule_id)
        .bind(&c.title)
        .bind(&c.description)
        .bind(c.criticality.as_str())
        .bind(&c.source_format)
        .bind(&c.source_key)
        .bind(c.observables.to_string())
        .bind(c.raw_alert.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let result = if inserted {
            let msg = format!(
                "case opened from a {} alert (rule {})",
                c.source_format, c.rule_id
            );
            insert_activity(
                &mut tx,
                &c.id,
                &Activity::new(actor, Direction::Local, "case_opened", msg),
            )
            .await?;
            AlertInsert::Created(Box::new(case_in(&mut tx, &c.id).await?))
        } else {
            let id: String =
                sqlx::query("SELECT id FROM cases WHERE account_id = $1 AND source_key = $2")
                    .bind(&c.account_id)
                    .bind(&c.source_key)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("id")?;
            let change = CaseChange {
                raise_alert_count: true,
                activity: vec![Activity::new(
                    actor,
                    Direction::Local,
                    "alert_repeat",
                    format!(
                        "the same {} alert arrived again ({}); no new case, nothing sent to ConnectWise",
                        c.source_format, c.source_key
                    ),
                )],
                ..Default::default()
            };
            AlertInsert::Repeat(Box::new(apply_change_in(&mut tx, &id, &change).await?))
        };
        tx.commit().await?;
        Ok(result)
    }

    async fn case(&self, id: &str) -> crate::Result<Option<Case>> {
        sqlx::query(concat!(
            "SELECT ",
            case_cols!(),
            " FROM cases WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| case_from(&r))
        .transpose()
    }

    async fn cases(&self, f: &CaseFilter) -> crate::Result<Vec<Case>> {
        if f.account_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = sqlx::QueryBuilder::<Db>::new(concat!(
            "SELECT ",
            case_cols!(),
            " FROM cases WHERE account_id IN ("
        ));
        let mut sep = qb.separated(", ");
        for a in &f.account_ids {
            sep.push_bind(a.clone());
        }
        qb.push(")");
        if let Some(s) = f.status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(c) = f.criticality {
            qb.push(" AND criticality = ").push_bind(c.as_str());
        }
        if let Some(q) = f.q.as_ref().filter(|q| !q.trim().is_empty()) {
            // `%`, `_` and `\` in the query are text, not wildcards. SQLite's LOWER() folds ASCII
            // only, PostgreSQL's all of Unicode: matching the column's LOWER() against both the
            // fully and the ASCII-lowercased query finds text as typed on both backends.
            let like = |s: String| {
                format!(
                    "%{}%",
                    s.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                )
            };
            let q = q.trim();
            let patterns = [like(q.to_lowercase()), like(q.to_ascii_lowercase())];
            qb.push(" AND (");
            for (i, col) in ["title", "description", "rule_id"].into_iter().enumerate() {
                for (j, pattern) in patterns.iter().enumerate() {
                    if i + j > 0 {
                        qb.push(" OR ");
                    }
                    qb.push(format_args!("LOWER({col}) LIKE "))
                        .push_bind(pattern.clone())
                        .push(" ESCAPE '\\'");
                }
            }
            qb.push(")");
        }
        if let Some(before) = &f.before_id {
            qb.push(" AND id < ").push_bind(before.clone());
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(case_from)
            .collect()
    }

    async fn case_by_ticket(
        &self,
        integration_id: &str,
        ticket_id: i64,
    ) -> crate::Result<Option<Case>> {
        sqlx::query(concat!(
            "SELECT ",
            case_cols!(),
            " FROM cases WHERE ticket_integration_id = $1 AND ticket_id = $2 ORDER BY id DESC LIMIT 1"
        ))
        .bind(integration_id)
        .bind(ticket_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| case_from(&r))
        .transpose()
    }

    async fn apply_case_change(&self, case_id: &str, change: CaseChange) -> crate::Result<Case> {
        let mut tx = self.begin_write().await?;
        let case = apply_change_in(&mut tx, case_id, &change).await?;
        tx.commit().await?;
        Ok(case)
    }

    async fn notes(&self, case_id: &str) -> crate::Result<Vec<Note>> {
        sqlx::query(
            "SELECT id, case_id, text, visibility, origin, author, cw_note_id, created_at FROM notes WHERE case_id = $1 ORDER BY created_at, id",
        )
        .bind(case_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(note_from)
        .collect()
    }

    async fn activity(&self, case_id: &str) -> crate::Result<Vec<Activity>> {
        sqlx::query("SELECT at, actor, direction, kind, message FROM activity WHERE case_id = $1 ORDER BY seq")
            .bind(case_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let d: String = r.try_get("direction")?;
                Ok(Activity {
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    direction: direction_parse(&d)?,
                    kind: r.try_get("kind")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    async fn linked_cases(&self, integration_id: &str) -> crate::Result<Vec<Case>> {
        sqlx::query(concat!(
            "SELECT ",
            case_cols!(),
            " FROM cases WHERE ticket_integration_id = $1 AND ticket_id IS NOT NULL AND ticket_state = 'linked' ORDER BY id"
        ))
        .bind(integration_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(case_from)
        .collect()
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: i64,
    ) -> crate::Result<Vec<Job>> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT {} FROM outbox o WHERE o.state IN ('pending', 'running') AND o.due_at <= $1 \
             AND (o.state = 'pending' OR o.lease_until < $1) \
             AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.case_id = o.case_id AND e.seq < o.seq \
             AND e.state IN ('pending', 'running', 'dead')) ORDER BY o.seq LIMIT $2{SKIP_LOCKED}",
            job_cols!()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut j = job_from(r)?;
            sqlx::query(
                "UPDATE outbox SET state = 'running', attempts = attempts + 1, lease_owner = $1, lease_until = $2, updated_at = $3 WHERE id = $4",
            )
                .bind(owner)
                .bind(lease_until)
                .bind(now)
                .bind(&j.id)
                .execute(&mut *tx)
                .await?;
            j.state = JobState::Running;
            j.attempts += 1;
            jobs.push(j);
        }
        tx.commit().await?;
        Ok(jobs)
    }

    async fn heartbeat_jobs(
        &self,
        owner: &str,
        job_ids: &[String],
        lease_until: Millis,
    ) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        for id in job_ids {
            sqlx::query("UPDATE outbox SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND state = 'running'")
                .bind(lease_until)
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_job(
        &self,
        job_id: &str,
        owner: &str,
        attempt: &Attempt,
        outcome: JobOutcome,
        effects: Option<CaseChange>,
    ) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        let (state, due, err) = match &outcome {
            JobOutcome::Done => ("done", None, None),
            JobOutcome::Retry { due_at, error } => ("pending", Some(*due_at), Some(error.clone())),
            JobOutcome::Dead { error } => ("dead", None, Some(error.clone())),
        };
        let updated = sqlx::query(
            "UPDATE outbox SET state = $1, due_at = COALESCE($2, due_at), last_error = COALESCE($3, last_error), \
             lease_owner = NULL, lease_until = NULL, updated_at = $4 WHERE id = $5 AND lease_owner = $6 AND state = 'running'",
        )
        .bind(state)
        .bind(due)
        .bind(err)
        .bind(now_millis())
        .bind(job_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::Conflict(format!(
                "job {job_id} is no longer leased to {owner}"
            )));
        }
        sqlx::query("INSERT INTO sync_attempts (job_id, at, status_code, error, duration_ms, outcome) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(job_id)
            .bind(attempt.at)
            .bind(attempt.status_code)
            .bind(attempt.error.as_deref())
            .bind(attempt.duration_ms)
            .bind(&attempt.outcome)
            .execute(&mut *tx)
            .await?;
        if let Some(change) = effects {
            let case_id: String = sqlx::query("SELECT case_id FROM outbox WHERE id = $1")
                .bind(job_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("case_id")?;
            apply_change_in(&mut tx, &case_id, &change).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn release_jobs(&self, owner: &str) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE outbox SET state = 'pending', lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND state = 'running'")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn jobs(
        &self,
        state: Option<JobState>,
        account_ids: &[String],
        limit: i64,
    ) -> crate::Result<Vec<Job>> {
        if account_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = sqlx::QueryBuilder::<Db>::new(concat!(
            "SELECT ",
            job_cols!(),
            " FROM outbox o WHERE o.account_id IN ("
        ));
        let mut sep = qb.separated(", ");
        for a in account_ids {
            sep.push_bind(a.clone());
        }
        qb.push(")");
        if let Some(s) = state {
            qb.push(" AND o.state = ").push_bind(s.as_str());
        }
        qb.push(" ORDER BY o.seq DESC LIMIT ").push_bind(limit);
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(job_from)
            .collect()
    }

    async fn job(&self, id: &str) -> crate::Result<Option<Job>> {
        sqlx::query(concat!(
            "SELECT ",
            job_cols!(),
            " FROM outbox o WHERE o.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| job_from(&r))
        .transpose()
    }

    async fn job_attempts(&self, id: &str) -> crate::Result<Vec<Attempt>> {
        sqlx::query("SELECT at, status_code, error, duration_ms, outcome FROM sync_attempts WHERE job_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Attempt {
                    at: r.try_get("at")?,
                    status_code: r.try_get("status_code")?,
                    error: r.try_get("error")?,
                    duration_ms: r.try_get("duration_ms")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect()
    }

    async fn retry_job(&self, id: &str, actor: &str) -> crate::Result<Job> {
        let mut tx = self.begin_write().await?;
        let now = now_millis();
        let row = sqlx::query("SELECT case_id, state FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
        let state: String = row.try_get("state")?;
        if state != "dead" {
            return Err(StoreError::Conflict(format!(
                "job {id} is {state}; only dead jobs can be retried"
            )));
        }
        let case_id: String = row.try_get("case_id")?;
        sqlx::query(
            "UPDATE outbox SET state = 'pending', due_at = $1, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_activity(
            &mut tx,
            &case_id,
            &Activity::new(
                actor,
                Direction::Local,
                "job_retry",
                format!("dead job {id} queued again by hand"),
            ),
        )
        .await?;
        tx.commit().await?;
        self.job(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {id}")))
    }

    async fn has_pending_create(&self, case_id: &str) -> crate::Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM outbox WHERE case_id = $1 AND kind = 'create_ticket' AND state IN ('pending', 'running', 'dead')",
        )
        .bind(case_id)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    async fn defer_job(&self, job_id: &str, owner: &str, due_at: Millis) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE outbox SET state = 'pending', due_at = $1, attempts = attempts - 1, lease_owner = NULL, lease_until = NULL \
             WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
        )
        .bind(due_at)
        .bind(job_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reserve_requests(
        &self,
        integration_id: &str,
        account_id: &str,
        window_start: Millis,
        n: i64,
        limit: i64,
    ) -> crate::Result<bool> {
        let mut tx = self.begin_write().await?;
        // one reservation at a time per integration, across nodes
        let lock = format!("SELECT id FROM integrations WHERE id = $1{FOR_UPDATE}");
        sqlx::query(AssertSqlSafe(lock))
            .bind(integration_id)
            .fetch_optional(&mut *tx)
            .await?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(used), 0) AS BIGINT) AS total, CAST(COUNT(*) AS BIGINT) AS active, \
             CAST(COALESCE(SUM(CASE WHEN account_id = $3 THEN used ELSE 0 END), 0) AS BIGINT) AS mine, \
             CAST(COALESCE(SUM(CASE WHEN account_id = $3 THEN 1 ELSE 0 END), 0) AS BIGINT) AS known \
             FROM request_budget WHERE integration_id = $1 AND window_start = $2",
        )
        .bind(integration_id)
        .bind(window_start)
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
        let total: i64 = row.try_get("total")?;
        let mine: i64 = row.try_get("mine")?;
        let active: i64 = row.try_get::<i64, _>("active")?
            + if row.try_get::<i64, _>("known")? == 0 {
                1
            } else {
                0
            };
        // each account may use an equal share with room kept for one more account, so a noisy
        // sub-tenant never takes what a quiet one arriving later in the window needs
        let share = (limit + active) / (active + 1);
        let allowed = total + n <= limit && mine + n <= share.max(n);
        if allowed {
            sqlx::query(
                "INSERT INTO request_budget (integration_id, window_start, account_id, used) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (integration_id, window_start, account_id) DO UPDATE SET used = request_budget.used + excluded.used",
            )
            .bind(integration_id)
            .bind(window_start)
            .bind(account_id)
            .bind(n)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM request_budget WHERE integration_id = $1 AND window_start < $2")
            .bind(integration_id)
            .bind(window_start)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(allowed)
    }

    async fn integration_of(&self, account_id: &str) -> crate::Result<Option<Integration>> {
        sqlx::query(concat!(
            "SELECT ",
            integration_cols!(),
            " FROM integrations WHERE account_id = $1"
        ))
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| integration_from(&r))
        .transpose()
    }

    async fn integration(&self, id: &str) -> crate::Result<Option<Integration>> {
        sqlx::query(concat!(
            "SELECT ",
            integration_cols!(),
            " FROM integrations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| integration_from(&r))
        .transpose()
    }

    async fn integrations(&self) -> crate::Result<Vec<Integration>> {
        sqlx::query(concat!(
            "SELECT ",
            integration_cols!(),
            " FROM integrations ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(integration_from)
        .collect()
    }

    async fn save_integration(&self, i: &Integration, audit: &AuditEntry) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        save_integration_in(&mut tx, i).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_uniform_mode(
        &self,
        i: &Integration,
        clear: &[String],
        audit: &AuditEntry,
    ) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        save_integration_in(&mut tx, i).await?;
        for chunk in clear.chunks(500) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "DELETE FROM mapping_resources WHERE account_id IN (",
            );
            let mut sep = qb.separated(", ");
            for a in chunk {
                sep.push_bind(a.clone());
            }
            qb.push(")");
            qb.build().execute(&mut *tx).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_integration_sync(
        &self,
        id: &str,
        callback_id: Option<i64>,
        sync_mode: &str,
    ) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE integrations SET callback_id = $1, sync_mode = $2, updated_at = $3 WHERE id = $4")
            .bind(callback_id)
            .bind(sync_mode)
            .bind(now_millis())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_watermark(&self, id: &str, watermark: &str) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE integrations SET watermark = $1 WHERE id = $2")
            .bind(watermark)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn touch_last_callback(&self, id: &str, at: Millis) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE integrations SET last_callback_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mapping(
        &self,
        account_id: &str,
        resource: MappingResource,
    ) -> crate::Result<Option<serde_json::Value>> {
        let row = sqlx::query(
            "SELECT body FROM mapping_resources WHERE account_id = $1 AND resource = $2",
        )
        .bind(account_id)
        .bind(resource.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| json_col(&r, "body")).transpose()
    }

    async fn put_mapping(
        &self,
        account_id: &str,
        resource: MappingResource,
        body: Option<&serde_json::Value>,
        audit: &AuditEntry,
    ) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        match body {
            Some(b) => {
                sqlx::query(
                    "INSERT INTO mapping_resources (account_id, resource, body, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (account_id, resource) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                )
                .bind(account_id)
                .bind(resource.as_str())
                .bind(b.to_string())
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "DELETE FROM mapping_resources WHERE account_id = $1 AND resource = $2",
                )
                .bind(account_id)
                .bind(resource.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn accounts_with_own_mappings(
        &self,
        account_ids: &[String],
    ) -> crate::Result<Vec<String>> {
        let mut out = Vec::new();
        for chunk in account_ids.chunks(500) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT DISTINCT account_id FROM mapping_resources WHERE account_id IN (",
            );
            let mut sep = qb.separated(", ");
            for a in chunk {
                sep.push_bind(a.clone());
            }
            qb.push(") ORDER BY account_id");
            for r in qb.build().fetch_all(&self.pool).await? {
                out.push(r.try_get("account_id")?);
            }
        }
        Ok(out)
    }

    async fn company_mappings(&self, account_id: &str) -> crate::Result<Vec<(String, String)>> {
        sqlx::query("SELECT subtenant_id, company_identifier FROM company_mappings WHERE account_id = $1 ORDER BY subtenant_id")
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("subtenant_id")?, r.try_get("company_identifier")?)))
            .collect()
    }

    async fn put_company_mappings(
        &self,
        account_id: &str,
        items: &[(String, String)],
        audit: &AuditEntry,
    ) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM company_mappings WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        for (sub, company) in items {
            sqlx::query("INSERT INTO company_mappings (account_id, subtenant_id, company_identifier) VALUES ($1, $2, $3)")
                .bind(account_id)
                .bind(sub)
                .bind(company)
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn status_mappings(&self, account_id: &str) -> crate::Result<StatusMappings> {
        let rows = sqlx::query("SELECT board_id, confirmed, body FROM status_mappings WHERE account_id = $1 ORDER BY board_id")
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        let mut boards = Vec::with_capacity(rows.len());
        for r in rows {
            let body = json_col(&r, "body")?;
            boards.push(casebridge_domain::StatusMapping {
                board_id: r.try_get("board_id")?,
                confirmed: r.try_get::<i64, _>("confirmed")? != 0,
                statuses: serde_json::from_value(body)
                    .map_err(|e| StoreError::Corrupt(format!("status mapping: {e}")))?,
            });
        }
        Ok(StatusMappings { boards })
    }

    async fn put_status_mappings(
        &self,
        account_id: &str,
        m: &StatusMappings,
        audit: &AuditEntry,
    ) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM status_mappings WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        for b in &m.boards {
            sqlx::query("INSERT INTO status_mappings (account_id, board_id, confirmed, body) VALUES ($1, $2, $3, $4)")
                .bind(account_id)
                .bind(b.board_id)
                .bind(bool_i64(b.confirmed))
                .bind(serde_json::to_string(&b.statuses).unwrap_or_else(|_| "{}".into()))
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn escalation_policy(&self, account_id: &str) -> crate::Result<Option<Criticality>> {
        let row =
            sqlx::query("SELECT auto_escalate_at FROM escalation_policies WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(&self.pool)
                .await?;
        let at: Option<String> = match row {
            Some(r) => r.try_get("auto_escalate_at")?,
            None => None,
        };
        Ok(at.as_deref().and_then(Criticality::parse))
    }

    async fn put_escalation_policy(
        &self,
        account_id: &str,
        at: Option<Criticality>,
        audit: &AuditEntry,
    ) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO escalation_policies (account_id, auto_escalate_at) VALUES ($1, $2) \
             ON CONFLICT (account_id) DO UPDATE SET auto_escalate_at = excluded.auto_escalate_at",
        )
        .bind(account_id)
        .bind(at.map(|c| c.as_str()))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(&self, account_id: &str) -> crate::Result<Vec<AuditEntry>> {
        sqlx::query("SELECT account_id, actor, at, action, detail FROM audit_log WHERE account_id = $1 ORDER BY seq")
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    account_id: r.try_get("account_id")?,
                    actor: r.try_get("actor")?,
                    at: r.try_get("at")?,
                    action: r.try_get("action")?,
                    detail: json_col(r, "detail")?,
                })
            })
            .collect()
    }

    async fn insert_inbox(&self, e: &InboxEvent) -> crate::Result<bool> {
        let fresh = self.insert_inbox_batch(std::slice::from_ref(e)).await?;
        Ok(fresh.first().copied().unwrap_or(false))
    }

    async fn insert_inbox_batch(&self, events: &[InboxEvent]) -> crate::Result<Vec<bool>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // One multi-row statement per chunk (not one round trip per event): `RETURNING` names
        // the rows that went in; a MessageId already stored — or repeated within the batch —
        // is skipped by `ON CONFLICT DO NOTHING`.
        let mut tx = self.begin_write().await?;
        let mut inserted = std::collections::HashSet::new();
        for chunk in events.chunks(INBOX_ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO inbox (message_id, integration_id, ticket_id, received_at, state) ",
            );
            qb.push_values(chunk, |mut row, e| {
                row.push_bind(e.message_id.clone())
                    .push_bind(e.integration_id.clone())
                    .push_bind(e.ticket_id)
                    .push_bind(e.received_at)
                    .push("'pending'");
            });
            qb.push(" ON CONFLICT (message_id) DO NOTHING RETURNING message_id");
            for r in qb.build().fetch_all(&mut *tx).await? {
                inserted.insert(r.try_get::<String, _>("message_id")?);
            }
        }
        tx.commit().await?;
        // the first occurrence of an inserted MessageId is the new one
        Ok(events
            .iter()
            .map(|e| inserted.remove(&e.message_id))
            .collect())
    }

    async fn take_inbox(&self, limit: i64) -> crate::Result<Vec<InboxEvent>> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE inbox SET state = 'taken', processed_at = $1 WHERE message_id IN (\
             SELECT message_id FROM inbox WHERE state = 'pending' ORDER BY received_at LIMIT $2{SKIP_LOCKED}) \
             RETURNING message_id, integration_id, ticket_id, received_at"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now_millis())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(InboxEvent {
                    message_id: r.try_get("message_id")?,
                    integration_id: r.try_get("integration_id")?,
                    ticket_id: r.try_get("ticket_id")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect::<crate::Result<Vec<_>>>()?;
        // RETURNING promises no order
        out.sort_by(|a, b| {
            (a.received_at, &a.message_id).cmp(&(b.received_at, &b.message_id))
        });
        Ok(out)
    }

    async fn prune_inbox(&self, received_before: i64) -> crate::Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM inbox WHERE state = 'taken' AND received_at < $1")
            .bind(received_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn ticket_sync(&self, case_id: &str) -> crate::Result<Option<TicketSyncState>> {
        let Some(r) = sqlx::query(
            "SELECT case_id, integration_id, ticket_id, last_status_id, last_write_cw_at, seen_note_ids FROM ticket_sync WHERE case_id = $1",
        )
        .bind(case_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let seen: String = r.try_get("seen_note_ids")?;
        Ok(Some(TicketSyncState {
            case_id: r.try_get("case_id")?,
            integration_id: r.try_get("integration_id")?,
            ticket_id: r.try_get("ticket_id")?,
            last_status_id: r.try_get("last_status_id")?,
            last_write_cw_at: r.try_get("last_write_cw_at")?,
            seen_note_ids: serde_json::from_str(&seen)
                .map_err(|e| StoreError::Corrupt(format!("seen_note_ids: {e}")))?,
        }))
    }

    async fn put_ticket_sync(&self, s: &TicketSyncState) -> crate::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO ticket_sync (case_id, integration_id, ticket_id, last_status_id, last_write_cw_at, seen_note_ids, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (case_id) DO UPDATE SET integration_id = excluded.integration_id, \
             ticket_id = excluded.ticket_id, last_status_id = excluded.last_status_id, last_write_cw_at = excluded.last_write_cw_at, \
             seen_note_ids = excluded.seen_note_ids, updated_at = excluded.updated_at",
        )
        .bind(&s.case_id)
        .bind(&s.integration_id)
        .bind(s.ticket_id)
        .bind(s.last_status_id)
        .bind(s.last_write_cw_at.as_deref())
        .bind(serde_json::to_string(&s.seen_note_ids).unwrap_or_else(|_| "[]".into()))
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn rule_from(r: &DbRow) -> crate::Result<Rule> {
    let level: Option<String> = r.try_get("level")?;
    let tags: String = r.try_get("tags")?;
    Ok(Rule {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        level: level.as_deref().and_then(Criticality::parse),
        source: r.try_get("source")?,
        logsource: json_col(r, "logsource")?,
        tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))?,
        suggested_rule_type: r.try_get("suggested_rule_type")?,
    })
}

async fn save_integration_in(tx: &mut Tx, i: &Integration) -> crate::Result<()> {
    sqlx::query(
        "INSERT INTO integrations (id, account_id, kind, site_url, company_id, public_key, private_key_enc, client_id, \
         parent_company_identifier, apply_to_all_subtenants, uniform_subtenant_mappings, allow_private_hosts, \
         process_notifications, active, last_test, tested_ok, callback_id, sync_mode, last_callback_at, watermark, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) \
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, site_url = excluded.site_url, company_id = excluded.company_id, \
         public_key = excluded.public_key, private_key_enc = excluded.private_key_enc, client_id = excluded.client_id, \
         parent_company_identifier = excluded.parent_company_identifier, apply_to_all_subtenants = excluded.apply_to_all_subtenants, \
         uniform_subtenant_mappings = excluded.uniform_subtenant_mappings, allow_private_hosts = excluded.allow_private_hosts, \
         process_notifications = excluded.process_notifications, active = excluded.active, last_test = excluded.last_test, \
         tested_ok = excluded.tested_ok, callback_id = excluded.callback_id, sync_mode = excluded.sync_mode, \
         last_callback_at = excluded.last_callback_at, watermark = excluded.watermark, updated_at = excluded.updated_at",
    )
    .bind(&i.id)
    .bind(&i.account_id)
    .bind(&i.kind)
    .bind(&i.site_url)
    .bind(&i.company_id)
    .bind(&i.public_key)
    .bind(i.private_key_enc.as_deref())
    .bind(&i.client_id)
    .bind(i.parent_company_identifier.as_deref())
    .bind(bool_i64(i.apply_to_all_subtenants))
    .bind(bool_i64(i.uniform_subtenant_mappings))
    .bind(bool_i64(i.allow_private_hosts))
    .bind(bool_i64(i.process_notifications))
    .bind(bool_i64(i.active))
    .bind(i.last_test.as_ref().map(|v| v.to_string()))
    .bind(bool_i64(i.tested_ok))
    .bind(i.callback_id)
    .bind(&i.sync_mode)
    .bind(i.last_callback_at)
    .bind(i.watermark.as_deref())
    .bind(i.created_at)
    .bind(i.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
