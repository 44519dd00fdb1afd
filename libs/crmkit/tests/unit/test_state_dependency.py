from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi import Request

from crmkit.web import state


class Service:
    pass


def request_with(**values: object) -> Request:
    return cast(Request, SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(**values))))


def test_a_state_dependency_gives_what_the_lifespan_stored() -> None:
    service = Service()
    assert state("service", Service)(request_with(service=service)) is service


def test_a_state_dependency_refuses_something_else() -> None:
    with pytest.raises(TypeError):
        state("service", Service)(request_with(service=cast(Any, "not a service")))
