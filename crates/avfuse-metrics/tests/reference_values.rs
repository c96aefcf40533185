//! Hand-computed reference values, tie handling and error cases.

use avfuse_metrics::{
    BinaryReport, Confusion, MetricError, aupr_trapezoid, average_precision, binary_report, eer,
    fpr_at_tpr, roc_auc, roc_curve,
};

const TOL: f64 = 1e-12;

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= TOL,
        "expected {expected}, got {actual}"
    );
}

/// The test vector of the `ood-metrics` package README/tests.
const OOD_LABELS: [u8; 5] = [0, 0, 0, 1, 0];
const OOD_SCORES: [f64; 5] = [0.1, 0.3, 0.6, 0.9, 1.3];

#[test]
fn ood_metrics_vector() {
    close(roc_auc(&OOD_LABELS, &OOD_SCORES).unwrap(), 0.75);
    close(aupr_trapezoid(&OOD_LABELS, &OOD_SCORES).unwrap(), 0.25);
    close(fpr_at_tpr(&OOD_LABELS, &OOD_SCORES, 0.95).unwrap(), 0.25);
    // Step-wise AP: the single recall step (0 -> 1) is weighted by precision 1/2.
    close(average_precision(&OOD_LABELS, &OOD_SCORES).unwrap(), 0.5);
    // Gaps |1 - tpr - fpr|: 1, 1.25, 0.25, 0.5, 0.75, 1 -> fpr 0.25.
    close(eer(&OOD_LABELS, &OOD_SCORES).unwrap(), 0.25);
}

