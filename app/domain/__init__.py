"""The bounded contexts. Importing this package registers every model on the shared metadata."""

from app.domain.accounts import models as accounts_models
from app.domain.api_keys import models as api_keys_models
from app.domain.audit import models as audit_models
from app.domain.booking import models as booking_models
from app.domain.usage import models as usage_models
from app.domain.webhooks import models as webhooks_models

__all__ = [
    "accounts_models",
    "api_keys_models",
    "audit_models",
    "booking_models",
    "usage_models",
    "webhooks_models",
]
