"""Sessions and bans in Redis, for several gateway replicas.

Redis never sees a plaintext session: every value is sealed with the keyring
(AES-256-GCM) under a context bound to its key, so a value moved to another key fails to
open. Key names carry only keyed hashes: ``{prefix}s:<hash of cookie id>`` (the session,
with a TTL), ``{prefix}u:<hash of username>`` (the set of a user's session keys, whose TTL
follows the longest-lived member), ``{prefix}r:f:<hash of subject>`` (recent failures, a
sorted set), ``{prefix}r:bans`` (subject hash -> ban deadline) and ``{prefix}r:who``
(subject hash -> sealed subject, so ``gateway bans list`` can say who is banned).

Multi-key scripts keep each operation atomic; they need a single Redis (or Sentinel), not
Redis Cluster.

Every change to an existing session publishes its key hash on ``{prefix}invalidate``, from
the script that makes the change (so no change goes unannounced). Each process subscribes
(:meth:`RedisSessionStore.watch`) and drops what it remembers of those sessions. A
subscription that breaks, is silently re-established by the client, or stops answering its
pings within ``timeout`` is reported as lost: the process forgets everything it remembers.
Touches (``last_activity`` only) are compare-and-set on the SHA-1 of the stored value, in
pipelined scripts, and announce nothing.

Every operation has one deadline, ``timeout``, for everything it waits on: a pooled
connection, connecting, the command and its reply. A timeout is never retried (that would
double the wait on a Redis that has stopped answering); only a connection Redis closed is
replaced once, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.observability.throttle import log_throttled
from gateway.security.crypto import DecryptionError, Keyring, keyed_hash, random_token
from gateway.session.model import Session, SessionStoreUnavailable, decode_session, encode_session
from gateway.session.settings import RedisSettings
from gateway.session.stores.base import ChangeFeed, TouchResult

__all__ = ["RedisRegulationBackend", "RedisSessionStore", "create_redis_client"]

_T = TypeVar("_T")

log = logging.getLogger("gateway.session")

# KEYS: session, user index, invalidate channel. ARGV: value, ttl ms, key hash, existing only.
_SAVE = """
local stored
if ARGV[4] == '1' then
  stored = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'XX')
else
  stored = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if not stored then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
if ARGV[4] == '1' then
  redis.call('PUBLISH', KEYS[3], ARGV[3])
end
return 1
"""

# A batch of touches. KEYS: session and user index of each. ARGV: SHA-1 (hex) of the value
# read, new value and ttl ms of each. One answer each: 1 written; 0 gone; the stored value
# if it changed since it was read (nothing written).
_TOUCH = """
local answers = {}
for i = 1, #KEYS / 2 do
  local key, index = KEYS[2 * i - 1], KEYS[2 * i]
  local ttl = ARGV[3 * i]
  local current = redis.call('GET', key)
  if not current then
    answers[i] = 0
  elseif redis.sha1hex(current) ~= ARGV[3 * i - 2] then
    answers[i] = current
  else
    redis.call('SET', key, ARGV[3 * i - 1], 'PX', ttl)
    if redis.call('PTTL', index) < tonumber(ttl) then
      redis.call('PEXPIRE', index, ttl)
    end
    answers[i] = 1
  end
end
return answers
"""

# KEYS: session, invalidate channel. ARGV: key hash.
_DELETE = """
local deleted = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return deleted
"""

# KEYS: user index, invalidate channel. ARGV: session key prefix.
_DELETE_USER = """
local members = redis.call('SMEMBERS', KEYS[1])
local deleted = 0
for _, member in ipairs(members) do
  deleted = deleted + redis.call('DEL', ARGV[1] .. member)
  redis.call('PUBLISH', KEYS[2], member)
end
redis.call('DEL', KEYS[1])
return deleted
"""

# KEYS: failures, bans, who. ARGV: now, window start, member, max retries, until,
# subject hash, sealed subject, failure ttl ms, ban ttl ms.
_RECORD_FAILURE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  return 0
end
redis.call('DEL', KEYS[1])
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  redis.call('HDEL', KEYS[3], old)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  if redis.call('PTTL', key) < tonumber(ARGV[9]) then
    redis.call('PEXPIRE', key, ARGV[9])
  end
end
return 1
"""

