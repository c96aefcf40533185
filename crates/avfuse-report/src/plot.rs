//! PNG plots with `plotters`: ROC curves, precision-recall curves, robustness curves and
//! training curves.
//!
//! Every function draws into an in-memory RGB buffer (`plotters`' `BitMapBackend::with_buffer`)
//! and returns the encoded PNG bytes; write them with [`crate::write_atomic`]. Text uses DejaVu
//! Sans, embedded in the binary (`assets/DejaVuSans.ttf`, see the crate README for its licence)
//! and rendered by `ab_glyph`, so nothing is read from the system: no fontconfig, no freetype.

use std::sync::OnceLock;

use avfuse_metrics::{PrCurve, RocCurve};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::tables::{RobustnessMetric, RobustnessRow};
use crate::{ReportError, Result};

/// DejaVu Sans (Bitstream Vera licence + public-domain DejaVu changes; see README.md).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The family name the embedded font is registered under (plotters' `FontFamily::SansSerif`).
const FAMILY: &str = "sans-serif";

/// Register the embedded font with plotters once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ReportError::Plot(
            "the embedded DejaVu Sans font could not be parsed".into(),
        ))
    }
}

/// Size and title of a plot.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotOptions {
    /// Width in pixels (>= 200).
    pub width: u32,
    /// Height in pixels (>= 150).
    pub height: u32,
    /// Caption drawn above the chart (empty: none).
    pub title: String,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self {
            width: 800,
            height: 600,
            title: String::new(),
        }
    }
}

impl PlotOptions {
    /// `width` x `height` with a title.
    pub fn new(width: u32, height: u32, title: impl Into<String>) -> Self {
        Self {
            width,
            height,
            title: title.into(),
        }
    }

    fn check(&self) -> Result<()> {
        if self.width < 200 || self.height < 150 || self.width > 8192 || self.height > 8192 {
            return Err(ReportError::Invalid(format!(
                "plot size {}x{} outside 200x150 ..= 8192x8192",
                self.width, self.height
            )));
        }
        Ok(())
    }
}

/// One ROC curve and its AUC (shown in the legend as `name (AUC 0.975)`).
#[derive(Clone, Debug, PartialEq)]
pub struct RocSeries {
    /// Legend name, e.g. `both`, `video only`, `audio only`.
    pub name: String,
    /// The curve ([`avfuse_metrics::roc_curve`]).
    pub curve: RocCurve,
    /// Its area ([`avfuse_metrics::roc_auc`]).
    pub auc: f64,
}

impl RocSeries {
    /// Curve and AUC of binary `labels` (0/1) and `scores`.
    ///
    /// # Errors
    /// As [`avfuse_metrics::roc_curve`].
    pub fn from_scores(name: impl Into<String>, labels: &[u8], scores: &[f64]) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            curve: avfuse_metrics::roc_curve(labels, scores)?,
            auc: avfuse_metrics::roc_auc(labels, scores)?,
        })
    }
}

/// One precision-recall curve and its average precision (legend `name (AP 0.912)`).
#[derive(Clone, Debug, PartialEq)]
pub struct PrSeries {
    /// Legend name.
    pub name: String,
    /// The curve ([`avfuse_metrics::precision_recall_curve`]).
    pub curve: PrCurve,
    /// Its average precision ([`avfuse_metrics::average_precision`]).
    pub ap: f64,
}

impl PrSeries {
    /// Curve and AP of binary `labels` (0/1) and `scores`.
    ///
    /// # Errors
    /// As [`avfuse_metrics::precision_recall_curve`].
    pub fn from_scores(name: impl Into<String>, labels: &[u8], scores: &[f64]) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            curve: avfuse_metrics::precision_recall_curve(labels, scores)?,
            ap: avfuse_metrics::average_precision(labels, scores)?,
        })
    }
}

/// One line of a training-curve panel: `(x, y)` points, e.g. `(epoch, val_auc)`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingSeries {
    /// Legend name (the metrics.jsonl key).
    pub name: String,
    /// Points in x order; non-finite values are skipped when drawing.
    pub points: Vec<(f64, f64)>,
}

/// Categorical colours (matplotlib's tab10), cycled.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

fn plot_err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Plot(e.to_string())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Draw with `draw` on a white `width` x `height` RGB canvas and encode it as PNG.
fn render(opts: &PlotOptions, draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<Vec<u8>> {
    opts.check()?;
    ensure_font()?;
    let (w, h) = (opts.width, opts.height);
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    encode_png(&rgb, w, h)
}

/// Encode an RGB8 buffer (`[h, w, 3]`, row-major) as PNG.
fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

fn caption<DB: DrawingBackend>(builder: &mut ChartBuilder<'_, '_, DB>, title: &str) {
    if !title.is_empty() {
        builder.caption(title, (FAMILY, 22));
    }
}

fn finite_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// A padded axis range around `[lo, hi]` (never empty).
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - pad)..(hi + pad)
}

