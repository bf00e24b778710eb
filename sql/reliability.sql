-- Instrument reliability per model (instrument_reliability): split-half over each SAE's units, Spearman-Brown
-- corrected, with its 95% bootstrap interval over SAEs; then the largest tau each compared pair can show.
SELECT model, instrument, coalesce(partner, '') AS partner, n_saes, units, round(half_r, 3) AS half_r,
       round(reliability, 3) AS reliability, round(ci_low, 3) AS ci_low, round(ci_high, 3) AS ci_high,
       round(tau_ceiling, 3) AS tau_ceiling
FROM instrument_reliability
ORDER BY model, partner IS NOT NULL, instrument, partner;
