"""Which way is better for each metric column: explicit mapping > header arrow > known directions.

Getting the direction of a metric wrong flips the sign of its Δm term, and that error is silent. So a
direction is never guessed: it comes from (in this order)

1. an explicit mapping given by the user (``{"depth/rmse": "min"}``; ``branchsweep report`` puts a
   sweep's ``metrics.json`` here, overridden by ``--direction`` flags),
2. an arrow in the column header, as printed in paper tables (``"Norm↓"``, ``"SemSeg ↑"``),
3. ``known``: directions passed in as data, e.g. ``{"<task>/<metric>": direction}`` of every registered
   task (``branchsweep report`` passes :func:`branchsweep.tasks.metric_directions`; this package never
   looks them up itself),

and a column found in none of them is an :class:`~analysis.errors.AnalysisError` naming the column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

from analysis.errors import AnalysisError

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
    """Validate one direction value; ``"higher"``/``"lower"`` are accepted as aliases.

    >>> check_direction("a/acc", "higher"), check_direction("b/err", "min")
    ('max', 'min')
    """
    alias = {"higher": "max", "lower": "min", "maximize": "max", "minimize": "min"}
    value = alias.get(str(direction).strip().lower(), str(direction).strip().lower())
    if value not in DIRECTIONS:
        raise AnalysisError(f"metric {column!r}: direction must be 'max' or 'min', got {direction!r}")
    return value  # type: ignore[return-value]


def resolve_directions(
    columns: Iterable[str],
    explicit: Mapping[str, str] | None = None,
    *,
    known: Mapping[str, str] | None = None,
) -> dict[str, Direction]:
    """Direction of every column in ``columns``: ``explicit``, else the header arrow, else ``known``.

    Header arrows are matched on the raw header (``"Norm↓"``); explicit keys may use either the raw
    header or its arrow-less name, or ``"*/<metric>"`` for that metric of every task (many generic tasks,
    e.g. ``{"*/mse": "min"}`` for the Learning-to-Branch synthetic regressions). ``known`` is the last
    source, matched on the exact column (``{"depth/rmse": "min"}``, e.g. the task registry's). A column
    found in none of them is an AnalysisError naming it.

    >>> resolve_directions(["Norm↓", "SemSeg", "t0/mse"], {"SemSeg": "max", "*/mse": "min"})
    {'Norm↓': 'min', 'SemSeg': 'max', 't0/mse': 'min'}
    >>> resolve_directions(["depth/rmse", "Edge↑"], {}, known={"depth/rmse": "min", "Edge↑": "min"})
    {'depth/rmse': 'min', 'Edge↑': 'max'}
    """
    explicit = {str(k): check_direction(str(k), v) for k, v in (explicit or {}).items()}
    known = dict(known or {})
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
        if column in known:
            out[column] = check_direction(column, known[column])
            continue
        raise AnalysisError(
            f"metric column {column!r} has no direction: it is not a known task metric and its header "
            "has no ↑/↓; give one explicitly (e.g. --direction 'COLUMN=max' or directions={COLUMN: 'min'})"
        )
    return out
