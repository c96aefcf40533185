//! Hand-computed checks of the precision-recall curve, multi-class metrics and video-level
//! aggregation, and their error cases.

use avfuse_metrics::{
    Aggregation, LevelReports, MetricError, SamplePrediction, aggregate_videos, argmax_rows,
    binary_report, level_reports, multiclass_report, precision_recall_curve, sample_report,
    video_report,
};

fn sample(id: &str, video: &str, label: u8, score: f64) -> SamplePrediction {
    SamplePrediction {
        id: id.into(),
        video_id: video.into(),
        label,
        score,
    }
}

#[test]
fn precision_recall_curve_sklearn_docstring_example() {
    // sklearn's own example: y [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8].
    let pr = precision_recall_curve(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap();
    assert_eq!(pr.precision, [0.5, 2.0 / 3.0, 0.5, 1.0, 1.0]);
    assert_eq!(pr.recall, [1.0, 1.0, 0.5, 0.5, 0.0]);
    assert_eq!(pr.thresholds, [0.1, 0.35, 0.4, 0.8]);
    // Ties form one point.
    let pr = precision_recall_curve(&[0, 1, 1, 0], &[0.5, 0.5, 0.2, 0.2]).unwrap();
    assert_eq!(pr.thresholds, [0.2, 0.5]);
    assert_eq!(pr.precision, [0.5, 0.5, 1.0]);
    assert_eq!(pr.recall, [1.0, 0.5, 0.0]);
    assert_eq!(
        precision_recall_curve(&[1, 1], &[0.2, 0.3]),
        Err(MetricError::SingleClass { class: 1 })
    );
}

#[test]
fn multiclass_hand_example() {
    // K = 3; class 2 is never predicted correctly... rows true, columns predicted.
    let labels = [0, 0, 1, 1, 1, 2];
    let preds = [0, 1, 1, 1, 0, 1];
    let r = multiclass_report(&labels, &preds, 3).unwrap();
    assert_eq!(
        r.confusion,
        vec![vec![1, 1, 0], vec![1, 2, 0], vec![0, 1, 0]]
    );
    assert_eq!(r.accuracy, 0.5);
    // class 0: tp 1, fp 1, fn 1 -> P 1/2, R 1/2, F1 1/2; class 1: tp 2, fp 2, fn 1 -> P 1/2,
    // R 2/3, F1 4/7; class 2: tp 0 -> 0, 0, 0 (zero_division = 0).
    let p: Vec<f64> = r.per_class.iter().map(|c| c.precision).collect();
    let f1: Vec<f64> = r.per_class.iter().map(|c| c.f1).collect();
    assert_eq!(p, [0.5, 0.5, 0.0]);
    assert_eq!(f1, [0.5, 4.0 / 7.0, 0.0]);
    assert!((r.macro_f1 - (0.5 + 4.0 / 7.0) / 3.0).abs() < 1e-15);
    assert!((r.macro_recall - (0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-15);
    assert_eq!(r.per_class[2].support, 1);
    // A class absent from labels and predictions still counts (labels=range(K)).
    let r = multiclass_report(&[0, 1], &[0, 1], 4).unwrap();
    assert_eq!(r.accuracy, 1.0);
    assert_eq!(r.macro_f1, 0.5);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["confusion"][1][1], 1);
}

#[test]
fn multiclass_errors() {
    assert_eq!(
        multiclass_report(&[0, 1], &[0], 2),
        Err(MetricError::LengthMismatch {
            labels: 2,
            scores: 1
        })
    );
    assert_eq!(multiclass_report(&[], &[], 2), Err(MetricError::EmptyInput));
    assert_eq!(
        multiclass_report(&[0], &[0], 0),
        Err(MetricError::InvalidNumClasses {
            num_classes: 0,
            len: 1
        })
    );
    assert_eq!(
        multiclass_report(&[0, 3], &[0, 0], 3),
        Err(MetricError::InvalidClass {
            index: 1,
            value: 3,
            num_classes: 3
        })
    );
    assert!(matches!(
        multiclass_report(&[0, 1], &[0, 9], 3),
        Err(MetricError::InvalidClass {
            index: 1,
            value: 9,
            ..
        })
    ));
}

#[test]
fn argmax_rows_first_max_and_errors() {
    let probs = [0.2, 0.5, 0.5, 0.9, 0.1, 0.0, 0.3, 0.3, 0.3];
    assert_eq!(argmax_rows(&probs, 3).unwrap(), [1, 0, 0]);
    assert_eq!(argmax_rows(&[], 3).unwrap(), Vec::<usize>::new());
    assert!(matches!(
        argmax_rows(&probs, 2),
        Err(MetricError::InvalidNumClasses { .. })
    ));
    assert!(matches!(
        argmax_rows(&probs, 0),
        Err(MetricError::InvalidNumClasses { .. })
    ));
    assert!(matches!(
        argmax_rows(&[0.1, f64::NAN], 2),
        Err(MetricError::NonFinite { index: 1, .. })
    ));
}

fn three_videos() -> Vec<SamplePrediction> {
    vec![
        sample("a/0", "a", 1, 0.9),
        sample("b/0", "b", 0, 0.2),
        sample("a/1", "a", 1, 0.3),
        sample("c/0", "c", 0, 0.6),
        sample("a/2", "a", 1, 0.6),
        sample("b/1", "b", 0, 0.4),
    ]
}

#[test]
fn aggregations_by_hand() {
    let s = three_videos();
    let mean = aggregate_videos(&s, Aggregation::Mean).unwrap();
    let ids: Vec<&str> = mean.iter().map(|v| v.video_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"], "order of first appearance");
    assert_eq!(
        mean.iter().map(|v| v.n_samples).collect::<Vec<_>>(),
        [3, 2, 1]
    );
    assert!((mean[0].score - 0.6).abs() < 1e-15);
    assert!((mean[1].score - 0.3).abs() < 1e-15);
    assert_eq!(mean[2].score, 0.6);
    assert_eq!(mean[0].label, 1);

    let max = aggregate_videos(&s, Aggregation::Max).unwrap();
    assert_eq!(
        max.iter().map(|v| v.score).collect::<Vec<_>>(),
        [0.9, 0.4, 0.6]
    );

    // Attention: softmax(p / T)-weighted mean, between mean and max; T -> 0 gives max,
    // T -> inf gives mean.
    let att = |t: f64| aggregate_videos(&s, Aggregation::Attention { temperature: t }).unwrap();
    let a = att(0.2);
    let w: Vec<f64> = [0.9f64, 0.3, 0.6]
        .iter()
        .map(|p| ((p - 0.9) / 0.2).exp())
        .collect();
    let expected = (0.9 * w[0] + 0.3 * w[1] + 0.6 * w[2]) / w.iter().sum::<f64>();
    assert!((a[0].score - expected).abs() < 1e-15);
    assert!(a[0].score > mean[0].score && a[0].score < max[0].score);
    assert!((att(1e-6)[0].score - 0.9).abs() < 1e-12);
    assert!((att(1e9)[0].score - 0.6).abs() < 1e-9);
    // One sample: every aggregation returns it.
    assert_eq!(a[2].score, 0.6);
    // Huge scores do not overflow (max is subtracted first).
    let big = [sample("x", "v", 1, 1e6), sample("y", "v", 1, 1e6 - 1.0)];
    let v = aggregate_videos(&big, Aggregation::Attention { temperature: 1e-3 }).unwrap();
    assert_eq!(v[0].score, 1e6);
}

#[test]
fn aggregation_errors() {
    let s = three_videos();
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            aggregate_videos(&s, Aggregation::Attention { temperature: t }),
            Err(MetricError::InvalidTemperature(_))
        ));
    }
    assert_eq!(
        aggregate_videos(&[], Aggregation::Mean),
        Err(MetricError::EmptyInput)
    );
    let mixed = [sample("a", "v1", 0, 0.1), sample("b", "v1", 1, 0.2)];
    assert_eq!(
        aggregate_videos(&mixed, Aggregation::Max),
        Err(MetricError::InconsistentVideoLabel {
            video_id: "v1".into()
        })
    );
    assert!(matches!(
        aggregate_videos(&[sample("a", "v", 2, 0.1)], Aggregation::Mean),
        Err(MetricError::InvalidLabel { index: 0, value: 2 })
    ));
    assert!(matches!(
        aggregate_videos(
            &[sample("a", "v", 0, 0.1), sample("b", "w", 1, f64::NAN)],
            Aggregation::Mean
        ),
        Err(MetricError::NonFinite { index: 1, .. })
    ));
}

