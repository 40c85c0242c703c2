"""The Public Booking API: its guard, its errors (problems.py), its router and documentation, and in v1/ its endpoints."""
