import grpc
import pytest

from crmkit.kafka import DeadLetter, EnvelopeError, PermanentError, Retry, RetryPolicy, TransientError

POLICY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=4.0)


def test_bad_input_is_dead_lettered_at_once() -> None:
    decision = POLICY.decide(1, PermanentError("no From header"))
    assert isinstance(decision, DeadLetter)
    assert "no From header" in decision.reason
    assert isinstance(POLICY.decide(1, EnvelopeError("missing ce_id")), DeadLetter)


def test_an_unexpected_error_is_retried_with_growing_delays_then_dead_lettered() -> None:
    delays = [POLICY.decide(n, RuntimeError("boom")) for n in (1, 2)]
    assert delays == [Retry(0.5), Retry(1.0)]
    final = POLICY.decide(3, RuntimeError("boom"))
    assert isinstance(final, DeadLetter)
    assert "after 3 attempts" in final.reason
    assert "RuntimeError: boom" in final.reason


def test_a_dependency_that_is_down_is_waited_for_without_giving_up() -> None:
    for attempt in (1, 5, 50, 500):
        decision = POLICY.decide(attempt, TransientError("contacts unavailable"))
        assert isinstance(decision, Retry)
        assert decision.delay <= POLICY.max_delay
    assert POLICY.decide(50, TransientError("x")) == Retry(4.0)


class _Unavailable(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="down")


@pytest.mark.parametrize("error", [ConnectionRefusedError(), TimeoutError(),
                                   _Unavailable(grpc.StatusCode.UNAVAILABLE),
                                   _Unavailable(grpc.StatusCode.DEADLINE_EXCEEDED)])
def test_unreachable_servers_count_as_transient(error: Exception) -> None:
    assert isinstance(POLICY.decide(99, error), Retry)


def test_a_refused_grpc_call_is_not_transient() -> None:
    error = _Unavailable(grpc.StatusCode.INVALID_ARGUMENT)
    assert isinstance(POLICY.decide(3, error), DeadLetter)


def test_local_faults_are_not_mistaken_for_outages() -> None:
    assert isinstance(POLICY.decide(3, FileNotFoundError("template.html")), DeadLetter)
    assert isinstance(POLICY.decide(3, PermissionError()), DeadLetter)


def test_a_conflict_between_mongodb_transactions_is_retried() -> None:
    from pymongo.errors import OperationFailure

    conflict = OperationFailure("WriteConflict", code=112,
                                details={"errorLabels": ["TransientTransactionError"]})
    assert isinstance(POLICY.decide(99, conflict), Retry)


def test_a_dead_letter_keeps_its_headers_and_says_why_and_where_once() -> None:
    from crmkit.kafka.retry import dead_letter_headers

    original = [("ce_id", b"e1"), ("dlq_reason", b"an earlier failure")]
    headers = dead_letter_headers(original, "PermanentError: bad", "crm.x.v1", group="crm.svc", attempts=1)
    names = [name for name, _ in headers]
    assert names == ["ce_id", "dlq_reason", "dlq_topic", "dlq_group", "dlq_attempts", "dlq_failed_at"]
    assert dict(headers)["dlq_reason"] == b"PermanentError: bad"
    assert dict(headers)["dlq_attempts"] == b"1"
