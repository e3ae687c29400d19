"""Our callback bytes are Go's `json.Marshal` bytes, checked against real Go.

The seed system's manager verifies a callback's signature over its own re-marshal of the
body (decode into CallbackRequest, json.Marshal), so a body verifies there only when it is
exactly what Go writes. `tests/support/gocheck` does that decode, re-marshal and verify with
the Go toolchain; these tests hold our encoder (`brokerapi/gojson.py`) to it.

Go 1.19 (Debian's) escapes \\b and \\f as \\u0008 and \\u000c, Go >= 1.22 (the seed's) as
\\b and \\f: strings here leave those two characters out; `test_gojson_known_answers` pins
the >= 1.22 form.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kidp_ops.brokerapi import signing
from kidp_ops.brokerapi.gojson import go_float, go_string, go_time
from kidp_ops.brokerapi.models import CallbackPayload
from tests.support.golang import ask

KEY = signing.generate_private_key()
PUBLIC = signing.public_key_b64(KEY)
STAMP = "2026-01-02T03:04:05Z"

text = st.text(
    alphabet=st.characters(exclude_characters="\b\f", exclude_categories=("Cs",)),
    max_size=30,
).filter(lambda s: "\b" not in s and "\f" not in s)
numbers = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([timezone(timedelta(hours=h)) for h in (-11, -5, 2, 9)]),
)


def _payload(**fields: object) -> CallbackPayload:
    # not `st.builds(CallbackPayload, ...)`: the model's signature names the aliases
    # (deploymentId), so builds() would fill those from their types, ignoring ours
    return CallbackPayload(**fields)  # type: ignore[arg-type]


payloads = st.builds(
    _payload,
    deployment_id=text.filter(bool),
    resource_type=text,
    resource_name=text,
    namespace=text,
    status=st.sampled_from(["success", "failed", "in-progress", ""]),
    phase=st.sampled_from(["Provisioning", "Ready", "Failed", "Deleting", "Deleted", ""]),
    message=text,
    error=text,
    time=moments,
    endpoint=text,
    port=st.integers(0, 65535),
    connection_secret=text,
    details=st.dictionaries(text, json_values, max_size=4),
    additional_metadata=st.dictionaries(text, text, max_size=3),
    estimated_monthly_cost=st.floats(0, 1e9, allow_nan=False) | st.sampled_from([0.0, 45.5]),
)


def _check(gocheck: Path, payload: CallbackPayload) -> dict[str, object]:
    body = payload.to_json_bytes()
    return ask(
        gocheck,
        {
            "mode": "callback",
            "body": body.decode(),
            "timestamp": STAMP,
            "signature": signing.sign(KEY, STAMP, body),
            "publicKey": PUBLIC,
        },
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads)
def test_go_remarshals_our_callbacks_to_the_same_bytes(
    gocheck: Path, payload: CallbackPayload
) -> None:
    answer = _check(gocheck, payload)
    assert "decodeError" not in answer, answer
    assert answer["remarshal"] == payload.to_json_bytes().decode()
    assert answer["equal"] is True
    assert answer["verified"] is True


def test_a_python_json_body_would_not_verify_there(gocheck: Path) -> None:
    """The trap the encoder avoids: json.dumps' bytes are not Go's, so the seed's manager
    (verifying over its re-marshal) would refuse the callback."""
    payload = CallbackPayload(
        deployment_id="d", status="success", phase="Ready", time=datetime(2026, 1, 2, tzinfo=UTC)
    )
    python_body = payload.model_dump_json(by_alias=True).encode()
    answer = ask(
        gocheck,
        {
            "mode": "callback",
            "body": python_body.decode(),
            "timestamp": STAMP,
            "signature": signing.sign(KEY, STAMP, python_body),
            "publicKey": PUBLIC,
        },
    )
    assert answer["equal"] is False
    assert answer["verified"] is False
    assert _check(gocheck, payload)["verified"] is True


def test_gojson_known_answers() -> None:
    assert (
        go_string("\b\f<>&\u2028\u2029\x00é")
        == '"\\b\\f\\u003c\\u003e\\u0026\\u2028\\u2029\\u0000é"'
    )
    assert go_string("\ud800x") == '"\ufffdx"'
    assert [go_float(v) for v in (45.5, 5432, 1e21, 1e-7, 1e20, 0.000001, -0.0)] == [
        "45.5",
        "5432",
        "1e+21",
        "1e-7",
        "100000000000000000000",
        "0.000001",
        "-0",
    ]
    assert go_time(datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)) == "2026-01-02T03:04:05.5Z"
    plus = timezone(timedelta(hours=5, minutes=30))
    assert go_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=plus)) == "2026-01-02T03:04:05+05:30"
    assert math.isclose(float(go_float(0.1 + 0.2)), 0.1 + 0.2)
