"""Plain-text tables that read well in a terminal and render as Markdown."""

from __future__ import annotations


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if 0 < abs(value) < 0.01 else f"{value:.3f}"
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of `rows` with one column per name in `columns`, in that order.

    Floats print with three decimals (three significant digits below 0.01), a missing key or None
    as an empty cell; a column whose values are all numbers is right-aligned. Cells are padded so
    the plain text lines up.
    """
    cells = [[_cell(row.get(name)) for name in columns] for row in rows]
    right = [all(_is_number(row[name]) for row in rows if row.get(name) is not None) for name in columns]
    widths = [max(len(name), 3, *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]

    def line(values: list[str]) -> str:
        padded = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right)) + "|"
    return "\n".join([line(list(columns)), rule, *(line(values) for values in cells)])
