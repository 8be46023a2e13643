//! The SVG latency plot (`--svg`): latency in ms (log) against the percentile on the
//! usual HDR x-axis 1/(1−q) (log), so the tail gets as much room as the body; one line
//! for every push and, when a run mixes traffic classes, one per class.
//!
//! The figure is laid out first ([`Figure`]: the plot area, the legend band, every
//! text with the box it takes) and written out second, so that what a reader needs is
//! checked rather than hoped for: every text lies inside the picture, the legend is a
//! band of its own below the axes where it hides no data, and the p50 of all pushes is
//! a dashed line across the plot with its value beside it. Text widths are estimated
//! (0.6 em a character, wider than the average sans-serif glyph), which is what keeps
//! long labels inside.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::{fmt_ms, Latency};

/// Picture width, px.
const WIDTH: f64 = 900.0;
/// Plot area: left edge (room for the y tick labels and the vertical axis title),
/// top edge (room for the title), right margin (room for the p50 label), height.
const PLOT_LEFT: f64 = 86.0;
const PLOT_TOP: f64 = 48.0;
const PLOT_RIGHT_MARGIN: f64 = 124.0;
const PLOT_HEIGHT: f64 = 340.0;
/// One legend line, px.
const LEGEND_LINE: f64 = 20.0;
/// Estimated advance of one character, in em.
const CHAR_EM: f64 = 0.6;
/// Colours of the lines: all pushes first, then the classes in order.
const COLOURS: [&str; 4] = ["#1f4e9c", "#d95f02", "#1b9e77", "#7570b3"];

/// One line of the plot: a name for the legend, its percentiles and its histogram.
pub(crate) struct Series<'a> {
    pub name: &'a str,
    pub latency: Latency,
    pub histogram: &'a Histogram<u64>,
}

/// An axis-aligned box, px.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    fn right(self) -> f64 {
        self.x + self.w
    }

    fn bottom(self) -> f64 {
        self.y + self.h
    }

    /// Whether `self` lies entirely inside `outer`.
    pub fn inside(self, outer: Rect) -> bool {
        self.x >= outer.x
            && self.y >= outer.y
            && self.right() <= outer.right()
            && self.bottom() <= outer.bottom()
    }

    /// Whether the two boxes share any area.
    pub fn overlaps(self, other: Rect) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// One text of the figure, at its anchor point (SVG `x`, `y` of the baseline).
#[derive(Debug, Clone)]
pub(crate) struct Text {
    x: f64,
    y: f64,
    size: f64,
    anchor: Anchor,
    /// Turned 90° anticlockwise about its anchor point (the y-axis title).
    vertical: bool,
    pub text: String,
}

impl Text {
    fn new(x: f64, y: f64, size: f64, anchor: Anchor, text: impl Into<String>) -> Text {
        Text {
            x,
            y,
            size,
            anchor,
            vertical: false,
            text: text.into(),
        }
    }

    /// The box the text takes (estimated width, ascent 0.8 em, descent 0.25 em).
    pub fn bounds(&self) -> Rect {
        let len = self.text.chars().count() as f64 * CHAR_EM * self.size;
        let before = match self.anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => len / 2.0,
            Anchor::End => len,
        };
        let (ascent, descent) = (0.8 * self.size, 0.25 * self.size);
        if self.vertical {
            // Reads upwards from the anchor: along −y; the glyphs' tops point to −x.
            Rect {
                x: self.x - ascent,
                y: self.y - (len - before),
                w: ascent + descent,
                h: len,
            }
        } else {
            Rect {
                x: self.x - before,
                y: self.y - ascent,
                w: len,
                h: ascent + descent,
            }
        }
    }

    fn write(&self, svg: &mut String, fill: &str) {
        let anchor = match self.anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let turn = if self.vertical {
            format!(r#" transform="rotate(-90 {:.1} {:.1})""#, self.x, self.y)
        } else {
            String::new()
        };
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-family="sans-serif" font-size="{}" text-anchor="{anchor}" fill="{fill}"{turn}>{}</text>"#,
            self.x,
            self.y,
            self.size,
            escape(&self.text)
        );
    }
}