# KEYS: bans, who. ARGV: now, failures key prefix, subject hash or '' for all.
_CLEAR = """
local lifted = 0
if ARGV[3] == '' then
  lifted = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
  for _, hash in ipairs(redis.call('HKEYS', KEYS[2])) do
    redis.call('DEL', ARGV[2] .. hash)
  end
  redis.call('DEL', KEYS[1], KEYS[2])
else
  local ends = redis.call('ZSCORE', KEYS[1], ARGV[3])
  if ends and tonumber(ends) > tonumber(ARGV[1]) then lifted = 1 end
  redis.call('ZREM', KEYS[1], ARGV[3])
  redis.call('HDEL', KEYS[2], ARGV[3])
  redis.call('DEL', ARGV[2] .. ARGV[3])
end
return lifted
"""

_SESSION_CONTEXT = b"gateway/session\x00"
_SUBJECT_CONTEXT = b"gateway/regulation\x00"


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_subscribed(message: dict[str, Any] | None) -> bool:
    return message is not None and message.get("type") == "subscribe"


def _revision(sealed: bytes) -> bytes:
    """What a touch compares with the stored value: its SHA-1, as Lua's redis.sha1hex."""
    return hashlib.sha1(sealed, usedforsecurity=False).hexdigest().encode()


# Touches per script (each script runs atomically: keep it short); the subscription's ping
# interval and reconnection back-off.
_TOUCH_BATCH = 200
_PING_INTERVAL = 1.0
_RETRY_FIRST, _RETRY_MAX = 0.1, 2.0


