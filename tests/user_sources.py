"""A source written outside the package: the demo faces with the landmarks of every third face
moved down by 70% of the image, so that its parts fall mostly outside the image and are marked
missing. The images and their keys are the demo's, so it describes itself as the demo source:
members trained on the demo faces pass the ensemble's leak check on it."""

from __future__ import annotations

from lightning_fer.data.sources import SyntheticSource


class ShiftedLandmarks(SyntheticSource):
    def load(self):
        records, classes, report = super().load()
        for i, r in enumerate(records):
            if i % 3 == 0:
                r.landmarks = r.landmarks.copy()
                r.landmarks[:, 1] += 0.7 * self.kwargs["image_size"]
        return records, classes, report

    def describe(self) -> str:
        return f"SyntheticSource({self.root})"
