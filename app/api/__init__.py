"""The Public Booking API: its guard, its errors and its documentation. Endpoints live in their domains."""
