"""The `HX-Trigger` header that shows a toast (base.html listens for the `toast` event)."""

import json


def toast(message: str) -> dict[str, str]:
    """An HX-Trigger header for a toast. json.dumps escapes non-ASCII, which headers cannot carry."""
    return {"HX-Trigger": json.dumps({"toast": {"message": message}})}
