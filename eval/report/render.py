"""Render the report's tables and figures as Markdown, one self-contained HTML page and CSV files.

Every string that comes from a record (model ids, revisions, package
versions, notes) is escaped. HTML goes through pandas' Styler with
``escape="html"`` and :func:`html.escape`. Markdown turns ``|``, ``<``, ``>``
and ``&`` into escapes or entities, so a cell can neither break the table nor
inject markup.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from eval.atomic import write_text_atomic
from eval.environment import PACKAGES

MISSING = "—"


def _number(value: Any, digits: int = 5, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def checkpoint_display(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Format the checkpoint table as strings and return it with a mask of each column's best value."""
    best = pd.DataFrame(False, index=table.index, columns=table.columns)
    for column in table.columns:
        values = table[column]
        if values.notna().any():
            best[column] = values == values.max()
    formatted = table.apply(lambda column: column.map(_number))
    formatted = formatted.reset_index()
    best = best.reset_index(drop=True)
    best.insert(0, "checkpoint", False)
    return formatted, best


def significance_display(table: pd.DataFrame, confidence: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Format the significance table; the mask marks rows significant after Holm's correction."""
    interval_column = f"{confidence:.0%} CI"
    rows = []
    for record in table.to_dict("records"):
        interval = (
            MISSING if pd.isna(record.get("ci_low")) else f"[{_number(record['ci_low'], signed=True)}, {_number(record['ci_high'], signed=True)}]"
        )
        significant = record.get("significant")
        if pd.isna(significant):
            significant_text = MISSING
        else:
            significant_text = "yes" if significant else "no"
        rows.append(
            {
                "candidate": record["candidate"],
                "task": record["task_name"],
                "metric": record.get("metric") or MISSING,
                "items": MISSING if pd.isna(record.get("items")) else str(int(record["items"])),
                "baseline": _number(record.get("baseline_score")),
                "candidate score": _number(record.get("candidate_score")),
                "delta": _number(record.get("delta"), signed=True),
                interval_column: interval,
                "p": _p_value(record.get("p_value")),
                "p (Holm)": _p_value(record.get("p_holm")),
                "significant": significant_text,
                "note": record.get("note") or "",
            }
        )
    formatted = pd.DataFrame(rows)
    mask = pd.DataFrame(False, index=formatted.index, columns=formatted.columns)
    if not formatted.empty:
        mask.loc[formatted["significant"] == "yes", :] = True
    return formatted, mask


def drift_display(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Format the drift table; the mask marks rows whose |delta| exceeds the tolerance."""
    varying = [name for name in PACKAGES if table[name].astype(str).nunique() > 1]
    packages = list(dict.fromkeys(["torch", "transformers", "tokenizers", "mteb", *varying]))
    rows = []
    for record in table.to_dict("records"):
        row = {"checkpoint": record["checkpoint"], "task": record["task_name"]}
        row.update({name: record[name] or MISSING for name in packages})
        row.update(
            {
                "device": record["device"],
                "dtype": record["dtype"],
                "main score": _number(record["main_score"]),
                "delta": "reference" if record["reference"] else _number(record["delta"], signed=True),
                "p": _p_value(record["p_value"]),
                "exceeds tolerance": f"yes (> {record['tolerance']:g})" if record["exceeds"] else "no",
                "note": record["note"],
            }
        )
        rows.append(row)
    formatted = pd.DataFrame(rows)
    mask = pd.DataFrame(False, index=formatted.index, columns=formatted.columns)
    if not formatted.empty:
        mask.loc[table["exceeds"].to_numpy(dtype=bool), :] = True
    return formatted, mask


def escape_markdown(text: Any) -> str:
    """Escape a table cell for GitHub Markdown: pipes, HTML-significant characters and line breaks."""
    escaped = html.escape(str(text), quote=False).replace("|", "\\|")
    return escaped.replace("\r", " ").replace("\n", " ")


def markdown_table(formatted: pd.DataFrame, marked: Optional[pd.DataFrame] = None) -> str:
    """Render a formatted table as a GitHub pipe table, marked cells in bold."""
    if formatted.empty:
        return "_(none)_"
    cells = formatted.map(escape_markdown)
    if marked is not None:
        for column in cells.columns:
            mask = marked[column].to_numpy(dtype=bool)
            cells.loc[mask, column] = cells.loc[mask, column].map(lambda text: f"**{text}**" if text and text != MISSING else text)
    header = [escape_markdown(column) for column in cells.columns]
    return cells.to_markdown(index=False, headers=header, disable_numparse=True, tablefmt="github")


def html_table(formatted: pd.DataFrame, marked: Optional[pd.DataFrame] = None, *, css_class: str = "") -> str:
    """Render a formatted table through pandas' Styler with every value and label HTML-escaped."""
    if formatted.empty:
        return "<p><em>(none)</em></p>"
    styler = formatted.style.format(escape="html").format_index(escape="html", axis=1).hide(axis="index")
    if marked is not None:
        styler = styler.apply(
            lambda _: marked.map(lambda flag: "font-weight: bold; background-color: #e8f3ea" if flag else ""), axis=None
        )
    styler = styler.set_table_attributes(f'class="{html.escape(css_class, quote=True)}"')
    return styler.to_html()


def _image_tag(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{encoded}">'


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1b1b1b; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }
th, td { border: 1px solid #c8c8c8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #ddd; margin: 8px 0; }
.note { color: #555; font-size: 13px; }
"""


def render_html(title: str, sections: Sequence[Mapping[str, Any]], summary: Sequence[str]) -> str:
    """Build the self-contained page: tables inline, figures as base64 PNG, no external resource."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{PAGE_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts.extend(f'<p class="note">{html.escape(line)}</p>' for line in summary)
    for section in sections:
        parts.append(f"<h2>{html.escape(section['heading'])}</h2>")
        parts.extend(f'<p class="note">{html.escape(line)}</p>' for line in section.get("notes", ()))
        if section.get("table") is not None:
            formatted, marked = section["table"]
            parts.append(html_table(formatted, marked, css_class=section.get("css_class", "")))
        for name, png in section.get("figures", ()):
            parts.append(_image_tag(png, section["heading"]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_markdown(title: str, sections: Sequence[Mapping[str, Any]], summary: Sequence[str]) -> str:
    """Build the Markdown report: pipe tables and links to the PNG figures written beside it."""
    lines = [f"# {escape_markdown(title)}", ""]
    lines.extend(f"{escape_markdown(line)}  " for line in summary)
    for section in sections:
        lines.extend(["", f"## {escape_markdown(section['heading'])}", ""])
        for note in section.get("notes", ()):
            lines.extend([escape_markdown(note), ""])
        if section.get("table") is not None:
            formatted, marked = section["table"]
            lines.extend([markdown_table(formatted, marked), ""])
        for name, _ in section.get("figures", ()):
            lines.extend([f"![{escape_markdown(section['heading'])}]({name})", ""])
    return "\n".join(lines).rstrip() + "\n"


def write_csv(path: Path, frame: pd.DataFrame, *, index: bool = False) -> None:
    """Write ``frame`` as CSV atomically."""
    write_text_atomic(path, frame.to_csv(index=index))
