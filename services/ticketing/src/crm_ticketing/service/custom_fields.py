"""The definitions of tickets' custom fields; their values are set with the ticket's PATCH."""

from __future__ import annotations

from crm_ticketing.domain.errors import FieldError, InvalidFields, NotFound, TicketingError
from crm_ticketing.store import custom_fields as store
from crmkit.fields import FieldDefinition, check_definition
from crmkit.postgres import PgDatabase

MAX_FIELDS = 200


class DuplicateField(TicketingError):
    def __init__(self, key: str) -> None:
        super().__init__(f"the ticket field {key!r} is defined already")
        self.key = key


class TicketFields:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def list(self, workspace_id: str) -> list[FieldDefinition]:
        async with self.db.pool.acquire() as conn:
            return list((await store.definitions(conn, workspace_id)).values())

    async def define(self, workspace_id: str, definition: FieldDefinition) -> FieldDefinition:
        errors = check_definition(definition)
        if errors:
            raise InvalidFields(errors)
        async with self.db.unit_of_work() as uow:
            if len(await store.definitions(uow.conn, workspace_id)) >= MAX_FIELDS:
                raise InvalidFields([_too_many()])
            if not await store.insert(uow.conn, workspace_id, definition):
                raise DuplicateField(definition.key)
        return definition

    async def remove(self, workspace_id: str, key: str) -> None:
        async with self.db.unit_of_work() as uow:
            if not await store.delete(uow.conn, workspace_id, key):
                raise NotFound("ticket field")


def _too_many() -> FieldError:
    return FieldError("key", f"a workspace has at most {MAX_FIELDS} ticket fields")
