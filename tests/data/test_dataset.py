from __future__ import annotations

import numpy as np
import pytest

from medsight.core import Case, Image, InvalidInputError
from medsight.data import Dataset, Task


def test_dataset_lookup_files_and_errors():
    cases = [Case("a", images={"image": Image(np.zeros((2, 2)))}), Case("b")]
    ds = Dataset("x", cases, task="binary", files={"a": {"image": "a.png"}})
    assert ds.task is Task.BINARY and ds.case("b") is cases[1]
    assert ds.describe("a") == "a.png" and ds.describe("b") == "b"
    assert [c.case_id for c in ds.with_cases([cases[1]])] == ["b"]
    with pytest.raises(InvalidInputError, match="repeats"):
        Dataset("x", [Case("a"), Case("a")])
    with pytest.raises(InvalidInputError, match="no case 'z'"):
        ds.case("z")
    with pytest.raises(InvalidInputError, match="task"):
        Dataset("x", [], task="regression")