def create_redis_client(
    url: str, *, password: str | None = None, timeout: float = 2.0, pool_size: int = 32
) -> Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``); connects lazily.

    At most ``pool_size`` connections: under load, requests wait (within their deadline) for
    a free one instead of opening a file descriptor each while Redis is slow.
    """
    options: dict[str, Any] = {
        "max_connections": pool_size,
        "timeout": timeout,  # waiting for a free pooled connection
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # One immediate retry replaces a connection Redis closed (restart, idle timeout).
        # Only for that: redis-py also retries timeouts by default, which doubles (or, with
        # its default of three retries, quadruples) the wait on a Redis that has hung.
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if password is not None:
        options["password"] = password
    return Redis.from_pool(BlockingConnectionPool.from_url(url, **options))


class _Guarded:
    """Runs Redis operations under one deadline, turning failures into SessionStoreUnavailable."""

    _timeout: float

    async def _guard(self, operation: Awaitable[_T]) -> _T:
        try:
            # One deadline for the whole operation: waiting for the pool, (re)connecting and
            # the reply each have the timeout on their own, and must not add up.
            async with asyncio.timeout(self._timeout):
                return await operation
        except (RedisError, OSError) as error:
            # The details are for the operator's log, never for the caller's message; one
            # line per kind of error per interval, however many requests the outage fails.
            log_throttled(
                log,
                ("redis", type(error)),
                "session store: redis error: %s: %s",
                type(error).__name__,
                str(error) or f"no answer within {self._timeout:g}s",
            )
            raise SessionStoreUnavailable() from None


class RedisSessionStore(_Guarded):
    """A session store shared by replicas through one Redis."""

    def __init__(
        self,
        client: Redis,
        keyring: Keyring,
        hash_key: bytes,
        *,
        prefix: str = "gateway:",
        timeout: float = 2.0,
    ) -> None:
        self._client = client
        self._keyring = keyring
        self._hash_key = hash_key
        self._timeout = timeout
        self._session_prefix = prefix + "s:"
        self._user_prefix = prefix + "u:"
        self._channel = prefix + "invalidate"
        self._save = client.register_script(_SAVE)
        self._touch = client.register_script(_TOUCH)
        self._delete = client.register_script(_DELETE)
        self._delete_user = client.register_script(_DELETE_USER)
        self._regulation = RedisRegulationBackend(
            client, keyring, hash_key, prefix=prefix, timeout=timeout
        )

    @classmethod
    def from_settings(
        cls, settings: RedisSettings, keyring: Keyring, hash_key: bytes
    ) -> RedisSessionStore:
        client = create_redis_client(
            settings.url,
            password=settings.password,
            timeout=settings.timeout,
            pool_size=settings.pool_size,
        )
        return cls(client, keyring, hash_key, prefix=settings.key_prefix, timeout=settings.timeout)

    @property
    def regulation(self) -> RedisRegulationBackend:
        return self._regulation

    def _user_index(self, username: str) -> str:
        hashed = keyed_hash(self._hash_key, username, purpose="session-user")
        return self._user_prefix + hashed.hex()

    async def get(self, key: str) -> Session | None:
        raw = await self._guard(self._client.get(self._session_prefix + key))
        if raw is None:
            return None
        session = self._open(key, _bytes(raw))
        if session is None:
            # Tampered, sealed with a retired key, or from another format: no session.
            await self.delete(key)
        return session

    def _open(self, key: str, sealed: bytes) -> Session | None:
        try:
            opened = self._keyring.open(sealed, context=_SESSION_CONTEXT + key.encode())
            return decode_session(key, opened, revision=_revision(sealed))
        except (DecryptionError, ValueError):
            return None

    def _seal(self, session: Session) -> bytes:
        return self._keyring.seal(
            encode_session(session), context=_SESSION_CONTEXT + session.key.encode()
        )

    async def save(self, session: Session, ttl: float, *, existing_only: bool = False) -> bool:
        if session.username is None or ttl <= 0:
            return False
        sealed = self._seal(session)
        keys = [
            self._session_prefix + session.key,
            self._user_index(session.username),
            self._channel,
        ]
        flag = "1" if existing_only else "0"
        stored = await self._guard(
            self._save(keys=keys, args=[sealed, _ms(ttl), session.key, flag])
        )
        return bool(stored)

    async def touch(self, touches: Sequence[tuple[Session, float]]) -> list[TouchResult]:
        # A few scripts of _TOUCH_BATCH touches each, in one pipeline: one command per script
        # (redis-py spends more on each command than Redis spends on a touch).
        pipeline = self._client.pipeline(transaction=False)
        sealed: list[bytes] = []
        for start in range(0, len(touches), _TOUCH_BATCH):
            keys: list[str] = []
            args: list[bytes | int] = []
            for session, ttl in touches[start : start + _TOUCH_BATCH]:
                assert session.username is not None
                sealed.append(self._seal(session))
                keys += (self._session_prefix + session.key, self._user_index(session.username))
                args += (session.revision, sealed[-1], _ms(ttl))
            await self._touch(keys=keys, args=args, client=pipeline)
        batches = await self._guard(pipeline.execute())
        answers = [answer for batch in batches for answer in batch]
        results: list[TouchResult] = []
        for (session, _), value, answer in zip(touches, sealed, answers, strict=True):
            if isinstance(answer, bytes | str):  # changed since it was read
                results.append(self._open(session.key, _bytes(answer)))
            else:
                results.append(_revision(value) if answer == 1 else None)
        return results

    async def delete(self, key: str) -> bool:
        # The user index keeps the stale member until list_user / delete_user prune it.
        deleted = await self._guard(
            self._delete(keys=[self._session_prefix + key, self._channel], args=[key])
        )
        return bool(deleted)

    async def delete_user(self, username: str) -> int:
        deleted = await self._guard(
            self._delete_user(
                keys=[self._user_index(username), self._channel], args=[self._session_prefix]
            )
        )
        return int(deleted)

    async def list_user(self, username: str) -> list[Session]:
        index = self._user_index(username)
        members = await self._guard(self._client.smembers(index))
        keys = sorted(_text(member) for member in members)
        if not keys:
            return []
        values = await self._guard(self._client.mget([self._session_prefix + k for k in keys]))
        sessions: list[Session] = []
        gone: list[str] = []
        for key, raw in zip(keys, values, strict=True):
            if raw is None:
                gone.append(key)
                continue
            try:
                opened = self._keyring.open(_bytes(raw), context=_SESSION_CONTEXT + key.encode())
                sessions.append(decode_session(key, opened))
            except (DecryptionError, ValueError):
                continue
        if gone:
            await self._guard(self._client.srem(index, *gone))
        return sorted(sessions, key=lambda s: s.created_at)

    async def watch(self, feed: ChangeFeed) -> None:
        delay = _RETRY_FIRST
        while True:
            synced = False
            pubsub = self._client.pubsub()
            try:
                async with asyncio.timeout(self._timeout):
                    await pubsub.subscribe(self._channel)
                    while not _is_subscribed(await pubsub.get_message(timeout=self._timeout)):
                        pass
                feed.synced()
                synced, delay = True, _RETRY_FIRST
                await self._listen(pubsub, feed)
            except (RedisError, OSError, TimeoutError) as error:
                log_throttled(
                    log,
                    ("redis-watch", type(error)),
                    "session store: redis subscription lost: %s: %s",
                    type(error).__name__,
                    str(error) or f"no answer within {self._timeout:g}s",
                )
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if synced:
                feed.lost()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    async def _listen(self, pubsub: PubSub, feed: ChangeFeed) -> None:
        """Report what arrives; raise on a broken connection or on silence past the
        deadline (a hung Redis answers no ping)."""
        heard = time.monotonic()
        next_ping = heard + _PING_INTERVAL
        while True:
            message = await pubsub.get_message(timeout=_PING_INTERVAL)
            now = time.monotonic()
            if message is not None:
                heard = now
                if message.get("type") == "message":
                    feed.changed((_text(message["data"]),))
                elif _is_subscribed(message):
                    # The client reconnected and subscribed again by itself: whatever was
                    # published in between is lost.
                    feed.lost()
                    feed.synced()
            if now >= next_ping:
                await pubsub.ping()
                next_ping = now + _PING_INTERVAL
            if now - heard > _PING_INTERVAL + self._timeout:
                raise TimeoutError

    async def ping(self) -> None:
        await self._guard(self._client.ping())

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()


class RedisRegulationBackend(_Guarded):
    """Failure windows (sorted sets) and bans shared by every replica."""

    def __init__(
        self,
        client: Redis,
        keyring: Keyring,
        hash_key: bytes,
        *,
        prefix: str = "gateway:",
        timeout: float = 2.0,
    ) -> None:
        self._client = client
        self._keyring = keyring
        self._hash_key = hash_key
        self._timeout = timeout
        self._failures_prefix = prefix + "r:f:"
        self._bans = prefix + "r:bans"
        self._who = prefix + "r:who"
        self._record = client.register_script(_RECORD_FAILURE)
        self._clear = client.register_script(_CLEAR)

    def _hash(self, subject: str) -> str:
        return keyed_hash(self._hash_key, subject, purpose="regulation").hex()

    async def record_failure(
        self, subject: str, *, now: float, find_time: float, max_retries: int, ban_time: float
    ) -> bool:
        hashed = self._hash(subject)
        sealed = self._keyring.seal(subject.encode(), context=_SUBJECT_CONTEXT + hashed.encode())
        banned = await self._guard(
            self._record(
                keys=[self._failures_prefix + hashed, self._bans, self._who],
                args=[
                    repr(now),
                    repr(now - find_time),
                    random_token(9),  # members must differ or concurrent failures merge
                    max_retries,
                    repr(now + ban_time),
                    hashed,
                    sealed,
                    _ms(find_time),
                    _ms(ban_time),
                ],
            )
        )
        return bool(banned)

    async def is_banned(self, subjects: Sequence[str], *, now: float) -> bool:
        scores = await self._guard(
            self._client.zmscore(self._bans, [self._hash(s) for s in subjects])
        )
        return any(score is not None and score > now for score in scores)

    async def clear_failures(self, subject: str) -> None:
        await self._guard(self._client.delete(self._failures_prefix + self._hash(subject)))

    async def clear(self, subject: str | None, *, now: float) -> int:
        hashed = "" if subject is None else self._hash(subject)
        lifted = await self._guard(
            self._clear(
                keys=[self._bans, self._who], args=[repr(now), self._failures_prefix, hashed]
            )
        )
        return int(lifted)

    async def bans(self, *, now: float) -> list[tuple[str, float]]:
        entries: list[Any] = await self._guard(
            self._client.zrangebyscore(self._bans, f"({now!r}", "+inf", withscores=True)
        )
        if not entries:
            return []
        hashes = [_text(hashed) for hashed, _ in entries]
        sealed_subjects = await self._guard(self._client.hmget(self._who, hashes))
        result: list[tuple[str, float]] = []
        for hashed, (_, until), sealed in zip(hashes, entries, sealed_subjects, strict=True):
            subject = self._open_subject(hashed, sealed)
            result.append((subject, float(until)))
        return result

    def _open_subject(self, hashed: str, sealed: bytes | str | None) -> str:
        if sealed is None:
            return f"unknown:{hashed[:16]}"
        try:
            opened = self._keyring.open(_bytes(sealed), context=_SUBJECT_CONTEXT + hashed.encode())
            return opened.decode()
        except (DecryptionError, UnicodeDecodeError):
            return f"unknown:{hashed[:16]}"
