"""Version 1 of the Public Booking API: its controllers and the schemas they take and return."""

API_PREFIX = "/api/v1"
