"""The report folder: every section present and filled, parsed back from its HTML."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import plotly_page
import pytest

from collabkit.checkpoint import save_model
from collabkit.core.loop import fit_one_cycle
from collabkit.data.split import random_split
from collabkit.interpret.report import SECTIONS, write_report
from collabkit.models.dot import DotProductBias, GlobalMean
from tests.conftest import make_ratings


class Sections(HTMLParser):
    """section id -> its text, tables (as lists of rows) and the ids of its Plotly charts."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self._current: dict | None = None
        self._cell: list[str] | None = None
        self._script = False  # scripts hold Plotly and the figures, not text shown

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._script = tag == "script"
        if tag == "section":
            self._current = self.sections.setdefault(
                a["id"], {"text": "", "tables": [], "charts": []}
            )
        elif self._current is None:
            return
        elif tag == "table":
            self._current["tables"].append([])
        elif tag == "tr":
            self._current["tables"][-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "div" and a.get("class") == "plotly-graph-div":
            self._current["charts"].append(a["id"])

    def handle_endtag(self, tag):
        self._script = False
        if tag == "section":
            self._current = None
        elif tag in ("td", "th") and self._cell is not None and self._current is not None:
            self._current["tables"][-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._current is not None and not self._script:
            self._current["text"] += data
            if self._cell is not None:
                self._cell.append(data)


def parse(path) -> dict[str, dict]:
    parser = Sections()
    parser.feed(path.read_text())
    return parser.sections


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = make_ratings(n_users=80, n_items=50, density=0.4)
    train, test = random_split(data, 0.2, seed=3)
    model = DotProductBias.from_data(train, n_factors=6)
    history = fit_one_cycle(model, train, test, epochs=4, lr_max=0.05, wd=0.01, progress=False)
    folder = tmp_path_factory.mktemp("model")
    recipe = {"lr": 0.05, "wd": 0.01, "epochs": 4, "split": "random", "dataset": "synthetic"}
    save_model(model, folder, items=data.items, extra={"history": history.rows, "train": recipe})
    return folder, train, test


def test_every_section_is_written_and_filled(trained, tmp_path):
    folder, train, test = trained
    result = write_report(
        folder, tmp_path / "report", train, test, baselines=["mean", "most-popular"], min_ratings=5
    )
    assert result["files"] == ["by_activity.png", "index.html", "item_map.html", "item_map.png", "report.json"]
    sections = parse(tmp_path / "report" / "index.html")
    assert list(sections) == list(SECTIONS)
    text = (tmp_path / "report" / "index.html").read_text()
    page, charts = plotly_page.parse(text), plotly_page.figures(text)
    assert not page.external and plotly_page.has_inline_plotly(page)  # opens offline
    assert sections["training"]["charts"] == ["training-chart"]
    assert [t["name"] for t in charts["training-chart"]] == ["train_loss", "valid_loss"]
    assert all(len(t["y"]) == 4 for t in charts["training-chart"])  # one point per epoch
    assert len(sections["training"]["tables"][0]) == 1 + 4  # header + epochs
    top, bottom, gaps = sections["biases"]["tables"]
    assert top[0][:2] == ["title", "item"] and len(top) == len(bottom) == 1 + 5
    assert "Spearman" in sections["biases"]["text"] and len(gaps) > 1
    assert sections["pca"]["charts"] == ["map-chart"] and "Movie" in sections["pca"]["text"]
    (points,) = charts["map-chart"]
    assert len(points["x"]) == 50 and all(t.startswith("Movie") for t in points["text"])
    assert len(sections["similar"]["tables"]) == 4 and all(
        len(t) == 1 + 5 for t in sections["similar"]["tables"]
    )
    rows = sections["compare"]["tables"][0]
    assert [r[0] for r in rows] == ["model", "dot-bias (this model)", "mean", "most-popular"]
    assert rows[0][1:3] == ["rmse", "mae"] and {"arp@10", "aplt@10", "gini@10", "coverage@10"} <= set(rows[0])
    assert rows[1][1].count("[") == 1 and rows[1][1].endswith("]")  # value [low, high]
    data = json.loads((tmp_path / "report" / "report.json").read_text())  # strict JSON: NaN -> null
    assert set(data) == set(SECTIONS) and data["compare"][2]["rmse"] is None
    assert set(data["compare"][1]["vs_baseline"]) >= {"rmse", "ndcg@10"}  # mean tested against this model
    assert sections["groups"]["charts"] == ["groups-chart"]
    lines = charts["groups-chart"]
    assert [t["name"] for t in lines if t.get("showlegend", True) is not False] == ["dot-bias (this model)", "mean", "most-popular"]
    (counts,) = sections["groups"]["tables"]
    assert counts[0] == ["group", "n_users", "n_ratings"]
    assert sum(int(r[1]) for r in counts[1:]) == test.n_users


def test_sections_that_do_not_apply_say_why(trained, tmp_path):
    _, train, _ = trained
    mean = GlobalMean.from_data(train)
    save_model(mean, tmp_path / "mean")  # no history, no biases, no factors
    write_report(tmp_path / "mean", tmp_path / "report", train, None)
    sections = parse(tmp_path / "report" / "index.html")
    assert list(sections) == list(SECTIONS)
    assert "No training history" in sections["training"]["text"]
    assert "no 'biases' capability" in sections["biases"]["text"]
    assert (
        "no 'factors' capability" in sections["pca"]["text"]
        and "no 'factors' capability" in sections["similar"]["text"]
    )
    assert "No test set" in sections["compare"]["text"] and "No test set" in sections["groups"]["text"]
    page = plotly_page.parse((tmp_path / "report" / "index.html").read_text())
    assert not page.scripts  # nothing to draw: no 4.8 MB of Plotly either
