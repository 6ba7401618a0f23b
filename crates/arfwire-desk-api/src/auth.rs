//! Bearer tokens, roles, the per-token rate limiter and the CSRF value of the pages.
//!
//! A token is shown once when it is created and stored only as its SHA-256. The request
//! carries it as `Authorization: Bearer <token>` (the JSON API) or in the HttpOnly session
//! cookie the login form sets (the pages). Every request is charged to the presented token's
//! bucket before the database is asked about it, so a flood of requests with one token is
//! refused without touching PostgreSQL.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do. Ordered: each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read the leaderboard, tenants, reports, alerts and exports without raw messages.
    Viewer,
    /// Viewer, plus change case status, write notes, download raw messages.
    Analyst,
    /// Analyst, plus create and revoke tokens and read the audit log.
    Admin,
}

impl Role {
    /// The name stored in `api_tokens.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "analyst" => Ok(Role::Analyst),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected viewer, analyst or admin"
            )),
        }
    }
}

/// The prefix of every token, so a leaked one is recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "arfdesk_";

/// A new random token: the prefix and 32 random bytes in unpadded URL-safe base64.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The SHA-256 of a token, as stored in `api_tokens`.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The token of an `Authorization: Bearer` value, if it is one.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty() && token.len() <= 512).then_some(token)
}

/// The name of the pages' session cookie.
pub const SESSION_COOKIE: &str = "arfwire_desk";

/// The value of the session cookie in a `Cookie` header, if present.
pub(crate) fn session_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty() && value.len() <= 512)
}

/// Parse durations like `30d`, `12h`, `90m`, `3600s` or `2w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (e.g. 30d, 12h, 90m)"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("unknown unit in {text:?}: use s, m, h, d or w")),
    };
    let total = number
        .checked_mul(seconds)
        .filter(|&s| s > 0 && s <= 10 * 366 * 86_400)
        .ok_or_else(|| format!("duration out of range: {text:?} (1s to 10 years)"))?;
    Ok(Duration::from_secs(total))
}

/// Who made a request: the token that authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The `api_tokens` row id.
    pub token_id: i64,
    /// The token's name (`api_tokens.name`): the actor in the audit log.
    pub label: String,
    /// What the token may do.
    pub role: Role,
    /// The tenants it may see; `None` for every tenant.
    pub tenant_scope: Option<Vec<String>>,
    /// How the request was authenticated.
    pub via: AuthVia,
    /// The page's CSRF value for this session ([`csrf_value`] of the token).
    pub(crate) csrf: String,
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVia {
    /// `Authorization: Bearer`.
    Bearer,
    /// The pages' session cookie.
    Cookie,
}

impl Caller {
    /// The name written to `audit_log.actor`: the token's name.
    pub fn actor(&self) -> &str {
        &self.label
    }

    /// `Ok` when the token's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), crate::ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(crate::ApiError::Forbidden(role.as_str()))
        }
    }
}

/// The CSRF value of a session: a domain-separated SHA-256 of the token itself (not of its
/// stored hash). It is stable for the session, differs per token, and cannot be computed
/// without the token, which lives in an HttpOnly cookie; every replica of the desk computes
/// the same value, across restarts, with no shared key.
pub(crate) fn csrf_value(token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"arfwire-desk csrf v1\0")
        .chain_update(token.as_bytes())
        .finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

/// Compare two strings in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Rate limit per token: a bucket of `burst` requests refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 20.0,
            burst: 60.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// In-memory token buckets keyed by the token's hash.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

/// Most buckets kept; past it, buckets that have refilled are forgotten.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from the key's bucket: `Ok` when allowed, else how long until one
    /// more is.
    pub(crate) fn check(&self, key: &[u8; 32]) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &[u8; 32], now: Instant) -> Result<(), Duration> {
        let RateLimit { per_second, burst } = self.limit;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, b| {
                let refilled = b.tokens + now.duration_since(b.at).as_secs_f64() * per_second;
                refilled < burst
            });
            if buckets.len() >= MAX_BUCKETS {
                // Every bucket is in use: refuse newcomers rather than grow without bound.
                return Err(Duration::from_secs(1));
            }
        }
        let bucket = buckets.entry(*key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = if per_second > 0.0 {
                (1.0 - bucket.tokens) / per_second
            } else {
                3600.0
            };
            Err(Duration::from_secs_f64(wait.clamp(0.001, 3600.0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Analyst && Role::Analyst < Role::Admin);
        for role in [Role::Viewer, Role::Analyst, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let a = generate_token().expect("random");
        let b = generate_token().expect("random");
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(hex(&hash_token("abc")).len(), 64);
        assert_eq!(
            hex(&hash_token("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_and_cookie_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(session_cookie("a=b; arfwire_desk=tok; c=d"), Some("tok"));
        assert_eq!(session_cookie("arfwire_desk="), None);
        assert_eq!(session_cookie("other=x"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999w").is_err());
    }

    #[test]
    fn csrf_depends_on_the_token_only() {
        assert_eq!(csrf_value("one"), csrf_value("one"));
        assert_ne!(csrf_value("one"), csrf_value("two"));
        // Not the stored hash: knowing api_tokens.token_sha256 does not give it.
        assert_ne!(csrf_value("one"), URL_SAFE_NO_PAD.encode(hash_token("one")));
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }

    #[test]
    fn bucket_refuses_past_burst_and_refills() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 3.0,
        });
        let key = hash_token("k");
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(&key, start).is_ok());
        }
        let wait = limiter.check_at(&key, start).expect_err("over the burst");
        assert!(wait <= Duration::from_millis(500));
        assert!(
            limiter
                .check_at(&key, start + Duration::from_millis(600))
                .is_ok()
        );
        // Another token has its own bucket.
        assert!(limiter.check_at(&hash_token("other"), start).is_ok());
    }
}
