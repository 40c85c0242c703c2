"""SAQ's Redis queue, with a sweep that leaves alone a job a worker is just starting."""

from __future__ import annotations

import logging
from typing import Any

from saq.job import Job, Status
from saq.queue.redis import RedisQueue

logger = logging.getLogger(__name__)

# Reads the active list and each job's record, at most once per `lock` seconds across all workers.
_ACTIVE_JOBS = """
local id_jobs = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SETEX', KEYS[1], ARGV[1], 1)
    for i, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
        id_jobs[i] = {v, redis.call('GET', v)}
    end
end
return id_jobs
"""


class SweepSafeRedisQueue(RedisQueue):
    """SAQ's Redis queue, with two changes.

    * Sweeping: a worker moves a job to the active list, then reads it and marks it active. SAQ's sweep takes a
      job in the active list that is not marked active for an orphan, so a sweep in that instant (every worker
      sweeps once when it starts, when jobs are being taken fastest) aborts a healthy job and delays it by the
      abort and retry delays (tobymao/saq#124, #277). Here such a job is only an orphan if the previous sweep
      of this process saw it unmarked too; everything else is SAQ's sweep.
    * `queued_ttl_s`: a job that no worker takes within that time expires (SAQ's `ttl` starts only when a job
      ends, so a queued job would otherwise live as long as Redis does). A worker taking the job rewrites its
      record, which clears this expiry; an expired id left in the queue is swept as a missing job.
    """

    def __init__(self, *args: Any, queued_ttl_s: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued_ttl_s = queued_ttl_s
        self._unmarked_before: set[bytes] = set()
        self._active_jobs_script: Any = None

    async def enqueue(self, job_or_func: str | Job, **kwargs: Any) -> Job | None:
        job = await super().enqueue(job_or_func, **kwargs)
        if job is not None and self.queued_ttl_s is not None:
            await self.redis.expire(job.id, self.queued_ttl_s)
        return job

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        if self._active_jobs_script is None:
            self._active_jobs_script = self.redis.register_script(_ACTIVE_JOBS)
        id_jobs = await self._active_jobs_script(
            keys=[self._sweep, self._active], args=[lock], client=self.redis
        )
        if not id_jobs:
            return []  # another worker holds the sweep lock, or nothing is active
        unmarked = set()
        swept: list[str] = []
        for job_id, job_bytes in id_jobs:
            job = self.deserialize(job_bytes)
            if job is None:
                swept.append(job_id.decode())
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.lrem(self._active, 0, job_id)
                    pipe.zrem(self._incomplete, job_id)
                    await pipe.execute()
                logger.info("Sweeping missing job %s", job_id)
                continue
            if job.status == Status.QUEUED and job_id not in self._unmarked_before:
                unmarked.add(job_id)  # most likely being started right now: judged at the next sweep
                continue
            if job.status != Status.ACTIVE or job.stuck:
                swept.append(job_id.decode())
                logger.info("Sweeping job %s", job.info())
                await self.abort(job, error=self.swept_error_message)
                try:
                    await job.refresh(abort)
                except TimeoutError:
                    logger.info("Could not abort job %s", job_id)
                if job.retryable:
                    await self.retry(job, error=self.swept_error_message)
                else:
                    await self.finish(job, Status.ABORTED, error=self.swept_error_message)
        self._unmarked_before = unmarked
        return swept
