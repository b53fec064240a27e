-- Schema 3: expert judgements (serving/judging.py, the /judge page): the queue of queries, the pool each query is
-- shown with (stored once, so every judge sees the same blind list), and the judgements, append-only.

CREATE TABLE embedtune_judging_queries (
    query_id text PRIMARY KEY,
    text     text NOT NULL,
    source   text NOT NULL,                      -- typed, file, clicks
    added_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE embedtune_judging_pools (
    query_id   text NOT NULL REFERENCES embedtune_judging_queries(query_id),
    version    text NOT NULL,                    -- the index version whose documents were pooled
    pool       jsonb NOT NULL,                   -- {"depth", "systems", "ids": shuffled document ids}
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query_id, version)
);

CREATE TABLE embedtune_judgements (
    id         bigserial PRIMARY KEY,
    request_id uuid NOT NULL UNIQUE,             -- one per judgement: a replayed request stores nothing
    at         timestamptz NOT NULL DEFAULT now(),
    judge      text NOT NULL,
    query_id   text NOT NULL REFERENCES embedtune_judging_queries(query_id),
    doc_id     text NOT NULL,
    grade      smallint CHECK (grade BETWEEN 0 AND 2),   -- 2 relevant, 1 partly, 0 not; NULL: skipped
    note       text NOT NULL DEFAULT '',
    version    text NOT NULL,
    pool       jsonb NOT NULL                    -- the list the judge was shown
);
CREATE INDEX embedtune_judgements_query ON embedtune_judgements (query_id, judge, doc_id, id);

-- a changed mind is a newer row: judgements, like the A/B logs, are never changed in place
CREATE TRIGGER embedtune_judgements_append_only BEFORE UPDATE OR DELETE ON embedtune_judgements
    FOR EACH ROW EXECUTE FUNCTION embedtune_append_only();
CREATE TRIGGER embedtune_judgements_no_truncate BEFORE TRUNCATE ON embedtune_judgements
    FOR EACH STATEMENT EXECUTE FUNCTION embedtune_append_only();
CREATE TRIGGER embedtune_judging_pools_append_only BEFORE UPDATE OR DELETE ON embedtune_judging_pools
    FOR EACH ROW EXECUTE FUNCTION embedtune_append_only();
