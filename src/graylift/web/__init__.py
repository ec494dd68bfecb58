"""The web console of ``graylift serve``: Jinja2 templates, htmx (vendored, no build step), live pages over
server-sent events. Routes in :mod:`.routes`, what the pages show in :mod:`.render`."""
