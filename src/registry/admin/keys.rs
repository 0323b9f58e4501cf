//! API keys: issued (the key is returned once and only its SHA-256 is
//! stored), listed (never the key or its hash), revoked, rotated.

use std::time::Duration;

use serde::Serialize;
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use super::users::find_user;
use super::{AdminError, begin, check_initialised, find_tenant, ts};
use crate::auth::key;

/// `--expires`: a duration from now, or an absolute RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    After(Duration),
    At(String),
}

/// Longest duration accepted (100 years): keeps the arithmetic in range.
const MAX_SECS: u64 = 100 * 365 * 86_400;

/// `90m`, `12h`, `30d`, `2w`, `45s`, or a sum like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, AdminError> {
    let bad = |why| AdminError::InvalidDuration {
        value: text.to_owned(),
        why,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("is empty; use e.g. 90m, 12h, 30d"));
    }
    let (mut total, mut num): (u64, Option<u64>) = (0, None);
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = num
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(d.into()));
            num = Some(n.ok_or_else(|| bad("is too long"))?);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad("units are s, m, h, d, w (e.g. 90m, 12h, 30d)")),
        };
        let n = num
            .take()
            .ok_or(bad("a unit must follow a number (e.g. 30d)"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("is too long"))?;
    }
    if num.is_some() {
        return Err(bad("needs a unit: s, m, h, d or w (e.g. 30d)"));
    }
    if total > MAX_SECS {
        return Err(bad("is longer than 100 years"));
    }
    Ok(Duration::from_secs(total))
}

/// A duration (must be > 0), or a timestamp such as `2030-01-31T12:00:00Z`
/// (checked by PostgreSQL, and it must be in the future).
pub fn parse_expiry(text: &str) -> Result<Expiry, AdminError> {
    let looks_like_date = text.len() >= 10
        && text.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && text.as_bytes()[4] == b'-';
    if looks_like_date {
        return Ok(Expiry::At(text.to_owned()));
    }
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(AdminError::ExpiresInPast(text.to_owned()));
    }
    Ok(Expiry::After(d))
}

/// A newly issued key. Deliberately no `Debug` that could print the key.
#[derive(Clone, Serialize)]
pub struct IssuedKey {
    pub id: Uuid,
    pub tenant: String,
    pub user: Option<String>,
    pub name: Option<String>,
    pub expires_at: Option<String>,
    /// Shown once; never stored, never logged.
    pub key: String,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyRow {
    pub id: Uuid,
    pub tenant: String,
    pub name: Option<String>,
    pub user: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    /// Can log in now.
    pub active: bool,
    /// `active`, `revoked`, `expired`, `user inactive` or `tenant inactive`.
    pub status: String,
    pub replaced_by: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    pub old_id: Uuid,
    /// When the old key stops working; None: it was revoked at once.
    pub old_valid_until: Option<String>,
    pub new: IssuedKey,
}

/// Inserts a key row; the caller's transaction commits it.
async fn insert_key(
    tx: &Transaction<'_>,
    tenant_id: Uuid,
    user_id: Option<Uuid>,
    name: Option<&str>,
    expires: Option<&Expiry>,
) -> Result<(Uuid, String, Option<String>), AdminError> {
    let (secs, at) = match expires {
        None => (None, None),
        Some(Expiry::After(d)) => (Some(d.as_secs() as i64), None),
        Some(Expiry::At(t)) => (None, Some(t.as_str())),
    };
    if let Some(t) = at {
        let future: bool = tx
            .query_one(
                "SELECT $1::text::timestamptz > statement_timestamp()",
                &[&t],
            )
            .await?
            .get(0);
        if !future {
            return Err(AdminError::ExpiresInPast(t.to_owned()));
        }
    }
    let key = key::generate();
    let id = Uuid::new_v4();
    // From this statement, not from `now()`, the transaction's start: a
    // change that waited for the registry's lock must not issue a key
    // with part of its life (or all of it) already gone.
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO pgtenant.api_keys (id, tenant_id, user_id, key_hash, name, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, \
                         coalesce(statement_timestamp() + $6::int8 * interval '1 second', $7::text::timestamptz)) \
                 RETURNING {}",
                ts("expires_at")
            ),
            &[&id, &tenant_id, &user_id, &key::hash_hex(&key), &name, &secs, &at],
        )
        .await?;
    Ok((id, key, row.get(0)))
}

