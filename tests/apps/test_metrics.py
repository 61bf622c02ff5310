"""The registry front over prometheus-client: exposition, sharing families, shape checks."""

import pytest
from aiohttp_discovery.metrics import CONTENT_TYPE, Registry

from tests.apps.support import sample


def test_render_counters_gauges_and_labels_in_text_format_0_0_4() -> None:
    registry = Registry()
    requests = registry.counter("x_requests_total", "Requests.", ("status",))
    in_flight = registry.gauge("x_in_flight", "In flight.")
    requests.inc(status="200")
    requests.inc(2, status="200")
    requests.inc(status="503")
    in_flight.inc()
    in_flight.inc()
    in_flight.dec()
    registry.gauge_func("x_ratio", "A ratio.", lambda: [({"k": "v"}, 0.25)])

    text = registry.render()
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE x_requests_total counter" in text.splitlines()
    assert "# HELP x_ratio A ratio." in text.splitlines()
    assert sample(text, "x_requests_total", status="200") == 3
    assert sample(text, "x_requests_total", status="503") == 1
    assert sample(text, "x_in_flight") == 1
    assert sample(text, "x_ratio", k="v") == 0.25
    assert requests.value(status="200") == 3


def test_unlabelled_metrics_start_at_zero_and_labelled_ones_appear_when_used() -> None:
    registry = Registry()
    registry.counter("a_total", "A.")
    registry.counter("b_total", "B.", ("reason",))
    text = registry.render()
    assert sample(text, "a_total") == 0
    assert "b_total{" not in text


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "Help with \\ and\nnewline.", ("path",))
    counter.inc(path='a"b\\c\nd')
    text = registry.render()
    assert "# HELP c_total Help with \\\\ and\\nnewline." in text
    assert sample(text, "c_total", path='a"b\\c\nd') == 1


def test_counters_only_go_up_and_labels_must_match() -> None:
    counter = Registry().counter("d_total", "D.", ("a",))
    with pytest.raises(ValueError, match="only go up"):
        counter.inc(-1, a="x")
    with pytest.raises(ValueError, match="labels"):
        counter.inc(b="x")
    with pytest.raises(ValueError, match="_total"):
        Registry().counter("d", "D.")


def test_families_are_shared_by_name_and_shape_is_checked() -> None:
    registry = Registry()
    first = registry.counter("e_total", "E.", ("host",))
    assert registry.counter("e_total", "E.", ("host",)) is first
    with pytest.raises(ValueError, match="another shape"):
        registry.counter("e_total", "E.", ("other",))
    with pytest.raises(ValueError, match="another shape"):
        registry.gauge("e_total", "E.", ("host",))
    registry.gauge_func("f", "F.", lambda: [({"host": "a"}, 1.0)])
    registry.gauge_func("f", "F.", lambda: [({"host": "b"}, 2.0)])
    text = registry.render()
    assert (sample(text, "f", host="a"), sample(text, "f", host="b")) == (1, 2)


def test_each_registry_is_its_own() -> None:
    """Two services (or tests) in one process never see each other's families."""
    one, two = Registry(), Registry()
    one.counter("g_total", "G.").inc()
    two.counter("g_total", "G.")
    assert sample(one.render(), "g_total") == 1
    assert sample(two.render(), "g_total") == 0
