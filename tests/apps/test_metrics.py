"""The hand-written Prometheus exposition: format, escaping, sharing a registry."""

import pytest

from apps.discovery.metrics import Registry


def test_render_counters_gauges_and_labels() -> None:
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

    assert registry.render().splitlines() == [
        "# HELP x_requests_total Requests.",
        "# TYPE x_requests_total counter",
        'x_requests_total{status="200"} 3',
        'x_requests_total{status="503"} 1',
        "# HELP x_in_flight In flight.",
        "# TYPE x_in_flight gauge",
        "x_in_flight 1",
        "# HELP x_ratio A ratio.",
        "# TYPE x_ratio gauge",
        'x_ratio{k="v"} 0.25',
    ]


def test_unlabelled_metrics_start_at_zero_and_labelled_ones_appear_when_used() -> None:
    registry = Registry()
    registry.counter("a_total", "A.")
    registry.counter("b_total", "B.", ("reason",))
    text = registry.render()
    assert "\na_total 0\n" in text
    assert "b_total{" not in text


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "Help with \\ and\nnewline.", ("path",))
    counter.inc(path='a"b\\c\nd')
    text = registry.render()
    assert "# HELP c_total Help with \\\\ and\\nnewline." in text
    assert 'c_total{path="a\\"b\\\\c\\nd"} 1' in text


def test_counters_only_go_up_and_labels_must_match() -> None:
    counter = Registry().counter("d_total", "D.", ("a",))
    with pytest.raises(ValueError, match="only go up"):
        counter.inc(-1, a="x")
    with pytest.raises(ValueError, match="labels"):
        counter.inc(b="x")


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
    assert 'f{host="a"} 1\nf{host="b"} 2' in registry.render()
