-- Schema 2: one click per (impression, document); truncation refused; erasure possible, for the owner only.
-- Applied by `embedtune.serving.db.migrate` inside its transaction, after schema.sql (version 1).

-- The logs stay append-only against UPDATE, DELETE and now TRUNCATE, for every role. The one exception is a
-- DELETE inside a transaction that set embedtune.purge = 'on': `embedtune purge` (a user's erasure, old logs),
-- run by the owner, which logs each purge in embedtune_events. Roles without DELETE (the service's) cannot.
CREATE OR REPLACE FUNCTION embedtune_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('embedtune.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'embedtune impressions and clicks are append-only (erasure: embedtune purge)';
END $$;
CREATE TRIGGER embedtune_impressions_no_truncate BEFORE TRUNCATE ON embedtune_impressions
    FOR EACH STATEMENT EXECUTE FUNCTION embedtune_append_only();
CREATE TRIGGER embedtune_clicks_no_truncate BEFORE TRUNCATE ON embedtune_clicks
    FOR EACH STATEMENT EXECUTE FUNCTION embedtune_append_only();

-- A repeated POST /click of one result of one search is answered but stored once. Repeats stored under schema 1
-- (reports counted each once) are removed here, and how many is logged.
SET LOCAL embedtune.purge = 'on';
WITH removed AS (
    DELETE FROM embedtune_clicks c USING embedtune_clicks kept
    WHERE c.impression_id = kept.impression_id AND c.doc_id = kept.doc_id AND c.id > kept.id
    RETURNING c.id
)
INSERT INTO embedtune_events (event, detail)
SELECT 'migrate', jsonb_build_object('schema', 2, 'repeated_clicks_removed', count(DISTINCT id)) FROM removed;
SET LOCAL embedtune.purge = 'off';
DROP INDEX embedtune_clicks_impression;
CREATE UNIQUE INDEX embedtune_clicks_once ON embedtune_clicks (impression_id, doc_id);

-- erasure by user id
CREATE INDEX embedtune_impressions_user ON embedtune_impressions (user_id);
