import pytest

from crmkit.etags import etag, expected_version, stale
from crmkit.problems import Problem


def test_an_etag_names_its_version_strong_or_weak() -> None:
    assert expected_version(etag(7)) == 7
    assert expected_version('W/"7"') == 7


@pytest.mark.parametrize(("header", "status"), [(None, 428), ("*", 412), ('"x"', 412), ("7", 412)])
def test_a_missing_or_foreign_if_match_is_refused(header: str | None, status: int) -> None:
    with pytest.raises(Problem) as error:
        expected_version(header)
    assert error.value.status == status


def test_a_stale_write_learns_the_current_etag() -> None:
    problem = stale(9)
    assert problem.status == 412
    assert problem.headers == {"ETag": '"9"'}
