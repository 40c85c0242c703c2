"""The customer's manage link: an unguessable token per reservation, stored only as its SHA-256.

The token is an HMAC of the reservation's id under the app's secret key, so any answer that shows the link
(the booking's own, its idempotent replays, GET) can show it again without the token ever being stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.accounts.models import Organization
from app.domain.booking.models import Reservation, Service

PATH = "/manage"
_PURPOSE = b"quickvisit manage reservation\x00"
# Tokens are 43 base64url characters (256 bits); anything else is refused before a lookup.
TOKEN_LENGTH = 43


def token_for(secret_key: str, public_id: str) -> str:
    digest = hmac.new(secret_key.encode(), _PURPOSE + public_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def url_for(base_url: str, secret_key: str, public_id: str) -> str:
    # The token rides in the query string: request logs never print query strings.
    return f"{base_url.rstrip('/')}{PATH}?token={token_for(secret_key, public_id)}"


def cancel_deadline(reservation: Reservation, service: Service) -> datetime:
    """Until when the customer may cancel through the link; after it, they call the business."""
    return reservation.start_at - timedelta(minutes=service.cancellation_notice_minutes)


@dataclass(frozen=True, slots=True)
class Managed:
    reservation: Reservation
    service: Service
    organization: Organization


async def find(session: AsyncSession, token: str) -> Managed | None:
    if len(token) != TOKEN_LENGTH:
        return None
    row = (
        await session.execute(
            select(Reservation, Service, Organization)
            .join(Service, Service.id == Reservation.service_id)
            .join(Organization, Organization.id == Reservation.organization_id)
            .where(Reservation.manage_token_hash == token_hash(token))
        )
    ).first()
    return None if row is None else Managed(row.Reservation, row.Service, row.Organization)