/// A log scale from `lo..hi` (both > 0) onto `from..to` px.
#[derive(Debug, Clone, Copy)]
struct Log {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl Log {
    fn px(self, v: f64) -> f64 {
        let t = (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10());
        self.from + t.clamp(0.0, 1.0) * (self.to - self.from)
    }
}

/// The laid-out plot, ready to be written as SVG.
pub(crate) struct Figure {
    /// The whole picture (the SVG `viewBox`).
    view: Rect,
    /// The axes' box, where the data is.
    plot: Rect,
    /// The legend's band, below the axes.
    legend: Rect,
    /// y of the p50 line (px), when there are samples.
    p50_y: Option<f64>,
    /// The p50 of all pushes, ms.
    p50_ms: Option<f64>,
    /// Every text: the title, tick labels, axis titles, legend, p50 label.
    texts: Vec<Text>,
    /// Grid, axes, lines and marks, as SVG elements.
    shapes: String,
}

impl Figure {
    /// Lay out `series` (the first is every push; the others are drawn beside it).
    pub fn new(title: &str, series: &[Series<'_>]) -> Figure {
        let points: Vec<Vec<(f64, f64)>> = series.iter().map(|s| points(s.histogram)).collect();
        let all = points.iter().flatten();
        let x_max = all.clone().map(|p| p.0).fold(10.0, f64::max);
        let x_max = decade(x_max, true);
        let (y_lo, y_hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
        let (y_lo, y_hi) = if y_lo > y_hi {
            (0.1, 10.0)
        } else {
            let lo = decade(y_lo, false);
            (lo, decade(y_hi * 1.05, true).max(lo * 10.0))
        };
        let plot = Rect {
            x: PLOT_LEFT,
            y: PLOT_TOP,
            w: WIDTH - PLOT_LEFT - PLOT_RIGHT_MARGIN,
            h: PLOT_HEIGHT,
        };
        let xs = Log {
            lo: 1.0,
            hi: x_max,
            from: plot.x,
            to: plot.right(),
        };
        let ys = Log {
            lo: y_lo,
            hi: y_hi,
            from: plot.bottom(),
            to: plot.y,
        };
        let legend = Rect {
            x: PLOT_LEFT,
            y: plot.bottom() + 56.0,
            w: plot.w,
            h: 10.0 + LEGEND_LINE * series.len().max(1) as f64,
        };
        let view = Rect {
            x: 0.0,
            y: 0.0,
            w: WIDTH,
            h: legend.bottom() + 12.0,
        };
        let mut f = Figure {
            view,
            plot,
            legend,
            p50_y: None,
            p50_ms: None,
            texts: Vec::new(),
            shapes: String::new(),
        };
        f.texts
            .push(Text::new(WIDTH / 2.0, 28.0, 18.0, Anchor::Middle, title));
        f.axes(xs, ys);
        for (i, (s, pts)) in series.iter().zip(&points).enumerate() {
            f.line(pts, xs, ys, COLOURS[i % COLOURS.len()]);
            f.legend_entry(i, s);
        }
        match series.first() {
            Some(s) if !s.histogram.is_empty() => {
                let us = s.latency.p50;
                f.p50_mark(us, ys.px((us as f64 / 1e3).max(y_lo)));
            }
            _ => f.texts.push(Text::new(
                plot.x + plot.w / 2.0,
                plot.y + plot.h / 2.0,
                14.0,
                Anchor::Middle,
                "no latency samples",
            )),
        }
        debug_assert!(!f.legend.overlaps(f.plot), "the legend hides no data");
        debug_assert!(
            f.texts.iter().all(|t| t.bounds().inside(f.view)),
            "every text is inside the picture"
        );
        f
    }

    /// The grid, tick labels and axis titles.
    fn axes(&mut self, xs: Log, ys: Log) {
        let p = self.plot;
        let grid = |s: &mut String, x1: f64, y1: f64, x2: f64, y2: f64| {
            let _ = writeln!(
                s,
                r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#dddddd"/>"##
            );
        };
        for x in x_ticks(xs.hi) {
            let px = xs.px(x);
            grid(&mut self.shapes, px, p.y, px, p.bottom());
            let label = format!("{}%", trim(&format!("{:.4}", 100.0 * (1.0 - 1.0 / x))));
            let t = Text::new(px, p.bottom() + 18.0, 12.0, Anchor::Middle, label);
            self.texts.push(t);
        }
        for y in y_ticks(ys.lo, ys.hi) {
            let py = ys.px(y);
            grid(&mut self.shapes, p.x, py, p.right(), py);
            let t = Text::new(p.x - 6.0, py + 4.0, 12.0, Anchor::End, tick_ms(y));
            self.texts.push(t);
        }
        let _ = writeln!(
            self.shapes,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="black"/>"#,
            p.x, p.y, p.w, p.h
        );
        self.texts.push(Text::new(
            p.x + p.w / 2.0,
            p.bottom() + 40.0,
            13.0,
            Anchor::Middle,
            "percentile",
        ));
        let mut y_title = Text::new(18.0, p.y + p.h / 2.0, 13.0, Anchor::Middle, "latency (ms)");
        y_title.vertical = true;
        self.texts.push(y_title);
    }

    fn line(&mut self, pts: &[(f64, f64)], xs: Log, ys: Log, colour: &str) {
        if pts.is_empty() {
            return;
        }
        let mut d = String::with_capacity(pts.len() * 16);
        for (x, y) in pts {
            let _ = write!(d, "{:.1},{:.1} ", xs.px(*x), ys.px(*y));
        }
        let _ = writeln!(
            self.shapes,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            d.trim_end()
        );
    }

    fn legend_entry(&mut self, i: usize, s: &Series<'_>) {
        let y = self.legend.y + 5.0 + LEGEND_LINE * (i as f64 + 0.5);
        let x = self.legend.x + 10.0;
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            self.shapes,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="2"/>"#,
            x + 24.0
        );
        let l = &s.latency;
        let label = format!(
            "{}: p50 {} · p90 {} · p99 {} · p99.9 {} · max {} ms ({} pushes)",
            s.name,
            fmt_ms(l.p50),
            fmt_ms(l.p90),
            fmt_ms(l.p99),
            fmt_ms(l.p999),
            fmt_ms(l.max),
            s.histogram.len()
        );
        self.texts
            .push(Text::new(x + 32.0, y + 4.0, 12.0, Anchor::Start, label));
    }

    /// A dashed line across the plot at the p50 of all pushes, its value to the right.
    fn p50_mark(&mut self, us: u64, y: f64) {
        let p = self.plot;
        let _ = writeln!(
            self.shapes,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#555555" stroke-dasharray="6 4" class="p50"/>"##,
            p.x,
            p.right()
        );
        let label = format!("p50 {} ms", fmt_ms(us));
        self.texts.push(Text::new(
            p.right() + 6.0,
            y + 4.0,
            12.0,
            Anchor::Start,
            label,
        ));
        self.p50_y = Some(y);
        self.p50_ms = Some(us as f64 / 1e3);
    }

    pub fn to_svg(&self) -> String {
        let v = self.view;
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#,
            w = v.w,
            h = v.h
        );
        svg.push('\n');
        let _ = writeln!(
            svg,
            r#"<rect x="0" y="0" width="{}" height="{}" fill="white"/>"#,
            v.w, v.h
        );
        let l = self.legend;
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="white" stroke="black" class="legend"/>"#,
            l.x, l.y, l.w, l.h
        );
        svg.push_str(&self.shapes);
        for t in &self.texts {
            t.write(&mut svg, "black");
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// The plot's points of `h`: (1/(1−q), ms). The last quantile is 1 − 1/n: one sample
/// in n is the maximum.
fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let top = 1.0 - 1.0 / h.len().max(2) as f64;
    h.iter_quantiles(20)
        .map(|v| {
            let q = v.quantile_iterated_to().min(top);
            let ms = v.value_iterated_to().max(1) as f64 / 1e3;
            (1.0 / (1.0 - q), ms)
        })
        .collect()
}

/// Percentile ticks: 0%, 50%, then 90%, 99%, 99.9%, ... up to `x_max`.
fn x_ticks(x_max: f64) -> Vec<f64> {
    let mut ticks = vec![1.0, 2.0];
    let mut x = 10.0;
    while x <= x_max * 1.0001 {
        ticks.push(x);
        x *= 10.0;
    }
    ticks
}

/// Latency ticks: every decade, and 2 and 5 within each when there are few decades.
fn y_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (hi / lo).log10().round() as i32;
    let steps: &[f64] = if decades <= 3 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let mut ticks = Vec::new();
    for d in 0..=decades {
        for s in steps {
            let v = lo * 10f64.powi(d) * s;
            if v <= hi * 1.0001 {
                ticks.push(v);
            }
        }
    }
    ticks
}

/// A tick value in ms, without trailing zeros (`0.05`, `2`, `500`).
fn tick_ms(ms: f64) -> String {
    trim(&format!("{ms:.3}")).to_string()
}

/// `s` without the trailing zeros of its fraction (`"90.0000"` → `"90"`, `"0.0000"` →
/// `"0"`).
fn trim(s: &str) -> &str {
    if !s.contains('.') {
        return s;
    }
    match s.trim_end_matches('0').trim_end_matches('.') {
        "" => "0",
        t => t,
    }
}

/// The power of ten at or below `v` (at or above with `up`), robust to the rounding of
/// `log10` on exact powers.
fn decade(v: f64, up: bool) -> f64 {
    let l = v.log10();
    10f64.powf(if up {
        (l - 1e-9).ceil()
    } else {
        (l + 1e-9).floor()
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::histogram;

    fn hist(us: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = histogram();
        for v in us {
            h.record(v).unwrap();
        }
        h
    }

    fn series<'a>(name: &'a str, h: &'a Histogram<u64>) -> Series<'a> {
        Series {
            name,
            latency: Latency::of(h),
            histogram: h,
        }
    }

    /// A mixed run's figure: every push, and three classes far apart.
    fn mixed_figure(all: &Histogram<u64>, classes: &[Histogram<u64>; 3]) -> Figure {
        let mut s = vec![series("all", all)];
        for (name, h) in ["group", "peer", "call"].into_iter().zip(classes) {
            s.push(series(name, h));
        }
        Figure::new("fanfare-loadgen mixed: end-to-end push latency", &s)
    }

    fn mixed() -> (Histogram<u64>, [Histogram<u64>; 3]) {
        let classes = [
            hist((1..=5_000).map(|i| 20_000 + i * 40)),
            hist((1..=2_000).map(|i| 300 + i)),
            hist((1..=200).map(|i| 900 + 10 * i)),
        ];
        let mut all = histogram();
        for h in &classes {
            all.add(h).unwrap();
        }
        (all, classes)
    }

    #[test]
    fn every_text_of_the_plot_lies_inside_the_picture() {
        let (all, classes) = mixed();
        let one = hist([1, 1, 1]);
        let empty = histogram();
        let figures = [
            mixed_figure(&all, &classes),
            Figure::new("one sample value", &[series("all", &one)]),
            Figure::new("no samples", &[series("all", &empty)]),
        ];
        for f in figures {
            assert!(f.texts.len() > 5);
            for t in &f.texts {
                assert!(
                    t.bounds().inside(f.view),
                    "{:?} at {:?} leaves {:?}",
                    t.text,
                    t.bounds(),
                    f.view
                );
            }
            let svg = f.to_svg();
            assert_eq!(svg.matches("<text ").count(), f.texts.len());
            assert!(svg.contains(&format!(r#"viewBox="0 0 {} {}""#, f.view.w, f.view.h)));
        }
    }

    #[test]
    fn the_legend_is_a_band_of_its_own_below_the_plot() {
        let (all, classes) = mixed();
        let f = mixed_figure(&all, &classes);
        assert!(!f.legend.overlaps(f.plot), "{:?} {:?}", f.legend, f.plot);
        assert!(f.legend.inside(f.view));
        let entries: Vec<&Text> = f
            .texts
            .iter()
            .filter(|t| t.text.contains("pushes)"))
            .collect();
        assert_eq!(entries.len(), 4, "all and the three classes");
        for (t, name) in entries.iter().zip(["all:", "group:", "peer:", "call:"]) {
            assert!(t.text.starts_with(name), "{}", t.text);
            assert!(
                t.bounds().inside(f.legend),
                "{:?} outside the legend",
                t.text
            );
            assert!(!t.bounds().overlaps(f.plot));
        }
        // No text but the "no samples" note is drawn over the data.
        assert!(f.texts.iter().all(|t| !t.bounds().overlaps(f.plot)));
    }

    #[test]
    fn the_p50_of_all_pushes_is_marked_at_its_latency() {
        let h = hist(1..=1_000); // p50 = 500 µs = 0.5 ms
        let f = Figure::new("peer", &[series("all", &h)]);
        assert_eq!(f.p50_ms, Some(0.5));
        // The y scale runs over whole decades: 0.001 ms .. 10 ms here (1 µs .. 1 ms
        // of samples, ×1.05 headroom), log, top to bottom.
        let (lo, hi) = (0.001f64, 10.0f64);
        let t = (0.5f64.log10() - lo.log10()) / (hi.log10() - lo.log10());
        let want = f.plot.bottom() - t * f.plot.h;
        let y = f.p50_y.expect("a p50 mark");
        assert!((y - want).abs() < 0.01, "p50 at y {y}, want {want}");
        let svg = f.to_svg();
        assert!(svg.contains(&format!(r#"y1="{y:.1}" x2="#)), "{svg}");
        assert!(svg.contains(r#"class="p50""#));
        let label = f.texts.iter().find(|t| t.text == "p50 0.500 ms");
        let label = label.expect("the p50 value is written beside its line");
        assert!((label.bounds().y - (y - 5.6)).abs() < 1.0);
    }

    #[test]
    fn the_axes_are_in_ms_and_percentiles() {
        let h = hist((1..=10_000).map(|i| i * 10));
        let f = Figure::new("peer", &[series("all", &h)]);
        let texts: Vec<&str> = f.texts.iter().map(|t| t.text.as_str()).collect();
        for want in [
            "latency (ms)",
            "percentile",
            "50%",
            "99.9%",
            "0.01",
            "1",
            "100",
        ] {
            assert!(texts.contains(&want), "{want:?} not in {texts:?}");
        }
        assert!(!texts.iter().any(|t| t.contains("µs")), "{texts:?}");
    }
}
