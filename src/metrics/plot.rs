//! SVG line plots (plotters) for the curves a researcher would rather look at
//! than read: loss and accuracy over training, equivalence over steps, sweeps,
//! report figures.
//!
//! Every figure follows the same rules, so one that goes into a paper needs
//! no touching up: each series has its own colour (Okabe–Ito, distinguishable
//! with the common colour-vision deficiencies) *and* its own marker (so it
//! survives greyscale printing); legends sit below the data, never on it; log
//! axes carry decade ticks (`1e-16 … 1`, or 1-2-5 ticks when the data span
//! less than three decades); exact zeros on a log axis are drawn on their own
//! labelled "exact (0)" line below the decades instead of being clamped to an
//! arbitrary floor; linear axes get 1-2-5 "nice" ticks; a series may carry a
//! shaded band (± std over seeds) or, for a single point, an error bar.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// One named curve, optionally with a band (`x, lower, upper`).
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Shaded band `(x, lower, upper)`, e.g. mean ± std over seeds; drawn as
    /// an error bar when the series has a single point.
    pub band: Vec<(f64, f64, f64)>,
    /// Connect the points with a line (false: markers only, a scatter).
    pub line: bool,
    /// Draw the line dashed (reference levels, e.g. the BP accuracy).
    pub dashed: bool,
}

impl Series {
    /// A curve through `points` (non-finite points are dropped).
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points: points
                .into_iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect(),
            band: Vec::new(),
            line: true,
            dashed: false,
        }
    }

    /// A curve of means with a ± std band from `(x, mean, std)`; a std that
    /// is not finite (one seed) gives no band at that point.
    pub fn mean_std(name: impl Into<String>, points: Vec<(f64, f64, f64)>) -> Self {
        let band = points
            .iter()
            .filter(|(x, m, s)| x.is_finite() && m.is_finite() && s.is_finite())
            .map(|&(x, m, s)| (x, m - s, m + s))
            .collect();
        Self::new(name, points.iter().map(|&(x, m, _)| (x, m)).collect()).with_band(band)
    }

    /// Adds a shaded band `(x, lower, upper)`.
    pub fn with_band(mut self, band: Vec<(f64, f64, f64)>) -> Self {
        self.band = band
            .into_iter()
            .filter(|(x, lo, hi)| x.is_finite() && lo.is_finite() && hi.is_finite())
            .collect();
        self
    }

    /// Markers only, no connecting line.
    pub fn scatter(mut self) -> Self {
        self.line = false;
        self
    }

    /// Dashed line.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// A chart panel: title, axis labels, curves, optional log scale on y.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_y: bool,
}

/// Per-panel settings beyond `Panel`'s fields (kept apart so the existing
/// `Panel { .. }` literals stay valid).
#[derive(Clone, Copy, Debug, Default)]
pub struct Axes {
    /// Logarithmic x axis (presentation times, work per sample).
    pub log_x: bool,
}

/// Okabe & Ito (2008), "Color universal design": eight colours that stay
/// distinct for protan, deutan and tritan readers; yellow (hard to see on
/// white) is left last.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
    RGBColor(240, 228, 66),  // yellow
];

/// Number of distinct marker shapes. It is coprime to the palette's size,
/// so series `i` gets the pair `(i mod 8, i mod 7)`, unique for 56 series.
pub const MARKERS: usize = 7;

/// The colour and marker index of series `i`.
pub fn style(i: usize) -> (RGBColor, usize) {
    (PALETTE[i % PALETTE.len()], i % MARKERS)
}

const PANEL_W: u32 = 540;
const CHART_H: u32 = 380;
const LEGEND_ROW: u32 = 20;
const FONT: &str = "sans-serif";

/// Renders panels side by side (one row) into one SVG document.
pub fn svg(panels: &[Panel]) -> Result<String> {
    let with: Vec<(&Panel, Axes)> = panels.iter().map(|p| (p, Axes::default())).collect();
    grid(&with, panels.len().max(1))
}

