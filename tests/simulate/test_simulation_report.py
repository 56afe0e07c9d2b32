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


def test_html_escapes_names(tmp_path):
    path = tmp_path / "r.html"
    write_html({"<script>alert(1)</script>": frame([0.1, 0.2])}, path, title="a & b", png=b"png")
    text = path.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text and "a &amp; b" in text
    assert not list(tmp_path.glob(".r.html.*"))  # the temp file was moved into place
