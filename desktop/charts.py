"""Charts (Qt Charts): the live samples of a running benchmark, and the comparison charts of results."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from PySide6.QtCharts import (QBarCategoryAxis, QBarSet, QChart, QChartView, QHorizontalBarSeries, QLineSeries,
                              QLogValueAxis, QScatterSeries, QValueAxis)
from PySide6.QtCore import QMargins, QPointF, Qt
from PySide6.QtGui import QCursor, QPainter
from PySide6.QtWidgets import QToolTip, QWidget

from desktop.theme import is_dark

log = logging.getLogger(__name__)


def _chart(title: str) -> QChart:
    chart = QChart()
    chart.setTheme(QChart.ChartTheme.ChartThemeDark if is_dark() else QChart.ChartTheme.ChartThemeLight)
    chart.setTitle(title)
    chart.setMargins(QMargins(4, 4, 4, 4))
    chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)  # animations cost frames while benchmarking
    chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
    if is_dark():
        chart.setBackgroundRoundness(0)
    return chart


class ChartView(QChartView):
    """A chart view with antialiasing and a sensible minimum size."""

    def __init__(self, chart: QChart, parent: QWidget | None = None) -> None:
        super().__init__(chart, parent)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        # Small enough that four fit a 1024×700 screen's Results page; the page scrolls when they are taller.
        self.setMinimumSize(260, 190)


class LiveChart(ChartView):
    """Tokens per second of each repetition as the samples arrive, one line per test."""

    def __init__(self, parent: QWidget | None = None) -> None:
        chart = _chart("Live samples")
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignRight)  # one short line per test fits best beside
        super().__init__(chart, parent)
        self.x_axis = QValueAxis()
        self.x_axis.setTitleText("repetition")
        self.x_axis.setLabelFormat("%d")
        self.x_axis.setRange(1, 2)
        self.x_axis.setTickCount(2)
        # pp and tg rates differ tenfold or more: a log axis keeps both readable.
        self.y_axis = QLogValueAxis()
        self.y_axis.setTitleText("tokens/s")
        self.y_axis.setLabelFormat("%g")
        self.y_axis.setRange(1, 1000)
        chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        self.series: dict[str, QLineSeries] = {}
        self.count = 0
        self._low, self._high, self._max_x = math.inf, 0.0, 2

    def clear(self) -> None:
        for series in self.series.values():
            self.chart().removeSeries(series)
        self.series.clear()
        self.count = 0
        self._low, self._high, self._max_x = math.inf, 0.0, 2
        self.x_axis.setRange(1, 2)
        self.x_axis.setTickCount(2)
        self.y_axis.setRange(1, 1000)

    def add_sample(self, name: str, repetition: int, tokens_per_s: float) -> None:
        if tokens_per_s <= 0:
            return
        series = self.series.get(name)
        if series is None:
            series = QLineSeries()
            series.setName(name)
            series.setPointsVisible(True)
            self.chart().addSeries(series)
            series.attachAxis(self.x_axis)
            series.attachAxis(self.y_axis)
            self.series[name] = series
        series.append(QPointF(repetition, tokens_per_s))
        self.count += 1
        self._low, self._high = min(self._low, tokens_per_s), max(self._high, tokens_per_s)
        self._max_x = max(self._max_x, repetition)
        self.x_axis.setRange(1, self._max_x)
        self.x_axis.setTickCount(self._max_x if self._max_x <= 11 else 11)
        self.y_axis.setRange(10 ** math.floor(math.log10(self._low)), 10 ** math.ceil(math.log10(self._high * 1.01)))


def bar_chart(title: str, categories: Sequence[str], groups: Mapping[str, Sequence[float]], *,
              unit: str, tips: Sequence[str] = ()) -> ChartView:
    """Horizontal bars per category (a compared row), one bar set per group (a test or memory kind).

    Horizontal, so a row's name is read on one line beside its bars; names are made unique because Qt's
    category axis silently drops a repeated one and the bars after it lose their row. `tips` are the full
    names, shown when the pointer is on a bar."""
    chart = _chart(title)
    series = QHorizontalBarSeries()
    top = 0.0
    for name, values in groups.items():
        bar_set = QBarSet(name)
        for value in values:
            bar_set.append(float(value))
            top = max(top, float(value))
        series.append(bar_set)
    chart.addSeries(series)
    names = unique_short(list(categories), 36)
    full = list(tips) or list(categories)

    def hovered(status: bool, index: int, bar_set: QBarSet) -> None:
        if status and 0 <= index < len(full):
            QToolTip.showText(QCursor.pos(), f"{full[index]}\n{bar_set.label()}: {bar_set.at(index):.4g} {unit}")
        else:
            QToolTip.hideText()

    series.hovered.connect(hovered)
    y_axis = QBarCategoryAxis()
    y_axis.append(names)
    y_axis.setReverse(True)  # the first row at the top, as in the table
    y_axis.setTruncateLabels(False)  # Qt's "..." would leave every name unreadable; ours are short already
    x_axis = QValueAxis()
    x_axis.setTitleText(unit)
    x_axis.setRange(0, top * 1.05 if top > 0 else 1)
    x_axis.applyNiceNumbers()  # round ticks (0, 10, 20, ...) instead of the data's own maximum
    x_axis.setLabelFormat("%.4g")
    chart.addAxis(x_axis, Qt.AlignmentFlag.AlignBottom)
    chart.addAxis(y_axis, Qt.AlignmentFlag.AlignLeft)
    series.attachAxis(x_axis)
    series.attachAxis(y_axis)
    view = ChartView(chart)
    # Each row needs room for its bars: a taller chart for many rows (the page scrolls).
    view.setMinimumHeight(max(190, 130 + len(names) * max(16, 9 * len(groups))))
    return view


def xy_chart(title: str, points: Mapping[str, Sequence[tuple[float, float]]], *, x_title: str, y_title: str,
             lines: bool) -> ChartView:
    """Points per named series: lines (throughput against depth) or a scatter (speed against file size)."""
    chart = _chart(title)
    x_axis, y_axis = QValueAxis(), QValueAxis()
    x_axis.setTitleText(x_title)
    y_axis.setTitleText(y_title)
    xs = [x for series in points.values() for x, _ in series] or [0.0, 1.0]
    ys = [y for series in points.values() for _, y in series] or [0.0, 1.0]
    x_span = (max(xs) - min(xs)) or max(abs(max(xs)), 1.0)
    if lines:  # depth starts at 0
        x_axis.setRange(0, max(xs) * 1.05 or 1.0)
    else:
        x_axis.setRange(max(0.0, min(xs) - 0.1 * x_span), max(xs) + 0.1 * x_span)
    y_axis.setRange(0, max(ys) * 1.05 if max(ys) > 0 else 1)
    x_axis.applyNiceNumbers()
    y_axis.applyNiceNumbers()
    x_axis.setLabelFormat("%.4g")
    y_axis.setLabelFormat("%.4g")
    chart.addAxis(x_axis, Qt.AlignmentFlag.AlignBottom)
    chart.addAxis(y_axis, Qt.AlignmentFlag.AlignLeft)
    for name, series_points in points.items():
        series = QLineSeries() if lines else QScatterSeries()
        if lines:
            series.setPointsVisible(True)
        else:
            series.setMarkerSize(11)
        series.setName(name)
        for x, y in sorted(series_points):
            series.append(QPointF(x, y))
        chart.addSeries(series)
        series.attachAxis(x_axis)
        series.attachAxis(y_axis)
    return ChartView(chart)


def short_name(name: str, limit: int = 28) -> str:
    """A name cut in the middle: the start names the model, the end holds the quant."""
    name = name.removesuffix(".gguf")
    if len(name) <= limit:
        return name
    head = (limit - 1) * 3 // 5
    return name[:head] + "…" + name[len(name) - (limit - 1 - head):]


def unique_short(names: Sequence[str], limit: int = 36) -> list[str]:
    """Names cut to `limit` that stay as distinct as the originals: equal cuts of different names get "#n"."""
    cut = [short_name(name, limit) for name in names]
    out = []
    for name, short in zip(names, cut):
        twins = [names[i] for i in range(len(names)) if cut[i] == short]
        distinct = list(dict.fromkeys(twins))
        if len(distinct) > 1:
            # Numbered by the order of first appearance, so a name repeated as such keeps one number.
            short = f"{short_name(name, limit - 4)} #{distinct.index(name) + 1}"
        out.append(short)
    # Rows that were equal to start with still need apart names on a category axis.
    repeated = {short for short in out if out.count(short) > 1}
    seen: dict[str, int] = {}
    for position, short in enumerate(out):
        if short in repeated:
            seen[short] = seen.get(short, 0) + 1
            out[position] = f"{short} ({seen[short]})"
    return out


def pareto_chart(title: str, points: Mapping[str, tuple[float, float]], front: Sequence[tuple[float, float]], *,
                 x_title: str, y_title: str) -> ChartView:
    """One scatter point per model (the legend names them) and the Pareto front as a line through its points."""
    view = xy_chart(title, {name: [xy] for name, xy in points.items()}, x_title=x_title, y_title=y_title,
                    lines=False)
    chart = view.chart()
    if len(front) > 1:
        line = QLineSeries()
        line.setName("Pareto front")
        for x, y in front:
            line.append(QPointF(x, y))
        chart.addSeries(line)
        for axis in chart.axes():
            line.attachAxis(axis)
    return view
