"""Evaluations of SAE latents: example gathering for autointerp (more to come: steering, selection)."""
