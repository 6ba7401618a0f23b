//! Creating, listing and revoking API tokens. A token's secret is returned once, by
//! [`create`]; the table keeps only its SHA-256 and a short prefix to recognise it by.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::auth::{Role, generate_token, hash_token, hex};
use crate::db::{Audit, RequestMeta, audit};
use crate::error::{ApiError, ApiResult};

/// A token just created: the only time its secret is seen.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    /// Row id.
    pub id: i64,
    /// Its name (the audit log's actor).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// The secret: send it as `Authorization: Bearer <token>`.
    pub token: String,
}

/// A stored token, without its secret.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    /// Row id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The first characters of the secret.
    pub prefix: String,
    /// Tenants it may see (`None`: all).
    pub tenant_scope: Option<Vec<String>>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Last successful use.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// How many characters of the secret are kept to recognise a token.
const PREFIX_CHARS: usize = 12;

/// Longest token name.
const MAX_NAME_CHARS: usize = 200;

/// Create a token and return its secret once. `name` must be unique; an empty name becomes
/// `<role>-<prefix>`.
pub async fn create(
    pool: &PgPool,
    role: Role,
    name: &str,
    expires_in: Duration,
    created_by: &str,
) -> ApiResult<NewToken> {
    create_scoped(
        pool,
        role,
        name,
        expires_in,
        None,
        created_by,
        &RequestMeta::default(),
    )
    .await
}

/// [`create`] with a tenant scope and the request's audit details.
pub async fn create_scoped(
    pool: &PgPool,
    role: Role,
    name: &str,
    expires_in: Duration,
    tenant_scope: Option<Vec<String>>,
    created_by: &str,
    meta: &RequestMeta,
) -> ApiResult<NewToken> {
    let secret = generate_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    let prefix: String = secret.chars().take(PREFIX_CHARS).collect();
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS || name.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "a token name holds at most {MAX_NAME_CHARS} characters and no NUL"
        )));
    }
    let name = if name.is_empty() {
        format!("{role}-{}", &prefix[prefix.len().saturating_sub(4)..])
    } else {
        name.to_owned()
    };
    let seconds = i64::try_from(expires_in.as_secs())
        .map_err(|_| ApiError::BadRequest("expiry too far away".to_owned()))?;
    if seconds <= 0 {
        return Err(ApiError::BadRequest(
            "expiry must be in the future".to_owned(),
        ));
    }
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "INSERT INTO api_tokens (name, token_sha256, token_prefix, role, tenant_scope, created_by, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) \
         RETURNING id, expires_at",
    )
    .bind(&name)
    .bind(hex(&hash_token(&secret)))
    .bind(&prefix)
    .bind(role.as_str())
    .bind(tenant_scope.as_deref())
    .bind(created_by)
    .bind(seconds as f64)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            ApiError::Conflict(format!("a token named {name:?} already exists"))
        }
        _ => ApiError::Database(e),
    })?;
    let id: i64 = row.get("id");
    let object_id = id.to_string();
    audit(
        &mut tx,
        created_by,
        meta,
        Audit {
            action: "token_create",
            object_type: "api_token",
            object_id: &object_id,
            tenant_id: None,
            old_value: None,
            new_value: Some(role.as_str()),
            detail: serde_json::json!({ "name": name, "expires_in_seconds": seconds,
                                        "tenant_scope": tenant_scope }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(NewToken {
        id,
        name,
        role,
        expires_at: row.get("expires_at"),
        token: secret,
    })
}

/// Every token, newest first, without secrets.
pub async fn list(pool: &PgPool) -> ApiResult<Vec<TokenInfo>> {
    let rows = sqlx::query(
        "SELECT id, name, role, token_prefix, tenant_scope, created_by, created_at, expires_at, \
                revoked_at IS NOT NULL AS revoked, last_used_at \
           FROM api_tokens ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TokenInfo {
            id: r.get("id"),
            name: r.get("name"),
            role: r.get("role"),
            prefix: r.get("token_prefix"),
            tenant_scope: r.get("tenant_scope"),
            created_by: r.get("created_by"),
            created_at: r.get("created_at"),
            expires_at: r.get("expires_at"),
            revoked: r.get("revoked"),
            last_used_at: r.get("last_used_at"),
        })
        .collect())
}

/// Revoke a token; `false` when there is no such unrevoked token.
pub async fn revoke(pool: &PgPool, id: i64, by: &str) -> ApiResult<bool> {
    revoke_with(pool, id, by, &RequestMeta::default()).await
}

/// [`revoke`] with the request's audit details.
pub async fn revoke_with(pool: &PgPool, id: i64, by: &str, meta: &RequestMeta) -> ApiResult<bool> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if done {
        let object_id = id.to_string();
        audit(
            &mut tx,
            by,
            meta,
            Audit {
                action: "token_revoke",
                object_type: "api_token",
                object_id: &object_id,
                tenant_id: None,
                old_value: None,
                new_value: None,
                detail: serde_json::json!({}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(done)
}
