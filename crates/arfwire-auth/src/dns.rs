//! The DNS side of verification: a resolver plus the answer caches mail-auth consults first.
//!
//! mail-auth asks its caches before it asks the resolver, so what is in a cache is, as far as
//! verification is concerned, what DNS says. Two ways to build an [`Authenticator`]:
//!
//! * [`Authenticator::system`]: the system resolver configuration, with bounded caches that keep
//!   each answer for its DNS TTL. Used by the service.
//! * [`Authenticator::offline`]: a *closed world*. There is no name server to ask; the TXT cache
//!   answers every name it does not hold with NXDOMAIN, and A/AAAA/MX/PTR questions it cannot
//!   answer fail at once. Records are supplied with the `insert_*` methods of [`DnsCaches`]. Used to
//!   verify against records we already hold (replays, tests) and by the key-registry path.
//!
//! Every question a cache cannot answer itself is counted ([`DnsCaches::misses`]), so a caller
//! can tell whether verification went beyond the records it supplied.

use mail_auth::{
    DnsError, DnssecStatus, Error as MailAuthError, MX, MessageAuthenticator, Parameters,
    RecordSet, ResolverCache, Txt,
    common::{parse::TxtRecordParser, verify::DomainKey},
    dmarc::Dmarc,
    hickory_resolver::{
        config::{ResolveHosts, ResolverConfig, ResolverOpts},
        proto::op::ResponseCode,
    },
    spf::Spf,
};
use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use crate::AuthError;

/// Entries kept per record type by [`DnsCaches::new`] before expired entries are dropped.
pub const DEFAULT_CACHE_CAPACITY: usize = 8192;

struct Entry<V> {
    value: V,
    /// `None`: inserted by the caller, kept until removed.
    expires: Option<Instant>,
}

/// One answer cache, keyed by name (fully qualified, lower case, with the trailing dot) or, for
/// PTR, by address. Implements mail-auth's [`ResolverCache`].
pub struct DnsCache<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
    /// Answer for a name the cache does not hold, instead of going to the resolver.
    absent: Option<V>,
    capacity: usize,
    misses: AtomicU64,
}

impl<K: Hash + Eq, V: Clone> DnsCache<K, V> {
    fn with(capacity: usize, absent: Option<V>) -> Self {
        DnsCache {
            entries: Mutex::new(HashMap::new()),
            absent,
            capacity,
            misses: AtomicU64::new(0),
        }
    }

    /// Questions this cache could not answer from what it holds.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Number of entries held (expired ones included until the next clean-up).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts an answer that never expires (a record the caller vouches for).
    fn pin(&self, key: K, value: V) {
        self.lock().insert(
            key,
            Entry {
                value,
                expires: None,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<V>>> {
        // A panic while holding the lock cannot leave the map half-updated (every operation
        // is a single insert/remove/clear), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for DnsCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get(name) {
            Some(entry) if entry.expires.is_none_or(|expires| expires > now) => {
                return Some(entry.value.clone());
            }
            Some(_) => {
                entries.remove(name);
            }
            None => {}
        }
        drop(entries);
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.absent.clone()
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|entry| entry.value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        if valid_until <= now {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.expires.is_none_or(|expires| expires > now));
            if entries.len() >= self.capacity {
                // Still full of live answers: drop every answer learnt from DNS (it will be
                // asked again), keep what the caller pinned.
                entries.retain(|_, entry| entry.expires.is_none());
            }
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(
            key,
            Entry {
                value,
                expires: Some(valid_until),
            },
        );
    }
}

/// The five caches mail-auth can use, one per record type.
pub struct DnsCaches {
    /// TXT: DKIM keys, SPF and DMARC records.
    pub txt: DnsCache<Box<str>, Txt>,
    /// MX, for SPF `mx` mechanisms.
    pub mx: DnsCache<Box<str>, RecordSet<MX>>,
    /// A, for SPF `a`/`mx` mechanisms and DMARC's non-existent-domain check.
    pub ipv4: DnsCache<Box<str>, RecordSet<Ipv4Addr>>,
    /// AAAA, for SPF `a`/`mx` mechanisms.
    pub ipv6: DnsCache<Box<str>, RecordSet<Ipv6Addr>>,
    /// PTR, for SPF `ptr` mechanisms and `%{p}` macros.
    pub ptr: DnsCache<IpAddr, RecordSet<Box<str>>>,
}

impl Default for DnsCaches {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_CAPACITY)
    }
}

impl DnsCaches {
    /// Caches in front of a real resolver: answers are kept for their TTL, at most `capacity`
    /// per record type; a name not held is asked of the resolver.
    pub fn new(capacity: usize) -> Self {
        DnsCaches {
            txt: DnsCache::with(capacity, None),
            mx: DnsCache::with(capacity, None),
            ipv4: DnsCache::with(capacity, None),
            ipv6: DnsCache::with(capacity, None),
            ptr: DnsCache::with(capacity, None),
        }
    }

    /// Closed-world caches: a TXT name not inserted is answered NXDOMAIN without asking anyone.
    /// (mail-auth has no negative form for the other record types; a miss there reaches the
    /// resolver, which for [`Authenticator::offline`] has no name server and fails at once.)
    pub fn closed() -> Self {
        let nxdomain = Txt::Error(MailAuthError::Dns(DnsError::RecordNotFound(
            ResponseCode::NXDomain,
        )));
        DnsCaches {
            txt: DnsCache::with(usize::MAX, Some(nxdomain)),
            mx: DnsCache::with(usize::MAX, None),
            ipv4: DnsCache::with(usize::MAX, None),
            ipv6: DnsCache::with(usize::MAX, None),
            ptr: DnsCache::with(usize::MAX, None),
        }
    }

