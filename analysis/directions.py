"""Which way is better for each metric column: explicit mapping > header arrow > task registry.

Getting the direction of a metric wrong flips the sign of its Δm term, and that error is silent. So a
direction is never guessed: it comes from (in this order)

1. an explicit mapping given by the user (``{"depth/rmse": "min"}``),
2. an arrow in the column header, as printed in paper tables (``"Norm↓"``, ``"SemSeg ↑"``),
3. the task registry (:func:`branchsweep.tasks.metric_directions`, for ``"<task>/<metric>"`` columns),

and a column found in none of them is a :class:`~branchsweep.errors.ConfigError` naming the column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

from branchsweep.errors import ConfigError

Direction = Literal["max", "min"]
DIRECTIONS: tuple[Direction, ...] = ("max", "min")

# "↑"/"↓" (also the "(↑)" and " [↑]" spellings and LaTeX \uparrow/\downarrow) at the end of a header.
_ARROWS: dict[str, Direction] = {"↑": "max", "↓": "min", r"\uparrow": "max", r"\downarrow": "min"}
_ARROW_RE = re.compile(r"\s*[\(\[]?\s*(↑|↓|\\uparrow|\\downarrow)\s*[\)\]]?\s*$")


def split_header(header: str) -> tuple[str, Direction | None]:
    """Split a column header into its name and the direction its trailing arrow gives (or None).

    >>> split_header("Norm↓")
    ('Norm', 'min')
    >>> split_header("Δm [%] ↑")
    ('Δm [%]', 'max')
    >>> split_header("semseg/mIoU")
    ('semseg/mIoU', None)
    """
    match = _ARROW_RE.search(str(header))
    if match is None:
        return str(header).strip(), None
    return str(header)[: match.start()].strip(), _ARROWS[match.group(1)]


def check_direction(column: str, direction: object) -> Direction:
    """Validate one direction value; ``"higher"``/``"lower"`` are accepted as aliases."""
    alias = {"higher": "max", "lower": "min", "maximize": "max", "minimize": "min"}
    value = alias.get(str(direction).strip().lower(), str(direction).strip().lower())
    if value not in DIRECTIONS:
        raise ConfigError(f"metric {column!r}: direction must be 'max' or 'min', got {direction!r}")
    return value  # type: ignore[return-value]


def registry_directions() -> dict[str, Direction]:
    """``{"<task>/<metric>": direction}`` from the task registry (imports torch, so only on demand)."""
    from branchsweep.tasks import metric_directions

    return dict(metric_directions())


def resolve_directions(
    columns: Iterable[str],
    explicit: Mapping[str, str] | None = None,
    *,
    use_registry: bool = True,
) -> dict[str, Direction]:
    """Direction of every column in ``columns``; a column without one is a ConfigError.

    Header arrows are matched on the raw header (``"Norm↓"``); explicit keys may use either the raw
    header or its arrow-less name, or ``"*/<metric>"`` for that metric of every task (many generic tasks,
    e.g. ``{"*/mse": "min"}`` for the Learning-to-Branch synthetic regressions).

    >>> resolve_directions(["Norm↓", "SemSeg", "t0/mse"], {"SemSeg": "max", "*/mse": "min"}, use_registry=False)
    {'Norm↓': 'min', 'SemSeg': 'max', 't0/mse': 'min'}
    """
    explicit = {str(k): check_direction(str(k), v) for k, v in (explicit or {}).items()}
    registry: dict[str, Direction] | None = None
    out: dict[str, Direction] = {}
    for column in columns:
        name, arrow = split_header(column)
        wildcard = "*/" + name.split("/", 1)[1] if "/" in name else None
        given = explicit.get(column, explicit.get(name, explicit.get(wildcard) if wildcard else None))
        if given is not None:
            out[column] = given
            continue
        if arrow is not None:
            out[column] = arrow
            continue
        if use_registry:
            if registry is None:
                registry = registry_directions()
            if column in registry:
                out[column] = registry[column]
                continue
        raise ConfigError(
            f"metric column {column!r} has no direction: it is not a registered task metric and its header "
            "has no ↑/↓; give one explicitly (e.g. --direction 'COLUMN=max' or directions={COLUMN: 'min'})"
        )
    return out
