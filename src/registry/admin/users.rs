//! Users of a tenant: people (or services) that keys can be issued to.
//! An e-mail is unique per tenant regardless of case (unique index on
//! `(tenant_id, lower(email))`); it is stored as given.

use serde::Serialize;
use tokio_postgres::{Client, GenericClient, Row};
use uuid::Uuid;

use super::{AdminError, begin, check_initialised, find_tenant, ts};

#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub id: Uuid,
    pub tenant: String,
    pub email: String,
    pub name: Option<String>,
    pub active: bool,
    pub created_at: String,
    /// Keys of this user that can log in now.
    pub active_keys: i64,
}

/// A plausible address: one `@` between a non-empty local part and domain,
/// no whitespace or control characters. Deliverability is not our business.
fn validate_email(email: &str) -> Result<(), AdminError> {
    let ok = email.len() <= 320
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::InvalidEmail(email.to_owned()))
    }
}

fn info_sql(filter: &str) -> String {
    format!(
        "SELECT u.id, t.name, u.email, u.name, u.active, {}, \
                (SELECT count(*) FROM pgtenant.api_keys k WHERE k.user_id = u.id AND k.active \
                    AND (k.expires_at IS NULL OR k.expires_at > now())) \
           FROM pgtenant.users u JOIN pgtenant.tenants t ON t.id = u.tenant_id \
          {filter} ORDER BY lower(u.email)",
        ts("u.created_at")
    )
}

fn info_from(row: &Row) -> UserInfo {
    UserInfo {
        id: row.get(0),
        tenant: row.get(1),
        email: row.get(2),
        name: row.get(3),
        active: row.get(4),
        created_at: row.get(5),
        active_keys: row.get(6),
    }
}

/// The user `email` (any case) of tenant `tenant_id`: (id, active).
pub(crate) async fn find_user(
    c: &impl GenericClient,
    tenant: &str,
    tenant_id: Uuid,
    email: &str,
) -> Result<(Uuid, bool), AdminError> {
    let row = c
        .query_opt(
            "SELECT id, active FROM pgtenant.users WHERE tenant_id = $1 AND lower(email) = lower($2)",
            &[&tenant_id, &email],
        )
        .await?
        .ok_or_else(|| AdminError::NoSuchUser {
            tenant: tenant.to_owned(),
            email: email.to_owned(),
        })?;
    Ok((row.get(0), row.get(1)))
}

pub async fn add_user(
    client: &mut Client,
    tenant: &str,
    email: &str,
    name: Option<&str>,
) -> Result<UserInfo, AdminError> {
    validate_email(email)?;
    let tx = begin(client).await?;
    let t = find_tenant(&tx, tenant, false).await?;
    let exists = || AdminError::UserExists {
        tenant: t.name.clone(),
        email: email.to_owned(),
    };
    // Checked first for the clear message; the unique index is the guarantee.
    match find_user(&tx, tenant, t.id, email).await {
        Ok(_) => return Err(exists()),
        Err(AdminError::NoSuchUser { .. }) => {}
        Err(e) => return Err(e),
    }
    let id = Uuid::new_v4();
    let inserted = tx
        .execute(
            "INSERT INTO pgtenant.users (id, tenant_id, email, name) VALUES ($1, $2, $3, $4)",
            &[&id, &t.id, &email, &name],
        )
        .await;
    if let Err(e) = inserted {
        return Err(match e.code() {
            Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => exists(),
            _ => e.into(),
        });
    }
    let row = tx.query_one(&info_sql("WHERE u.id = $1"), &[&id]).await?;
    tx.commit().await?;
    Ok(info_from(&row))
}

pub async fn list_users(client: &Client, tenant: &str) -> Result<Vec<UserInfo>, AdminError> {
    check_initialised(client).await?;
    let t = find_tenant(client, tenant, false).await?;
    let rows = client
        .query(&info_sql("WHERE u.tenant_id = $1"), &[&t.id])
        .await?;
    Ok(rows.iter().map(info_from).collect())
}

/// Sets a user's `active` flag; returns the user and whether it changed.
/// An inactive user's keys stop working at once on every proxy.
pub async fn set_user_active(
    client: &mut Client,
    tenant: &str,
    email: &str,
    active: bool,
) -> Result<(UserInfo, bool), AdminError> {
    let tx = begin(client).await?;
    let t = find_tenant(&tx, tenant, false).await?;
    let (id, was) = find_user(&tx, tenant, t.id, email).await?;
    if was != active {
        tx.execute(
            "UPDATE pgtenant.users SET active = $2 WHERE id = $1",
            &[&id, &active],
        )
        .await?;
    }
    let row = tx.query_one(&info_sql("WHERE u.id = $1"), &[&id]).await?;
    tx.commit().await?;
    Ok((info_from(&row), was != active))
}

#[cfg(test)]
mod tests {
    use super::validate_email;

    #[test]
    fn emails_are_checked_for_shape_only() {
        for ok in ["a@b", "Alice.Smith+x@Example.COM", "ü@exämple.de"] {
            validate_email(ok).unwrap();
        }
        for bad in [
            "",
            "a",
            "@b",
            "a@",
            "a@b@c",
            "a b@c",
            "a@b\n",
            &format!("{}@b", "a".repeat(320)),
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?}");
        }
    }
}
