"""Fixtures that give tests a real, private dockerd (see DEVELOPERS.md).

- ``engine``: one daemon for the whole session, started empty (no images), cleaned up at the end.
- ``busy_engine`` / ``busy_state``: a second session daemon with :func:`scenarios.healthy_busy` applied once.
  Treat it as read-only: other tests share it.
- ``fresh_engine``: a factory for tests that need a daemon of their own (crash tests); every daemon it
  made is cleaned up after the test.

Without root, dockerd, the docker client or a static busybox these tests are skipped, except when the
environment has CI=true: then they fail, so that CI cannot go green by skipping them.
Every test under tests/integration/ that uses one of these fixtures is marked ``integration``
(deselect them with ``-m 'not integration'``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from .engine import Engine, EngineFactory, become_subreaper, prerequisite_problems
from .images import make_image_tar
from .scenarios import BusyState, healthy_busy

_HERE = Path(__file__).parent
_ENGINE_FIXTURES = {"engine", "busy_engine", "busy_state", "fresh_engine"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here that uses a daemon fixture as ``integration``."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if _HERE in Path(item.path).parents and uses & _ENGINE_FIXTURES:
            item.add_marker(pytest.mark.integration)


def require_engine() -> None:
    """Skip (or, with CI=true, fail) the calling test when a private daemon cannot run here."""
    problems = prerequisite_problems()
    if problems:
        reason = "cannot run a private dockerd: " + "; ".join(problems)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: failing instead of skipping)", pytrace=False)
        pytest.skip(reason)
    become_subreaper()


def _started() -> Engine:
    engine = Engine()
    try:
        engine.start()
    except BaseException:
        engine.cleanup()
        raise
    return engine


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    require_engine()
    eng = _started()
    try:
        yield eng
    finally:
        eng.cleanup()


@pytest.fixture(scope="session")
def _busy() -> Iterator[tuple[Engine, BusyState]]:
    require_engine()
    eng = _started()
    try:
        state = healthy_busy(eng)
        yield eng, state
    finally:
        eng.cleanup()


@pytest.fixture(scope="session")
def busy_engine(_busy: tuple[Engine, BusyState]) -> Engine:
    return _busy[0]


@pytest.fixture(scope="session")
def busy_state(_busy: tuple[Engine, BusyState]) -> BusyState:
    return _busy[1]


@pytest.fixture
def fresh_engine() -> Iterator[EngineFactory]:
    """``fresh_engine(start=True, extra_args=(), dockerd=None, env=None) -> Engine``; cleaned up after."""
    require_engine()
    made: list[Engine] = []

    def make(
        start: bool = True,
        extra_args: Sequence[str] = (),
        dockerd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Engine:
        eng = Engine(dockerd=dockerd, extra_args=extra_args, env=env)
        made.append(eng)
        if start:
            eng.start()
        return eng

    try:
        yield make
    finally:
        errors = []
        for eng in made:
            try:
                eng.cleanup()
            except Exception as exc:  # clean up the others before reporting
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def big_tars(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    tars = {}
    for name, seed, layers in (("big1", "a", [15000, 15000, 15000]), ("big2", "b", [2000, 40000, 40000])):
        path = d / f"{name}.tar"
        make_image_tar(path, f"{name}:1", layers, seed)
        tars[name] = path
    return tars
