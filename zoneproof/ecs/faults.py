"""Cloud faults the fake ECS can inject, set through the admin API or the Python API.

Kinds:
- ``zone_outage`` {zone}: every call that touches the zone (a disk or instance in it, or
  a ZoneId naming it) fails with ``ServiceUnavailable`` (HTTP 503).
- ``no_stock`` {zone, category?}: CreateDisk there fails with ``OperationDenied.NoStock``
  and DescribeAvailableResource reports the category sold out.
- ``throttle`` {rate, action?}: that fraction of calls fails with the exact code ``Throttling``.
- ``latency`` {action, seconds}: calls of the action are delayed.
- ``fail_next`` {action, count, code?}: the next ``count`` calls of the action fail
  (``InternalError`` unless another code is given).
- ``lose_answer`` {action, count}: the next ``count`` calls of the action are carried out,
  and then their connection closes without an answer, as when a network drops the
  response: the client cannot tell whether the call happened (what idempotency is for).
- ``cut_after`` {action, match?}: the next call of the action that mentions ``match`` (a
  text any of its parameters contains; any call without one) is carried out and its answer
  lost; from then on every call that mentions it is cut unanswered, without reaching ECS,
  until the fault is removed: a network that fails just after a request got through.

Faults are kept in memory: a restarted service starts healthy.
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import asdict, dataclass

from zoneproof.ecs.errors import CATALOG, AnswerLost, EcsError

KINDS = ("zone_outage", "no_stock", "throttle", "latency", "fail_next", "lose_answer", "cut_after")


@dataclass
class Fault:
    id: int
    kind: str
    zone: str | None = None
    category: str | None = None
    action: str | None = None
    rate: float | None = None
    seconds: float | None = None
    count: int | None = None
    code: str | None = None
    match: str | None = None
    tripped: bool | None = None  # cut_after: whether its call went through and the cut began

    def mentioned_by(self, params: dict) -> bool:
        return self.match is None or any(self.match in str(value) for value in params.values())

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _require(spec: dict, key: str, kind: str):
    if spec.get(key) in (None, ""):
        raise ValueError(f"fault {kind!r} needs {key!r}")
    return spec[key]


def parse_fault(spec: dict, fault_id: int) -> Fault:
    """Build a Fault from a JSON-style dict; ValueError names what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError("a fault must be a JSON object")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
    unknown = set(spec) - {"kind", "zone", "category", "action", "rate", "seconds", "count", "code", "match"}
    if unknown:
        raise ValueError(f"fault {kind!r}: unknown field(s) {', '.join(sorted(unknown))}")
    fault = Fault(id=fault_id, kind=kind)
    if kind == "zone_outage":
        fault.zone = str(_require(spec, "zone", kind))
    elif kind == "no_stock":
        fault.zone = str(_require(spec, "zone", kind))
        fault.category = spec.get("category")
    elif kind == "throttle":
        rate = _require(spec, "rate", kind)
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f"fault 'throttle': rate must be a number in (0, 1], got {rate!r}")
        fault.rate, fault.action = float(rate), spec.get("action")
    elif kind == "latency":
        seconds = _require(spec, "seconds", kind)
        if not isinstance(seconds, (int, float)) or not 0 <= seconds <= 300:
            raise ValueError(f"fault 'latency': seconds must be a number in [0, 300], got {seconds!r}")
        fault.action, fault.seconds = str(_require(spec, "action", kind)), float(seconds)
    elif kind in ("fail_next", "lose_answer"):
        count = _require(spec, "count", kind)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"fault {kind!r}: count must be a positive integer, got {count!r}")
        fault.action, fault.count = str(_require(spec, "action", kind)), count
    elif kind == "cut_after":
        match = spec.get("match")
        if match is not None and (not isinstance(match, str) or not match):
            raise ValueError(f"fault 'cut_after': match must be a non-empty string, got {match!r}")
        fault.action, fault.match, fault.tripped = str(_require(spec, "action", kind)), match, False
    if spec.get("match") is not None and kind != "cut_after":
        raise ValueError(f"fault {kind!r} takes no match: only cut_after is scoped to the calls that mention a text")
    if kind == "fail_next":
        code = spec.get("code") or "InternalError"
        if code not in CATALOG:
            raise ValueError(f"fault 'fail_next': unknown error code {code!r}")
        fault.code = code
    elif kind == "lose_answer" and spec.get("code"):
        raise ValueError("fault 'lose_answer' takes no code: the call succeeds and its answer is lost")
    return fault


class Faults:
    """The active fault set. Thread-safe; throttling draws from a seeded generator so a
    run with the same seed and call order throttles the same calls."""

    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self._faults: dict[int, Fault] = {}
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)

    def add(self, spec: dict) -> Fault:
        with self._lock:
            fault = parse_fault(spec, next(self._ids))
            self._faults[fault.id] = fault
            return fault

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            return self._faults.pop(fault_id, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [f.to_dict() for f in self._faults.values()]

    def before_call(self, action: str, params: dict) -> float:
        """Seconds to delay this call; raises the error of a fail_next or throttle fault, and
        AnswerLost for a call a tripped cut_after fault cuts off."""
        with self._lock:
            for f in self._faults.values():
                if f.kind == "cut_after" and f.tripped and f.mentioned_by(params):
                    raise AnswerLost(f"{action} cut off (fault {f.id}: cut after {f.action})")
            delay = sum(f.seconds for f in self._faults.values() if f.kind == "latency" and f.action == action)
            for f in list(self._faults.values()):
                if f.kind == "fail_next" and f.action == action:
                    f.count -= 1
                    if f.count <= 0:
                        del self._faults[f.id]
                    raise EcsError(f.code)
            for f in self._faults.values():
                if f.kind == "throttle" and f.action in (None, action) and self._rng.random() < f.rate:
                    raise EcsError("Throttling")
        return delay

    def answer_lost(self, action: str, params: dict) -> bool:
        """Whether the answer to this call of the action, carried out, is to be lost."""
        with self._lock:
            for f in list(self._faults.values()):
                if f.kind == "lose_answer" and f.action == action:
                    f.count -= 1
                    if f.count <= 0:
                        del self._faults[f.id]
                    return True
                if f.kind == "cut_after" and not f.tripped and f.action == action and f.mentioned_by(params):
                    f.tripped = True
                    return True
        return False

    def check_zones(self, zones) -> None:
        with self._lock:
            dark = sorted({f.zone for f in self._faults.values() if f.kind == "zone_outage"} & set(zones))
        if dark:
            raise EcsError("ServiceUnavailable", f"The service is unavailable in zone {dark[0]}; retry later.")

    def sold_out(self, zone: str, category: str) -> bool:
        with self._lock:
            return any(f.kind == "no_stock" and f.zone == zone and f.category in (None, category)
                       for f in self._faults.values())
