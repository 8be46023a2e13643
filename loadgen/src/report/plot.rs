//! The SVG latency plot (`--svg`), drawn with `plotters`: latency in ms (log) against
//! the percentile on the usual HDR x-axis 1/(1−q) (log), so the tail gets as much room
//! as the body; one line for every push and, when a run mixes traffic classes, one per
//! class.
//!
//! The picture is split in two: the chart on top (with room on its right for the label
//! of the p50 of all pushes, a dashed line across the plot), and the legend in a band of
//! its own below, where it hides no data. plotters only estimates text widths (no font
//! is loaded), so the legend and p50 texts get generous room of their own; the tests
//! parse the SVG and check every text against a wider estimate than plotters'.

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{fmt_ms, Latency};

/// Picture width, px.
const WIDTH: u32 = 900;
/// Height of the chart (title, axes, tick labels, axis titles), px.
const CHART_HEIGHT: u32 = 460;
/// Room right of the plot for the p50 label, px.
const P50_ROOM: u32 = 130;
/// Outer margin, px; the legend band's inset from the picture's sides.
const MARGIN: i32 = 12;
/// One legend line, px.
const LEGEND_LINE: i32 = 20;
/// Colours of the lines: all pushes first, then the classes in order.
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x4e, 0x9c),
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0x75, 0x70, 0xb3),
];
/// The p50 line and its label.
const P50_COLOUR: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// One line of the plot: a name for the legend, its percentiles and its histogram.
pub(crate) struct Series<'a> {
    pub name: &'a str,
    pub latency: Latency,
    pub histogram: &'a Histogram<u64>,
}

/// A box in pixels: top-left and bottom-right corners.
type Px = [(i32, i32); 2];

/// The drawn plot.
pub(crate) struct Figure {
    svg: String,
    /// Where the data is.
    plot: Px,
    /// The legend's band, below the plot.
    legend: Px,
}

