-- The abuse desk's store: a projection of the abuse.events.v1, abuse.rejected.v1 and
-- abuse.raw.v1 topics, written by the desk consumer (its own consumer group), read and
-- annotated by the triage API.
--
-- Conventions
--   * Ids published on the topics (event_id, rejection_id, submission_id) are stored as uuid;
--     SHA-256 digests as 64 lower-case hex digits in text.
--   * Every timestamp is timestamptz (UTC on the wire).
--   * Every text column holds decoded, NUL-free text (PostgreSQL text cannot hold U+0000;
--     the consumer replaces it with U+FFFD before writing). Raw mail only ever lives in
--     submissions.raw (bytea).
--   * Complainant addresses are never stored in clear outside submissions.raw: they appear
--     as keyed-hash pseudonyms 'anon:<16 hex>' (HMAC-SHA256 with the deployment's secret
--     key over the lower-cased address), or as 'erased' after an erasure request.
--   * Confidence labels are the event's upper-case labels; confidence_rank orders them
--     (NONE 0, LOW 1, MEDIUM 2, HIGH 3, CONFIRMED 4) so "at least MEDIUM" is rank >= 2.
--   * Workflow status values (reports and cases): 'new', 'investigating', 'actioned',
--     'dismissed'.
--   * tenant_id columns hold the directory's tenant id as published in the event; they are
--     deliberately not foreign keys to tenants (the directory may forget a tenant, the
--     evidence must stay).
--   * SQL is written with bound parameters only; no value is ever formatted into a statement.

-- Maps a confidence label to its rank (NULL for NULL or an unknown label).
CREATE FUNCTION confidence_rank(label text) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE label
        WHEN 'NONE' THEN 0
        WHEN 'LOW' THEN 1
        WHEN 'MEDIUM' THEN 2
        WHEN 'HIGH' THEN 3
        WHEN 'CONFIRMED' THEN 4
    END::smallint
$$;
COMMENT ON FUNCTION confidence_rank(text) IS
    'Rank of an attribution confidence label: NONE 0, LOW 1, MEDIUM 2, HIGH 3, CONFIRMED 4; NULL otherwise.';

------------------------------------------------------------------------------------------
-- Raw evidence
------------------------------------------------------------------------------------------

CREATE TABLE submissions (
    raw_sha256         text PRIMARY KEY CHECK (raw_sha256 ~ '^[0-9a-f]{64}$'),
    submission_id      uuid NOT NULL UNIQUE,
    raw                bytea,
    raw_size           bigint NOT NULL CHECK (raw_size >= 0),
    received_at        timestamptz NOT NULL,
    channel            text NOT NULL,
    retain_until       timestamptz NOT NULL,
    raw_stored_at      timestamptz,
    raw_deleted_at     timestamptz,
    raw_deleted_reason text CHECK (raw_deleted_reason IN ('retention', 'erasure')),
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((raw_deleted_at IS NULL) = (raw_deleted_reason IS NULL)),
    CHECK (raw IS NULL OR raw_deleted_at IS NULL)
);
COMMENT ON TABLE submissions IS
    'One row per distinct submission (deduplicated by the SHA-256 of its bytes): the raw evidence. RESTRICTED: raw holds complainant addresses in clear; only analysts may read it, and every read must be written to audit_log (action raw_view). The row is created by whichever record arrives first (raw, event or rejection); raw is filled from abuse.raw.v1.';
COMMENT ON COLUMN submissions.raw_sha256 IS 'SHA-256 of the raw submission bytes, lower-case hex (intake.raw_sha256 of the events); the root of every published id.';
COMMENT ON COLUMN submissions.submission_id IS 'The submission id published on every event and rejection (derived from raw_sha256).';
COMMENT ON COLUMN submissions.raw IS 'The submission bytes exactly as received. NULL when the raw record has not been consumed yet, or after retention/erasure deleted it (then raw_deleted_at is set and the bytes are never stored again). Serve only as application/octet-stream attachments.';
COMMENT ON COLUMN submissions.raw_size IS 'Size of the raw submission in bytes (kept after the bytes are deleted).';
COMMENT ON COLUMN submissions.received_at IS 'When arfwire received the submission (intake.received_at).';
COMMENT ON COLUMN submissions.channel IS 'Intake channel: file, maildir, mbox, lmtp, smtp, imap.';
COMMENT ON COLUMN submissions.retain_until IS 'When the retention job deletes the raw bytes: received_at plus the configured raw retention period (default 90 days).';
COMMENT ON COLUMN submissions.raw_stored_at IS 'When the raw bytes were written (NULL while they are not held).';
COMMENT ON COLUMN submissions.raw_deleted_at IS 'When the raw bytes were deleted; a tombstone, so a replay of the raw topic does not bring them back.';
COMMENT ON COLUMN submissions.raw_deleted_reason IS 'Why they were deleted: retention (past retain_until) or erasure (a complainant''s erasure request).';
COMMENT ON COLUMN submissions.first_seen_at IS 'When the desk first stored anything about this submission.';

CREATE INDEX submissions_retain_until ON submissions (retain_until) WHERE raw IS NOT NULL;
CREATE INDEX submissions_received_at ON submissions (received_at);

------------------------------------------------------------------------------------------
-- Workflow: cases (declared before reports, which point to them)
------------------------------------------------------------------------------------------

