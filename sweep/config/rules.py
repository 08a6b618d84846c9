"""What each knob accepts. sweep/config/schema.py attaches a rule to every knob it defines (`knob(default,
rule)`); `problems` walks a composed config against the schema before any data or model loads, so
a bad value fails in seconds, in one line that names the key, the value and what is accepted:

    trainer.batch_size=0: must be an integer >= 1

Plain Python like the schema (no Hydra, OmegaConf or torch). Choices that only a library knows
(transformers' schedules, our poolers) are given as a function, called when a config is checked."""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Mapping, Optional, Tuple, Union

RULE = "rule"  # the key of a field's metadata that holds its rule
UNSET = "???"  # OmegaConf's marker of a value the user must set: sweep.job.assembly.require_model_identity asks for it


class Rule:
    """accepts: what the rule accepts, in words ("an integer >= 1"); ok: whether a value is accepted."""

    optional = False  # null accepted too

    def accepts(self) -> str:
        raise NotImplementedError

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def problems(self, key: str, value: Any) -> List[str]:
        if value is None and self.optional or value == UNSET or self.ok(value):
            return []
        return [f"{key}={value!r}: must be {self.accepts()}{' or null' if self.optional else ''}"]


def _bound(low, high, low_open=False, high_open=False) -> str:
    def number(x) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{number(low)}, {number(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {number(low)}"
    return f"{'<' if high_open else '<='} {number(high)}"


@dataclass(frozen=True)
class Integer(Rule):
    low: Optional[int] = None
    high: Optional[int] = None
    optional: bool = False

    def accepts(self) -> str:
        return "an integer" + (f" {_bound(self.low, self.high)}" if (self.low, self.high) != (None, None) else "")

    def ok(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
        )


@dataclass(frozen=True)
class Number(Rule):
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # the bound itself excluded: (0, ...) rather than [0, ...)
    high_open: bool = False
    optional: bool = False

    def accepts(self) -> str:
        return f"a number {_bound(self.low, self.high, self.low_open, self.high_open)}"

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below


@dataclass(frozen=True)
class OneOf(Rule):
    choices: Union[Tuple[Any, ...], Callable[[], Iterable[Any]]]  # or a function giving them
    optional: bool = False

    def options(self) -> List[Any]:
        return list(self.choices() if callable(self.choices) else self.choices)

    def accepts(self) -> str:
        words = ["true" if c is True else "false" if c is False else str(c) for c in self.options()]
        return "one of " + ", ".join(words)

    def ok(self, value: Any) -> bool:
        # True == 1 in Python: a bool is accepted only as a bool
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in self.options())


@dataclass(frozen=True)
class Text(Rule):
    optional: bool = False

    def accepts(self) -> str:
        return "a non-empty string"

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())


@dataclass(frozen=True)
class Device(Rule):
    """Which devices exist is the machine's to say: sweep.model.device.resolve_device checks that at the start of a job."""

    def accepts(self) -> str:
        return "auto, cpu, cuda or cuda:N"

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and (
            value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
        )


@dataclass(frozen=True)
class Each(Rule):
    """A list of `length` values (Adam's betas), or of any length but 0 (with may_be_empty: any
    length, [] too: logger.trackers), each accepted by `rule`."""

    rule: Rule
    length: Optional[int] = None
    optional: bool = False
    may_be_empty: bool = False

    def accepts(self) -> str:
        many = "any number ([] for none)" if self.may_be_empty else "one or more"
        return f"a list of {self.length or many}, each {self.rule.accepts()}"

    def ok(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)):
            return False
        sized = len(value) == self.length if self.length else len(value) > 0 or self.may_be_empty
        return sized and all(map(self.rule.ok, value))


@dataclass(frozen=True)
class Fractions(Rule):
    """Shares of the data that sum to 1, each above 0 (data.split: train / valid / test)."""

    length: int

    def accepts(self) -> str:
        return f"{self.length} numbers > 0 that sum to 1, e.g. [0.8, 0.1, 0.1]"

    def ok(self, value: Any) -> bool:
        return Each(Number(0, 1, low_open=True), self.length).ok(value) and abs(sum(value) - 1) <= 1e-6


@dataclass(frozen=True)
class Fields(Rule):
    """A mapping whose named fields (where present) each follow `rule`; other keys are free."""

    rule: Rule
    names: Tuple[str, ...]

    def accepts(self) -> str:
        return "a mapping"

    def ok(self, value: Any) -> bool:
        return isinstance(value, Mapping)

    def problems(self, key: str, value: Any) -> List[str]:
        if not self.ok(value):
            return super().problems(key, value)
        return [p for name in self.names if name in value for p in self.rule.problems(f"{key}.{name}", value[name])]


def knob(default: Any = dataclasses.MISSING, rule: Optional[Rule] = None, factory: Optional[Callable] = None):
    """A schema field with its rule; `factory` for a mutable default (a list, a dict)."""
    metadata = {RULE: rule} if rule is not None else {}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def problems(schema: type, values: Mapping[str, Any], prefix: str = "") -> List[str]:
    """Every value of `values` its schema field's rule refuses, one message each; nested schemas
    (the groups of the top-level config) are walked too. `values` is the resolved config."""
    found = []
    for spec in dataclasses.fields(schema):
        key, value = f"{prefix}{spec.name}", values.get(spec.name)
        if dataclasses.is_dataclass(spec.type) and isinstance(value, Mapping):
            found += problems(spec.type, value, f"{key}.")
        elif RULE in spec.metadata:
            found += spec.metadata[RULE].problems(key, value)
    return found
