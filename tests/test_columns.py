"""Table intake helpers: the two checks of text ids agree."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from levalign._columns import _text_ids_checked_by_arrow, _text_ids_checked_in_python

_ID = st.one_of(
    st.none(),
    st.sampled_from(["a", "b", "1", " ", "", "x y"]),
    st.integers(0, 3),
    st.sampled_from([1.0, math.nan]),
)


@given(values=st.lists(_ID, min_size=1, max_size=12))
def test_python_and_arrow_checks_of_text_ids_agree(values):
    # two implementations of one rule: missing (None, NaN, blank) per row, and whether the ids
    # are distinct as text (1 and "1" print alike: one id)
    ids = np.asarray(values, dtype=object)
    missing_py, unique_py = _text_ids_checked_in_python(ids.tolist())
    missing_arrow, unique_arrow = _text_ids_checked_by_arrow(ids)
    np.testing.assert_array_equal(missing_py, missing_arrow)
    if not missing_py.any():
        assert unique_py == unique_arrow


def test_a_small_json_cohort_is_checked_without_importing_pandas():
    code = (
        "import sys, numpy as np\n"
        "from levalign._columns import checked_ids\n"
        "checked_ids(np.array(['a', 'b'], dtype=object))\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
