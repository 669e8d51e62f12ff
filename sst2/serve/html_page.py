"""The report's HTML parts: tables whose cells are escaped unless marked, embedded
images, and the page's style (no network, no JavaScript).

Example:
    >>> table(["class", "F1"], [("<b>", "0.91"), (Markup("<i>x</i>"), 1)])
    '<table><tr><th>class</th><th>F1</th></tr><tr><td>&lt;b&gt;</td><td>0.91</td></tr><tr><td><i>x</i></td><td>1</td></tr></table>'
"""

import html


class Markup(str):
    """A table cell's HTML, written as it is (any other cell is escaped)."""


def cell(value) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value))


def table(header: list | None, rows: list) -> str:
    head = ("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"
            if header else "")
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table>{head}{body}</table>"


def image(uri: str, alt: str) -> str:
    """An embedded picture (a data URI, `sst2.fit.figures`), described by `alt`."""
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
         "padding:4px 8px;text-align:left;vertical-align:top}img{max-width:100%;margin:.5em}")
