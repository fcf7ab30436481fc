-- What each proxy credential last fetched (SQLite flavour; ../postgres/0011_proxy_fetches.sql
-- declares the same columns): when, and the snapshot version it holds since. Written by the
-- replica that answered, batched a second at a time, so any replica's API and /metrics tell
-- how many proxies hold which version.
ALTER TABLE proxy_credentials ADD COLUMN last_fetch_at TEXT;
ALTER TABLE proxy_credentials ADD COLUMN last_fetch_version INTEGER;
