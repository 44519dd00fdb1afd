"""What partners see: public events (CloudEvents with a JSON payload, after the data policy)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class PublicEvent:
    """One event on a public topic, as stored in the replay store and sent to partners.

    ``id`` is the public event's own id (for a projected event, the internal event's id, so a
    redelivered internal event is recognised); ``seq`` is its place in the workspace's feed,
    set once stored. ``contact_ids`` names the people it is about, for erasure."""

    id: str
    workspace_id: str
    topic: str
    type: str
    source: str
    subject: str
    key: str
    time: datetime
    data: dict[str, Any]
    contact_ids: tuple[str, ...] = ()
    seq: int | None = None

    def cloudevent(self) -> dict[str, Any]:
        """The structured-mode CloudEvents JSON that webhooks and the pull API carry."""
        return {
            "specversion": "1.0",
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "datacontenttype": "application/json",
            "workspace": self.workspace_id,
            **({"sequence": str(self.seq)} if self.seq is not None else {}),
            "data": self.data,
        }
