"""Test settings: everything from base, with jobs synchronous and hashing fast."""

from .base import *  # noqa: F403
from .base import Q_CLUSTER, REST_FRAMEWORK

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
# The suite makes thousands of requests from one address in one process; the
# throttling test sets its own small rate.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": "100000/min", "user": "100000/min"}}
# Every event the suite produces is checked against its documented JSON Schema (docs/events/).
OUTBOX_VALIDATE = True
