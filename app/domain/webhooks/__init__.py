"""Webhooks: endpoints an organization registers, the outbox of events, and their signed delivery."""