pub struct NewKey<'a> {
    pub tenant: &'a str,
    pub user: Option<&'a str>,
    pub name: Option<&'a str>,
    pub expires: Option<&'a Expiry>,
}

/// Issues a key; the key itself is in the result, shown once, never stored.
pub async fn issue_key(client: &mut Client, new: &NewKey<'_>) -> Result<IssuedKey, AdminError> {
    let tx = begin(client).await?;
    let t = find_tenant(&tx, new.tenant, false).await?;
    let user_id = match new.user {
        None => None,
        Some(email) => {
            let (id, active) = find_user(&tx, &t.name, t.id, email).await?;
            if !active {
                return Err(AdminError::UserInactive(email.to_owned()));
            }
            Some(id)
        }
    };
    let (id, key, expires_at) = insert_key(&tx, t.id, user_id, new.name, new.expires).await?;
    tx.commit().await?;
    Ok(IssuedKey {
        id,
        tenant: t.name,
        user: new.user.map(str::to_owned),
        name: new.name.map(str::to_owned),
        expires_at,
        key,
    })
}

pub async fn list_keys(client: &Client, tenant: Option<&str>) -> Result<Vec<KeyRow>, AdminError> {
    check_initialised(client).await?;
    let tenant_id = match tenant {
        Some(name) => Some(find_tenant(client, name, false).await?.id),
        None => None,
    };
    // key_hash is not selected: nothing here can print it.
    let sql = format!(
        "SELECT k.id, t.name, k.name, u.email, {}, {}, {}, \
                CASE WHEN NOT k.active THEN 'revoked' \
                     WHEN k.expires_at <= now() THEN 'expired' \
                     WHEN u.id IS NOT NULL AND NOT u.active THEN 'user inactive' \
                     WHEN NOT t.active THEN 'tenant inactive' \
                     ELSE 'active' END, \
                k.replaced_by \
           FROM pgtenant.api_keys k \
           JOIN pgtenant.tenants t ON t.id = k.tenant_id \
           LEFT JOIN pgtenant.users u ON u.id = k.user_id \
          WHERE $1::uuid IS NULL OR k.tenant_id = $1 \
          ORDER BY t.name, k.created_at, k.id",
        ts("k.created_at"),
        ts("k.last_used_at"),
        ts("k.expires_at")
    );
    let rows = client.query(&sql, &[&tenant_id]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let status: String = r.get(7);
            KeyRow {
                id: r.get(0),
                tenant: r.get(1),
                name: r.get(2),
                user: r.get(3),
                created_at: r.get(4),
                last_used_at: r.get(5),
                expires_at: r.get(6),
                active: status == "active",
                status,
                replaced_by: r.get(8),
            }
        })
        .collect())
}

fn parse_id(key_id: &str) -> Result<Uuid, AdminError> {
    key_id.trim().parse().map_err(|_| AdminError::NotAKeyId)
}