CREATE TABLE cases (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         text NOT NULL CHECK (tenant_id <> ''),
    tenant_name       text,
    title             text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'new'
                      CHECK (status IN ('new', 'investigating', 'actioned', 'dismissed')),
    assignee          text,
    opened_by         text NOT NULL,
    opened_at         timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    status_changed_by text,
    status_changed_at timestamptz,
    closed_at         timestamptz,
    alert_id          bigint
);
COMMENT ON TABLE cases IS
    'An investigation of one tenant by the abuse desk. Status moves new -> investigating -> actioned | dismissed (new may go straight to dismissed; a closed case may be reopened to investigating); the trigger cases_status_guard refuses other moves and writes every status change to audit_log. At most one open (new or investigating) case per tenant.';
COMMENT ON COLUMN cases.id IS 'Case number.';
COMMENT ON COLUMN cases.tenant_id IS 'The tenant under investigation (directory tenant id; ''unattributed'' for a case about unattributed reports).';
COMMENT ON COLUMN cases.tenant_name IS 'The tenant''s display name when the case was opened.';
COMMENT ON COLUMN cases.title IS 'Short summary for lists.';
COMMENT ON COLUMN cases.status IS 'new, investigating, actioned or dismissed.';
COMMENT ON COLUMN cases.assignee IS 'The analyst working on it (API token name or user), NULL when unassigned.';
COMMENT ON COLUMN cases.opened_by IS 'Who opened it (user, or ''system'' when an alert opened it).';
COMMENT ON COLUMN cases.opened_at IS 'When it was opened.';
COMMENT ON COLUMN cases.updated_at IS 'Last change of any column (set by the trigger).';
COMMENT ON COLUMN cases.status_changed_by IS 'Who made the last status change. Set it in the same UPDATE as status (or SET LOCAL arfwire.actor, which wins); the audit row names this actor.';
COMMENT ON COLUMN cases.status_changed_at IS 'When the status last changed (set by the trigger).';
COMMENT ON COLUMN cases.closed_at IS 'When it reached actioned or dismissed (NULL while open; cleared on reopening).';
COMMENT ON COLUMN cases.alert_id IS 'The alert that led to the case, if any (alerts.id).';

CREATE UNIQUE INDEX cases_one_open_per_tenant ON cases (tenant_id)
    WHERE status IN ('new', 'investigating');
CREATE INDEX cases_status_updated ON cases (status, updated_at DESC);
CREATE INDEX cases_assignee ON cases (assignee) WHERE assignee IS NOT NULL;

CREATE TABLE case_notes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id    bigint NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    author     text NOT NULL CHECK (author <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    body       text NOT NULL
);
COMMENT ON TABLE case_notes IS 'Append-only notes history of a case: one row per note, with author and time. Notes are never edited; a correction is a new note.';
COMMENT ON COLUMN case_notes.case_id IS 'The case (cases.id).';
COMMENT ON COLUMN case_notes.author IS 'Who wrote it (API token name or user).';
COMMENT ON COLUMN case_notes.created_at IS 'When it was written.';
COMMENT ON COLUMN case_notes.body IS 'The note, plain text (render escaped, never as HTML).';

CREATE INDEX case_notes_case ON case_notes (case_id, created_at);

------------------------------------------------------------------------------------------
-- Clusters: the same reported message complained about many times
------------------------------------------------------------------------------------------

CREATE TABLE clusters (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_kind               text NOT NULL CHECK (key_kind IN ('message_id', 'dkim_b', 'fingerprint')),
    key_value              text NOT NULL CHECK (key_value <> ''),
    message_id             text,
    subject                text,
    sender_domain          text,
    tenant_id              text,
    tenant_name            text,
    report_count           bigint NOT NULL DEFAULT 0 CHECK (report_count >= 0),
    incident_count         bigint NOT NULL DEFAULT 0 CHECK (incident_count >= 0),
    distinct_reporters     bigint NOT NULL DEFAULT 0 CHECK (distinct_reporters >= 0),
    distinct_complainants  bigint NOT NULL DEFAULT 0 CHECK (distinct_complainants >= 0),
    max_confidence_rank    smallint,
    first_seen_at          timestamptz NOT NULL,
    last_seen_at           timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (key_kind, key_value)
);
COMMENT ON TABLE clusters IS
    'Reports of the same reported message, grouped. Key: the reported Message-ID when it has one, else the DKIM b= prefix of its first signature, else a SHA-256 fingerprint of From + Subject + Date. Counts are maintained by the consumer in the same transaction as the report rows, and only for new event ids, so replays never double-count.';
