"""Static files storage: hashed and compressed after `collectstatic`, and still working before it.

`make run` collects the static files, but a web process started some other way (straight from the
Procfile line, or by a supervisor before anyone ran collectstatic) has no manifest. The manifest
storage then raises on every `{% static %}` and the admin login page is a 500. Here a name missing
from the manifest is served under its plain name instead, which WhiteNoise finds in the apps' static
folders (WHITENOISE_USE_FINDERS), and a warning says collectstatic is due.
"""

import structlog
from whitenoise.storage import CompressedManifestStaticFilesStorage

log = structlog.get_logger(__name__)


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    _warned = False

    def stored_name(self, name: str) -> str:
        try:
            return super().stored_name(name)
        except ValueError:
            if not StaticFilesStorage._warned:
                StaticFilesStorage._warned = True
                log.warning("static_files_not_collected", name=name,
                            hint="run `manage.py collectstatic` (make install does) for hashed, compressed files")
            return name