#[test]
fn ood_metrics_vector_roc_curve() {
    let roc = roc_curve(&OOD_LABELS, &OOD_SCORES).unwrap();
    assert_eq!(roc.fpr, vec![0.0, 0.25, 0.25, 0.5, 0.75, 1.0]);
    assert_eq!(roc.tpr, vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(roc.thresholds, vec![f64::INFINITY, 1.3, 0.9, 0.6, 0.3, 0.1]);
}

#[test]
fn ties_are_grouped_and_count_half() {
    let labels = [0, 1, 0, 1, 1, 0];
    let scores = [0.4; 6];
    close(roc_auc(&labels, &scores).unwrap(), 0.5);
    let roc = roc_curve(&labels, &scores).unwrap();
    assert_eq!(roc.fpr, vec![0.0, 1.0]);
    assert_eq!(roc.tpr, vec![0.0, 1.0]);
    assert_eq!(roc.thresholds, vec![f64::INFINITY, 0.4]);
    // One PR point (R 1, P 1/2): AP = 1/2, trapezoid from (0, 1) = 3/4.
    close(average_precision(&labels, &scores).unwrap(), 0.5);
    close(aupr_trapezoid(&labels, &scores).unwrap(), 0.75);
    close(fpr_at_tpr(&labels, &scores, 0.95).unwrap(), 1.0);
    // Gaps: origin 1, (1, 1) 1 -> the first (origin) wins.
    close(eer(&labels, &scores).unwrap(), 0.0);

    // A partial tie: positive 0.7 vs negatives {0.7, 0.2}; positive 0.2 vs {0.7, 0.2}.
    // Pairs (pos, neg): (0.7,0.7)=1/2, (0.7,0.2)=1, (0.2,0.7)=0, (0.2,0.2)=1/2 -> 2/4.
    close(roc_auc(&[1, 0, 1, 0], &[0.7, 0.7, 0.2, 0.2]).unwrap(), 0.5);
    // (0.9 > all) + (0.5 vs 0.5 = 1/2, 0.5 > 0.1) -> (2 + 1.5) / 4.
    close(
        roc_auc(&[1, 1, 0, 0], &[0.9, 0.5, 0.5, 0.1]).unwrap(),
        0.875,
    );
}

#[test]
fn input_order_does_not_matter() {
    let labels = [1, 0, 1, 0, 0, 1, 0, 1];
    let scores = [0.2, 0.2, 0.9, 0.5, 0.9, 0.5, 0.1, 0.7];
    let mut idx: Vec<usize> = (0..labels.len()).collect();
    idx.reverse();
    let l2: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
    let s2: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
    assert_eq!(roc_curve(&labels, &scores), roc_curve(&l2, &s2));
    assert_eq!(
        binary_report(&labels, &scores, 0.5),
        binary_report(&l2, &s2, 0.5)
    );
}

#[test]
fn negative_zero_ties_with_zero() {
    let roc = roc_curve(&[0, 1], &[-0.0, 0.0]).unwrap();
    assert_eq!(roc.thresholds.len(), 2);
    close(roc_auc(&[0, 1], &[-0.0, 0.0]).unwrap(), 0.5);
}

#[test]
fn perfect_ranking() {
    let labels = [0, 0, 1, 0, 1, 1];
    let scores = [0.1, 0.2, 0.8, 0.3, 0.9, 0.7];
    close(roc_auc(&labels, &scores).unwrap(), 1.0);
    close(average_precision(&labels, &scores).unwrap(), 1.0);
    close(aupr_trapezoid(&labels, &scores).unwrap(), 1.0);
    close(eer(&labels, &scores).unwrap(), 0.0);
    close(fpr_at_tpr(&labels, &scores, 0.95).unwrap(), 0.0);
    let r = binary_report(&labels, &scores, 0.5).unwrap();
    assert_eq!(
        r.confusion,
        Confusion {
            tn: 3,
            fp: 0,
            fn_: 0,
            tp: 3
        }
    );
    close(r.accuracy, 1.0);
    close(r.f1, 1.0);
}

#[test]
fn inverted_ranking() {
    let labels = [1, 1, 1, 0, 0, 0];
    let scores = [0.1, 0.2, 0.3, 0.6, 0.7, 0.9];
    close(roc_auc(&labels, &scores).unwrap(), 0.0);
    close(eer(&labels, &scores).unwrap(), 1.0);
    close(fpr_at_tpr(&labels, &scores, 0.95).unwrap(), 1.0);
    // Positives enter at ranks 4, 5, 6: AP = (1/3)(1/4 + 2/5 + 3/6).
    close(
        average_precision(&labels, &scores).unwrap(),
        (0.25 + 0.4 + 0.5) / 3.0,
    );
    let r = binary_report(&labels, &scores, 0.5).unwrap();
    assert_eq!(
        (r.accuracy, r.precision, r.recall, r.f1),
        (0.0, 0.0, 0.0, 0.0)
    );
}

#[test]
fn fpr_at_tpr_picks_first_point_reaching_target() {
    // Ranked: P N P N P N N N (distinct scores).
    let labels = [1, 0, 1, 0, 1, 0, 0, 0];
    let scores = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0];
    // tpr reaches 2/3 after 1 negative, 1.0 after 2 negatives (N = 5).
    close(fpr_at_tpr(&labels, &scores, 0.5).unwrap(), 0.2);
    close(fpr_at_tpr(&labels, &scores, 2.0 / 3.0).unwrap(), 0.2);
    close(fpr_at_tpr(&labels, &scores, 0.95).unwrap(), 0.4);
    close(fpr_at_tpr(&labels, &scores, 1.0).unwrap(), 0.4);
    close(fpr_at_tpr(&labels, &scores, 0.0).unwrap(), 0.0);
}

#[test]
#[should_panic(expected = "tpr_target must be in [0, 1]")]
fn fpr_at_tpr_rejects_bad_target() {
    let _ = fpr_at_tpr(&OOD_LABELS, &OOD_SCORES, 1.5);
}

#[test]
fn binary_report_ood_vector() {
    let r = binary_report(&OOD_LABELS, &OOD_SCORES, 0.5).unwrap();
    // Predicted positive: 0.6, 0.9, 1.3 -> tp 1, fp 2, tn 2, fn 0.
    let expected = BinaryReport {
        n: 5,
        n_positive: 1,
        threshold: 0.5,
        auc: Some(0.75),
        ap: Some(0.5),
        aupr: Some(0.25),
        accuracy: 0.6,
        precision: 1.0 / 3.0,
        recall: 1.0,
        f1: 0.5,
        eer: Some(0.25),
        fpr_at_95_tpr: Some(0.25),
        confusion: Confusion {
            tn: 2,
            fp: 2,
            fn_: 0,
            tp: 1,
        },
    };
    assert_eq!(r, expected);
}

