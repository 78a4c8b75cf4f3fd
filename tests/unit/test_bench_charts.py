"""bench/charts.py: the benchmark's PNG charts, drawn from a results file next to it.
What each bar is comes from the samples (median, min, max); a chart whose figures
the file lacks is not drawn. Drawing needs matplotlib (the docs extra)."""
from __future__ import annotations

import json
import os

import pytest

from bench import charts

PNG = b"\x89PNG\r\n\x1a\n"
# Labels as a full run writes them (bench/workloads.py)
DRAIN = "drain 20,000 no-op (jobs/s)"
P50, P99 = "push-to-start p50 at 50 jobs/s (ms)", "push-to-start p99 at 50 jobs/s (ms)"
IO50 = "io50: % of the 1,280 jobs/s ceiling (64 / 0.05 s)"


def results(rows: dict) -> dict:
    """A results file's shape: {(figure, system): samples}."""
    return {"systems": {s: {"version": "1.0"} for _, s in rows},
            "rows": [{"figure": f, "direction": "higher", "system": s, "samples": v} for (f, s), v in rows.items()]}


def require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and matplotlib (docs extra) is missing: {exc}")
        pytest.skip(f"matplotlib is not installed: {exc}")


def test_a_bar_is_the_median_and_the_range_of_the_numeric_samples():
    data = results({(DRAIN, "mpqueue"): [7000, 6000, "failed: timeout", 6500],
                    (DRAIN, "huey"): [None], (P50, "mpqueue"): [0.8],
                    (DRAIN + ", SQLite broker", "mpqueue-sqlite"): [7300]})
    assert charts.bars(data, charts.DRAIN) == [("mpqueue", 6500, 6000, 7000)]


def test_the_figures_are_found_whatever_the_runs_sizes():
    # --quick labels its rows with its smaller sizes
    data = results({("drain 2,000 no-op (jobs/s)", "mpqueue"): [5000]})
    assert charts.bars(data, charts.DRAIN) == [("mpqueue", 5000, 5000, 5000)]


def test_scale_curves_are_medians_by_depth_in_order():
    data = {"depths": {"redis": {"100000": {"ms": {"find tail": [3.0, 1.0, 2.0]}},
                                 "10000": {"ms": {"find tail": [1.0]}}}}}
    assert charts.scale_curves(data) == {"redis": {"find tail": [(10000, 1.0), (100000, 2.0)]}}


def test_every_chart_with_figures_is_written_next_to_the_results(tmp_path):
    require_matplotlib()
    # Given a results file with drain (and the bare loop), latency and io50 figures
    path = tmp_path / "results-x.json"
    path.write_text(json.dumps(results({
        (DRAIN, "mpqueue"): [7000, 6900], (DRAIN, "huey"): [3500], (DRAIN, "bare"): [13000],
        (P50, "mpqueue"): [0.8], (P99, "mpqueue"): [1.4], (P50, "huey"): [0.81], (P99, "huey"): [1.5],
        (IO50, "mpqueue-async"): [93.8]})))
    # When the charts are drawn, then each is a PNG beside it, and no scale chart (no depths)
    written = charts.write(path)
    assert [p.name for p in written] == ["results-x-drain.png", "results-x-latency.png", "results-x-io50.png"]
    assert all(p.read_bytes().startswith(PNG) for p in written)


def test_a_file_without_those_figures_draws_nothing(tmp_path):
    require_matplotlib()
    path = tmp_path / "other.json"
    path.write_text(json.dumps(results({("push bulk, 20,000 no-op (jobs/s)", "mpqueue"): [1.0]})))
    assert charts.write(path) == [] and list(tmp_path.glob("*.png")) == []


def test_the_charts_the_docs_show_are_drawn_from_their_results():
    # bench/README.md (and so the docs' benchmark page) and the README show these
    bench = charts.Path(charts.__file__).parent
    text = (bench / "README.md").read_text()
    for name in ("results-2026-12-02-drain.png", "results-2026-12-02-latency.png",
                 "results-2026-12-02-io50-io50.png", "results-2026-12-07-scale-scale.png"):
        assert f"]({name})" in text and (bench / name).read_bytes().startswith(PNG)
        assert (bench / (name.rsplit("-", 1)[0] + ".json")).is_file()
