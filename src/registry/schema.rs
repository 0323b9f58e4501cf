//! The registry's tables. `pgtenant init` runs this; it is idempotent.

/// Serializes concurrent `init`/provisioning runs (any constant works).
pub const ADVISORY_LOCK: i64 = 0x7067_7465_6e61_6e74; // "pgtenant"

pub const DDL: &str = "
CREATE SCHEMA IF NOT EXISTS pgtenant;
REVOKE ALL ON SCHEMA pgtenant FROM PUBLIC;

CREATE TABLE IF NOT EXISTS pgtenant.tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    schema_name varchar(63) NOT NULL UNIQUE,
    role_name   varchar(63) NOT NULL UNIQUE,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    metadata    jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS pgtenant.users (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES pgtenant.tenants(id) ON DELETE CASCADE,
    email      text NOT NULL,
    name       text,
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    metadata   jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS users_tenant_email
    ON pgtenant.users (tenant_id, lower(email));

CREATE TABLE IF NOT EXISTS pgtenant.api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES pgtenant.tenants(id) ON DELETE CASCADE,
    user_id      uuid REFERENCES pgtenant.users(id) ON DELETE CASCADE,
    key_hash     char(64) NOT NULL UNIQUE,
    name         text,
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON pgtenant.api_keys (tenant_id);
";
