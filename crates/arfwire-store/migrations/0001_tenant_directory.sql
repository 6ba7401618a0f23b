-- Tenant directory (attribution specification §8).
--
-- Every mapping is effective-dated: valid_from is inclusive, valid_to exclusive, NULL is open.
-- Names are stored as lowercase A-labels. The natural key of each mapping (tenant, value,
-- start) is unique, so imports can merge by it. Requires PostgreSQL 15 (UNIQUE NULLS NOT
-- DISTINCT).
--
-- directory_version is bumped once per transaction that changes any directory table, whoever
-- makes the change (importer or hand-written SQL); readers poll it to know when to reload.

CREATE TABLE directory_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by xid8
);

INSERT INTO directory_version (singleton) VALUES (true);

CREATE FUNCTION directory_version_bump() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The row lock also serialises concurrent writers of the directory.
    UPDATE directory_version
       SET version = version + 1,
           changed_at = now(),
           changed_by = pg_current_xact_id()
     WHERE changed_by IS DISTINCT FROM pg_current_xact_id();
    RETURN NULL;
END;
$$;

CREATE TABLE tenants (
    id             text PRIMARY KEY CHECK (id <> '' AND id = btrim(id)),
    display_name   text NOT NULL DEFAULT '',
    initial_domain text UNIQUE CHECK (initial_domain = lower(initial_domain)),
    shared         boolean NOT NULL DEFAULT false,
    status         text NOT NULL DEFAULT 'active'
                   CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_domains (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES tenants (id) ON UPDATE CASCADE ON DELETE CASCADE,
    domain             text NOT NULL CHECK (domain <> '' AND domain = lower(domain)),
    include_subdomains boolean NOT NULL DEFAULT false,
    valid_from         timestamptz,
    valid_to           timestamptz,
    CHECK (valid_from < valid_to),
    UNIQUE NULLS NOT DISTINCT (tenant_id, domain, valid_from)
);

CREATE INDEX tenant_domains_domain ON tenant_domains (domain);

CREATE TABLE tenant_dkim_selectors (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id) ON UPDATE CASCADE ON DELETE CASCADE,
    domain          text NOT NULL CHECK (domain <> '' AND domain = lower(domain)),
    selector        text NOT NULL CHECK (selector <> '' AND selector = lower(selector)),
    key_fingerprint text,
    active_from     timestamptz,
    active_to       timestamptz,
    CHECK (active_from < active_to),
    UNIQUE NULLS NOT DISTINCT (tenant_id, domain, selector, active_from)
);

CREATE INDEX tenant_dkim_selectors_domain_selector ON tenant_dkim_selectors (domain, selector);

CREATE TABLE tenant_dedicated_ips (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL REFERENCES tenants (id) ON UPDATE CASCADE ON DELETE CASCADE,
    cidr       cidr NOT NULL,
    valid_from timestamptz,
    valid_to   timestamptz,
    CHECK (valid_from < valid_to),
    UNIQUE NULLS NOT DISTINCT (tenant_id, cidr, valid_from)
);

-- Longest-prefix queries in SQL: WHERE cidr >>= $1::inet ORDER BY masklen(cidr) DESC.
CREATE INDEX tenant_dedicated_ips_cidr ON tenant_dedicated_ips USING gist (cidr inet_ops);

CREATE TABLE tenant_connectors (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants (id) ON UPDATE CASCADE ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('on_premises', 'partner')),
    sender_ips       cidr[] NOT NULL DEFAULT '{}',
    tls_cert_domains text[] NOT NULL DEFAULT '{}',
    exclusive        boolean NOT NULL DEFAULT false,
    third_party      text,
    valid_from       timestamptz,
    valid_to         timestamptz,
    CHECK (valid_from < valid_to),
    CHECK (cardinality(sender_ips) > 0 OR cardinality(tls_cert_domains) > 0),
    UNIQUE NULLS NOT DISTINCT (tenant_id, kind, sender_ips, tls_cert_domains, valid_from)
);

CREATE INDEX tenant_connectors_tls_cert_domains ON tenant_connectors USING gin (tls_cert_domains);

CREATE TRIGGER tenants_bump_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION directory_version_bump();
CREATE TRIGGER tenant_domains_bump_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant_domains
    FOR EACH STATEMENT EXECUTE FUNCTION directory_version_bump();
CREATE TRIGGER tenant_dkim_selectors_bump_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant_dkim_selectors
    FOR EACH STATEMENT EXECUTE FUNCTION directory_version_bump();
CREATE TRIGGER tenant_dedicated_ips_bump_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant_dedicated_ips
    FOR EACH STATEMENT EXECUTE FUNCTION directory_version_bump();
CREATE TRIGGER tenant_connectors_bump_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenant_connectors
    FOR EACH STATEMENT EXECUTE FUNCTION directory_version_bump();
