-- embedtune's tables in PostgreSQL: index versions and which one serves, and the A/B logs.
-- Applied once per database by `embedtune.serving.db.migrate` (the reindex stage, `embedtune migrate`), which
-- records it in embedtune_schema; searching never changes the schema.

CREATE EXTENSION IF NOT EXISTS vector;

-- One row per index version. Its vectors live in their own table named by the version (emb_<16 hex>: one
-- model, one document layout, one state of the corpus) and its titles and texts in <version>_docs.
CREATE TABLE embedtune_versions (
    version       text PRIMARY KEY,
    fingerprint   text NOT NULL,
    model_path    text NOT NULL,
    dim           integer NOT NULL,
    rows          bigint NOT NULL,
    source_commit text,
    metrics       jsonb NOT NULL DEFAULT '{}'::jsonb,
    build_seconds double precision,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The serving version (at most one row), switched together with the embedtune_search view in one transaction.
CREATE TABLE embedtune_serving (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version     text NOT NULL REFERENCES embedtune_versions(version),
    previous    text REFERENCES embedtune_versions(version),
    promoted_at timestamptz NOT NULL DEFAULT now(),
    reason      text
);

CREATE TABLE embedtune_events (
    at      timestamptz NOT NULL DEFAULT now(),
    event   text NOT NULL,
    version text,
    detail  jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- A/B experiments: an experiment's set-up (arms and BM25's weight in hybrid search) is fixed at its start, so a
-- restart with another set-up cannot mix rankings of two systems under one name.
CREATE TABLE embedtune_experiments (
    name            text PRIMARY KEY,
    mode            text NOT NULL,
    control         text NOT NULL,
    treatment       text,
    treatment_share double precision NOT NULL,
    lexical_weight  double precision NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE embedtune_impressions (
    id         uuid PRIMARY KEY,
    experiment text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    user_id    text NOT NULL,
    query      text NOT NULL,
    mode       text NOT NULL,
    arm        text,
    results    jsonb NOT NULL
);
CREATE INDEX embedtune_impressions_experiment ON embedtune_impressions (experiment, at);

CREATE TABLE embedtune_clicks (
    id            bigserial PRIMARY KEY,
    impression_id uuid NOT NULL REFERENCES embedtune_impressions(id),
    at            timestamptz NOT NULL DEFAULT now(),
    doc_id        text NOT NULL,
    rank          integer NOT NULL,
    arm           text NOT NULL,
    version       text NOT NULL
);
CREATE INDEX embedtune_clicks_impression ON embedtune_clicks (impression_id);

-- Impressions and clicks are evidence for the next training run and for A/B verdicts: never changed in place.
CREATE FUNCTION embedtune_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'embedtune impressions and clicks are append-only'; END $$;
CREATE TRIGGER embedtune_impressions_append_only BEFORE UPDATE OR DELETE ON embedtune_impressions
    FOR EACH ROW EXECUTE FUNCTION embedtune_append_only();
CREATE TRIGGER embedtune_clicks_append_only BEFORE UPDATE OR DELETE ON embedtune_clicks
    FOR EACH ROW EXECUTE FUNCTION embedtune_append_only();