#[test]
fn binary_report_threshold_is_inclusive() {
    let r = binary_report(&[1, 0], &[0.5, 0.49], 0.5).unwrap();
    assert_eq!(r.confusion.tp, 1);
    assert_eq!(r.confusion.tn, 1);
}

#[test]
fn binary_report_single_class_has_no_ranking_metrics() {
    let r = binary_report(&[0, 0, 0], &[0.2, 0.7, 0.1], 0.5).unwrap();
    assert_eq!(
        (r.auc, r.ap, r.eer, r.fpr_at_95_tpr),
        (None, None, None, None)
    );
    assert_eq!(r.n_positive, 0);
    // No positives: precision 0/1 = 0, recall and F1 0/0 -> 0 (zero_division=0).
    assert_eq!((r.precision, r.recall, r.f1), (0.0, 0.0, 0.0));
    close(r.accuracy, 2.0 / 3.0);

    let r = binary_report(&[1, 1], &[0.2, 0.7], 0.5).unwrap();
    assert_eq!(r.auc, None);
    assert_eq!((r.precision, r.recall), (1.0, 0.5));
    close(r.f1, 2.0 / 3.0);
}

#[test]
fn binary_report_serde_roundtrip_uses_fn_key() {
    let r = binary_report(&OOD_LABELS, &OOD_SCORES, 0.5).unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["confusion"],
        serde_json::json!({"tn": 2, "fp": 2, "fn": 0, "tp": 1})
    );
    let back: BinaryReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);

    let single = binary_report(&[1], &[0.3], 0.5).unwrap();
    let json = serde_json::to_string(&single).unwrap();
    assert!(json.contains("\"auc\":null"), "{json}");
    assert_eq!(serde_json::from_str::<BinaryReport>(&json).unwrap(), single);
}

#[test]
fn errors() {
    assert_eq!(roc_auc(&[], &[]), Err(MetricError::EmptyInput));
    assert_eq!(binary_report(&[], &[], 0.5), Err(MetricError::EmptyInput));
    assert_eq!(
        roc_curve(&[0, 1], &[0.5]),
        Err(MetricError::LengthMismatch {
            labels: 2,
            scores: 1
        })
    );
    assert_eq!(
        binary_report(&[0, 1, 2], &[0.1, 0.2, 0.3], 0.5),
        Err(MetricError::InvalidLabel { index: 2, value: 2 })
    );
    assert_eq!(
        eer(&[0, 1, 1], &[0.1, f64::INFINITY, 0.3]),
        Err(MetricError::NonFinite {
            index: 1,
            value: f64::INFINITY
        })
    );
    assert!(matches!(
        binary_report(&[0, 1], &[0.1, f64::NAN], 0.5),
        Err(MetricError::NonFinite { index: 1, value }) if value.is_nan()
    ));
    for f in [roc_auc, average_precision, aupr_trapezoid, eer] {
        assert_eq!(
            f(&[0, 0], &[0.1, 0.2]),
            Err(MetricError::SingleClass { class: 0 })
        );
        assert_eq!(f(&[1], &[0.1]), Err(MetricError::SingleClass { class: 1 }));
    }
    assert_eq!(
        fpr_at_tpr(&[1, 1], &[0.1, 0.2], 0.95),
        Err(MetricError::SingleClass { class: 1 })
    );
    assert_eq!(
        roc_curve(&[0], &[0.1]),
        Err(MetricError::SingleClass { class: 0 })
    );
}

#[test]
fn error_messages() {
    assert_eq!(
        MetricError::SingleClass { class: 0 }.to_string(),
        "only one class present in labels (all 0): AUC/AP is undefined"
    );
    assert_eq!(
        MetricError::LengthMismatch {
            labels: 3,
            scores: 2
        }
        .to_string(),
        "length mismatch: 3 labels but 2 scores"
    );
    assert!(
        MetricError::InvalidLabel { index: 4, value: 7 }
            .to_string()
            .contains("invalid label 7 at index 4")
    );
}
