"""Known engine bugs that leak storage: the checked-in table ``snapper/data/known_bugs.csv``.

One row per affected version range: ``affected_from`` (inclusive, empty = every version) to ``fixed_in``
(exclusive, empty = still open upstream). A bug fixed on several release branches has a row per branch
(the BuildKit EnsureLayer race: 23.0.11, 25.0.5, 26.0.0). ``mechanisms`` names, separated by ``;``, come
from :mod:`snapper.mechanisms`: the leak signature the bug leaves. Issue numbers are the ones cited in
docs/docker-storage.md section 9 and its link list, and the moby release notes for 29.1.3/29.1.4.

``queries/known_bugs.sql`` reads it through the ``known_bugs_table`` view that every binding defines
(:func:`view_statement`); version comparison is done there, so the duckdb shell gives the same answer.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("bug", "store", "mechanisms", "affected_from", "fixed_in", "issue_url", "fix_url", "summary",
           "workaround")


def csv_path() -> Path:
    return Path(__file__).resolve().parent / "data" / "known_bugs.csv"


@dataclass(frozen=True)
class KnownBug:
    bug: str
    store: str
    mechanisms: tuple[str, ...]
    affected_from: str
    fixed_in: str
    issue_url: str
    fix_url: str
    summary: str
    workaround: str


def rows() -> list[KnownBug]:
    with csv_path().open(encoding="utf-8", newline="") as f:
        return [KnownBug(r["bug"], r["store"], tuple(r["mechanisms"].split(";")), r["affected_from"], r["fixed_in"],
                         r["issue_url"], r["fix_url"], r["summary"], r["workaround"]) for r in csv.DictReader(f)]


def view_statement() -> str:
    """The ``known_bugs_table`` view over the packaged CSV (every column text; empty cells are NULL)."""
    path = str(csv_path()).replace("'", "''")
    cols = ", ".join(f"'{c}': 'VARCHAR'" for c in COLUMNS)
    return (f"CREATE OR REPLACE VIEW known_bugs_table AS SELECT * FROM read_csv('{path}', header = true, "
            f"columns = {{{cols}}});")


_GITHUB = re.compile(r"^https://github\.com/([^/]+)/([^/]+)/(?:issues|pull)/(\d+)$")


def short_ref(url: str) -> str:
    """``https://github.com/moby/moby/issues/46136`` -> ``moby#46136`` (docs shorthand; the report carries
    no URLs: it is a self-contained page)."""
    m = _GITHUB.match(url or "")
    if not m:
        return url
    owner, repo, n = m.groups()
    return f"{repo}#{n}" if owner == repo else f"{owner}/{repo}#{n}"