/// Renders panels on a grid of `columns` columns into one SVG document.
pub fn grid(panels: &[(&Panel, Axes)], columns: usize) -> Result<String> {
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    let legend_h = panels
        .iter()
        .map(|(p, _)| legend_rows(p) as u32 * LEGEND_ROW + if has_legend(p) { 10 } else { 0 })
        .max()
        .unwrap_or(0);
    let cell_h = CHART_H + legend_h;
    let mut out = String::new();
    {
        let size = (PANEL_W * columns as u32, cell_h * rows as u32);
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let cells = root.split_evenly((rows, columns));
        for (cell, (panel, axes)) in cells.iter().zip(panels) {
            let (chart_area, legend_area) = cell.split_vertically(CHART_H);
            draw_panel(&chart_area, panel, *axes)
                .map_err(|e| anyhow!("plot {}: {e}", panel.title))?;
            draw_legend(&legend_area, panel).map_err(|e| anyhow!("legend {}: {e}", panel.title))?;
        }
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(out)
}

/// One axis: the data range in plot coordinates (log10 of the value on a
/// log axis), its ticks and labels, and where exact zeros go.
#[derive(Clone, Debug)]
struct Scale {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
    light: Vec<f64>,
    /// Plot coordinate of the "exact (0)" line (log axes with zeros).
    zero: Option<f64>,
}

impl Scale {
    /// Plot coordinate of a value (`None`: not drawable on this axis).
    fn map(&self, v: f64) -> Option<f64> {
        if !v.is_finite() {
            None
        } else if !self.log {
            Some(v)
        } else if v > 0.0 {
            Some(v.log10())
        } else if v == 0.0 {
            self.zero
        } else {
            None
        }
    }

    fn label(&self, pos: f64) -> String {
        let tol = (self.hi - self.lo).abs() * 1e-9;
        self.ticks
            .iter()
            .find(|(p, _)| (p - pos).abs() <= tol)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }

    /// The axis over `values` (the zero line is labelled `zero_label`).
    fn new(values: &[f64], log: bool, zero_label: &str) -> Scale {
        if log {
            log_scale(values, zero_label)
        } else {
            linear_scale(values)
        }
    }
}

impl Ranged for Scale {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let r = (v - self.lo) / (self.hi - self.lo);
        (f64::from(limit.0) + r * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.ticks.iter().map(|t| t.0).collect()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Scale {
    fn format_ext(&self, v: &f64) -> String {
        self.label(*v)
    }
}

/// A "nice" step (1, 2 or 5 × 10^k) giving about `target` intervals.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f < 1.5 {
        1.0
    } else if f < 3.0 {
        2.0
    } else if f < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A tick label with as many decimals as the step needs and no more.
fn fmt_tick(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let big = v.abs() >= 1e5 || step.abs() < 1e-4;
    if big {
        return sci(v);
    }
    let decimals = (-(step.log10() + 1e-9).floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

/// Scientific notation without noise: `2e-5`, `1.5e7`.
fn sci(v: f64) -> String {
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let m = m.trim_end_matches('0').trim_end_matches('.');
            format!("{m}e{e}")
        }
        None => s,
    }
}

/// Label of the power of ten `10^k`.
fn decade_label(k: i32) -> String {
    match k {
        -2 => "0.01".into(),
        -1 => "0.1".into(),
        0 => "1".into(),
        1 => "10".into(),
        2 => "100".into(),
        _ => format!("1e{k}"),
    }
}

fn linear_scale(values: &[f64]) -> Scale {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (mut lo, mut hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        (lo, hi) = (lo - pad, hi + pad);
    }
    let pad = 0.04 * (hi - lo);
    // Keep a zero origin where the data start at zero (steps, epochs).
    let lo_p = if lo >= 0.0 && lo - pad < 0.0 {
        lo.min(0.0) - pad * 0.25
    } else {
        lo - pad
    };
    let (lo, hi) = (lo_p, hi + pad);
    let step = nice_step(hi - lo, 6.0);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            (v, fmt_tick(v, step))
        })
        .collect();
    let half = step / 2.0;
    let light = ((lo / half).ceil() as i64..=(hi / half).floor() as i64)
        .map(|k| k as f64 * half)
        .collect();
    Scale {
        log: false,
        lo,
        hi,
        ticks,
        light,
        zero: None,
    }
}

