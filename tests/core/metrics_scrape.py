"""Read a Prometheus text exposition into {(sample name, labels): value} for assertions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class Scrape(dict):
    def value(self, name: str, **labels) -> float | None:
        return self.get((name, frozenset(labels.items())))

    def total(self, name: str, **labels) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, lab), v in self.items() if n == name and wanted <= lab)

    def labels_of(self, name: str, label: str) -> dict[str, float]:
        return {dict(lab)[label]: v for (n, lab), v in self.items() if n == name and label in dict(lab)}

    def names(self) -> set[str]:
        return {n for n, _ in self}


def parse(text: str) -> Scrape:
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            scrape[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return scrape
