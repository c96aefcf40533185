//! Every plot decodes as a PNG of the requested size, is not blank, shows its series colours
//! and renders text with the embedded font.

use avfuse_metrics::binary_report;
use avfuse_report::{
    PlotOptions, PrSeries, ReportError, RobustnessMetric, RobustnessRow, RocSeries, TrainingSeries,
    plot_pr, plot_robustness, plot_roc, plot_training_curves, training_series_from_jsonl,
    write_atomic,
};

/// Decoded RGB8 image.
struct Image {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Image {
    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Pixels in rows `y0..y1` that are not white.
    fn ink(&self, y0: u32, y1: u32) -> usize {
        (y0..y1)
            .flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .filter(|&(x, y)| self.pixel(x, y) != [255, 255, 255])
            .count()
    }

    /// Pixels within 40 (per channel) of `c`.
    fn count_near(&self, c: [u8; 3]) -> usize {
        self.rgb
            .chunks_exact(3)
            .filter(|p| p.iter().zip(c).all(|(&a, b)| a.abs_diff(b) <= 40))
            .count()
    }
}

fn decode(png_bytes: &[u8]) -> Image {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    Image {
        width: info.width,
        height: info.height,
        rgb: buf,
    }
}

const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];
const GREEN: [u8; 3] = [44, 160, 44];

/// Seeded scores: positives shifted up by `shift` (a small LCG; no RNG crate needed).
fn scores(n: usize, shift: f64, seed: u64) -> (Vec<u8>, Vec<f64>) {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
    let s = labels
        .iter()
        .map(|&l| next() + shift * f64::from(l))
        .collect();
    (labels, s)
}

/// Set `AVFUSE_REPORT_PNG_DIR` to keep the plots of a run for a look.
fn keep(name: &str, png_bytes: &[u8]) {
    if let Some(dir) = std::env::var_os("AVFUSE_REPORT_PNG_DIR") {
        write_atomic(&std::path::Path::new(&dir).join(name), png_bytes).unwrap();
    }
}

fn assert_plot(png_bytes: &[u8], w: u32, h: u32, colors: &[[u8; 3]]) -> Image {
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
    let img = decode(png_bytes);
    assert_eq!((img.width, img.height), (w, h));
    let total = (w * h) as usize;
    let ink = img.ink(0, h);
    assert!(ink > total / 100 && ink < total / 2, "ink {ink} of {total}");
    for &c in colors {
        assert!(img.count_near(c) > 50, "colour {c:?} missing");
    }
    img
}

#[test]
fn roc_plot_with_three_series() {
    let series: Vec<RocSeries> = [
        ("both", 0.8, 1),
        ("video only", 0.4, 2),
        ("audio only", 0.2, 3),
    ]
    .iter()
    .map(|&(name, shift, seed)| {
        let (l, s) = scores(300, shift, seed);
        RocSeries::from_scores(name, &l, &s).unwrap()
    })
    .collect();
    assert!(series[0].auc > series[1].auc && series[1].auc > series[2].auc);
    let png = plot_roc(&series, &PlotOptions::new(640, 480, "ROC (test split)")).unwrap();
    keep("roc.png", &png);
    assert_plot(&png, 640, 480, &[BLUE, ORANGE, GREEN]);
    // Other sizes are honoured.
    let png = plot_roc(&series[..1], &PlotOptions::new(300, 200, "")).unwrap();
    let img = assert_plot(&png, 300, 200, &[BLUE]);
    assert_eq!(img.count_near(ORANGE), 0, "only one series drawn");
}

#[test]
fn text_is_rendered_with_the_embedded_font() {
    let (l, s) = scores(100, 0.5, 9);
    let series = [RocSeries::from_scores("x", &l, &s).unwrap()];
    let titled_png = plot_roc(&series, &PlotOptions::new(400, 300, "A long title WWW")).unwrap();
    let plain_png = plot_roc(&series, &PlotOptions::new(400, 300, "")).unwrap();
    keep("titled.png", &titled_png);
    keep("plain.png", &plain_png);
    let (titled, plain) = (decode(&titled_png), decode(&plain_png));
    // The title band (top 25 px, away from the y-axis labels) has dark glyph pixels only
    // when there is a title (the chart's own grid there is light grey), and they are
    // anti-aliased (grey levels in between), which only the font rasteriser produces.
    let dark = |img: &Image| {
        (0..25)
            .flat_map(|y| (100..300).map(move |x| (x, y)))
            .filter(|&(x, y)| img.pixel(x, y).iter().all(|&c| c < 100))
            .count()
    };
    let (dark_titled, dark_plain) = (dark(&titled), dark(&plain));
    assert!(dark_titled > 100, "title ink {dark_titled}");
    assert_eq!(dark_plain, 0);
    let greys = (0..25)
        .flat_map(|y| (100..300).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = titled.pixel(x, y);
            p[0] == p[1] && p[1] == p[2] && p[0] > 30 && p[0] < 180
        })
        .count();
    assert!(greys > 20, "anti-aliased pixels {greys}");
    // Axis labels and legend text are drawn in both.
    assert!(plain.ink(260, 300) > 200);
}

#[test]
fn pr_plot() {
    let series: Vec<PrSeries> = [("both", 0.7, 4), ("audio only", 0.1, 5)]
        .iter()
        .map(|&(name, shift, seed)| {
            let (l, s) = scores(200, shift, seed);
            PrSeries::from_scores(name, &l, &s).unwrap()
        })
        .collect();
    let png = plot_pr(&series, &PlotOptions::new(500, 400, "Precision-recall")).unwrap();
    keep("pr.png", &png);
    assert_plot(&png, 500, 400, &[BLUE, ORANGE]);
}

