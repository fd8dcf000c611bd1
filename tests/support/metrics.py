"""Scrape a process's Prometheus metrics and read its samples, as Prometheus itself would."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def scrape(url: str) -> list[Sample]:
    """Every sample `url` (a /metrics endpoint) exposes now."""
    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def scrape_if_up(url: str) -> list[Sample]:
    """`scrape(url)`, or no sample while nothing listens there yet (a process still starting)."""
    try:
        return scrape(url)
    except httpx.TransportError:
        return []


def samples(scraped: list[Sample], name: str, **labels: str) -> list[Sample]:
    """The samples named `name` whose labels include `labels`."""
    return [s for s in scraped if s.name == name and _has(s.labels, labels)]


def value(scraped: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named `name` with `labels` (0 when there is none)."""
    return sum(s.value for s in samples(scraped, name, **labels))


def _has(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())
