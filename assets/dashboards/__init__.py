"""Feature dashboards: static, self-contained HTML pages of every SAE's latents, written from the lake's rows.
They need no server and no network, and open from ``file://``: their data travel as script files the pages
include, since a browser refuses ``fetch()`` of local files."""