/// Revokes a key; returns (tenant, whether it was active until now).
/// Revoking a revoked key is not an error: the goal state holds.
pub async fn revoke_key(client: &mut Client, key_id: &str) -> Result<(String, bool), AdminError> {
    let id = parse_id(key_id)?;
    let tx = begin(client).await?;
    let row = tx
        .query_opt(
            "SELECT t.name, k.active FROM pgtenant.api_keys k \
               JOIN pgtenant.tenants t ON t.id = k.tenant_id WHERE k.id = $1 FOR UPDATE OF k",
            &[&id],
        )
        .await?
        .ok_or(AdminError::NoSuchKey(id))?;
    let was_active: bool = row.get(1);
    if was_active {
        tx.execute(
            "UPDATE pgtenant.api_keys SET active = false WHERE id = $1",
            &[&id],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((row.get(0), was_active))
}

/// Issues a successor (same tenant, user and label) and lets the old key
/// live for `grace` more (never longer than it would have anyway); a zero
/// grace revokes it at once. A key is rotated once: rotate the successor next.
pub async fn rotate_key(
    client: &mut Client,
    key_id: &str,
    grace: Duration,
    expires: Option<&Expiry>,
) -> Result<Rotated, AdminError> {
    let id = parse_id(key_id)?;
    if grace.as_secs() > MAX_SECS {
        return Err(AdminError::InvalidDuration {
            value: format!("{}s", grace.as_secs()),
            why: "is longer than 100 years",
        });
    }
    let tx = begin(client).await?;
    let old = tx
        .query_opt(
            "SELECT k.tenant_id, t.name, k.user_id, u.email, coalesce(u.active, true), k.name, \
                    k.active AND (k.expires_at IS NULL OR k.expires_at > statement_timestamp()), k.replaced_by \
               FROM pgtenant.api_keys k \
               JOIN pgtenant.tenants t ON t.id = k.tenant_id \
               LEFT JOIN pgtenant.users u ON u.id = k.user_id \
              WHERE k.id = $1 FOR UPDATE OF k",
            &[&id],
        )
        .await?
        .ok_or(AdminError::NoSuchKey(id))?;
    if let Some(new) = old.get::<_, Option<Uuid>>(7) {
        return Err(AdminError::AlreadyRotated { old: id, new });
    }
    if !old.get::<_, bool>(6) {
        return Err(AdminError::KeyNotActive(id));
    }
    let email: Option<String> = old.get(3);
    if !old.get::<_, bool>(4) {
        return Err(AdminError::UserInactive(email.unwrap_or_default()));
    }
    let name: Option<String> = old.get(5);
    let (new_id, key, expires_at) =
        insert_key(&tx, old.get(0), old.get(2), name.as_deref(), expires).await?;
    let valid_until: Option<String> = if grace.is_zero() {
        tx.execute(
            "UPDATE pgtenant.api_keys SET active = false, replaced_by = $2 WHERE id = $1",
            &[&id, &new_id],
        )
        .await?;
        None
    } else {
        tx.query_one(
            &format!(
                "UPDATE pgtenant.api_keys \
                    SET expires_at = least(coalesce(expires_at, 'infinity'), \
                                           statement_timestamp() + $2::int8 * interval '1 second'), \
                        replaced_by = $3 \
                  WHERE id = $1 RETURNING {}",
                ts("expires_at")
            ),
            &[&id, &(grace.as_secs() as i64), &new_id],
        )
        .await?
        .get(0)
    };
    tx.commit().await?;
    Ok(Rotated {
        old_id: id,
        old_valid_until: valid_until,
        new: IssuedKey {
            id: new_id,
            tenant: old.get(1),
            user: email,
            name,
            expires_at,
            key,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_by_hand() {
        let s = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(s("90m").unwrap(), 5_400);
        assert_eq!(s("12h").unwrap(), 43_200);
        assert_eq!(s("30d").unwrap(), 2_592_000);
        assert_eq!(s("2w").unwrap(), 1_209_600);
        assert_eq!(s("1h30m").unwrap(), 5_400);
        assert_eq!(s("0s").unwrap(), 0);
        for bad in [
            "",
            "30",
            "d",
            "3x",
            "-1d",
            "1.5h",
            "99999999999999999999d",
            "40000w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_is_a_positive_duration_or_a_timestamp() {
        assert_eq!(
            parse_expiry("12h").unwrap(),
            Expiry::After(Duration::from_secs(43_200))
        );
        assert_eq!(
            parse_expiry("2031-01-01T00:00:00Z").unwrap(),
            Expiry::At("2031-01-01T00:00:00Z".into())
        );
        assert!(matches!(
            parse_expiry("0m"),
            Err(AdminError::ExpiresInPast(_))
        ));
        assert!(parse_expiry("soon").is_err());
    }

    #[test]
    fn issued_key_debug_hides_the_key() {
        let k = IssuedKey {
            id: Uuid::nil(),
            tenant: "t".into(),
            user: None,
            name: None,
            expires_at: None,
            key: "pgt_secret".into(),
        };
        assert!(!format!("{k:?}").contains("pgt_secret"));
    }
}
