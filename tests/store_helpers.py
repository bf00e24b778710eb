"""Holding an object-store commit at its worst moment, instead of relying on timing."""

import threading


def hold_after_upload(store, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make the next commits through ``store`` stop once their files are uploaded, before the manifest names them.
    Returns (set once the files are up, set it to let the commit go on)."""
    uploaded, release = threading.Event(), threading.Event()
    real_put = store.fs.put

    def held_put(*args, **kwargs):
        real_put(*args, **kwargs)
        uploaded.set()
        release.wait(30)

    monkeypatch.setattr(store.fs, "put", held_put)
    return uploaded, release
