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
        debug_assert!(legend[0].1 > plot[1].1, "the legend hides no data");
        Figure { svg, plot, legend }
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
            (y_lo..y_hi).log_scale().with_key_points(y_ticks(y_lo, y_hi)),
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
        (WIDTH as i32 - MARGIN, MARGIN / 2 + LEGEND_LINE * series.len() as i32 + 4),
    ];
    lower.draw(&Rectangle::new(band, BLACK.stroke_width(1)))?;
    for (i, s) in series.iter().enumerate() {
        let (x, y) = (band[0].0 + 10, band[0].1 + 2 + LEGEND_LINE * i as i32 + LEGEND_LINE / 2);
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