#[test]
fn level_reports_keep_levels_apart() {
    let s = three_videos();
    let r = level_reports(&s, Aggregation::Mean, 0.5).unwrap();
    // Sample level: 6 samples, 3 positive; video level: 3 videos, 1 positive.
    assert_eq!((r.sample_level.n, r.sample_level.n_positive), (6, 3));
    assert_eq!(
        (r.video_level.report.n, r.video_level.report.n_positive),
        (3, 1)
    );
    assert_eq!(r.video_level.n_videos, 3);
    assert_eq!(r.sample_level, sample_report(&s, 0.5).unwrap());
    let videos = aggregate_videos(&s, Aggregation::Mean).unwrap();
    assert_eq!(r.video_level.report, video_report(&videos, 0.5).unwrap());
    // Video a (0.6) and c (0.6) tie; b 0.3: AUC = (1/2 + 1) / 2.
    assert_eq!(r.video_level.report.auc, Some(0.75));
    let labels: Vec<u8> = s.iter().map(|x| x.label).collect();
    let scores: Vec<f64> = s.iter().map(|x| x.score).collect();
    assert_eq!(
        r.sample_level,
        binary_report(&labels, &scores, 0.5).unwrap()
    );

    // Serialised with both levels named, and the aggregation spelled out.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["video_level"]["aggregation"]["method"], "mean");
    assert_eq!(json["sample_level"]["n"], 6);
    assert_eq!(json["video_level"]["report"]["n"], 3);
    let back: LevelReports = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
    let att = Aggregation::Attention { temperature: 0.5 };
    assert_eq!(
        serde_json::to_string(&att).unwrap(),
        r#"{"method":"attention","temperature":0.5}"#
    );
    assert_eq!(att.to_string(), "attention(T=0.5)");
    assert_eq!(Aggregation::Max.to_string(), "max");
}
