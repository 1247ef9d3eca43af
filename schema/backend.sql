-- The backend's tables as r2-sync sees them (docs/contract.md, "assumed subset").
-- r2-sync never runs this in production: the backend (GORM) owns these tables. Tests and the
-- demo create them from this file in a scratch database.

CREATE TABLE IF NOT EXISTS media (
    id                bigserial PRIMARY KEY,
    user_id           bigint NOT NULL,
    title             text NOT NULL DEFAULT '',
    description       text NOT NULL DEFAULT '',
    original_filename text NOT NULL DEFAULT '',
    content_type      text NOT NULL DEFAULT '',
    file_size         bigint,
    r2_key            text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'pending',
    storage_location  text NOT NULL DEFAULT 'r2',
    archive_path      text,
    archived_at       timestamptz,
    approved_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE INDEX IF NOT EXISTS idx_media_status ON media (status);
CREATE INDEX IF NOT EXISTS idx_media_deleted_at ON media (deleted_at);

CREATE TABLE IF NOT EXISTS audit_logs (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    user_id     bigint,
    action      text NOT NULL,
    entity_type text NOT NULL,
    entity_id   bigint NOT NULL,
    details     jsonb
);
