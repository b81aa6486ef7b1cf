"""Label and field selectors as list and watch requests carry them.

The grammar, the matching rules and the error wording follow ``k8s.io/apimachinery``'s
``labels`` and ``fields`` packages, because clients show those messages verbatim (``kubectl
get pods -l 'a b'`` prints the API server's parse error) and because a selector that
matches differently would make watches and garbage collection diverge from a real cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .formats import is_label_value, is_qualified_name

__all__ = [
    "FieldSelector",
    "Requirement",
    "Selector",
    "label_selector_from_dict",
    "parse_field_selector",
    "parse_label_selector",
]

_SPECIAL = frozenset("=!(),<>")
_WHITESPACE = frozenset(" \t\r\n")
_TOKENS = {")": "close", ",": "comma", "!": "not", "==": "eqeq", "=": "eq", ">": "gt",
           "in": "in", "<": "lt", "!=": "neq", "notin": "notin", "(": "open"}
_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"
_OPERATOR_BY_TOKEN = {"in": "in", "notin": "notin", "eq": "=", "eqeq": "==", "neq": "!=",
                      "gt": "gt", "lt": "lt"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Requirement:
    """One ANDed term: ``key op values`` with the operator spelled as the parser spells it."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.operator in ("in", "=", "=="):
            return has and labels[self.key] in self.values
        if self.operator in ("notin", "!="):
            return not has or labels[self.key] not in self.values
        if self.operator == "exists":
            return has
        if self.operator == "!":
            return not has
        if not has:
            return False
        try:
            actual, wanted = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return actual > wanted if self.operator == "gt" else actual < wanted

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return f"!{self.key}"
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        return f"{self.key}{self.operator}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """ANDed requirements; ``nothing`` is the selector a missing LabelSelector converts to."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        present = labels or {}
        return all(r.matches(present) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class _SelectorSyntaxError(Exception):
    pass


def _lex(text: str) -> list[tuple[str, str]]:
    """Tokens as ``(kind, literal)``; identifiers run until whitespace or a special symbol."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append(("end", ""))
            return out
        if text[i] in _SPECIAL:
            j, best = i, None
            while j < n and text[j] in _SPECIAL:
                candidate = text[i:j + 1]
                if candidate in _TOKENS:
                    best = candidate
                elif best is not None:
                    break
                j += 1
            if best is None:
                out.append(("error", f"error expected: keyword found '{text[i:j]}'"))
                i = j
            else:
                out.append((_TOKENS[best], best))
                i += len(best)
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
            j += 1
        word = text[i:j]
        out.append((_TOKENS.get(word, "ident") if word in ("in", "notin") else "ident", word))
        i = j


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        return self._as(self.items[self.pos], values)

    def take(self, values: bool = True) -> tuple[str, str]:
        self.pos += 1
        return self._as(self.items[self.pos - 1], values)

    @staticmethod
    def _as(item: tuple[str, str], values: bool) -> tuple[str, str]:
        # in a value position the keywords ``in`` and ``notin`` are ordinary identifiers
        if values and item[0] in ("in", "notin"):
            return "ident", item[1]
        return item

    def parse(self) -> list[Requirement]:
        found: list[Requirement] = []
        while True:
            kind, literal = self.peek()
            if kind == "end":
                return found
            if kind not in ("ident", "not"):
                raise _SelectorSyntaxError(
                    f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                found.append(self.requirement())
            except _SelectorSyntaxError as exc:
                raise _SelectorSyntaxError(f"unable to parse requirement: {exc}") from None
            kind, literal = self.take()
            if kind == "end":
                return found
            if kind != "comma":
                raise _SelectorSyntaxError(
                    f"found '{literal}', expected: ',' or 'end of string'")
            next_kind, next_literal = self.peek()
            if next_kind not in ("ident", "not"):
                raise _SelectorSyntaxError(
                    f"found '{next_literal}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        operator = ""
        kind, literal = self.take()
        if kind == "not":
            operator = "!"
            kind, literal = self.take()
        if kind != "ident":
            raise _SelectorSyntaxError(f"found '{literal}', expected: identifier")
        key_errors = is_qualified_name(literal)
        if key_errors:
            raise _SelectorSyntaxError(
                f'<nil>: Invalid value: {_quote(literal)}: {"; ".join(key_errors)}')
        if self.peek()[0] in ("end", "comma"):
            return _requirement(literal, operator or "exists", ())
        if operator == "!":
            # ``!key`` must stand alone; anything else is a missing operator
            return _requirement(literal, "!", ())
        kind, literal_op = self.take(values=False)
        if kind not in _OPERATOR_BY_TOKEN:
            raise _SelectorSyntaxError(
                f"found '{literal_op}', expected: {_BINARY_OPERATORS}")
        op = _OPERATOR_BY_TOKEN[kind]
        values = self.set_values() if op in ("in", "notin") else self.exact_value()
        return _requirement(literal, op, values)

    def set_values(self) -> tuple[str, ...]:
        kind, literal = self.take()
        if kind != "open":
            raise _SelectorSyntaxError(f"found '{literal}' expected: '('")
        kind, literal = self.peek()
        if kind == "close":
            self.take()
            return ("",)
        if kind not in ("ident", "comma"):
            raise _SelectorSyntaxError(f"found '{literal}', expected: ',', ')' or identifier")
        found: set[str] = set()
        while True:
            kind, value = self.take()
            if kind == "ident":
                found.add(value)
                after, after_literal = self.peek()
                if after == "close":
                    break
                if after != "comma":
                    raise _SelectorSyntaxError(
                        f"found '{after_literal}', expected: ',' or ')'")
            elif kind == "comma":
                # empty members, as in ``(,a)`` or ``(a,)``, stand for the empty value
                after = self.peek()[0]
                if not found or after in ("close", "comma"):
                    found.add("")
                if after == "close":
                    break
            else:
                raise _SelectorSyntaxError(f"found '{value}', expected: ',', or identifier")
        self.take()
        return tuple(sorted(found))

    def exact_value(self) -> tuple[str, ...]:
        kind, _ = self.peek()
        if kind in ("end", "comma"):
            return ("",)
        kind, literal = self.take()
        if kind != "ident":
            raise _SelectorSyntaxError(f"found '{literal}', expected: identifier")
        return (literal,)


def _requirement(key: str, operator: str, values: tuple[str, ...]) -> Requirement:
    """Validate values the way ``labels.NewRequirement`` does, keeping its field paths."""
    problems: list[str] = []
    key_errors = is_qualified_name(key)
    if key_errors:
        problems.append(f'key: Invalid value: {_quote(key)}: {"; ".join(key_errors)}')
    if operator in ("gt", "lt"):
        for i, value in enumerate(values):
            if not value.lstrip("-").isdigit():
                problems.append(f"values[{i}]: Invalid value: {_quote(value)}: for 'Gt', 'Lt' "
                                "operators, the value must be an integer")
    for i, value in enumerate(values):
        value_errors = is_label_value(value)
        if value_errors:
            problems.append(f"values[{i}][{key}]: Invalid value: {_quote(value)}: "
                            + "; ".join(value_errors))
    if problems:
        shown = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        raise _SelectorSyntaxError(shown)
    return Requirement(key, operator, values)


def parse_label_selector(text: str | None) -> Selector:
    """Parse a ``labelSelector=`` value; a malformed one is a 400 BadRequest."""
    try:
        found = _Parser(text or "").parse()
    except _SelectorSyntaxError as exc:
        raise errors.bad_request(str(exc)) from None
    return Selector(tuple(sorted(found, key=lambda r: r.key)))


_EXPRESSION_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def label_selector_from_dict(selector: Mapping[str, Any] | None) -> Selector:
    """Convert a ``metav1.LabelSelector`` (Jobs, PDBs, NetworkPolicies) to a Selector.

    As in Kubernetes, a missing selector selects nothing and an empty one selects
    everything.
    """
    if selector is None:
        return Selector(nothing=True)
    found: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        found.append(Requirement(key, "=", (str(value),)))
    for expression in selector.get("matchExpressions") or []:
        operator = expression.get("operator", "")
        if operator not in _EXPRESSION_OPERATORS:
            raise errors.bad_request(f'"{operator}" is not a valid label selector operator')
        values = tuple(expression.get("values") or ())
        found.append(Requirement(expression.get("key", ""), _EXPRESSION_OPERATORS[operator],
                                 values))
    return Selector(tuple(found))


# ---------------------------------------------------------------------------------------
# field selectors

_Getter = Callable[[Mapping[str, Any]], Any]


def _path(*keys: str) -> _Getter:
    def get(obj: Mapping[str, Any]) -> Any:
        current: Any = obj
        for key in keys:
            if not isinstance(current, Mapping):
                return ""
            current = current.get(key)
        return "" if current is None else current
    return get


def _event_source(obj: Mapping[str, Any]) -> Any:
    component = _path("source", "component")(obj)
    return component or _path("reportingComponent")(obj)


_META_FIELDS: dict[str, _Getter] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}


def _pod_ips(obj: Mapping[str, Any]) -> str:
    """``status.podIPs`` selects on the pod's IPs joined, as the pod registry exposes it."""
    ips = _path("status", "podIPs")(obj) or []
    return ",".join(str(ip.get("ip", "")) for ip in ips if isinstance(ip, Mapping))


# Kinds whose API version registers a field label conversion function: exactly these
# fields are accepted (a Node, for one, has no metadata.namespace to select on), and any
# other is refused with that function's wording. Every other kind accepts the two
# metadata fields only (runtime.DefaultMetaV1FieldSelectorConversion).
_KIND_FIELDS: dict[str, dict[str, _Getter]] = {
    "Pod": {
        **_META_FIELDS,
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: bool(_path("spec", "hostNetwork")(o)),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.podIPs": _pod_ips,
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "Event": {
        **_META_FIELDS,
        **{f"involvedObject.{name}": _path("involvedObject", name)
           for name in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                        "fieldPath")},
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _event_source,
        "type": _path("type"),
    },
    "Secret": {**_META_FIELDS, "type": _path("type")},
    "Service": {**_META_FIELDS, "spec.clusterIP": _path("spec", "clusterIP"),
                "spec.type": _path("spec", "type")},
    "Namespace": {"metadata.name": _path("metadata", "name"),
                  "status.phase": _path("status", "phase")},
    "Node": {"metadata.name": _path("metadata", "name"),
             "spec.unschedulable": lambda o: bool(_path("spec", "unschedulable")(o))},
    "Job": {**_META_FIELDS,
            "status.successful": lambda o: int(_path("status", "succeeded")(o) or 0)},
}


def _unsupported(kind: str, field: str) -> str:
    """The conversion function's refusal, worded as the kind's own function words it."""
    if kind == "Job":
        return f'field label "{field}" not supported for Job'
    if kind in _KIND_FIELDS:
        return f"field label not supported: {field}"
    return (f'"{field}" is not a known field selector: only "metadata.name", '
            '"metadata.namespace"')


def _field_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class _FieldTerm:
    field: str
    value: str
    negated: bool
    getter: _Getter

    def matches(self, obj: Mapping[str, Any]) -> bool:
        equal = _field_text(self.getter(obj)) == self.value
        return equal != self.negated


@dataclass(frozen=True)
class FieldSelector:
    """ANDed ``field=value`` / ``field!=value`` terms over the fields a kind exposes."""

    terms: tuple[_FieldTerm, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(term.matches(obj) for term in self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms


def _split_terms(text: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(value: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise errors.bad_request(
                    f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise errors.bad_request(f"invalid field selector: unescaped character in value: "
                                     f"{ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise errors.bad_request("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(kind: str, text: str | None) -> FieldSelector:
    """Parse a ``fieldSelector=`` value for objects of ``kind`` (``Pod``, ``Event``...).

    Only the fields the API server indexes for that kind are accepted; any other is a 400
    worded by the kind's field label conversion (``field label not supported: <field>``, or
    ``"<field>" is not a known field selector: ...`` for kinds without one).
    """
    source = text or ""
    supported = _KIND_FIELDS.get(kind, _META_FIELDS)
    terms: list[_FieldTerm] = []
    for part in sorted(_split_terms(source)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise errors.bad_request(
                f"invalid selector: '{source}'; can't understand '{part}'")
        field, op, raw = split
        value = _unescape(raw)
        getter = supported.get(field)
        if getter is None:
            raise errors.bad_request(_unsupported(kind, field))
        terms.append(_FieldTerm(field, value, op == "!=", getter))
    return FieldSelector(tuple(terms))
