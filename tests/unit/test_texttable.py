"""Fixed-width text tables (probekit.texttable), shared by eval, compare and intervene summaries."""

from __future__ import annotations

import math

from probekit.texttable import fixed_width, number


def test_columns_are_as_wide_as_their_longest_cell():
    text = fixed_width(["set", "n"], [["op=2", "200"], ["pooled (op=2, op=3)", "7"]])
    assert text.splitlines() == [
        "set                  n  ",
        "op=2                 200",
        "pooled (op=2, op=3)  7  ",
    ]
    assert fixed_width(["a", "bb"], []) == "a  bb"


def test_numbers_and_missing_values():
    assert number(0.123456) == "0.1235" and number(2, 1) == "2.0"
    assert number(None) == number(math.nan) == "-"