fn log_scale(values: &[f64], zero_label: &str) -> Scale {
    let pos: Vec<f64> = values
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(f64::log10)
        .collect();
    let has_zero = values.contains(&0.0);
    let (lo, hi) = pos
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        // Nothing but exact zeros (or nothing): no decades to show.
        let ticks = if has_zero {
            vec![(0.0, zero_label.to_string())]
        } else {
            Vec::new()
        };
        return Scale {
            log: true,
            lo: -1.0,
            hi: 1.0,
            ticks,
            light: Vec::new(),
            zero: has_zero.then_some(0.0),
        };
    }
    let mut ticks = Vec::new();
    let mut light = Vec::new();
    let (lo, hi) = if hi - lo < 0.7 {
        // Less than a decade: ticks at m·10^k, m = 1..9 (and 1.5, 2.5, … if
        // the data span so little that fewer than three would show).
        let pad = (0.05 * (hi - lo)).max(0.02);
        let (lo, hi) = (lo - pad, hi + pad);
        for mantissas in [
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0][..],
            &[
                1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0,
            ][..],
        ] {
            ticks.clear();
            for k in (lo.floor() as i32)..=(hi.ceil() as i32) {
                for &m in mantissas {
                    let v = m * 10f64.powi(k);
                    let p = v.log10();
                    if p >= lo && p <= hi {
                        let step = if m.fract() == 0.0 { 1.0 } else { 0.1 };
                        ticks.push((p, fmt_tick(v, step * 10f64.powi(k))));
                    }
                }
            }
            if ticks.len() >= 3 {
                break;
            }
        }
        if ticks.len() < 3 {
            // A few percent of range: nice linear ticks placed on the log axis.
            let (vlo, vhi) = (10f64.powf(lo), 10f64.powf(hi));
            let step = nice_step(vhi - vlo, 4.0);
            ticks = ((vlo / step).ceil() as i64..=(vhi / step).floor() as i64)
                .map(|k| k as f64 * step)
                .map(|v| (v.log10(), fmt_tick(v, step)))
                .collect();
        }
        (lo, hi)
    } else {
        let (dlo, dhi) = (lo.floor(), hi.ceil());
        let decades = (dhi - dlo) as i32;
        if decades < 3 {
            for k in (dlo as i32)..=(dhi as i32) {
                for m in [1.0, 2.0, 5.0] {
                    let v = m * 10f64.powi(k);
                    if v.log10() <= dhi + 1e-12 {
                        ticks.push((v.log10(), fmt_tick(v, 10f64.powi(k))));
                    }
                }
                for m in [3.0, 4.0, 6.0, 7.0, 8.0, 9.0] {
                    let p = (m * 10f64.powi(k)).log10();
                    if p < dhi {
                        light.push(p);
                    }
                }
            }
        } else {
            let stride = (decades + 9) / 10;
            for k in (dlo as i32)..=(dhi as i32) {
                if (k - dhi as i32) % stride == 0 {
                    ticks.push((k as f64, decade_label(k)));
                } else {
                    light.push(k as f64);
                }
            }
        }
        // A little room so points on a decade are not drawn on the frame.
        let pad = 0.02 * (dhi - dlo);
        (dlo - pad, dhi + pad)
    };
    let (lo, zero) = if has_zero {
        let gap = 0.12 * (hi - lo).max(1.0);
        let z = lo - gap;
        ticks.insert(0, (z, zero_label.to_string()));
        (z - 0.4 * gap, Some(z))
    } else {
        (lo, None)
    };
    Scale {
        log: true,
        lo,
        hi,
        ticks,
        light,
        zero,
    }
}

fn has_legend(panel: &Panel) -> bool {
    panel.series.len() > 1 || panel.series.iter().any(|s| !s.name.is_empty())
}

/// Approximate width in pixels of a legend entry (marker sample + text).
fn entry_width(name: &str) -> u32 {
    40 + 7 * name.chars().count() as u32 + 16
}

fn legend_columns(panel: &Panel) -> usize {
    let widest = panel
        .series
        .iter()
        .map(|s| entry_width(&s.name))
        .max()
        .unwrap_or(1);
    ((PANEL_W - 40) / widest).max(1) as usize
}

fn legend_rows(panel: &Panel) -> usize {
    if !has_legend(panel) {
        return 0;
    }
    panel.series.len().div_ceil(legend_columns(panel))
}

type Err = String;

fn e<E: std::fmt::Display>(err: E) -> Err {
    err.to_string()
}

