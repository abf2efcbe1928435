"""notebooks/leak-investigation.ipynb: committed without outputs, and executed (nbclient, python3 kernel) on the
series recorded from a real leaking dockerd: its figures exist and the explain cell names the biggest leak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snapper import verdict

TOP = Path(__file__).resolve().parent.parent
NOTEBOOK = TOP / "notebooks" / "leak-investigation.ipynb"
SERIES = TOP / "tests" / "data" / "series"
FIGURES = ("fig-disk", "fig-mechanism", "fig-top", "fig-rate")


def test_committed_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    for c in code:
        assert c["outputs"] == [] and c["execution_count"] is None, c["source"][:80]
    sources = "".join("".join(c["source"]) for c in code)
    assert "SELECT" not in sources.upper().replace("SELECTED", "")  # the library API only, no SQL strings
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and 'os.environ.get("SNAPPER_SERIES"' in "".join(params[0]["source"])


def _kernel() -> str:
    pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user"], check=True, capture_output=True)
    return "python3"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Outputs of every tagged code cell after running the notebook on the recorded series."""
    import nbclient
    import nbformat

    kernel = _kernel()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SNAPPER_SERIES", str(SERIES))
        mp.setenv("SNAPPER_GRACE", "0")
        nbclient.NotebookClient(nb, kernel_name=kernel, timeout=300,
                                resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}}).execute()
    out: dict[str, list[dict[str, Any]]] = {}
    for c in nb.cells:
        for tag in c.get("metadata", {}).get("tags", []):
            out[tag] = c.get("outputs", [])
    return out


def _text(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


@pytest.mark.parametrize("tag", FIGURES)
def test_figures_exist(executed: dict[str, list[dict[str, Any]]], tag: str) -> None:
    pngs = [o["data"]["image/png"] for o in executed[tag] if "image/png" in o.get("data", {})]
    assert len(pngs) == 1, (tag, [o.get("output_type") for o in executed[tag]])
    assert len(pngs[0]) > 10_000  # base64 of a real plot, not an empty canvas
    assert not [o for o in executed[tag] if o.get("output_type") == "error"]


def test_explain_names_the_biggest_leak(executed: dict[str, list[dict[str, Any]]]) -> None:
    leaks = verdict.leaks(SERIES / "s4", 0, 0)
    biggest, mechanism = str(leaks["layer_id"][0]), str(leaks["mechanism"][0])
    text = _text(executed["explain"])
    assert f"snapper explain {SERIES / 's4'} {biggest}" in text
    assert f"leaked ({mechanism})" in text
    assert biggest[:28] in _text(executed["fig-top"])  # the top-dirs table lists it first
    assert "leaked: " in _text(executed["fig-rate"]) and "full in" in _text(executed["fig-rate"])
    assert "appeared and never became reachable: 2 dirs" in _text(executed["headline"])
