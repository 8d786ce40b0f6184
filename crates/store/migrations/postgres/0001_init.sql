-- Casebridge schema, PostgreSQL flavour. Times are Unix milliseconds (UTC); ConnectWise ids are 64-bit.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('partner', 'subtenant', 'standalone')),
    parent_id TEXT REFERENCES accounts(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX accounts_parent ON accounts(parent_id);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE rules (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    level TEXT,
    source TEXT NOT NULL,
    logsource TEXT NOT NULL,
    tags TEXT NOT NULL,
    suggested_rule_type TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE cases (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    rule_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    criticality TEXT NOT NULL,
    status TEXT NOT NULL,
    close_reason TEXT,
    source_format TEXT NOT NULL,
    source_key TEXT NOT NULL,
    alert_count BIGINT NOT NULL,
    observables TEXT NOT NULL,
    raw_alert TEXT NOT NULL,
    routing TEXT,
    ticket_id BIGINT,
    ticket_integration_id TEXT,
    ticket_board_id BIGINT,
    ticket_status_id BIGINT,
    ticket_priority_id BIGINT,
    ticket_company TEXT,
    ticket_url TEXT,
    ticket_state TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (account_id, source_key)
);
CREATE INDEX cases_account ON cases(account_id, id);
CREATE INDEX cases_ticket ON cases(ticket_integration_id, ticket_id);

CREATE TABLE notes (
    id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases(id),
    text TEXT NOT NULL,
    visibility TEXT NOT NULL,
    origin TEXT NOT NULL,
    author TEXT NOT NULL,
    cw_note_id BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (case_id, cw_note_id)
);
CREATE INDEX notes_case ON notes(case_id, id);

CREATE TABLE activity (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases(id),
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    direction TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX activity_case ON activity(case_id, seq);

CREATE TABLE audit_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL UNIQUE REFERENCES accounts(id),
    kind TEXT NOT NULL,
    site_url TEXT NOT NULL,
    company_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    private_key_enc TEXT,
    client_id TEXT NOT NULL,
    parent_company_identifier TEXT,
    apply_to_all_subtenants BIGINT NOT NULL,
    uniform_subtenant_mappings BIGINT NOT NULL,
    allow_private_hosts BIGINT NOT NULL,
    process_notifications BIGINT NOT NULL,
    active BIGINT NOT NULL,
    last_test TEXT,
    tested_ok BIGINT NOT NULL,
    callback_id BIGINT,
    sync_mode TEXT NOT NULL,
    last_callback_at BIGINT,
    watermark TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE mapping_resources (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    resource TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, resource)
);

CREATE TABLE company_mappings (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    subtenant_id TEXT NOT NULL REFERENCES accounts(id),
    company_identifier TEXT NOT NULL,
    PRIMARY KEY (account_id, subtenant_id)
);

CREATE TABLE status_mappings (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    board_id BIGINT NOT NULL,
    confirmed BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account_id, board_id)
);

CREATE TABLE escalation_policies (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id),
    auto_escalate_at TEXT
);

CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL REFERENCES cases(id),
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox(state, due_at);
CREATE INDEX outbox_case ON outbox(case_id, seq);

CREATE TABLE sync_attempts (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX sync_attempts_job ON sync_attempts(job_id, seq);

CREATE TABLE inbox (
    message_id TEXT PRIMARY KEY,
    integration_id TEXT NOT NULL,
    ticket_id BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    processed_at BIGINT
);
CREATE INDEX inbox_pending ON inbox(state, received_at);

CREATE TABLE ticket_sync (
    case_id TEXT PRIMARY KEY REFERENCES cases(id),
    integration_id TEXT NOT NULL,
    ticket_id BIGINT NOT NULL,
    last_status_id BIGINT,
    last_write_cw_at TEXT,
    seen_note_ids TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
