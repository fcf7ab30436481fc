-- Versions that survive a restore (SQLite flavour; ../postgres/0003_versions_after_restore.sql
-- declares the same column).
--
-- A signature claimed when the snapshot service loads everything (start-up, `snapshot
-- export`) takes max(version + 1, Unix time in milliseconds), so a database restored from an
-- older backup, or a fresh one, never signs a version lower than what proxies hold. Such a
-- claim skips versions: its log row says which version it follows. NULL: version - 1.
ALTER TABLE snapshot_log ADD COLUMN previous INTEGER;