/// Several ROC curves on one chart (x: false-positive rate, y: true-positive rate, both in
/// `[0, 1]`), with the chance diagonal and the AUC of each series in the legend.
///
/// # Errors
/// [`ReportError::Invalid`] for no series, a curve with mismatched lengths or a bad size;
/// [`ReportError::Plot`] / [`ReportError::Png`] from drawing or encoding.
pub fn plot_roc(series: &[RocSeries], opts: &PlotOptions) -> Result<Vec<u8>> {
    if series.is_empty() {
        return Err(ReportError::Invalid("ROC plot: no series".into()));
    }
    for s in series {
        if s.curve.fpr.len() != s.curve.tpr.len() || s.curve.fpr.is_empty() {
            return Err(ReportError::Invalid(format!(
                "ROC plot: series {:?} has {} FPR and {} TPR values",
                s.name,
                s.curve.fpr.len(),
                s.curve.tpr.len()
            )));
        }
    }
    render(opts, |root| {
        let mut builder = ChartBuilder::on(root);
        caption(&mut builder, &opts.title);
        let mut chart = builder
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..1f64, 0f64..1.0f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("False positive rate")
            .y_desc("True positive rate")
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.35).stroke_width(1),
            ))
            .map_err(plot_err)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = s
                .curve
                .fpr
                .iter()
                .copied()
                .zip(s.curve.tpr.iter().copied())
                .collect();
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(format!("{} (AUC {:.3})", s.name, s.auc))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)
    })
}

/// Several precision-recall curves (x: recall, y: precision), drawn as steps like
/// scikit-learn's `PrecisionRecallDisplay`, with the AP of each series in the legend.
///
/// # Errors
/// As [`plot_roc`].
pub fn plot_pr(series: &[PrSeries], opts: &PlotOptions) -> Result<Vec<u8>> {
    if series.is_empty() {
        return Err(ReportError::Invalid("PR plot: no series".into()));
    }
    for s in series {
        if s.curve.precision.len() != s.curve.recall.len() || s.curve.recall.is_empty() {
            return Err(ReportError::Invalid(format!(
                "PR plot: series {:?} has {} precision and {} recall values",
                s.name,
                s.curve.precision.len(),
                s.curve.recall.len()
            )));
        }
    }
    render(opts, |root| {
        let mut builder = ChartBuilder::on(root);
        caption(&mut builder, &opts.title);
        let mut chart = builder
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("Recall")
            .y_desc("Precision")
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .draw()
            .map_err(plot_err)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            // Matplotlib's "steps-post" over sklearn's order (decreasing recall), as
            // PrecisionRecallDisplay draws it: from (r[k-1], p[k-1]) across to (r[k], p[k-1]),
            // then to (r[k], p[k]).
            let (r, p) = (&s.curve.recall, &s.curve.precision);
            let mut pts: Vec<(f64, f64)> = Vec::with_capacity(2 * r.len());
            for k in 0..r.len() {
                if k > 0 {
                    pts.push((r[k], p[k - 1]));
                }
                pts.push((r[k], p[k]));
            }
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(format!("{} (AP {:.3})", s.name, s.ap))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)
    })
}

/// Robustness curves for one corruption kind: `metric` (y) against the corruption level (x),
/// one line with markers per modality set, in the order the sets first appear in `rows`.
///
/// Rows whose `corruption` equals `corruption` are used; rows with corruption `"none"` are
/// the clean reference and are drawn at `clean_level` of every curve that has no row at that
/// level of its own (0 for a noise std or a blur sigma, 100 for a JPEG quality; `None` where
/// no level means "clean", e.g. an SNR). Rows whose metric is undefined (`None`, e.g. AUC with
/// one class) are skipped.
///
/// # Errors
/// [`ReportError::Invalid`] when no row has a defined metric for `corruption`; otherwise as
/// [`plot_roc`].
pub fn plot_robustness(
    rows: &[RobustnessRow],
    corruption: &str,
    clean_level: Option<f64>,
    metric: RobustnessMetric,
    opts: &PlotOptions,
) -> Result<Vec<u8>> {
    let mut sets: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in rows.iter().filter(|r| r.corruption == corruption) {
        let Some(y) = metric.value(&r.report).filter(|y| y.is_finite()) else {
            continue;
        };
        if !r.level.is_finite() {
            continue;
        }
        match sets.iter_mut().find(|(name, _)| *name == r.modality_set) {
            Some((_, pts)) => pts.push((r.level, y)),
            None => sets.push((r.modality_set.clone(), vec![(r.level, y)])),
        }
    }
    if sets.is_empty() {
        return Err(ReportError::Invalid(format!(
            "robustness plot: no rows with corruption {corruption:?} and a defined {}",
            metric.label()
        )));
    }
    for (name, pts) in sets.iter_mut() {
        if let Some(at) = clean_level
            && !pts.iter().any(|p| p.0 == at)
        {
            let clean = rows.iter().find(|r| {
                r.corruption == "none"
                    && r.modality_set == *name
                    && metric.value(&r.report).is_some()
            });
            if let Some(y) = clean.and_then(|r| metric.value(&r.report)) {
                pts.push((at, y));
            }
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let (x_lo, x_hi) =
        finite_range(sets.iter().flat_map(|(_, p)| p.iter().map(|q| q.0))).unwrap_or((0.0, 1.0));
    let (y_lo, y_hi) =
        finite_range(sets.iter().flat_map(|(_, p)| p.iter().map(|q| q.1))).unwrap_or((0.0, 1.0));
    // Every metric is a rate in [0, 1]: pad the data range but stay near that interval.
    let y_range = padded(y_lo, y_hi);
    let y_range = y_range.start.max(-0.02)..y_range.end.min(1.02);
    render(opts, |root| {
        let mut builder = ChartBuilder::on(root);
        caption(&mut builder, &opts.title);
        let mut chart = builder
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(padded(x_lo, x_hi), y_range.clone())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(format!("{corruption} level"))
            .y_desc(metric.label())
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .draw()
            .map_err(plot_err)?;
        for (i, (name, pts)) in sets.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(plot_err)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3)));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)
    })
}

