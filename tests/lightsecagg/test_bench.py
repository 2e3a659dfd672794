"""``secagg bench lightsecagg --quick`` runs, both protocols' sums are exact, and the
report carries every cell.  Never a timing assertion."""

from __future__ import annotations

import math

from secagg.bench import BENCHMARKS
from secagg.bench import lightsecagg as bench


def test_quick_bench_reports_every_cell_exactly():
    assert "lightsecagg" in BENCHMARKS
    r = bench.run(True)
    assert r["benchmark"] == "lightsecagg" and r["exact"] is True
    assert [(x["n"], x["dropout"]) for x in r["rows"]] == [(20, d) for d in bench.DROPOUTS]
    for row in r["rows"]:
        lt = row["lightsecagg"]
        assert not lt["aborted"] and lt["exact"] and lt["U"] == 10 and lt["T"] == 5
        assert lt["unmask_s"] > 0 and math.isfinite(lt["unmask_s"])
        assert lt["client_upload_bytes"] > 4 * row["m"]  # masked input + coded shares
        if not row["secagg+"]["aborted"]:
            assert row["secagg+"]["exact"] and row["faster"] in ("lightsecagg", "secagg+")
            assert row["secagg+"]["setup_s"] > 0
    c = r["client"]
    for p in ("secagg+", "lightsecagg"):
        assert c[p]["client_cpu_s"] > 0 and c[p]["bytes_up"] > 0
    # LightSecAgg ships coded shares: more bytes per client than SecAgg+ at this size
    assert c["lightsecagg_over_secagg+_bytes_up"] > 1
    # what says whether a size fits this box: memory and time of the run
    assert r["peak_rss_mb"] is None or r["peak_rss_mb"] >= 0
    assert r["wall_s"] > 0
    text = bench.markdown(r)
    assert "| n | m | dropout |" in text and "Light MB up/client" in text
    assert "peak RSS" in text