COMMENT ON COLUMN clusters.id IS 'Cluster id (reports.cluster_id).';
COMMENT ON COLUMN clusters.key_kind IS 'Which key grouped the reports: message_id, dkim_b or fingerprint.';
COMMENT ON COLUMN clusters.key_value IS 'The key: the Message-ID (without angle brackets, as written), the DKIM b= prefix, or the fingerprint (lower-case hex SHA-256).';
COMMENT ON COLUMN clusters.message_id IS 'Message-ID of the reported message (from the first report).';
COMMENT ON COLUMN clusters.subject IS 'Subject of the reported message (from the first report).';
COMMENT ON COLUMN clusters.sender_domain IS 'Sending domain of the reported message (from the first report).';
COMMENT ON COLUMN clusters.tenant_id IS 'The sending tenant of the most recent attributed report (NULL while none was attributed).';
COMMENT ON COLUMN clusters.tenant_name IS 'That tenant''s display name.';
COMMENT ON COLUMN clusters.report_count IS 'How many distinct events (report rows) the cluster holds; 50 copies of one complaint give 50.';
COMMENT ON COLUMN clusters.incident_count IS 'Sum of the ARF Incidents of its reports (1 per report without the field; Incidents above 1 counted only from T1 reporters).';
COMMENT ON COLUMN clusters.distinct_reporters IS 'How many distinct reporters complained: a person by complainant token, an automated reporter by its From domain (see cluster_reporters).';
COMMENT ON COLUMN clusters.distinct_complainants IS 'How many distinct complainant tokens appear in its reports.';
COMMENT ON COLUMN clusters.max_confidence_rank IS 'Highest confidence_rank of its reports (NULL when none was attributed).';
COMMENT ON COLUMN clusters.first_seen_at IS 'Earliest received_at of its reports.';
COMMENT ON COLUMN clusters.last_seen_at IS 'Latest received_at of its reports.';
COMMENT ON COLUMN clusters.updated_at IS 'When the consumer last changed the row.';

CREATE INDEX clusters_last_seen ON clusters (last_seen_at DESC);
CREATE INDEX clusters_tenant_last_seen ON clusters (tenant_id, last_seen_at DESC);
CREATE INDEX clusters_report_count ON clusters (report_count DESC);

