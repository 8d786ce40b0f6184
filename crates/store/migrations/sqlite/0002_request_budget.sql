-- Per-integration ConnectWise request budget: requests reserved per account per window.
CREATE TABLE request_budget (
    integration_id TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    account_id TEXT NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (integration_id, window_start, account_id)
);