impl Figure {
    /// Draw `series` (the first is every push; the others are drawn beside it).
    pub fn new(title: &str, series: &[Series<'_>]) -> Figure {
        let height = CHART_HEIGHT + 2 * MARGIN as u32 + LEGEND_LINE as u32 * series.len() as u32;
        let mut svg = String::new();
        let (plot, legend) = {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
            let drawn = draw(&root, title, series).and_then(|l| root.present().map(|()| l));
            drawn.expect("drawing into a String with estimated fonts cannot fail")
        };
        let f = Figure { svg, plot, legend };
        debug_assert!(f.legend[0].1 > f.plot[1].1, "the legend hides no data");
        f
    }

    pub fn to_svg(&self) -> String {
        self.svg.clone()
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult<T> = Result<T, DrawingAreaErrorKind<std::io::Error>>;

/// Draw the chart and the legend on `root`; the plot's and the legend's boxes.
fn draw(root: &Area<'_>, title: &str, series: &[Series<'_>]) -> DrawResult<(Px, Px)> {
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(CHART_HEIGHT);
    let points: Vec<Vec<(f64, f64)>> = series.iter().map(|s| points(s.histogram)).collect();
    let all = points.iter().flatten();
    let x_max = decade(all.clone().map(|p| p.0).fold(10.0, f64::max), true);
    let (y_lo, y_hi) = match all.fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    }) {
        (lo, hi) if lo > hi => (0.1, 10.0),
        (lo, hi) => {
            let lo = decade(lo, false);
            (lo, decade(hi * 1.05, true).max(lo * 10.0))
        }
    };
    let mut chart = ChartBuilder::on(&upper)
        .caption(title, ("sans-serif", 22))
        .margin(MARGIN as u32)
        .margin_right(P50_ROOM)
        .x_label_area_size(52)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (1.0..x_max).log_scale().with_key_points(x_ticks(x_max)),
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(y_ticks(y_lo, y_hi)),
        )?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{}%", trim(&format!("{:.4}", 100.0 * (1.0 - 1.0 / x)))))
        .y_label_formatter(&|y| tick_ms(*y))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .light_line_style(TRANSPARENT)
        .draw()?;
    for (i, pts) in points.iter().enumerate() {
        let style = COLOURS[i % COLOURS.len()].stroke_width(2);
        chart.draw_series(LineSeries::new(pts.iter().copied(), style))?;
    }
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let plot = [(xr.start, yr.start), (xr.end, yr.end)];
    let font = |size| ("sans-serif", size).into_font().color(&BLACK);
    let left_middle = Pos::new(HPos::Left, VPos::Center);
    match series.first() {
        Some(s) if !s.histogram.is_empty() => {
            let ms = (s.latency.p50 as f64 / 1e3).max(y_lo);
            let style = P50_COLOUR.stroke_width(1);
            chart.draw_series(DashedLineSeries::new([(1.0, ms), (x_max, ms)], 6, 4, style))?;
            let (x, y) = chart.backend_coord(&(x_max, ms));
            let label = format!("p50 {} ms", fmt_ms(s.latency.p50));
            upper.draw(&Text::new(label, (x + 6, y), font(15).pos(left_middle)))?;
        }
        _ => {
            let centre = ((xr.start + xr.end) / 2, (yr.start + yr.end) / 2);
            let style = font(17).pos(Pos::new(HPos::Center, VPos::Center));
            upper.draw(&Text::new("no latency samples", centre, style))?;
        }
    }
    // The legend, in the band below the chart (its own coordinates).
    let band = [
        (MARGIN, MARGIN / 2),
        (
            WIDTH as i32 - MARGIN,
            MARGIN / 2 + LEGEND_LINE * series.len() as i32 + 4,
        ),
    ];
    lower.draw(&Rectangle::new(band, BLACK.stroke_width(1)))?;
    for (i, s) in series.iter().enumerate() {
        let (x, y) = (
            band[0].0 + 10,
            band[0].1 + 2 + LEGEND_LINE * i as i32 + LEGEND_LINE / 2,
        );
        let colour = COLOURS[i % COLOURS.len()].stroke_width(2);
        lower.draw(&PathElement::new([(x, y), (x + 24, y)], colour))?;
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
        lower.draw(&Text::new(label, (x + 32, y), font(15).pos(left_middle)))?;
    }
    let top = CHART_HEIGHT as i32;
    let legend = [(band[0].0, band[0].1 + top), (band[1].0, band[1].1 + top)];
    Ok((plot, legend))
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

    /// A box `[x0, y0, x1, y1]`, px.
    type Bounds = [f64; 4];

    fn inside(b: Bounds, outer: Bounds) -> bool {
        b[0] >= outer[0] && b[1] >= outer[1] && b[2] <= outer[2] && b[3] <= outer[3]
    }

    fn overlaps(a: Bounds, b: Bounds) -> bool {
        a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]
    }

    fn px(b: Px) -> Bounds {
        [b[0].0, b[0].1, b[1].0, b[1].1].map(f64::from)
    }

    /// One `<text>` of the SVG.
    #[derive(Debug)]
    struct SvgText {
        text: String,
        /// The box it takes: 0.6 em a character (wider than the average sans-serif
        /// glyph, and than plotters' estimate), ascent 0.8 em, descent 0.25 em.
        bounds: Bounds,
    }

    fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        tag[at..].split('"').next()
    }

    fn num(tag: &str, name: &str) -> f64 {
        let v = attr(tag, name).unwrap_or_else(|| panic!("{name} in {tag}"));
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} in {tag}"))
    }

    fn texts(svg: &str) -> Vec<SvgText> {
        svg.split("<text")
            .skip(1)
            .map(|t| {
                let (tag, rest) = t.split_once('>').expect("a text tag ends");
                let text = rest.split("</text>").next().expect("a text element").trim();
                let text = text.replace("&amp;", "&").replace("&lt;", "<");
                let (x, y, size) = (num(tag, "x"), num(tag, "y"), num(tag, "font-size"));
                let len = text.chars().count() as f64 * 0.6 * size;
                let before = match attr(tag, "text-anchor") {
                    Some("middle") => len / 2.0,
                    Some("end") => len,
                    _ => 0.0,
                };
                let dy = match attr(tag, "dy") {
                    Some("0.76em") => 0.76 * size,
                    Some("0.5ex") => 0.25 * size,
                    Some("-0.5ex") => -0.25 * size,
                    _ => 0.0,
                };
                // Relative to the anchor point, before any rotation.
                let (u0, u1, v0, v1) = (-before, len - before, dy - 0.8 * size, dy + 0.25 * size);
                let bounds = match attr(tag, "transform") {
                    None => [x + u0, y + v0, x + u1, y + v1],
                    // Turned a quarter anticlockwise: (u, v) → (v, −u).
                    Some(r) if r.starts_with("rotate(270") => [x + v0, y - u1, x + v1, y - u0],
                    Some(r) => panic!("unexpected transform {r}"),
                };
                SvgText { text, bounds }
            })
            .collect()
    }

    fn view_box(svg: &str) -> Bounds {
        let tag = svg.split('>').next().expect("an svg tag");
        [0.0, 0.0, num(tag, "width"), num(tag, "height")]
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
            let svg = f.to_svg();
            let view = view_box(&svg);
            assert!(svg.contains(&format!(r#"viewBox="0 0 {} {}""#, view[2], view[3])));
            let texts = texts(&svg);
            assert!(texts.len() > 5, "{texts:?}");
            for t in &texts {
                assert!(inside(t.bounds, view), "{t:?} leaves {view:?}");
            }
        }
    }

    #[test]
    fn the_legend_is_a_band_of_its_own_below_the_plot() {
        let (all, classes) = mixed();
        let f = mixed_figure(&all, &classes);
        let (plot, legend) = (px(f.plot), px(f.legend));
        assert!(legend[1] > plot[3], "{legend:?} below {plot:?}");
        assert!(inside(legend, view_box(&f.svg)));
        let texts = texts(&f.svg);
        let entries: Vec<&SvgText> = texts
            .iter()
            .filter(|t| t.text.contains("pushes)"))
            .collect();
        assert_eq!(entries.len(), 4, "all and the three classes");
        for (t, name) in entries.iter().zip(["all:", "group:", "peer:", "call:"]) {
            assert!(t.text.starts_with(name), "{}", t.text);
            assert!(
                inside(t.bounds, legend),
                "{t:?} outside the legend {legend:?}"
            );
        }
        // No text is drawn over the data.
        for t in &texts {
            assert!(!overlaps(t.bounds, plot), "{t:?} over the plot {plot:?}");
        }
    }

    #[test]
    fn the_p50_of_all_pushes_is_a_dashed_line_across_the_plot_with_its_value() {
        let h = hist(1..=1_000); // p50 = 500 µs = 0.5 ms
        let f = Figure::new("peer", &[series("all", &h)]);
        let plot = px(f.plot);
        // The y scale runs over whole decades: 0.001 ms .. 10 ms here (1 µs .. 1 ms
        // of samples, ×1.05 headroom), log, top to bottom.
        let (lo, hi) = (0.001f64, 10.0f64);
        let t = (0.5f64.log10() - lo.log10()) / (hi.log10() - lo.log10());
        let want = plot[3] - t * (plot[3] - plot[1]);
        let grey = format!("stroke=\"#{:02X}{:02X}{:02X}\"", 0x55, 0x55, 0x55);
        let dashes: Vec<Vec<(f64, f64)>> = f
            .svg
            .split("<polyline")
            .skip(1)
            .filter(|d| d.split('>').next().is_some_and(|tag| tag.contains(&grey)))
            .map(|d| {
                let points = attr(d, "points").expect("points");
                let xy = |p: &str| {
                    p.split_once(',')
                        .map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap()))
                };
                points.split_whitespace().filter_map(xy).collect()
            })
            .collect();
        assert!(dashes.len() > 10, "a dashed line: {dashes:?}\n{}", f.svg);
        let xs = dashes.iter().flatten().map(|p| p.0);
        let (left, right) = xs.fold((f64::MAX, f64::MIN), |(l, r), x| (l.min(x), r.max(x)));
        assert!(
            left - plot[0] < 8.0 && plot[2] - right < 8.0,
            "{left}..{right} across {plot:?}"
        );
        for (_, y) in dashes.iter().flatten() {
            assert!((y - want).abs() <= 1.5, "p50 at y {y}, want {want}");
        }
        let texts = texts(&f.svg);
        let label = texts.iter().find(|t| t.text == "p50 0.500 ms");
        let label = label.expect("the p50 value is written beside its line");
        let b = label.bounds;
        assert!(
            b[0] >= plot[2] && b[1] < want && want < b[3],
            "{b:?} beside y {want}"
        );
    }

    #[test]
    fn the_axes_are_in_ms_and_percentiles() {
        let h = hist((1..=10_000).map(|i| i * 10));
        let f = Figure::new("peer", &[series("all", &h)]);
        let texts: Vec<String> = texts(&f.svg).into_iter().map(|t| t.text).collect();
        for want in [
            "latency (ms)",
            "percentile",
            "50%",
            "99.9%",
            "0.01",
            "1",
            "100",
        ] {
            assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
        }
        assert!(!texts.iter().any(|t| t.contains("µs")), "{texts:?}");
    }

    /// Not a check: writes the pictures for a look (`FANFARE_PLOT_DIR=/tmp/x`).
    #[test]
    fn the_pictures_can_be_written_for_a_look() {
        let Ok(dir) = std::env::var("FANFARE_PLOT_DIR") else {
            return;
        };
        let (all, classes) = mixed();
        let one = hist(1..=1_000);
        let empty = histogram();
        let figures = [
            ("mixed", mixed_figure(&all, &classes)),
            ("one", Figure::new("peer", &[series("all", &one)])),
            ("empty", Figure::new("no samples", &[series("all", &empty)])),
        ];
        for (name, f) in figures {
            std::fs::write(format!("{dir}/{name}.svg"), f.to_svg()).unwrap();
        }
    }
}
