"""Search spaces: presets in ``search_spaces/``, files and inline mappings, as Optuna distributions.

A space is a mapping from hyperparameter name to one of three kinds of parameter::

    learning_rate: {type: float, low: 1.0e-4, high: 0.1, log: true}
    num_layers:    {type: int, low: 1, high: 3}
    batch_size:    {type: categorical, choices: [16, 32, 64]}

Presets are YAML files with a ``description`` and ``params``; they are loaded by name
(``mlp``), or any such file by path.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from automl.errors import SpecError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

SPACES_ENV = "AUTOML_SPACES_PATH"
PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Optuna keeps every value as a float inside: integers beyond 2**53 would silently change.
MAX_INT = 2**53
# Bounds on what a spec may hold, so a hostile or broken file cannot exhaust the validator.
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_PATH_CHARS = 4096


def refuse_boolean(value: Any) -> Any:
    """A number field's value, unless it is a boolean: pydantic would take ``true`` as 1.

    YAML reads ``yes``, ``no``, ``on``, ``off``, ``true`` and ``false`` as booleans, so
    ``trials: yes`` would silently mean one trial.
    """
    if isinstance(value, bool):
        raise ValueError(
            f"expected a number, got the boolean {str(value).lower()} (YAML reads yes/no/on/off/true/false as booleans)"
        )
    return value


# Counts and numbers in a spec or a space: as pydantic's int and float, but a boolean is refused.
WholeNumber = Annotated[int, BeforeValidator(refuse_boolean)]
RealNumber = Annotated[float, BeforeValidator(refuse_boolean)]


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Param):
    """A real number in ``[low, high]``, on a log scale when ``log`` is set."""

    type: Literal["float"]
    low: RealNumber
    high: RealNumber
    log: bool = False
    step: RealNumber | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        _check_bounds(self.low, self.high, self.log, self.step)
        if not math.isfinite(self.high - self.low):
            raise ValueError(f"the range high - low ({self.high} - {self.low}) is too large to represent")
        return self

    def to_optuna(self) -> BaseDistribution:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)


class IntParam(_Param):
    """An integer in ``[low, high]``, on a log scale when ``log`` is set."""

    type: Literal["int"]
    low: WholeNumber
    high: WholeNumber
    log: bool = False
    step: WholeNumber = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        if max(abs(self.low), abs(self.high)) > MAX_INT:
            raise ValueError(f"low and high must lie within -2**53..2**53 ({MAX_INT}): Optuna keeps values as floats")
        _check_bounds(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self

    def to_optuna(self) -> BaseDistribution:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log, step=self.step)


class CategoricalParam(_Param):
    """One of a list of choices (numbers, strings, booleans or null)."""

    type: Literal["categorical"]
    choices: tuple[Any, ...]

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, choices: tuple[Any, ...]) -> tuple[Any, ...]:
        if not choices:
            raise ValueError("choices must not be empty")
        for index, choice in enumerate(choices):
            if not (choice is None or isinstance(choice, (bool, int, float, str))):
                raise ValueError(
                    f"choices must be numbers, strings, booleans or null; choice {index} is a {type(choice).__name__}"
                )
        if any(isinstance(c, float) and not math.isfinite(c) for c in choices):
            raise ValueError("choices must be finite numbers (no nan or inf)")
        if len(set(choices)) != len(choices):
            # By equality, as Optuna finds a choice back: 1, 1.0 and true are the same choice.
            raise ValueError("choices must not repeat (1, 1.0 and true count as the same value)")
        return choices

    def to_optuna(self) -> BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.choices)


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SearchSpace(BaseModel):
    """A validated search space: named parameters and what the space is for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: dict[str, ParamSpec]
    description: str = ""

    @field_validator("params")
    @classmethod
    def _check_names(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not params:
            raise ValueError("a search space needs at least one parameter")
        for name in params:
            if not PARAM_NAME.fullmatch(name):
                raise ValueError(f"parameter name {name!r} must start with a letter and hold only letters, digits and '_'")
        return params

    def to_optuna(self) -> dict[str, BaseDistribution]:
        """The space as Optuna distributions, the form ``OptunaSearch`` and ``Study.ask`` take."""
        return {name: param.to_optuna() for name, param in self.params.items()}


def _check_bounds(low: float, high: float, log: bool, step: float | None) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("low and high must be finite numbers")
    if low >= high:
        raise ValueError(f"low ({low}) must be less than high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log-scale range needs low > 0, got low={low}")
    if log and step is not None:
        raise ValueError("step cannot be used with log=true")
    if step is not None and not (math.isfinite(step) and step <= high - low):
        raise ValueError(f"step ({step}) must be at most high - low ({high - low})")


def presets_dir() -> Path:
    """Where presets live: ``$AUTOML_SPACES_PATH``, else ``search_spaces/`` beside the package."""
    env = os.environ.get(SPACES_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "search_spaces"


def list_presets() -> dict[str, str]:
    """Preset names with the first line of each description."""
    found: dict[str, str] = {}
    for path in sorted(presets_dir().glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            found[path.stem] = str(raw.get("description", "")).strip().splitlines()[0]
        except (yaml.YAMLError, OSError, IndexError, AttributeError):
            found[path.stem] = "(unreadable)"
    return found


def load_space(ref: str | Mapping[str, Any], *, field: str = "space", base_dir: Path | None = None) -> SearchSpace:
    """Load a space from a preset name, a YAML path, or an inline mapping.

    An inline mapping may be the parameters themselves or ``{description, params}``.

    Raises:
        SpecError: naming ``field`` (and the parameter) with what is wrong.
    """
    if isinstance(ref, str):
        raw, source = _read_space_file(ref, field, base_dir)
    elif isinstance(ref, Mapping):
        raw, source = dict(ref), None
    else:
        raise SpecError(f"{field}: expected a preset name, a path or a mapping, got {type(ref).__name__}")
    if not isinstance(raw, Mapping):
        raise SpecError(f"{field}: expected a mapping of parameters, got {type(raw).__name__}", source=source)
    check_structure(raw, field)
    if "params" not in raw:
        raw = {"params": raw}
    try:
        return SearchSpace.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, prefix=field), source=source) from None


def _read_space_file(ref: str, field: str, base_dir: Path | None) -> tuple[Any, str]:
    """A preset by name, or any YAML file by path.

    A path may point anywhere the caller can read (it is the user's own file, read with the
    rights of whoever validates or runs the job); a preset *name* never leaves the presets folder.
    """
    looks_like_path = ref.endswith((".yaml", ".yml")) or os.sep in ref or "/" in ref
    if looks_like_path:
        path = Path(ref)
        if not path.is_absolute() and base_dir is not None and not _exists(path, field):
            path = base_dir / path
    else:
        path = presets_dir() / f"{ref}.yaml"
        if not PRESET_NAME.fullmatch(ref) or ".." in ref or not _exists(path, field):
            known = ", ".join(list_presets()) or "none"
            raise SpecError(f"{field}: unknown preset {ref!r} (known presets: {known}); or give a path to a YAML file")
    if not _exists(path, field):
        raise SpecError(f"{field}: file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{field}: cannot read {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    return read_yaml(text, field=f"{field}: {str(path)!r}"), str(path)


def _exists(path: Path, field: str) -> bool:
    """``path.exists()``, with the path's own faults (a NUL byte, a name too long) as a SpecError."""
    if len(str(path)) > MAX_PATH_CHARS:
        raise SpecError(f"{field}: the path is longer than {MAX_PATH_CHARS} characters")
    try:
        return path.exists()
    except (OSError, ValueError) as exc:
        raise SpecError(f"{field}: {str(path)[:200]!r} is not a usable path ({getattr(exc, 'strerror', None) or exc})") from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice (PyYAML keeps the last one, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, *, field: str) -> Any:
    """Parse YAML ``text`` safely (no Python tags, no repeated keys, bounded nesting).

    Raises:
        SpecError: naming ``field`` and the line of the problem.
    """
    prefix = f"{field}: " if field else ""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["unknown problem"])[0]
        raise SpecError(f"{prefix}not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{prefix}not usable YAML: it is nested too deeply") from None


def check_structure(raw: Any, field: str) -> None:
    """Refuse a tree that refers to itself, nests deeper than ``MAX_DEPTH`` or holds more than
    ``MAX_NODES`` values (YAML aliases can expand a small file into a huge one).

    Raises:
        SpecError: naming ``field``.
    """
    count = 0
    stack: list[tuple[Any, int]] = [(raw, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise SpecError(f"{field}: holds more than {MAX_NODES} values (YAML aliases expanded); make it smaller")
        if depth > MAX_DEPTH:
            raise SpecError(f"{field}: nested more than {MAX_DEPTH} levels deep, or refers to itself (a YAML alias)")
        if isinstance(node, Mapping):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((child, depth + 1) for child in node)


def space_from_distributions(distributions: Mapping[str, Any]) -> SearchSpace:
    """The inverse of :meth:`SearchSpace.to_optuna`, so a space given as Optuna objects is recorded too."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    params: dict[str, Any] = {}
    for name, dist in distributions.items():
        if isinstance(dist, FloatDistribution):
            params[name] = {"type": "float", "low": dist.low, "high": dist.high, "log": dist.log, "step": dist.step}
        elif isinstance(dist, IntDistribution):
            params[name] = {"type": "int", "low": dist.low, "high": dist.high, "log": dist.log, "step": dist.step}
        elif isinstance(dist, CategoricalDistribution):
            params[name] = {"type": "categorical", "choices": list(dist.choices)}
        else:
            raise SpecError(f"space.{name}: unsupported distribution {type(dist).__name__}")
    return load_space(params)


def format_validation_error(exc: ValidationError, *, prefix: str = "") -> list[str]:
    """One ``field.path: message`` line per pydantic error, with union/discriminator noise removed."""
    lines: list[str] = []
    seen_paths: set[str] = set()
    for err in exc.errors(include_url=False):
        loc = [_loc_text(part) for part in err["loc"] if not _is_union_tag(part)]
        path = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
        # One value checked against each member of a union (a name or a list of names):
        # the first member's message reads best; the others repeat it.
        if any(_is_type_tag(str(part)) for part in err["loc"]) and path in seen_paths:
            continue
        seen_paths.add(path)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check its spelling)"
        elif err["type"] == "union_tag_invalid":
            message = f"type must be one of {err['ctx']['expected_tags']}, got {err['ctx']['tag']!r}"
        elif err["type"] == "union_tag_not_found":
            message = "needs a 'type' (float, int or categorical)"
        message = message.removeprefix("Value error, ")
        line = f"{path}: {message}"
        if line not in lines:
            lines.append(line)
    return lines


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _loc_text(part: Any) -> str:
    """A field path's part as it reads best: plain names as they are, anything odd quoted."""
    text = str(part)
    return text if isinstance(part, int) or _PLAIN_KEY.fullmatch(text) else repr(text)[:80]


def _is_union_tag(part: Any) -> bool:
    return part in {"float", "int", "categorical"} or (
        isinstance(part, str) and (part.startswith("function-") or _is_type_tag(part))
    )


def _is_type_tag(part: str) -> bool:
    """pydantic's name for a member of a union (``str``, ``list[str]``, ``literal['min','max']``)."""
    return part in {"str", "list[str]"} or part.startswith(("literal[", "list[literal["))
