"""ASGI entry point: HTTP through Django, WebSockets through Channels routing."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ordermanager.settings.base")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from exchange.profile import log_startup_profile  # noqa: E402
from ordermanager.core.gc_policy import gc_policy_apply  # noqa: E402
from ordermanager.metrics_process import metrics_process_start  # noqa: E402
from ordermanager.routing import websocket_urlpatterns  # noqa: E402

log_startup_profile("web")
metrics_process_start("web")

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": URLRouter(websocket_urlpatterns)})
gc_policy_apply("web")  # last: what the start left alive is frozen (docs/decisions/0331)
