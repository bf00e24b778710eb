-- Every (model, SAE variant) pair that lake.toml asks for or that has results in the lake, and its status:
-- 'current' (in lake.toml now) or 'retired' (removed from [sweep]; its rows stay in every table).
-- {values} is filled in by the catalog asset from lake.toml and the lake's saes/ folder.
CREATE OR REPLACE VIEW sae_variants AS
SELECT model, sae, in_config, materialized, CASE WHEN in_config THEN 'current' ELSE 'retired' END AS status
FROM (VALUES {values}) AS t(model, sae, in_config, materialized);
