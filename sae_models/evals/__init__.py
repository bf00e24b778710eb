"""Evaluations of SAE latents and dictionaries, one module each: a config (``evals.config``), a run function and
typed rows: autointerp, steering, feature scores and selection, rank agreement, patching."""