/// Training curves: one panel per `(y label, series)` entry, stacked vertically and sharing
/// the x axis range (e.g. a loss panel with `train_loss`/`val_loss`, a metric panel with
/// `val_auc`/`val_accuracy`). `opts.height` is the height of the whole image.
///
/// # Errors
/// [`ReportError::Invalid`] when there is no panel or a panel has no finite point; otherwise
/// as [`plot_roc`].
pub fn plot_training_curves(
    panels: &[(String, Vec<TrainingSeries>)],
    x_label: &str,
    opts: &PlotOptions,
) -> Result<Vec<u8>> {
    if panels.is_empty() {
        return Err(ReportError::Invalid("training plot: no panels".into()));
    }
    let finite = |s: &TrainingSeries| -> Vec<(f64, f64)> {
        s.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    };
    let Some((x_lo, x_hi)) = finite_range(
        panels
            .iter()
            .flat_map(|(_, ss)| ss.iter().flat_map(|s| finite(s).into_iter().map(|p| p.0))),
    ) else {
        return Err(ReportError::Invalid(
            "training plot: no finite points".into(),
        ));
    };
    let mut ranges = Vec::with_capacity(panels.len());
    for (label, series) in panels {
        let r = finite_range(
            series
                .iter()
                .flat_map(|s| finite(s).into_iter().map(|p| p.1)),
        )
        .ok_or_else(|| {
            ReportError::Invalid(format!(
                "training plot: panel {label:?} has no finite point"
            ))
        })?;
        ranges.push(r);
    }
    render(opts, |root| {
        let root = if opts.title.is_empty() {
            root.clone()
        } else {
            root.titled(&opts.title, (FAMILY, 22)).map_err(plot_err)?
        };
        let areas = root.split_evenly((panels.len(), 1));
        let mut offset = 0;
        for (((label, series), &(y_lo, y_hi)), area) in panels.iter().zip(&ranges).zip(&areas) {
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(padded(x_lo, x_hi), padded(y_lo, y_hi))
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(label.as_str())
                .label_style((FAMILY, 13))
                .axis_desc_style((FAMILY, 15))
                .draw()
                .map_err(plot_err)?;
            for s in series {
                let c = color(offset);
                offset += 1;
                let pts = finite(s);
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3))
                    });
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(plot_err)?;
            }
            // Legend in the corner the curves end away from: rising metrics end high (legend
            // lower right), falling losses end low (legend upper right).
            let ends: Vec<f64> = series
                .iter()
                .filter_map(|s| finite(s).last().map(|p| p.1))
                .collect();
            let end_mean = ends.iter().sum::<f64>() / ends.len().max(1) as f64;
            let position = if end_mean > (y_lo + y_hi) / 2.0 {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            };
            chart
                .configure_series_labels()
                .position(position)
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// Series for [`plot_training_curves`] from the text of a `metrics.jsonl` file: each line a
/// JSON object; `x_key` (e.g. `epoch`) gives x, each of `keys` one series. Lines missing
/// `x_key`, and keys whose value is missing, `null` or not a number on a line, are skipped
/// (validation-only keys simply have fewer points). Blank lines are ignored.
///
/// # Errors
/// [`ReportError::Json`] for a line that is not JSON, naming nothing more than serde does;
/// [`ReportError::Invalid`] with the 1-based line number for a line that is not an object.
pub fn training_series_from_jsonl(
    text: &str,
    x_key: &str,
    keys: &[&str],
) -> Result<Vec<TrainingSeries>> {
    let mut series: Vec<TrainingSeries> = keys
        .iter()
        .map(|k| TrainingSeries {
            name: (*k).to_string(),
            points: Vec::new(),
        })
        .collect();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)?;
        let obj = value.as_object().ok_or_else(|| {
            ReportError::Invalid(format!("metrics.jsonl line {}: not a JSON object", i + 1))
        })?;
        let Some(x) = obj.get(x_key).and_then(serde_json::Value::as_f64) else {
            continue;
        };
        for s in &mut series {
            if let Some(y) = obj.get(&s.name).and_then(serde_json::Value::as_f64) {
                s.points.push((x, y));
            }
        }
    }
    Ok(series)
}
