"""Which shard holds a key.

Contract (a hash vindex, in Vitess's words): a user lives on exactly one shard, a pure
function of its id. The key is the canonical form of the id (lower-case, hyphenated UUID),
so `ABC...` and `abc...` route alike. MD5 of the key picks one of SLOT_COUNT fixed slots;
the slot map assigns slots to shards. The same key gives the same shard in every process
(MD5, never Python's salted `hash()`), and the answer depends only on the shard count, never
on the order in which hosts are configured. Emails route the same way, keyed by their
lower-cased form, for the email lookup table.

The slot map for N shards is built by adding shards one at a time: shard k takes an even
share of slots from the shards before it. So going from N to N+1 shards moves only the
slots the new shard takes (about 1/(N+1) of keys) and removing the last shard moves only
its own keys. SLOT_COUNT never changes: it is part of the data's address.
"""

import contextlib
import hashlib
import uuid
from functools import lru_cache

import idna

SLOT_COUNT = 4096


def canonical_user_id(value: str | uuid.UUID) -> str:
    """The routing key of a user id. Raises ValueError for anything that is not a UUID."""
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(uuid.UUID(value))


def canonical_email(email: str) -> str:
    """The routing and uniqueness key of an email: emails are unique case-insensitively,
    and an internationalised domain is one mailbox with its ASCII (IDNA) form, so
    `a@bücher.example` and `a@xn--bcher-kva.example` have one key. A domain that is not a
    valid IDNA name keeps its lower-cased form (validation refuses it before any write)."""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return email.strip().lower()
    if not domain.isascii():
        with contextlib.suppress(idna.IDNAError):
            domain = idna.encode(domain, uts46=True).decode("ascii")
    return f"{local.lower()}@{domain.lower()}"


def slot_for_key(key: str) -> int:
    digest = hashlib.md5(key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % SLOT_COUNT


def _quota(shard: int, shard_count: int) -> int:
    """Slots shard `shard` owns when there are `shard_count` shards (differ by at most 1)."""
    base, extra = divmod(SLOT_COUNT, shard_count)
    return base + (1 if shard < extra else 0)


@lru_cache(maxsize=16)
def slot_map(shard_count: int) -> tuple[int, ...]:
    """slot -> shard for `shard_count` shards."""
    if not 1 <= shard_count <= SLOT_COUNT // 2:
        raise ValueError(f"shard count must be between 1 and {SLOT_COUNT // 2}")
    owners = [0] * SLOT_COUNT
    owned: list[list[int]] = [list(range(SLOT_COUNT))]
    for new_shard in range(1, shard_count):
        size = new_shard + 1
        taken: list[int] = []
        for donor in range(new_shard):
            surplus = len(owned[donor]) - _quota(donor, size)
            # A donor gives its highest slots; slots are already spread by the hash.
            taken.extend(owned[donor][len(owned[donor]) - surplus :])
            del owned[donor][len(owned[donor]) - surplus :]
        owned.append(sorted(taken))
        for slot in taken:
            owners[slot] = new_shard
    return tuple(owners)


def shard_for_key(key: str, shard_count: int) -> int:
    return slot_map(shard_count)[slot_for_key(key)]


def shard_for_user_id(user_id: str | uuid.UUID, shard_count: int) -> int:
    return shard_for_key(canonical_user_id(user_id), shard_count)


def shard_for_email(email: str, shard_count: int) -> int:
    return shard_for_key(canonical_email(email), shard_count)
