//! The registry's tables. `pgtenant init` runs this; it is idempotent, so
//! running it again on an existing registry upgrades it in place.

/// Serializes concurrent `init`/provisioning runs (any constant works).
pub const ADVISORY_LOCK: i64 = 0x7067_7465_6e61_6e74; // "pgtenant"

/// The channel the registry triggers notify; payload `<kind>:<uuid>` with
/// kind `tenant`, `user` or `key` (see [`super::watch`]).
pub const CHANNEL: &str = "pgtenant_registry";

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
-- `key rotate` links the old key to its successor, so it is rotated once.
ALTER TABLE pgtenant.api_keys
    ADD COLUMN IF NOT EXISTS replaced_by uuid REFERENCES pgtenant.api_keys(id) ON DELETE SET NULL;
-- Deactivating a user looks up its keys; the FK cascade needs it too.
CREATE INDEX IF NOT EXISTS api_keys_user ON pgtenant.api_keys (user_id);

-- One row: properties of this registry as a whole. Roles are cluster-wide,
-- so a second registry in the same cluster gives its roles a prefix.
CREATE TABLE IF NOT EXISTS pgtenant.settings (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    role_prefix text NOT NULL DEFAULT ''
);

-- Live effect: every change that can end a login or a session is announced,
-- committed changes only (NOTIFY is transactional). last_used_at updates
-- are filtered out, or every login would invalidate caches.
CREATE OR REPLACE FUNCTION pgtenant.notify_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_notify('pgtenant_registry', TG_ARGV[0] || ':' || OLD.id::text);
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER tenants_changed AFTER UPDATE ON pgtenant.tenants
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION pgtenant.notify_change('tenant');
CREATE OR REPLACE TRIGGER tenants_deleted AFTER DELETE ON pgtenant.tenants
    FOR EACH ROW EXECUTE FUNCTION pgtenant.notify_change('tenant');
CREATE OR REPLACE TRIGGER users_changed AFTER UPDATE ON pgtenant.users
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION pgtenant.notify_change('user');
CREATE OR REPLACE TRIGGER users_deleted AFTER DELETE ON pgtenant.users
    FOR EACH ROW EXECUTE FUNCTION pgtenant.notify_change('user');
CREATE OR REPLACE TRIGGER api_keys_changed AFTER UPDATE ON pgtenant.api_keys
    FOR EACH ROW WHEN ((OLD.active, OLD.expires_at, OLD.tenant_id, OLD.user_id, OLD.key_hash)
                       IS DISTINCT FROM
                       (NEW.active, NEW.expires_at, NEW.tenant_id, NEW.user_id, NEW.key_hash))
    EXECUTE FUNCTION pgtenant.notify_change('key');
CREATE OR REPLACE TRIGGER api_keys_deleted AFTER DELETE ON pgtenant.api_keys
    FOR EACH ROW EXECUTE FUNCTION pgtenant.notify_change('key');
";