CREATE TABLE cluster_reporters (
    cluster_id    bigint NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    reporter_key  text NOT NULL,
    is_complainant boolean NOT NULL,
    report_count  bigint NOT NULL DEFAULT 0,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (cluster_id, reporter_key)
);
COMMENT ON TABLE cluster_reporters IS 'Who complained about a cluster, to count distinct reporters exactly. No addresses: a person is keyed by complainant token, an automated reporter by ''domain:<from domain>''.';
COMMENT ON COLUMN cluster_reporters.cluster_id IS 'The cluster.';
COMMENT ON COLUMN cluster_reporters.reporter_key IS '''anon:<16 hex>'' (a complainant token), ''domain:<reporter domain>'', ''unknown'', or ''erased:<random>'' after an erasure (kept so distinct counts stay).';
COMMENT ON COLUMN cluster_reporters.is_complainant IS 'True when reporter_key is (or was) a complainant token.';
COMMENT ON COLUMN cluster_reporters.report_count IS 'How many of the cluster''s reports came from this reporter.';
COMMENT ON COLUMN cluster_reporters.first_seen_at IS 'received_at of this reporter''s first report in the cluster.';

CREATE INDEX cluster_reporters_key ON cluster_reporters (reporter_key);

------------------------------------------------------------------------------------------
-- Reports: one row per abuse event
------------------------------------------------------------------------------------------

CREATE TABLE reports (
    event_id              uuid PRIMARY KEY,
    submission_id         uuid NOT NULL,
    raw_sha256            text NOT NULL CHECK (raw_sha256 ~ '^[0-9a-f]{64}$'),
    report_index          integer NOT NULL CHECK (report_index >= 0),
    report_count          integer NOT NULL CHECK (report_count >= 1),
    kind                  text NOT NULL,
    format                text NOT NULL,
    feedback_type         text,
    complaint_type        text NOT NULL,
    incidents             bigint,
    reporter_domain       text,
    reporter_tier         text CHECK (reporter_tier IN ('T1', 'T2', 'T3')),
    reporter_operator     text,
    tenant_id             text,
    tenant_name           text,
    confidence            text CHECK (confidence IN ('NONE', 'LOW', 'MEDIUM', 'HIGH', 'CONFIRMED')),
    confidence_rank       smallint GENERATED ALWAYS AS (confidence_rank(confidence)) STORED,
    score                 double precision CHECK (score >= 0 AND score <= 1),
    path_class            text,
    origin_kind           text,
    flags                 text[] NOT NULL DEFAULT '{}',
    source_ip             inet,
    egress_ip             inet,
    ingress_ip            inet,
    origin_ip             inet,
    message_id            text,
    subject               text,
    sender_domain         text,
    arrival_at            timestamptz,
    received_at           timestamptz NOT NULL,
    complainant_token     text CHECK (complainant_token ~ '^(anon:[0-9a-f]{16}|erased)$'),
    complainant_tokens    text[] NOT NULL DEFAULT '{}',
    cluster_id            bigint REFERENCES clusters (id) ON DELETE SET NULL,
    event                 jsonb NOT NULL,
    parser_version        text NOT NULL,
    status                text NOT NULL DEFAULT 'new'
                          CHECK (status IN ('new', 'investigating', 'actioned', 'dismissed')),
    status_changed_by     text,
    status_changed_at     timestamptz,
    case_id               bigint REFERENCES cases (id) ON DELETE SET NULL,
    stored_at             timestamptz NOT NULL DEFAULT now(),
    erased_at             timestamptz,
    UNIQUE (submission_id, report_index)
);
COMMENT ON TABLE reports IS
    'One row per abuse event (abuse.events.v1), keyed by event_id; the consumer inserts with ON CONFLICT (event_id) DO NOTHING, so replays and duplicates are no-ops. Columns are the event''s fields the desk filters and sorts on; event holds the whole event. Status changes are audited by the trigger reports_status_audit.';
COMMENT ON COLUMN reports.event_id IS 'The event id (deterministic from the submission bytes and report_index).';
COMMENT ON COLUMN reports.submission_id IS 'The submission the event came from (submissions.submission_id).';
COMMENT ON COLUMN reports.raw_sha256 IS 'SHA-256 of the submission (submissions.raw_sha256); no foreign key: the raw record may arrive later or may have been deleted.';
COMMENT ON COLUMN reports.report_index IS 'Zero-based position of this reported message in the submission.';
COMMENT ON COLUMN reports.report_count IS 'How many reported messages the submission held.';
COMMENT ON COLUMN reports.kind IS 'Report kind: arf, auth_failure, jmrp, forward_attachment, forward_inline, ... (open vocabulary of the event schema).';
COMMENT ON COLUMN reports.format IS 'Finer format: rfc5965, jmrp, gmail_inline, ... (open vocabulary).';
COMMENT ON COLUMN reports.feedback_type IS 'The ARF Feedback-Type as written (lower case), NULL when the submission had no feedback report.';
COMMENT ON COLUMN reports.complaint_type IS 'Effective complaint type: the Feedback-Type, else implied by kind (auth-failure or abuse). Filter leaderboards on this; not-spam inverts the signal.';
COMMENT ON COLUMN reports.incidents IS 'ARF Incidents as reported (NULL when absent).';
COMMENT ON COLUMN reports.reporter_domain IS 'Domain of the submission''s From (the reporter: a feedback-loop operator or a person''s mail domain); never the address.';
COMMENT ON COLUMN reports.reporter_tier IS 'Reporter trust: T1 known feedback-loop operator, T2 authenticated, T3 not authenticated or not checked; NULL when not evaluated.';
COMMENT ON COLUMN reports.reporter_operator IS 'The known feedback-loop operator for T1.';
COMMENT ON COLUMN reports.tenant_id IS 'The sending tenant named by attribution (NULL: unattributed).';
COMMENT ON COLUMN reports.tenant_name IS 'The sending tenant''s display name at attribution time.';
COMMENT ON COLUMN reports.confidence IS 'Attribution confidence: NONE, LOW, MEDIUM, HIGH, CONFIRMED; NULL when the event carried no attribution.';
COMMENT ON COLUMN reports.confidence_rank IS 'confidence as a number (NONE 0 ... CONFIRMED 4), generated; use it for "at least" filters.';
COMMENT ON COLUMN reports.score IS 'Attribution score in [0, 1] (NULL without attribution).';
COMMENT ON COLUMN reports.path_class IS 'Attribution path class: provider_outbound, provider_to_provider, egress_not_provider, inbound_external, not_ours, unknown.';
COMMENT ON COLUMN reports.origin_kind IS 'How the message entered the platform: hosted_mailbox, client_submission, connector_on_prem, connector_third_party, relay, unknown.';
COMMENT ON COLUMN reports.flags IS 'Attribution flags (upper case, sorted).';
COMMENT ON COLUMN reports.source_ip IS 'The source IP the reporter states: ARF Source-IP, else an IP claimed in the subject/body (JMRP, DMARC text).';
COMMENT ON COLUMN reports.egress_ip IS 'The platform IP that handed the message out (attribution).';
COMMENT ON COLUMN reports.ingress_ip IS 'Where the message entered the platform on its final pass (attribution).';
COMMENT ON COLUMN reports.origin_ip IS 'Where the message entered the platform on its earliest pass: the IP that sent it (attribution).';
COMMENT ON COLUMN reports.message_id IS 'Message-ID of the reported message, without angle brackets.';
COMMENT ON COLUMN reports.subject IS 'Decoded Subject of the reported message (untrusted text: render escaped).';
COMMENT ON COLUMN reports.sender_domain IS 'Sending domain of the reported message (From, else Original-Mail-From), lower case.';
COMMENT ON COLUMN reports.arrival_at IS 'When the reported message arrived at the complainant: ARF Arrival-Date, else the reported message''s Date; NULL when neither parsed.';
COMMENT ON COLUMN reports.received_at IS 'When arfwire received the submission (intake.received_at); the time axis of leaderboards and alerts.';
COMMENT ON COLUMN reports.complainant_token IS 'Pseudonym of the complainant (the first of complainant_tokens): anon:<16 hex>, ''erased'' after an erasure request, NULL when no complainant address was found. Stable per address and key, so reports by one complainant correlate.';
COMMENT ON COLUMN reports.complainant_tokens IS 'Every complainant pseudonym the event carries (Original-Rcpt-To, Removal-Recipient, the reported message''s To/Cc/Delivered-To/X-HmXmrOriginalRecipient, a person reporter''s From), in order, deduplicated.';
COMMENT ON COLUMN reports.cluster_id IS 'The cluster of this reported message (clusters.id).';
COMMENT ON COLUMN reports.event IS 'The whole event as published (arfwire.abuse-event.v1, pseudonymised; no raw header block).';
COMMENT ON COLUMN reports.parser_version IS 'Version of the parser that produced the event.';
COMMENT ON COLUMN reports.status IS 'Triage status of this report: new, investigating, actioned, dismissed.';
COMMENT ON COLUMN reports.status_changed_by IS 'Who made the last status change; set it in the same UPDATE as status (or SET LOCAL arfwire.actor, which wins); the audit row names this actor.';
COMMENT ON COLUMN reports.status_changed_at IS 'When the status last changed (set by the trigger).';
COMMENT ON COLUMN reports.case_id IS 'The case this report is part of, if any.';
COMMENT ON COLUMN reports.stored_at IS 'When the consumer stored the row.';
COMMENT ON COLUMN reports.erased_at IS 'When an erasure request replaced this report''s complainant tokens (NULL otherwise).';

CREATE INDEX reports_tenant_received ON reports (tenant_id, received_at DESC);
CREATE INDEX reports_received ON reports (received_at DESC);
CREATE INDEX reports_confidence_received ON reports (confidence_rank, received_at DESC);
CREATE INDEX reports_tenant_confidence_received ON reports (tenant_id, confidence_rank, received_at DESC);
CREATE INDEX reports_complaint_type_received ON reports (complaint_type, received_at DESC);
CREATE INDEX reports_feedback_type_received ON reports (feedback_type, received_at DESC);
CREATE INDEX reports_status_received ON reports (status, received_at DESC);
CREATE INDEX reports_sender_domain_received ON reports (sender_domain, received_at DESC);
CREATE INDEX reports_reporter_domain_received ON reports (reporter_domain, received_at DESC);
CREATE INDEX reports_cluster ON reports (cluster_id);
CREATE INDEX reports_case ON reports (case_id) WHERE case_id IS NOT NULL;
CREATE INDEX reports_raw_sha256 ON reports (raw_sha256);
CREATE INDEX reports_message_id ON reports (message_id);
CREATE INDEX reports_source_ip ON reports USING gist (source_ip inet_ops);
CREATE INDEX reports_complainant_tokens ON reports USING gin (complainant_tokens);

CREATE TABLE report_notes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   uuid NOT NULL REFERENCES reports (event_id) ON DELETE CASCADE,
    author     text NOT NULL CHECK (author <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    body       text NOT NULL
);
COMMENT ON TABLE report_notes IS 'Append-only notes on one report, with author and time.';
COMMENT ON COLUMN report_notes.event_id IS 'The report (reports.event_id).';
COMMENT ON COLUMN report_notes.author IS 'Who wrote it.';
COMMENT ON COLUMN report_notes.created_at IS 'When it was written.';
COMMENT ON COLUMN report_notes.body IS 'The note, plain text (render escaped).';

CREATE INDEX report_notes_event ON report_notes (event_id, created_at);

------------------------------------------------------------------------------------------
-- Rejections and consumer errors
------------------------------------------------------------------------------------------

CREATE TABLE rejections (
    rejection_id    uuid PRIMARY KEY,
    submission_id   uuid NOT NULL,
    raw_sha256      text NOT NULL CHECK (raw_sha256 ~ '^[0-9a-f]{64}$'),
    category        text NOT NULL CHECK (category IN ('not_report', 'refused')),
    reason          text NOT NULL,
    detail          text NOT NULL,
    reporter_domain text,
    subject         text,
    received_at     timestamptz NOT NULL,
    channel         text NOT NULL,
    raw_size        bigint NOT NULL,
    record          jsonb NOT NULL,
    parser_version  text NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE rejections IS 'One row per rejection record (abuse.rejected.v1): a submission that yielded no event (not a report, or refused), with the reason. Inserted with ON CONFLICT (rejection_id) DO NOTHING.';
COMMENT ON COLUMN rejections.rejection_id IS 'The rejection id (deterministic from the submission bytes).';
COMMENT ON COLUMN rejections.submission_id IS 'The submission (submissions.submission_id).';
COMMENT ON COLUMN rejections.raw_sha256 IS 'SHA-256 of the submission (submissions.raw_sha256).';
COMMENT ON COLUMN rejections.category IS 'not_report (mail, but not an abuse report) or refused (not mail, over a limit, parser failure).';
COMMENT ON COLUMN rejections.reason IS 'Why: a not-report reason (bounce, auto_reply, dmarc_aggregate, ordinary_mail, ...) or a refusal reason (too_large, not_mail, ...).';
COMMENT ON COLUMN rejections.detail IS 'A sentence for a person (sizes and limits, never content).';
COMMENT ON COLUMN rejections.reporter_domain IS 'Domain of the submission''s From, when it was parsed.';
COMMENT ON COLUMN rejections.subject IS 'The submission''s own Subject, when it was parsed (untrusted text).';
COMMENT ON COLUMN rejections.received_at IS 'When arfwire received the submission.';
COMMENT ON COLUMN rejections.channel IS 'Intake channel.';
COMMENT ON COLUMN rejections.raw_size IS 'Size of the submission in bytes.';
COMMENT ON COLUMN rejections.record IS 'The whole rejection record as published (arfwire.rejected.v1, pseudonymised).';
COMMENT ON COLUMN rejections.parser_version IS 'Version of the parser that decided.';
COMMENT ON COLUMN rejections.stored_at IS 'When the consumer stored the row.';

CREATE INDEX rejections_received ON rejections (received_at DESC);
CREATE INDEX rejections_reason_received ON rejections (category, reason, received_at DESC);
CREATE INDEX rejections_raw_sha256 ON rejections (raw_sha256);

CREATE TABLE store_errors (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic          text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset   bigint NOT NULL,
    record_key     text,
    error          text NOT NULL,
    payload_size   bigint NOT NULL,
    payload_sha256 text NOT NULL CHECK (payload_sha256 ~ '^[0-9a-f]{64}$'),
    payload        bytea,
    retain_until   timestamptz NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition, kafka_offset)
);
COMMENT ON TABLE store_errors IS 'Records the desk consumer could not apply (malformed JSON, an unknown schema, a value the tables refuse). The record is skipped, never retried in a loop, so it does not block its partition. RESTRICTED: payload may hold personal data; retention deletes it with the raw submissions.';
COMMENT ON COLUMN store_errors.topic IS 'Topic of the record.';
COMMENT ON COLUMN store_errors.kafka_partition IS 'Partition of the record.';
COMMENT ON COLUMN store_errors.kafka_offset IS 'Offset of the record (topic, partition, offset is unique: a replay does not add a second row).';
COMMENT ON COLUMN store_errors.record_key IS 'The record key, lossily decoded as UTF-8 (NULL when absent).';
COMMENT ON COLUMN store_errors.error IS 'What was wrong (no payload content).';
COMMENT ON COLUMN store_errors.payload_size IS 'Size of the record value in bytes.';
COMMENT ON COLUMN store_errors.payload_sha256 IS 'SHA-256 of the record value, lower-case hex.';
COMMENT ON COLUMN store_errors.payload IS 'The record value (at most 1 MiB kept; NULL when larger or after retention).';
COMMENT ON COLUMN store_errors.retain_until IS 'When retention deletes payload.';
COMMENT ON COLUMN store_errors.occurred_at IS 'When the consumer met it.';

CREATE INDEX store_errors_occurred ON store_errors (occurred_at DESC);

------------------------------------------------------------------------------------------
-- Alerts
------------------------------------------------------------------------------------------

CREATE TABLE alert_rules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name <> ''),
    tenant_id       text,
    threshold       integer NOT NULL CHECK (threshold > 0),
    window_seconds  integer NOT NULL CHECK (window_seconds > 0),
    min_confidence  text NOT NULL DEFAULT 'MEDIUM'
                    CHECK (min_confidence IN ('NONE', 'LOW', 'MEDIUM', 'HIGH', 'CONFIRMED')),
    complaint_types text[],
    clear_below     integer CHECK (clear_below >= 0),
    enabled         boolean NOT NULL DEFAULT true,
    source          text NOT NULL DEFAULT 'desk' CHECK (source IN ('config', 'desk')),
    created_by      text NOT NULL DEFAULT 'system',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (clear_below IS NULL OR clear_below < threshold)
);
COMMENT ON TABLE alert_rules IS
    'Complaint threshold rules: fire when a tenant has at least threshold reports of at least min_confidence within window_seconds. A rule with tenant_id NULL applies to every tenant that has no enabled rule of its own; a rule with a tenant_id overrides the global rules for that tenant. The rule named ''default'' (source config) is written from the configuration at start-up and on evaluation.';
COMMENT ON COLUMN alert_rules.name IS 'Unique name, shown in alerts.';
COMMENT ON COLUMN alert_rules.tenant_id IS 'NULL: a global rule; otherwise the tenant this override applies to.';
COMMENT ON COLUMN alert_rules.threshold IS 'How many reports within the window fire the alert.';
COMMENT ON COLUMN alert_rules.window_seconds IS 'The sliding window, in seconds, over reports.received_at.';
COMMENT ON COLUMN alert_rules.min_confidence IS 'Only reports whose attribution confidence is at least this label count.';
COMMENT ON COLUMN alert_rules.complaint_types IS 'Only reports with one of these complaint types count; NULL counts every type except not-spam.';
COMMENT ON COLUMN alert_rules.clear_below IS 'Hysteresis: an open alert resolves when the count falls below this (NULL: half the threshold, rounded down).';
COMMENT ON COLUMN alert_rules.enabled IS 'Disabled rules are not evaluated (a disabled override does not hide the global rules).';
COMMENT ON COLUMN alert_rules.source IS 'config (managed from the configuration; overwritten at start-up) or desk (managed through the API).';
COMMENT ON COLUMN alert_rules.created_by IS 'Who created the rule.';
COMMENT ON COLUMN alert_rules.created_at IS 'When it was created.';
COMMENT ON COLUMN alert_rules.updated_at IS 'When it last changed.';

CREATE INDEX alert_rules_tenant ON alert_rules (tenant_id);

CREATE TABLE alerts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id           uuid NOT NULL UNIQUE,
    rule_id            bigint REFERENCES alert_rules (id) ON DELETE SET NULL,
    rule_name          text NOT NULL,
    tenant_id          text NOT NULL,
    tenant_name        text,
    threshold          integer NOT NULL,
    window_seconds     integer NOT NULL,
    min_confidence     text NOT NULL,
    fired_count        bigint NOT NULL,
    window_start       timestamptz NOT NULL,
    window_end         timestamptz NOT NULL,
    fired_at           timestamptz NOT NULL,
    last_count         bigint NOT NULL,
    last_evaluated_at  timestamptz NOT NULL,
    peak_count         bigint NOT NULL,
    resolved_at        timestamptz,
    status             text NOT NULL DEFAULT 'open'
                       CHECK (status IN ('open', 'acknowledged', 'resolved')),
    acknowledged_by    text,
    acknowledged_at    timestamptz,
    sample_event_ids   uuid[] NOT NULL DEFAULT '{}',
    payload            jsonb NOT NULL,
    published_at       timestamptz,
    publish_attempts   integer NOT NULL DEFAULT 0,
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
COMMENT ON TABLE alerts IS
    'Alerts raised by alert_rules. Hysteresis: at most one unresolved alert per (rule, tenant); it resolves when the count falls below the rule''s clear level, and a new one fires no earlier than one window after the previous one fired. New alerts are published to abuse.alerts.v1 from this table (published_at NULL = not yet acknowledged by the broker: a transactional outbox).';
COMMENT ON COLUMN alerts.id IS 'Row id.';
COMMENT ON COLUMN alerts.alert_id IS 'The published alert id (arfwire.alert.v1 alert_id; deterministic from rule, tenant and firing time).';
COMMENT ON COLUMN alerts.rule_id IS 'The rule (NULL if it was deleted since).';
COMMENT ON COLUMN alerts.rule_name IS 'The rule''s name when it fired.';
COMMENT ON COLUMN alerts.tenant_id IS 'The tenant the alert is about.';
COMMENT ON COLUMN alerts.tenant_name IS 'Its display name (from its latest report).';
COMMENT ON COLUMN alerts.threshold IS 'The rule''s threshold when it fired.';
COMMENT ON COLUMN alerts.window_seconds IS 'The rule''s window when it fired.';
COMMENT ON COLUMN alerts.min_confidence IS 'The rule''s minimum confidence when it fired.';
COMMENT ON COLUMN alerts.fired_count IS 'How many qualifying reports were in the window when it fired.';
COMMENT ON COLUMN alerts.window_start IS 'Start of the window it fired on (window_end minus the window).';
COMMENT ON COLUMN alerts.window_end IS 'The evaluation time it fired at.';
COMMENT ON COLUMN alerts.fired_at IS 'When it fired (the evaluation clock).';
COMMENT ON COLUMN alerts.last_count IS 'The count at the latest evaluation.';
COMMENT ON COLUMN alerts.last_evaluated_at IS 'The latest evaluation that looked at it.';
COMMENT ON COLUMN alerts.peak_count IS 'The highest count seen while it was unresolved.';
COMMENT ON COLUMN alerts.resolved_at IS 'When the count fell below the clear level (NULL while unresolved).';
COMMENT ON COLUMN alerts.status IS 'open, acknowledged (by a person, still unresolved) or resolved.';
COMMENT ON COLUMN alerts.acknowledged_by IS 'Who acknowledged it.';
COMMENT ON COLUMN alerts.acknowledged_at IS 'When.';
COMMENT ON COLUMN alerts.sample_event_ids IS 'Up to 20 of the newest qualifying event ids when it fired.';
COMMENT ON COLUMN alerts.payload IS 'The arfwire.alert.v1 record as published.';
COMMENT ON COLUMN alerts.published_at IS 'When the broker acknowledged the published record; NULL while pending.';
COMMENT ON COLUMN alerts.publish_attempts IS 'How many times publishing was tried.';

CREATE UNIQUE INDEX alerts_one_unresolved ON alerts (rule_id, tenant_id) WHERE resolved_at IS NULL;
CREATE INDEX alerts_fired ON alerts (fired_at DESC);
CREATE INDEX alerts_tenant_fired ON alerts (tenant_id, fired_at DESC);
CREATE INDEX alerts_unpublished ON alerts (id) WHERE published_at IS NULL;

ALTER TABLE cases ADD FOREIGN KEY (alert_id) REFERENCES alerts (id) ON DELETE SET NULL;

------------------------------------------------------------------------------------------
-- API tokens and audit
------------------------------------------------------------------------------------------

CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (name <> ''),
    token_sha256 text NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    token_prefix text NOT NULL DEFAULT '',
    role         text NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
    tenant_scope text[],
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CHECK (expires_at > created_at)
);
COMMENT ON TABLE api_tokens IS 'Bearer tokens of the triage API. Only the SHA-256 of a token is stored; the secret is shown once when it is created. Roles: viewer < analyst < admin (only analyst and admin see raw messages; only admin manages tokens, rules and reporter tiers).';
COMMENT ON COLUMN api_tokens.name IS 'Who or what holds the token; the actor name in audit_log.';
COMMENT ON COLUMN api_tokens.token_sha256 IS 'SHA-256 of the token secret, lower-case hex. Look tokens up by this.';
COMMENT ON COLUMN api_tokens.token_prefix IS 'The first few characters of the secret, to recognise a token in lists (never enough to use it).';
COMMENT ON COLUMN api_tokens.role IS 'viewer, analyst or admin.';
COMMENT ON COLUMN api_tokens.tenant_scope IS 'Tenant ids the token may see; NULL for every tenant.';
COMMENT ON COLUMN api_tokens.created_by IS 'Who created it.';
COMMENT ON COLUMN api_tokens.created_at IS 'When.';
COMMENT ON COLUMN api_tokens.expires_at IS 'The token is refused from this time on.';
COMMENT ON COLUMN api_tokens.revoked_at IS 'When it was revoked (refused from then on); NULL while valid.';
COMMENT ON COLUMN api_tokens.last_used_at IS 'Last successful use.';

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL CHECK (actor <> ''),
    action      text NOT NULL CHECK (action <> ''),
    object_type text NOT NULL CHECK (object_type <> ''),
    object_id   text NOT NULL,
    tenant_id   text,
    old_value   text,
    new_value   text,
    detail      jsonb NOT NULL DEFAULT '{}',
    client_ip   inet,
    request_id  text
);
COMMENT ON TABLE audit_log IS 'Append-only record of who did or saw what: every raw-message view (action raw_view, object_type submission), every status change of reports and cases (written by triggers), notes, assignments, token and rule changes, retention and erasure runs. UPDATE and DELETE are refused by trigger. Never holds a complainant address.';
COMMENT ON COLUMN audit_log.at IS 'When.';
COMMENT ON COLUMN audit_log.actor IS 'Who: API token name or user; ''system'' for jobs.';
COMMENT ON COLUMN audit_log.action IS 'What: raw_view, report_status, case_status, case_note, report_note, case_assign, token_create, token_revoke, rule_change, retention, erasure, ...';
COMMENT ON COLUMN audit_log.object_type IS 'Kind of object: submission, report, case, alert, api_token, alert_rule, complainant, store.';
COMMENT ON COLUMN audit_log.object_id IS 'Its id as text (raw_sha256, event_id, case id, ...).';
COMMENT ON COLUMN audit_log.tenant_id IS 'The tenant concerned, when there is one.';
COMMENT ON COLUMN audit_log.old_value IS 'Value before (a status change: the old status).';
COMMENT ON COLUMN audit_log.new_value IS 'Value after.';
COMMENT ON COLUMN audit_log.detail IS 'Anything else, as JSON (counts, reasons).';
COMMENT ON COLUMN audit_log.client_ip IS 'Address of the API client, when the action came through the API.';
COMMENT ON COLUMN audit_log.request_id IS 'The API request id, when there is one.';

CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id, at DESC);
CREATE INDEX audit_log_actor ON audit_log (actor, at DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

------------------------------------------------------------------------------------------
-- Status triggers: transition rules and audit of every change
------------------------------------------------------------------------------------------

-- Status changes of reports and cases are checked against desk_status_allowed and audited.
-- The actor written to audit_log is the session setting arfwire.actor when the transaction set
-- it (SET LOCAL arfwire.actor = '...'), else the row's status_changed_by, else 'unknown': set
-- one of them with every status change.
CREATE FUNCTION desk_status_allowed(old_status text, new_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT old_status = new_status OR (old_status, new_status) IN (
        ('new', 'investigating'),
        ('new', 'dismissed'),
        ('new', 'actioned'),
        ('investigating', 'actioned'),
        ('investigating', 'dismissed'),
        ('investigating', 'new'),
        ('actioned', 'investigating'),
        ('dismissed', 'investigating')
    )
$$;
COMMENT ON FUNCTION desk_status_allowed(text, text) IS
    'The status moves the desk allows: new -> investigating | actioned | dismissed, investigating -> actioned | dismissed | new, and reopening actioned | dismissed -> investigating.';

CREATE FUNCTION cases_status_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    who text;
BEGIN
    NEW.updated_at := now();
    IF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT desk_status_allowed(OLD.status, NEW.status) THEN
            RAISE EXCEPTION 'case % cannot move from % to %', OLD.id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        who := COALESCE(NULLIF(current_setting('arfwire.actor', true), ''),
                        NEW.status_changed_by, 'unknown');
        NEW.status_changed_by := who;
        NEW.status_changed_at := now();
        NEW.closed_at := CASE WHEN NEW.status IN ('actioned', 'dismissed') THEN now() END;
        INSERT INTO audit_log (actor, action, object_type, object_id, tenant_id, old_value, new_value)
        VALUES (who, 'case_status', 'case', OLD.id::text, OLD.tenant_id, OLD.status, NEW.status);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER cases_status_guard
    BEFORE UPDATE ON cases
    FOR EACH ROW EXECUTE FUNCTION cases_status_guard();

CREATE FUNCTION reports_status_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    who text;
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NOT desk_status_allowed(OLD.status, NEW.status) THEN
            RAISE EXCEPTION 'report % cannot move from % to %', OLD.event_id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        who := COALESCE(NULLIF(current_setting('arfwire.actor', true), ''),
                        NEW.status_changed_by, 'unknown');
        NEW.status_changed_by := who;
        NEW.status_changed_at := now();
        INSERT INTO audit_log (actor, action, object_type, object_id, tenant_id, old_value, new_value)
        VALUES (who, 'report_status', 'report', OLD.event_id::text, OLD.tenant_id, OLD.status, NEW.status);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER reports_status_audit
    BEFORE UPDATE OF status ON reports
    FOR EACH ROW EXECUTE FUNCTION reports_status_audit();
