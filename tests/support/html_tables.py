"""Reads an HTML page's tables as a reader sees them: heading -> rows of cell texts."""

from html.parser import HTMLParser
from typing import Dict, List


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: Dict[str, List[List[str]]] = {}
        self.headings: List[str] = []
        self._heading = None
        self._rows = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag in ('h1', 'h2', 'h3'):
            self._heading = ''
        elif tag == 'table':
            self._rows = []
        elif tag == 'tr' and self._rows is not None:
            self._rows.append([])
        elif tag in ('td', 'th') and self._rows is not None:
            self._cell = ''

    def handle_endtag(self, tag):
        if tag in ('h1', 'h2', 'h3') and self._heading is not None:
            self.headings.append(self._heading.strip())
            self._heading = None
        elif tag in ('td', 'th') and self._cell is not None:
            self._rows[-1].append(self._cell.strip())
            self._cell = None
        elif tag == 'table' and self._rows is not None:
            self.tables[self.headings[-1] if self.headings else ''] = self._rows
            self._rows = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data
        if self._cell is not None:
            self._cell += data


def read_tables(html_text: str) -> Dict[str, List[List[str]]]:
    """Each table of the page under the heading before it (header row first)."""
    parser = _Tables()
    parser.feed(html_text)
    return parser.tables


def read_headings(html_text: str) -> List[str]:
    parser = _Tables()
    parser.feed(html_text)
    return parser.headings
