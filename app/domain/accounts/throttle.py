"""Sign-in throttling that holds under any concurrency.

Each attempt is reserved, atomically and in one Redis round trip, before its password is checked (Argon2 takes
tens of milliseconds, and checking first would let every simultaneous attempt through): N simultaneous
attempts count as N. A refused attempt counts for nothing, so waiting is never made longer by retrying, and a
successful sign-in gives its reservation back.

- per account and address: MAX_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS in WINDOW_S, then that address waits;
- per address: MAX_ATTEMPTS_PER_ADDRESS in WINDOW_S, whatever the accounts;
- per account, from everywhere: past ACCOUNT_CEILING the account is slowed, not locked: every address gets one
  attempt per SLOWED_INTERVAL_S for it, so failures made elsewhere never lock the owner out. Crossing the ceiling
  is reported once per window (`ceiling_reached`), for a notice to the organization's admins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

WINDOW_S = 15 * 60
MAX_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS = 5
MAX_ATTEMPTS_PER_ADDRESS = 30
ACCOUNT_CEILING = 20
SLOWED_INTERVAL_S = 30

# KEYS: account+address, address, account, the slowed account's slot for this address, the ceiling notice.
# ARGV: window, per account+address, per address, account ceiling, slowed interval.
# Returns {admitted, seconds to wait, ceiling reached now}.
_RESERVE = """
local function count(key) return tonumber(redis.call('GET', key) or '0') end
local function wait(key)
  local ttl = redis.call('TTL', key)
  if ttl < 1 then return 1 end
  return ttl
end
if count(KEYS[1]) >= tonumber(ARGV[2]) then return {0, wait(KEYS[1]), 0} end
if count(KEYS[2]) >= tonumber(ARGV[3]) then return {0, wait(KEYS[2]), 0} end
local ceiling = tonumber(ARGV[4])
if count(KEYS[3]) >= ceiling and not redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[5]) then
  return {0, wait(KEYS[4]), 0}
end
for i = 1, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
end
local reached = 0
if count(KEYS[3]) >= ceiling and redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[1]) then reached = 1 end
return {1, 0, reached}
"""


# KEYS: account+address, address, account, the ceiling notice; ARGV: whether to forget the notice.
# A counter that expired meanwhile stays gone (a DECR would bring it back without an expiry).
_GIVE_BACK = """
redis.call('DEL', KEYS[1])
for i = 2, 3 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
if ARGV[1] == '1' then redis.call('DEL', KEYS[4]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    admitted: bool
    wait_seconds: int = 0
    # This attempt took the account over ACCOUNT_CEILING (once per window): tell its admins if it fails.
    ceiling_reached: bool = False


def _keys(email: str, address: str) -> list[str]:
    # Hashed so Redis holds no email addresses.
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return [
        f"signin:try:{account}:{address}",
        f"signin:try:addr:{address}",
        f"signin:try:acct:{account}",
        f"signin:slow:{account}:{address}",
        f"signin:notice:{account}",
    ]


class SignInThrottle:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._give_back = redis.register_script(_GIVE_BACK)

    async def reserve(self, email: str, address: str) -> Reservation:
        """Count this attempt now, before its password is checked, or say how long to wait."""
        admitted, wait, reached = await self._reserve(
            keys=_keys(email, address),
            args=[
                WINDOW_S,
                MAX_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS,
                MAX_ATTEMPTS_PER_ADDRESS,
                ACCOUNT_CEILING,
                SLOWED_INTERVAL_S,
            ],
        )
        return Reservation(admitted=bool(admitted), wait_seconds=int(wait), ceiling_reached=bool(reached))

    async def record_success(self, email: str, address: str, reservation: Reservation) -> None:
        """A right password: its attempt was no failure, and this address starts afresh for this account."""
        pair, overall, account, _, notice = _keys(email, address)
        # If this attempt reached the ceiling, it was not by failing after all.
        await self._give_back(
            keys=[pair, overall, account, notice], args=["1" if reservation.ceiling_reached else "0"]
        )
