-- The signed bytes of recent snapshot versions (PostgreSQL flavour; ../sqlite/0010_signed_snapshots.sql
-- declares the same table).
--
-- The service that claimed a version signs it and stores the bytes here; every other service
-- on the database serves those bytes for that version instead of signing its own, so a proxy
-- sees one byte string per version whichever replica answers, and never a version below one
-- any replica served. Only the newest rows are kept.
CREATE TABLE signed_snapshots (
    version    BIGINT PRIMARY KEY,
    bytes      BYTEA NOT NULL,
    signed_at  TEXT NOT NULL
);