/// Draws marker `m` (see `MARKERS`) centred on `at`.
fn draw_marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    m: usize,
    color: RGBColor,
) -> Result<(), Err> {
    let filled = color.filled();
    let stroke = color.stroke_width(2);
    let base = EmptyElement::at(at);
    match m % MARKERS {
        0 => area.draw(&(base + Circle::new((0, 0), 4, filled))),
        1 => area.draw(&(base + Rectangle::new([(-4, -4), (4, 4)], filled))),
        2 => area.draw(&(base + Polygon::new(vec![(0, -5), (5, 4), (-5, 4)], filled))),
        3 => area.draw(&(base + Polygon::new(vec![(0, -5), (5, 0), (0, 5), (-5, 0)], filled))),
        4 => area.draw(&(base + Polygon::new(vec![(0, 5), (5, -4), (-5, -4)], filled))),
        5 => area.draw(&(base + Cross::new((0, 0), 4, stroke))),
        _ => area.draw(&(base + Circle::new((0, 0), 4, stroke))),
    }
    .map_err(e)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    axes: Axes,
) -> Result<(), Err> {
    let xs: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.0)
                .chain(s.band.iter().map(|b| b.0))
        })
        .collect();
    let ys: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.1)
                .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
        })
        .collect();
    // A band reaching below zero on a log axis is cut at the decades, not
    // pulled onto the zero line.
    let ys_axis: Vec<f64> = if panel.log_y {
        let mut v: Vec<f64> = panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .collect();
        v.extend(
            panel
                .series
                .iter()
                .flat_map(|s| s.band.iter().flat_map(|b| [b.1, b.2]))
                .filter(|&y| y > 0.0),
        );
        v
    } else {
        ys
    };
    let sx = Scale::new(&xs, axes.log_x, "0");
    let sy = Scale::new(&ys_axis, panel.log_y, "exact (0)");

    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, (FONT, 17))
        .margin(10)
        .margin_right(22)
        .x_label_area_size(44)
        .y_label_area_size(78);
    let mut chart = builder
        .build_cartesian_2d(sx.clone(), sy.clone())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .bold_line_style(RGBColor(200, 200, 200).stroke_width(1))
        .light_line_style(RGBColor(235, 235, 235).stroke_width(1))
        .draw()
        .map_err(e)?;
    if let Some(z) = sy.zero {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(
                [(sx.lo, z), (sx.hi, z)],
                4,
                4,
                grey.stroke_width(1),
            ))
            .map_err(e)?;
    }

    for (i, s) in panel.series.iter().enumerate() {
        let (color, marker) = style(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|&(x, y)| Some((sx.map(x)?, sy.map(y)?)))
            .collect();
        let band: Vec<(f64, f64, f64)> = s
            .band
            .iter()
            .filter_map(|&(x, lo, hi)| {
                let x = sx.map(x)?;
                let floor = |v: f64| if sy.log && v <= 0.0 { sy.lo } else { v };
                Some((x, sy.map(floor(lo)).unwrap_or(sy.lo), sy.map(hi)?))
            })
            .collect();
        if band.len() >= 2 {
            let mut poly: Vec<(f64, f64)> = band.iter().map(|b| (b.0, b.2)).collect();
            poly.extend(band.iter().rev().map(|b| (b.0, b.1)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    poly,
                    color.mix(0.18).filled(),
                )))
                .map_err(e)?;
        } else if band.len() == 1 || !s.line {
            for &(x, lo, hi) in &band {
                let area = chart.plotting_area();
                let bar = color.stroke_width(2);
                area.draw(&PathElement::new(vec![(x, lo), (x, hi)], bar))
                    .map_err(e)?;
                for y in [lo, hi] {
                    area.draw(
                        &(EmptyElement::at((x, y)) + PathElement::new(vec![(-5, 0), (5, 0)], bar)),
                    )
                    .map_err(e)?;
                }
            }
        }
        if s.line && pts.len() >= 2 {
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(
                        pts.clone(),
                        8,
                        5,
                        color.stroke_width(2),
                    ))
                    .map_err(e)?;
            } else {
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(e)?;
            }
        }
        // Markers on every point of short series, on about 15 evenly
        // spaced points of long ones (each series stays identifiable).
        let every = if pts.len() <= 40 {
            1
        } else {
            pts.len().div_ceil(15)
        };
        for (k, &p) in pts.iter().enumerate() {
            if k % every == 0 || k + 1 == pts.len() {
                draw_marker(chart.plotting_area(), p, marker, color)?;
            }
        }
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), Err> {
    if !has_legend(panel) {
        return Ok(());
    }
    let columns = legend_columns(panel);
    let col_w = (PANEL_W - 40) / columns as u32;
    for (i, s) in panel.series.iter().enumerate() {
        let (color, marker) = style(i);
        let (row, col) = ((i / columns) as i32, (i % columns) as i32);
        let x = 40 + col * col_w as i32;
        let y = 4 + row * LEGEND_ROW as i32 + LEGEND_ROW as i32 / 2;
        if s.line {
            let path = vec![(x, y), (x + 30, y)];
            if s.dashed {
                area.draw(&DashedPathElement::new(path, 6, 4, color.stroke_width(2)))
                    .map_err(e)?;
            } else {
                area.draw(&PathElement::new(path, color.stroke_width(2)))
                    .map_err(e)?;
            }
        }
        if !s.band.is_empty() && s.line {
            area.draw(&Rectangle::new(
                [(x, y - 6), (x + 30, y + 6)],
                color.mix(0.18).filled(),
            ))
            .map_err(e)?;
        }
        draw_marker(area, (x + 15, y), marker, color)?;
        area.draw(&Text::new(
            s.name.clone(),
            (x + 38, y - 7),
            (FONT, 13).into_font().color(&BLACK),
        ))
        .map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &Scale) -> Vec<String> {
        s.ticks.iter().map(|t| t.1.clone()).collect()
    }

    #[test]
    fn log_axis_over_many_decades_has_decade_labels_and_an_exact_zero_line() {
        let s = Scale::new(&[0.0, 3e-16, 2e-9, 0.5], true, "exact (0)");
        let l = labels(&s);
        assert_eq!(l[0], "exact (0)");
        assert!(l.contains(&"1e-16".to_string()), "{l:?}");
        assert!(l.contains(&"1".to_string()), "{l:?}");
        assert!(l.iter().all(|t| t.len() <= 9), "{l:?}");
        // 16 decades get a stride of 2: at most ~10 decade labels.
        assert!(l.len() <= 11, "{l:?}");
        assert!(s.zero.unwrap() < -16.0);
        assert_eq!(s.map(0.0), s.zero);
        assert_eq!(s.map(-1.0), None);
    }

    #[test]
    fn short_log_axis_still_gets_several_ticks() {
        // The loss panel of training.svg: 0.24 … 1.0 used to get one label.
        let s = Scale::new(&[0.24, 0.5, 1.0], true, "exact (0)");
        assert!(s.ticks.len() >= 3, "{:?}", labels(&s));
        let s = Scale::new(&[0.30, 0.33], true, "exact (0)");
        assert!(s.ticks.len() >= 3, "{:?}", labels(&s));
        assert!(s.zero.is_none());
    }

    #[test]
    fn log_axis_of_only_zeros_shows_just_the_exact_line() {
        let s = Scale::new(&[0.0, 0.0], true, "exact (0)");
        assert_eq!(labels(&s), vec!["exact (0)".to_string()]);
        assert_eq!(s.map(0.0), Some(0.0));
    }

    #[test]
    fn linear_ticks_are_nice_and_short() {
        let s = Scale::new(&[125.0, 1250.0], false, "");
        let l = labels(&s);
        assert!(
            l.contains(&"200".to_string()) || l.contains(&"250".to_string()),
            "{l:?}"
        );
        assert!(l.iter().all(|t| !t.contains(".0")), "{l:?}");
        let s = Scale::new(&[0.69, 0.93], false, "");
        assert!(labels(&s).iter().all(|t| t.len() <= 5), "{:?}", labels(&s));
        assert!(s.ticks.len() >= 4);
    }

    #[test]
    fn series_styles_are_unique_for_many_series() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..56 {
            let (c, m) = style(i);
            assert!(
                seen.insert((c.0, c.1, c.2, m)),
                "series {i} repeats a style"
            );
        }
    }

    #[test]
    fn every_series_is_drawn_with_its_own_colour_and_a_legend_entry() {
        let panel = Panel {
            title: "t".into(),
            x_label: "x (unit)".into(),
            y_label: "y (unit)".into(),
            series: (0..10)
                .map(|i| Series::new(format!("series {i}"), vec![(0.0, i as f64), (1.0, 0.0)]))
                .collect(),
            log_y: true,
        };
        let text = svg(&[panel]).unwrap();
        for i in 0..8 {
            let (c, _) = style(i);
            let hex = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
            assert!(text.contains(&hex), "colour {hex} missing");
        }
        for i in 0..10 {
            assert!(text.contains(&format!("series {i}")));
        }
        assert!(text.contains("exact (0)"));
    }
}
