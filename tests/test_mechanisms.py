"""snapper.mechanisms is the one list: every mechanism the verdict queries give is in it, and every name in it is
one the SQL can give."""

from __future__ import annotations

from pathlib import Path

from snapper import catalog, verdict
from snapper.demo import sample_path
from snapper.mechanisms import MECHANISMS, NAMES
from snapper.metrics import MECHANISMS as METRIC_MECHANISMS
from snapper.report import MECHANISM_COLOURS

DATA = Path(__file__).parent / "data"
QUERIES = Path(__file__).parent.parent / "queries"


def test_every_mechanism_given_on_the_samples_is_listed() -> None:
    seen: set[str] = set()
    for snap in (sample_path(), DATA / "ctr_sample", *sorted((DATA / "series").iterdir())):
        con = verdict.bound(str(snap))
        for query in ("verdicts", "ctr_verdicts"):
            seen |= {m for m in catalog.run(con, query, {"grace_seconds": 0}).column("mechanism").to_pylist() if m}
    assert seen and seen <= set(NAMES), seen - set(NAMES)
    assert {m.store for m in MECHANISMS} == {"overlay2", "containerd"}


def test_every_listed_mechanism_is_given_by_the_sql_and_has_a_colour() -> None:
    sql = "".join(p.read_text() for p in QUERIES.glob("*.sql"))
    for m in MECHANISMS:
        assert f"'{m.name}'" in sql, f"{m.name} is listed but no query gives it"
        assert (m.store == "containerd") == m.name.startswith("ctr-")
    assert tuple(METRIC_MECHANISMS) == NAMES and set(MECHANISM_COLOURS) == set(NAMES)
    assert len(set(NAMES)) == len(NAMES)
