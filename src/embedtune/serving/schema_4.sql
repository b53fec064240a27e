-- Schema 4: provenance of documents-folder chunks. Every version's documents table gains the file a chunk came
-- from and its page (NULL for documents without them); searches show both. Versions loaded before this keep NULL
-- there (no provenance reached the database then): their searches show the chunk id, which names the file and
-- page, as before.

DO $$
DECLARE
    docs text;
BEGIN
    FOR docs IN SELECT version || '_docs' FROM embedtune_versions LOOP
        IF to_regclass(docs) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS source text, ADD COLUMN IF NOT EXISTS page integer',
                           docs);
        END IF;
    END LOOP;
END
$$;
