"""Label and field selectors: grammar, matching and the API server's error wording."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxkit.devcluster.errors import ApiError
from sandboxkit.devcluster.selectors import (
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "front", "n": "5"}


@pytest.mark.parametrize(("text", "matches"), [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("missing!=x", True),
    ("app=web,tier=back", False),
    ("app in (web, api)", True),
    ("app notin (web)", False),
    ("missing notin (x)", True),
    ("app", True),
    ("!app", False),
    ("!missing", True),
    ("n>3", True),
    ("n<3", False),
    ("app>3", False),
    ("app in (in, notin)", False),
    ("  app = web ,  tier  ", True),
    ("app=", False),
])
def test_label_matching(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is matches


def test_empty_value_matches_empty_label() -> None:
    assert parse_label_selector("app=").matches({"app": ""})
    assert parse_label_selector("app in (,x)").matches({"app": ""})


LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@pytest.mark.parametrize(("text", "message"), [
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=b,", "found '', expected: identifier after ','"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
    ("=a", "found '=', expected: !, identifier, or 'end of string'"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("a=-x", f'unable to parse requirement: values[0][a]: Invalid value: "-x": {LABEL_VALUE_MSG}'),
    ("a/b/c", 'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name '
              "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
              "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
              "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an "
              "optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
])
def test_label_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_label_selector(text)
    assert (caught.value.code, caught.value.reason) == (400, "BadRequest")
    assert caught.value.message == message


def test_label_selector_from_dict() -> None:
    selector = label_selector_from_dict({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "back"]},
            {"key": "gone", "operator": "DoesNotExist"},
            {"key": "n", "operator": "Exists"},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
        ],
    })
    assert selector.matches(LABELS)
    assert not selector.matches({**LABELS, "gone": "1"})
    assert not selector.matches({"app": "web"})


def test_missing_selector_selects_nothing_and_empty_selects_all() -> None:
    assert not label_selector_from_dict(None).matches(LABELS)
    assert label_selector_from_dict({}).matches(LABELS)
    assert label_selector_from_dict({}).matches(None)


def test_bad_expression_operator() -> None:
    with pytest.raises(ApiError) as caught:
        label_selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Gt"}]})
    assert caught.value.message == '"Gt" is not a valid label selector operator'


POD: dict[str, Any] = {
    "metadata": {"name": "p1", "namespace": "ns"},
    "spec": {"nodeName": "node-1", "restartPolicy": "Never"},
    "status": {"phase": "Running", "podIP": "10.0.0.5"},
}


@pytest.mark.parametrize(("text", "matches"), [
    ("", True),
    ("metadata.name=p1", True),
    ("metadata.name==p2", False),
    ("metadata.namespace!=ns", False),
    ("spec.nodeName=node-1,status.phase=Running", True),
    ("status.phase!=Pending", True),
    ("status.podIP=10.0.0.5", True),
    ("spec.schedulerName=", True),
    ("spec.hostNetwork=false", True),
])
def test_pod_field_selector(text: str, matches: bool) -> None:
    assert parse_field_selector("Pod", text).matches(POD) is matches


def test_event_and_job_fields() -> None:
    event = {"involvedObject": {"kind": "Pod", "name": "p1", "uid": "u"}, "reason": "Pulled",
             "type": "Normal", "source": {"component": "kubelet"}}
    selector = parse_field_selector(
        "Event", "involvedObject.kind=Pod,involvedObject.name=p1,source=kubelet,type=Normal")
    assert selector.matches(event)
    job = {"metadata": {"name": "j"}, "status": {"succeeded": 1}}
    assert parse_field_selector("Job", "status.successful=1").matches(job)
    assert parse_field_selector("Secret", "type=Opaque").matches({"type": "Opaque"})


def test_escaped_field_value() -> None:
    obj = {"metadata": {"name": "a,b"}}
    assert parse_field_selector("ConfigMap", r"metadata.name=a\,b").matches(obj)


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("Pod", "spec.foo=x", "field label not supported: spec.foo"),
    # kinds without a field label conversion of their own refuse with the default wording
    ("ConfigMap", "spec.nodeName=x",
     '"spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("Job", "spec.parallelism=1", 'field label "spec.parallelism" not supported for Job'),
    ("Node", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("Pod", "metadata.name", "invalid selector: 'metadata.name'; can't understand "
                             "'metadata.name'"),
    ("Pod", "metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
    ("Pod", r"metadata.name=a\x", r"invalid field selector: invalid escape sequence: \x"),
])
def test_field_selector_errors(kind: str, text: str, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_field_selector(kind, text)
    assert caught.value.code == 400
    assert caught.value.message == message
