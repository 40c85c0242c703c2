"""The bounded contexts. Importing this package registers every model on the shared metadata."""

from app.domain.accounts import models as accounts_models
from app.domain.api_keys import models as api_keys_models

__all__ = ["accounts_models", "api_keys_models"]
