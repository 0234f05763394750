//! The SQLite store's tables, and the migrations from older versions.

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (
    channel TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    total INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    channel TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    payload BLOB NOT NULL,
    msg_id TEXT,
    counted INTEGER NOT NULL DEFAULT 1,
    n INTEGER,
    PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_msg_id ON messages (msg_id);
CREATE TABLE IF NOT EXISTS reads (
    channel TEXT NOT NULL,
    user TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (channel, user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reads_user ON reads (user);
CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts);
CREATE TABLE IF NOT EXISTS dedupe (
    user TEXT NOT NULL,
    channel TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (user, channel, client_msg_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_expires ON dedupe (expires);
CREATE TABLE IF NOT EXISTS cursors (
    user TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS push (
    user TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (user, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS push_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    due INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS push_jobs_due ON push_jobs (due);
PRAGMA user_version = 5;
";

/// Version 1 deduped per user across channels; its entries live minutes,
/// so the table is dropped and recreated per (user, channel).
pub(super) const MIGRATE_1_TO_2: &str = "DROP TABLE IF EXISTS dedupe;";

/// Version 3 keeps when each event entered the outbox (its age bound);
/// events of version 2 have no time (0) and are bounded by bytes only.
pub(super) const MIGRATE_2_TO_3: &str =
    "ALTER TABLE outbox ADD COLUMN ts INTEGER NOT NULL DEFAULT 0;";

/// Version 4 finds messages by `msgId` (receipts and amendments name
/// them), knows which ones count as unread (every message of versions
/// before 4 was a business message, so the default is right), counts
/// them (`channels.total`; each message's `n`: how many counted ones came
/// before it, so an unread count is one lookup, not a scan), and keeps
/// read positions (the `reads` table, made by [`SCHEMA`]).
pub(super) const MIGRATE_3_TO_4: &str = "
ALTER TABLE messages ADD COLUMN msg_id TEXT;
ALTER TABLE messages ADD COLUMN counted INTEGER NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN n INTEGER;
ALTER TABLE channels ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET msg_id = json_extract(CAST(payload AS TEXT), '$.msgId');
UPDATE messages SET n = r.rn FROM (
    SELECT channel, seq, ROW_NUMBER() OVER (PARTITION BY channel ORDER BY seq) - 1 AS rn
    FROM messages
) AS r WHERE messages.channel = r.channel AND messages.seq = r.seq;
UPDATE channels SET total = (SELECT count(*) FROM messages WHERE messages.channel = channels.channel);
";

/// Whether the database has a `messages` table of a version before 4.
pub(super) fn lacks_msg_ids(conn: &rusqlite::Connection) -> rusqlite::Result<bool> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('messages')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(!columns.is_empty() && !columns.iter().any(|c| c == "msg_id"))
}
