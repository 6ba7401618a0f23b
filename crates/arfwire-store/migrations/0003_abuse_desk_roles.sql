-- The abuse desk: database roles, and precise comments where 0002's were loose.
--
-- Roles (NOLOGIN group roles; grant them to the login roles the services use):
--
--   arfwire_desk_ingest  the store consumer and the retention/erasure/alert jobs: reads and
--                        writes the projection (INSERT, UPDATE), appends to audit_log; no
--                        DELETE, no TRUNCATE, no DDL, no access to api_tokens.
--   arfwire_desk_api     the triage API: reads every desk table except the restricted bytes
--                        (submissions.raw, store_errors.payload); writes the
--                        workflow (statuses, notes, cases, alert acknowledgement, rules,
--                        tokens) and appends to audit_log.
--   arfwire_desk_raw     may read submissions.raw: give it only to the connection the API uses
--                        to serve raw messages to analysts (each read written to audit_log).
--
-- Roles are cluster-wide. Creating them is skipped, with a notice, when they exist already
-- (also when another database's migration creates them at the same moment) or when the
-- migrating role may not create roles; grants are made only to roles that exist. Running
-- this as a superuser (as the tests do) or as a role with CREATEROLE is safe and repeatable.

DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['arfwire_desk_ingest', 'arfwire_desk_api', 'arfwire_desk_raw'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN
                    RAISE NOTICE 'role % was created concurrently', name;
                WHEN insufficient_privilege THEN
                    RAISE NOTICE 'not allowed to create role %; skipping its grants', name;
            END;
        END IF;
    END LOOP;
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'arfwire_desk_ingest') THEN
        GRANT SELECT, INSERT, UPDATE ON submissions, reports, rejections, clusters,
            cluster_reporters, store_errors, alerts TO arfwire_desk_ingest;
        GRANT SELECT, INSERT, UPDATE ON alert_rules TO arfwire_desk_ingest;
        GRANT SELECT, UPDATE ON report_notes, case_notes TO arfwire_desk_ingest;
        GRANT SELECT ON cases TO arfwire_desk_ingest;
        GRANT INSERT ON audit_log TO arfwire_desk_ingest;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO arfwire_desk_ingest;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'arfwire_desk_api') THEN
        GRANT SELECT ON reports, rejections, clusters, cluster_reporters, cases, case_notes,
            report_notes, alert_rules, alerts, audit_log TO arfwire_desk_api;
        GRANT SELECT (raw_sha256, submission_id, raw_size, received_at, channel, retain_until,
                      raw_stored_at, raw_deleted_at, raw_deleted_reason, first_seen_at)
            ON submissions TO arfwire_desk_api;
        GRANT SELECT (id, topic, kafka_partition, kafka_offset, record_key, error, payload_size,
                      payload_sha256, retain_until, occurred_at)
            ON store_errors TO arfwire_desk_api;
        GRANT SELECT, INSERT ON api_tokens TO arfwire_desk_api;
        GRANT UPDATE (revoked_at, last_used_at) ON api_tokens TO arfwire_desk_api;
        GRANT UPDATE (status, status_changed_by, case_id) ON reports TO arfwire_desk_api;
        GRANT INSERT, UPDATE ON cases TO arfwire_desk_api;
        GRANT INSERT ON case_notes, report_notes, audit_log TO arfwire_desk_api;
        GRANT UPDATE (status, acknowledged_by, acknowledged_at) ON alerts TO arfwire_desk_api;
        GRANT INSERT, UPDATE, DELETE ON alert_rules TO arfwire_desk_api;
        GRANT SELECT ON tenants TO arfwire_desk_api;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO arfwire_desk_api;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'arfwire_desk_raw') THEN
        GRANT SELECT (raw_sha256, raw) ON submissions TO arfwire_desk_raw;
    END IF;
END;
$$;

-- Comments made precise.
COMMENT ON COLUMN clusters.distinct_complainants IS 'How many of distinct_reporters are complainants identified by a pseudonym (keyed by the first complainant token of their report; see cluster_reporters).';
COMMENT ON COLUMN clusters.distinct_reporters IS 'How many distinct reporters complained: a complainant by the first complainant token of their report, otherwise an automated reporter by its From domain, otherwise ''unknown'' (see cluster_reporters). Kept when an erasure unlinks a complainant.';
COMMENT ON COLUMN clusters.key_value IS 'The key: the Message-ID (trimmed, without angle brackets, as written), the DKIM b= prefix, or the fingerprint (lower-case hex SHA-256 of the reported From address, Subject and Date; of the header block digest when all three are missing). Keys over 200 bytes are stored as ''sha256:<hex>'' of the key.';
COMMENT ON COLUMN alert_rules.clear_below IS 'Hysteresis: an unresolved alert resolves when the count falls below this (NULL: half the threshold rounded down, at least 1).';
COMMENT ON COLUMN reports.message_id IS 'Message-ID of the reported message, without angle brackets; cut to 1000 bytes (the whole value is in event).';
COMMENT ON COLUMN reports.sender_domain IS 'Sending domain of the reported message (From, else Original-Mail-From), lower case; cut to 255 bytes.';
COMMENT ON COLUMN reports.reporter_domain IS 'Domain of the submission''s From (the reporter: a feedback-loop operator or a person''s mail domain); never the address. Cut to 255 bytes.';
COMMENT ON COLUMN reports.reporter_tier IS 'Reporter trust: T1 known feedback-loop operator, T2 authenticated, T3 not authenticated or not checked; NULL when not evaluated (or an unknown tier, kept in event).';
COMMENT ON COLUMN reports.score IS 'Attribution score in [0, 1] (NULL without attribution, or when the event carried a value outside the range).';
COMMENT ON COLUMN reports.complainant_tokens IS 'Every complainant pseudonym the event carries (its complainant_tokens: Original-Rcpt-To, Removal-Recipient, the reported message''s To/Cc/Bcc/Delivered-To/X-HmXmrOriginalRecipient and similar, Received for clauses, a person reporter''s From, Resent-From and envelope sender), in order; ''erased'' replaces an erased complainant''s.';
COMMENT ON COLUMN store_errors.payload IS 'The record value (NULL when over 1 MiB, after retention, or after an erasure found the complainant in it). RESTRICTED.';
COMMENT ON TABLE submissions IS
    'One row per distinct submission (deduplicated by the SHA-256 of its bytes): the raw evidence. RESTRICTED: raw holds complainant addresses in clear; only analysts may read it (role arfwire_desk_raw), and every read must be written to audit_log (action raw_view). The row is created by whichever record arrives first (raw, event or rejection); raw is filled from abuse.raw.v1.';