fn robustness_rows() -> Vec<RobustnessRow> {
    let mut rows = Vec::new();
    for (set, base) in [("audio+video", 0.9), ("video", 0.7), ("audio", 0.5)] {
        let (l, s) = scores(200, base, 11);
        rows.push(RobustnessRow {
            modality_set: set.into(),
            corruption: "none".into(),
            level: 0.0,
            report: binary_report(&l, &s, 0.5).unwrap(),
        });
        for (k, level) in [0.1, 0.2, 0.4].iter().enumerate() {
            let (l, s) = scores(200, base / (2.0 + k as f64), 12 + k as u64);
            rows.push(RobustnessRow {
                modality_set: set.into(),
                corruption: "noise".into(),
                level: *level,
                report: binary_report(&l, &s, 0.5).unwrap(),
            });
        }
    }
    rows
}

#[test]
fn robustness_plot_one_line_per_modality_set() {
    let rows = robustness_rows();
    let png = plot_robustness(
        &rows,
        "noise",
        Some(0.0),
        RobustnessMetric::Auc,
        &PlotOptions::new(600, 400, "AUC under Gaussian noise"),
    )
    .unwrap();
    keep("robustness.png", &png);
    assert_plot(&png, 600, 400, &[BLUE, ORANGE, GREEN]);
    let png = plot_robustness(
        &rows,
        "noise",
        Some(0.0),
        RobustnessMetric::Eer,
        &PlotOptions::default(),
    )
    .unwrap();
    assert_plot(&png, 800, 600, &[BLUE, ORANGE, GREEN]);
    // No such corruption: a clear error, not an empty picture.
    let err = plot_robustness(
        &rows,
        "blur",
        Some(0.0),
        RobustnessMetric::Auc,
        &PlotOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ReportError::Invalid(ref m) if m.contains("blur")),
        "{err}"
    );
}

#[test]
fn training_curves_from_metrics_jsonl() {
    let mut text = String::new();
    for epoch in 1..=12 {
        let e = f64::from(epoch);
        let val_auc = if epoch % 3 == 0 {
            "null".to_string()
        } else {
            format!("{}", 1.0 - 0.5 / e)
        };
        text.push_str(&format!(
            "{{\"epoch\":{epoch},\"step\":{},\"train_loss\":{},\"val_loss\":{},\"val_auc\":{val_auc},\"val_accuracy\":{}}}\n",
            epoch * 10,
            1.0 / e,
            1.2 / e + 0.05,
            0.5 + 0.04 * e,
        ));
    }
    text.push('\n');
    let loss = training_series_from_jsonl(&text, "epoch", &["train_loss", "val_loss"]).unwrap();
    let metrics = training_series_from_jsonl(&text, "epoch", &["val_auc", "val_accuracy"]).unwrap();
    assert_eq!(loss[0].points.len(), 12);
    assert_eq!(loss[0].points[1], (2.0, 0.5));
    assert_eq!(metrics[0].points.len(), 8, "null values are skipped");
    let panels = vec![("loss".to_string(), loss), ("metric".to_string(), metrics)];
    let png =
        plot_training_curves(&panels, "epoch", &PlotOptions::new(700, 700, "Training")).unwrap();
    keep("training.png", &png);
    let img = assert_plot(&png, 700, 700, &[BLUE, ORANGE, GREEN]);
    // Both panels have content.
    assert!(img.ink(40, 360) > 1000 && img.ink(360, 700) > 1000);

    assert!(matches!(
        training_series_from_jsonl("[1, 2]\n", "epoch", &["x"]),
        Err(ReportError::Invalid(m)) if m.contains("line 1")
    ));
    assert!(matches!(
        training_series_from_jsonl("{not json\n", "epoch", &["x"]),
        Err(ReportError::Json(_))
    ));
    let empty = vec![(
        "loss".to_string(),
        vec![TrainingSeries {
            name: "x".into(),
            points: vec![(1.0, f64::NAN)],
        }],
    )];
    assert!(plot_training_curves(&empty, "epoch", &PlotOptions::default()).is_err());
}

#[test]
fn invalid_inputs_are_errors() {
    assert!(matches!(
        plot_roc(&[], &PlotOptions::default()),
        Err(ReportError::Invalid(_))
    ));
    assert!(matches!(
        plot_pr(&[], &PlotOptions::default()),
        Err(ReportError::Invalid(_))
    ));
    let (l, s) = scores(20, 0.5, 1);
    let series = [RocSeries::from_scores("a", &l, &s).unwrap()];
    for (w, h) in [(10, 300), (400, 10), (100_000, 300)] {
        assert!(matches!(
            plot_roc(&series, &PlotOptions::new(w, h, "")),
            Err(ReportError::Invalid(_))
        ));
    }
    let mut bad = series[0].clone();
    bad.curve.tpr.pop();
    assert!(plot_roc(&[bad], &PlotOptions::default()).is_err());
    // A single-class input is reported by the metrics crate.
    assert!(matches!(
        RocSeries::from_scores("one class", &[1, 1], &[0.2, 0.3]),
        Err(ReportError::Metric(_))
    ));
}

#[test]
fn plots_are_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let (l, s) = scores(50, 0.5, 2);
    let png = plot_roc(
        &[RocSeries::from_scores("a", &l, &s).unwrap()],
        &PlotOptions::default(),
    )
    .unwrap();
    let path = dir.path().join("plots/roc.png");
    write_atomic(&path, &png).unwrap();
    write_atomic(&path, &png).unwrap(); // replaces
    assert_eq!(std::fs::read(&path).unwrap(), png);
    let names: Vec<_> = std::fs::read_dir(dir.path().join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["roc.png"], "no temporary file left behind");
}
