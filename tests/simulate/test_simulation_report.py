"""Summaries and the HTML report (text from run names is escaped)."""

import pandas as pd
import pytest

from collabkit.simulate.report import PLOTTED, summarise, write_html


def frame(share: list[float]) -> pd.DataFrame:
    n = len(share)
    cols = {c: [1.0] * n for c in [*PLOTTED, "top1_share"]}
    return pd.DataFrame(
        {**cols, "round": range(n), "fav_share_majority": share, "fit_seconds": 0.5}
    )


def test_summarise_start_end_rise():
    s = summarise(frame([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), edge=2)
    assert s["fav_share_majority_start"] == pytest.approx(0.15)
    assert s["fav_share_majority_end"] == pytest.approx(0.55)
    assert s["fav_share_majority_rise"] == pytest.approx(0.4)
    assert s["seconds"] == pytest.approx(3.0)


def test_html_escapes_names_and_embeds_plotly(tmp_path):
    path = tmp_path / "r.html"
    name = "</script><script>alert(1)</script>"
    write_html({name: frame([0.1, 0.2]), "cap": frame([0.3, 0.1])}, path, title="a & b")
    text = path.read_text()
    assert "<script>alert" not in text and "a &amp; b" in text
    assert "&lt;script&gt;alert(1)" in text  # the table heading
    assert "Plotly.newPlot" in text and "plotly.js v" in text  # the library itself is inline...
    assert "<script src=" not in text  # ...never fetched from a CDN
    assert not list(tmp_path.glob(".r.html.*"))  # the temp file was moved into place
