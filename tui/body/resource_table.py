"""ResourceTable: a table on Textual's Line API that renders only the rows on screen.

Chosen by measurement over DataTable (benchmarks/dashboard.py, benchmarks/RESULTS.md): the
rows are the view's manifests in the screen's order; a row's cells are computed when it
is drawn and cached until its manifest or the clock changes, so 100 changed brokers out of
1,000 cost the rows visible, not 100 x columns `update_cell` calls. The header row stays
at the top, the cursor stays on its key when rows move, and the scroll offset stays unless
the cursor would leave the screen. Columns drop by priority to fit the width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.views.base import SEPARATOR, Context, Manifest, View, layout


@lru_cache(maxsize=256)
def _style(style: str | Style) -> Style | None:
    if isinstance(style, Style):
        return style
    return Style.parse(style) if style else None


@dataclass(slots=True)
class _Row:
    """A drawn row: for which object and clock epoch, its cells as segments, the strip."""

    obj: Manifest
    epoch: int
    parts: list[list[Segment]]
    strip: Strip


class ResourceTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    ResourceTable { height: 1fr; scrollbar-size-vertical: 1; overflow-x: hidden; }
    ResourceTable > .resource-table--header { text-style: bold; color: $text-accent; }
    ResourceTable > .resource-table--cursor { background: $block-cursor-background; }
    """
    COMPONENT_CLASSES = {"resource-table--header", "resource-table--cursor"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", show=False),
        Binding("home,g", "edge(-1)", "Top", show=False),
        Binding("end,G", "edge(1)", "Bottom", show=False),
        Binding("enter", "choose", "Open", show=False),
    ]

    @dataclass
    class Chosen(Message):
        """Enter (or a double click) on the row `key`."""

        key: str

    def __init__(
        self,
        view: View,
        context: Callable[[], Context],
        *,
        prompt: Callable[[str], None] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._prompt = prompt  # `:` and `/` open the screen's prompt at once
        self.view = view
        self._ctx_source = context
        self._keys: list[str] = []
        self._rows: dict[str, Manifest] = {}
        self._cache: dict[str, _Row] = {}
        self._epoch = 0  # moves with the clock: timed cells are computed again
        self._cursor = 0
        self._shown: list[int] = []
        self._widths: dict[int, int] = {}
        self._layout_for = -1
        self._style_cache: Style | None = None
        self.rendered_rows = 0  # rows drawn (not served from the cache): the benchmark reads it

    # --- data -----------------------------------------------------------------------------

    @property
    def cursor_key(self) -> str:
        return self._keys[self._cursor] if 0 <= self._cursor < len(self._keys) else ""

    @property
    def row_count(self) -> int:
        return len(self._keys)

    def row_keys(self) -> list[str]:
        return list(self._keys)

    def show(self, view: View, rows: Sequence[tuple[str, Manifest]]) -> None:
        """Show `rows` in this order; a row whose manifest changed is drawn again."""
        before = self.cursor_key
        if view is not self.view:
            self.view, self._cache, self._layout_for = view, {}, -1
        fresh = dict(rows)
        for key, obj in fresh.items():
            if self._rows.get(key) is not obj:
                self._cache.pop(key, None)
        self._rows = fresh
        self._keys = [key for key, _ in rows]
        self._fit_columns()
        size = Size(self._table_width(), len(self._keys) + 1)
        if size != self.virtual_size:
            self.virtual_size = size
        index = self._keys.index(before) if before in self._rows else self._cursor
        self._place_cursor(index)
        self.refresh()

    def redraw(self) -> None:
        """The clock moved: the visible rows' timed cells (ages, scores, heartbeats) are
        computed again when drawn; the others are kept."""
        self._epoch += 1
        self.refresh()

    def select_key(self, key: str) -> None:
        if key in self._rows:
            self._place_cursor(self._keys.index(key))

    # --- layout ---------------------------------------------------------------------------

    def _table_width(self) -> int:
        return max(1, self.scrollable_content_region.width)

    def _fit_columns(self) -> None:
        fitted = {}
        for index, column in enumerate(self.view.columns):
            if column.fit:
                longest = max((len(k.rpartition("/")[2]) for k in self._keys), default=4)
                fitted[index] = max(len(column.title), min(column.width, longest))
        width = self._table_width()
        self._shown = layout(self.view.columns, width, fitted)
        widths = {i: fitted.get(i, self.view.columns[i].width) for i in self._shown}
        flex = [i for i in self._shown if self.view.columns[i].flex]
        if flex:
            rest = width - sum(w for i, w in widths.items() if i not in flex)
            widths[flex[0]] = max(8, rest - SEPARATOR * (len(self._shown) - 1))
        if widths != self._widths:
            self._widths, self._cache = widths, {}
        self._layout_for = width

    def on_resize(self, event: events.Resize) -> None:
        self._fit_columns()
        self.virtual_size = Size(self._table_width(), len(self._keys) + 1)
        self._place_cursor(self._cursor)

    # --- drawing --------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self._table_width()
        if self._layout_for != width:
            self._fit_columns()
        if y == 0:
            return self._header(width)
        index = self.scroll_offset.y + y - 1
        if index >= len(self._keys):
            return Strip.blank(width, self.rich_style)
        strip = self._row(self._keys[index], width)
        if index == self._cursor:
            strip = strip.apply_style(self.get_component_rich_style("resource-table--cursor"))
        return strip

    def _row(self, key: str, width: int) -> Strip:
        """The row's strip: from the cache, with its timed cells computed again when the
        clock moved, or drawn anew when its object changed."""
        obj, row = self._rows[key], self._cache.get(key)
        if row is not None and row.obj is obj and row.epoch == self._epoch:
            return row.strip
        ctx = self._ctx_source()
        if row is None or row.obj is not obj:
            parts = [self._part(n, i, self.view.columns[i].cell(obj, ctx)) for n, i in
                     enumerate(self._shown)]  # fmt: skip
            self.rendered_rows += 1
        else:
            parts = [
                self._part(n, i, self.view.columns[i].cell(obj, ctx))
                if self.view.columns[i].timed
                else row.parts[n]
                for n, i in enumerate(self._shown)
            ]
        strip = self._strip([s for part in parts for s in part], width)
        self._cache[key] = _Row(obj, self._epoch, parts, strip)
        return strip

    def _part(self, position: int, index: int, cell: Text) -> list[Segment]:
        """One cell as segments: the gap before it, its text truncated and padded. Plain
        text is one segment; only cells with spans (bars, sparklines) go through Rich."""
        column, size = self.view.columns[index], self._widths[index]
        cell.truncate(size, overflow="ellipsis")
        pad = " " * (size - cell.cell_len)
        gap = " " * SEPARATOR if position else ""
        if not cell.spans:
            text = gap + (pad + cell.plain if column.right else cell.plain + pad)
            style = _style(cell.style)
            if style is None or not cell.plain:
                return [Segment(text)]
            before, after = (gap + pad, "") if column.right else (gap, pad)
            return [Segment(before), Segment(cell.plain, style), Segment(after)]
        inner = [s for s in cell.render(self.app.console) if s.text]
        if column.right:
            return [Segment(gap + pad), *inner]
        return [Segment(gap), *inner, Segment(pad)]

    def _strip(self, segments: list[Segment], width: int) -> Strip:
        return Strip(segments).adjust_cell_length(width).apply_style(self._base_style())

    def _base_style(self) -> Style:
        if self._style_cache is None:
            self._style_cache = self.rich_style
        return self._style_cache

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style_cache = None
        self._cache.clear()

    def _header(self, width: int) -> Strip:
        style = self.get_component_rich_style("resource-table--header")
        parts = [self._part(n, i, Text(self.view.columns[i].title)) for n, i in
                 enumerate(self._shown)]  # fmt: skip
        return self._strip([s for part in parts for s in part], width).apply_style(style)

    # --- the cursor -----------------------------------------------------------------------

    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _place_cursor(self, index: int) -> None:
        self._cursor = max(0, min(index, len(self._keys) - 1))
        top, rows = int(self.scroll_offset.y), self._visible_rows()
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, immediate=True)
        elif self._cursor >= top + rows:
            self.scroll_to(y=self._cursor - rows + 1, animate=False, immediate=True)
        self.refresh()

    def action_move(self, delta: int) -> None:
        self._place_cursor(self._cursor + delta)

    def action_page(self, direction: int) -> None:
        self._place_cursor(self._cursor + direction * self._visible_rows())

    def action_edge(self, direction: int) -> None:
        self._place_cursor(0 if direction < 0 else len(self._keys) - 1)

    def action_choose(self) -> None:
        if self._keys:
            self.post_message(self.Chosen(self.cursor_key))

    def on_key(self, event: events.Key) -> None:
        """A key queued here before the focus moved on (k9s users type `:db⏎` in one go,
        and `:` moves the focus to the command bar) belongs to the widget focused now."""
        focused = self.screen.focused
        if event.key in ("colon", "slash") and self._prompt is not None and focused is self:
            event.stop()
            event.prevent_default()
            self._prompt(event.key)
        elif focused is not None and focused is not self:
            event.stop()
            event.prevent_default()
            focused.post_message(events.Key(event.key, event.character))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        self._place_cursor(int(self.scroll_offset.y) + event.y - 1)
        if event.chain >= 2:
            self.action_choose()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.refresh()