    /// Questions the caches could not answer from what they hold, all record types together.
    pub fn misses(&self) -> u64 {
        self.txt.misses()
            + self.mx.misses()
            + self.ipv4.misses()
            + self.ipv6.misses()
            + self.ptr.misses()
    }

    /// Pins the DKIM key record `value` (e.g. `v=DKIM1; k=ed25519; p=...`) at
    /// `<selector>._domainkey.<domain>`.
    pub fn insert_dkim_key(
        &self,
        selector: &str,
        domain: &str,
        value: &str,
    ) -> Result<(), AuthError> {
        let name = format!("{selector}._domainkey.{domain}");
        let key = parse_record::<DomainKey>(&name, value)?;
        self.txt.pin(fqdn(&name), Txt::DomainKey(Arc::new(key)));
        Ok(())
    }

    /// Pins the SPF record `value` (e.g. `v=spf1 ip4:192.0.2.0/24 -all`) at `domain`.
    pub fn insert_spf(&self, domain: &str, value: &str) -> Result<(), AuthError> {
        let spf = parse_record::<Spf>(domain, value)?;
        self.txt.pin(fqdn(domain), Txt::Spf(Arc::new(spf)));
        Ok(())
    }

    /// Pins the DMARC record `value` (e.g. `v=DMARC1; p=reject`) at `_dmarc.<domain>`.
    pub fn insert_dmarc(&self, domain: &str, value: &str) -> Result<(), AuthError> {
        let name = format!("_dmarc.{domain}");
        let dmarc = parse_record::<Dmarc>(&name, value)?;
        self.txt.pin(fqdn(&name), Txt::Dmarc(Arc::new(dmarc)));
        Ok(())
    }

    /// Pins the A records of `name`.
    pub fn insert_ipv4(&self, name: &str, addresses: &[Ipv4Addr]) {
        self.ipv4.pin(fqdn(name), record_set(addresses));
    }

    /// Pins the AAAA records of `name`.
    pub fn insert_ipv6(&self, name: &str, addresses: &[Ipv6Addr]) {
        self.ipv6.pin(fqdn(name), record_set(addresses));
    }

    /// mail-auth parameters carrying these caches.
    #[allow(clippy::type_complexity)]
    pub(crate) fn parameters<P>(
        &self,
        params: P,
    ) -> Parameters<
        '_,
        P,
        DnsCache<Box<str>, Txt>,
        DnsCache<Box<str>, RecordSet<MX>>,
        DnsCache<Box<str>, RecordSet<Ipv4Addr>>,
        DnsCache<Box<str>, RecordSet<Ipv6Addr>>,
        DnsCache<IpAddr, RecordSet<Box<str>>>,
    > {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

/// A resolver and the caches in front of it: what reporter verification runs against.
pub struct Authenticator {
    resolver: MessageAuthenticator,
    caches: DnsCaches,
}

impl Authenticator {
    /// Production: the system resolver configuration (`/etc/resolv.conf` on Unix) with
    /// [`DnsCaches::new`] caches of [`DEFAULT_CACHE_CAPACITY`] entries.
    pub fn system() -> Result<Self, AuthError> {
        let resolver = MessageAuthenticator::new_system_conf()
            .map_err(|err| AuthError::Resolver(err.to_string()))?;
        Ok(Self::with_resolver(resolver, DnsCaches::default()))
    }

    /// Any mail-auth resolver with the given caches.
    pub fn with_resolver(resolver: MessageAuthenticator, caches: DnsCaches) -> Self {
        Authenticator { resolver, caches }
    }

    /// A closed world: no name server, [`DnsCaches::closed`] caches. Only records inserted with
    /// the `insert_*` methods of [`Authenticator::caches`] exist; no query ever leaves the process.
    pub fn offline() -> Result<Self, AuthError> {
        Ok(Self::with_resolver(
            no_network_resolver()?,
            DnsCaches::closed(),
        ))
    }

    /// The caches, to insert records or read [`DnsCaches::misses`].
    pub fn caches(&self) -> &DnsCaches {
        &self.caches
    }

    pub(crate) fn resolver(&self) -> &MessageAuthenticator {
        &self.resolver
    }
}

/// A resolver with no name server and no hosts file: every query it is given fails at once.
pub(crate) fn no_network_resolver() -> Result<MessageAuthenticator, AuthError> {
    let mut options = ResolverOpts::default();
    options.use_hosts_file = ResolveHosts::Never;
    options.attempts = 0;
    MessageAuthenticator::new(
        ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
        options,
    )
    .map_err(|err| AuthError::Resolver(err.to_string()))
}

/// The key form mail-auth looks names up by: lower case, with the trailing dot.
pub(crate) fn fqdn(name: &str) -> Box<str> {
    let mut name = name.to_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name.into_boxed_str()
}

fn parse_record<T: TxtRecordParser>(name: &str, value: &str) -> Result<T, AuthError> {
    T::parse(value.as_bytes()).map_err(|err| AuthError::Record {
        name: name.to_owned(),
        detail: err.to_string(),
    })
}

fn record_set<T: Clone>(values: &[T]) -> RecordSet<T> {
    RecordSet {
        rrset: Arc::from(values),
        dnssec_status: DnssecStatus::Indeterminate,
    }
}
