"""The HTTP API of ``graylift serve`` (FastAPI): :func:`graylift.api.app.create_app` builds the app; the
routes are thin over :class:`graylift.auth.Desk`; errors are problem+json (:mod:`.problems`)."""
