"""The opaque cursor of the users list: the (created_at, id) of the last row of a page.

Like DRF's CursorPagination, the cursor is an encoded position in a total order, not a
page number, so pages stay stable while rows are inserted and cost the same at any depth."""

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            created_at, user_id = raw.split("|")
            moment = datetime.fromisoformat(created_at)
            # Cursors are written in UTC; any other offset is not one of ours, and some
            # (beyond +/-15:59) PostgreSQL would refuse.
            if moment.utcoffset() != timedelta(0):
                raise ValueError("not a UTC timestamp")
            return cls(moment, uuid.UUID(user_id))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidCursor("invalid cursor") from exc
