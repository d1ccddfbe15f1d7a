"""The whole of FER2013 through prepare_data() (about 2 minutes on 2 cores): marked slow."""

from __future__ import annotations

import pytest

from lightning_fer import FERDataModule


@pytest.mark.slow
def test_prepare_all_of_fer2013(fer2013_root, tmp_path):
    dm = FERDataModule("folder", root=str(fer2013_root), image_size=48,
                       records={"split_map": {"val": "test"}, "cache_dir": str(tmp_path)}, loader={"num_workers": 2})
    dm.prepare_data()
    rep = dm.index_report
    assert rep.total == 28709 + 3589 and rep.bad == 0
    assert rep.kinds["mtcnn"] + rep.kinds["template_fallback"] == rep.total
    assert rep.kinds["mtcnn"] > 0.8 * rep.total  # 84.1% measured
    dm.setup()
    assert len(dm.datasets["test"]) == 3589
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == 28709
