"""Paths and hand-read facts of the BMTAS paper's Table 1 (PASCAL-Context) and Table 2 (NYUD-v2)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
TABLES = {"table1": DATA / "bmtas_table1.csv", "table2": DATA / "bmtas_table2.csv"}

# Pareto fronts (MAdds ↓, Δm ↑) read off the printed tables by hand.
FRONTS = {
    "table1": {"Shared", "BMTAS-1", "BMTAS-2", "MTAN", "BMTAS-3", "C.-S."},
    "table2": {"Shared", "BMTAS-1", "BMTAS-2", "BMTAS-3", "MTAN"},
}
