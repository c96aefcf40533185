//! Prediction files and the robustness table.

use avfuse_metrics::{Aggregation, SamplePrediction, aggregate_videos, binary_report};
use avfuse_report::{
    PredictionRow, ReportError, RobustnessRow, robustness_markdown, sample_rows, video_rows,
    write_predictions_csv, write_predictions_json, write_robustness_csv, write_robustness_json,
    write_robustness_markdown,
};

fn samples() -> Vec<SamplePrediction> {
    [
        ("v1/0", "v1", 1, 0.9),
        ("v1/1", "v1", 1, 0.4),
        ("v2/0", "v2", 0, 0.1),
        ("v3/0", "v3", 0, 0.5),
        ("v2/1", "v2", 0, 0.30000000000000004),
    ]
    .iter()
    .map(|&(id, v, label, score)| SamplePrediction {
        id: id.into(),
        video_id: v.into(),
        label,
        score,
    })
    .collect()
}

#[test]
fn prediction_csv_and_json_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let rows = sample_rows(&samples(), 0.5, "audio+video", "none");
    assert_eq!(
        rows.iter().map(|r| r.pred).collect::<Vec<_>>(),
        [1, 0, 0, 1, 0],
        "pred = score >= threshold"
    );
    let csv_path = dir.path().join("out/predictions_samples.csv");
    write_predictions_csv(&csv_path, &rows).unwrap();
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,video_id,label,score,pred,modality_set,corruption")
    );
    assert_eq!(lines.next(), Some("v1/0,v1,1,0.9,1,audio+video,none"));
    let back: Vec<PredictionRow> = csv::Reader::from_path(&csv_path)
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back, rows, "scores read back bit-exactly");

    let json_path = dir.path().join("out/predictions_samples.json");
    write_predictions_json(&json_path, &rows).unwrap();
    let back: Vec<PredictionRow> =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(back, rows);

    // Video level: one row per video, id == video_id, in first-appearance order.
    let videos = aggregate_videos(&samples(), Aggregation::Mean).unwrap();
    let vrows = video_rows(&videos, 0.5, "video", "noise@0.1");
    assert_eq!(
        vrows
            .iter()
            .map(|r| (r.id.as_str(), r.video_id.as_str(), r.label, r.pred))
            .collect::<Vec<_>>(),
        [("v1", "v1", 1, 1), ("v2", "v2", 0, 0), ("v3", "v3", 0, 1)]
    );
    let vpath = dir.path().join("out/predictions_videos.csv");
    write_predictions_csv(&vpath, &vrows).unwrap();
    let text = std::fs::read_to_string(&vpath).unwrap();
    assert!(text.contains("v1,v1,1,0.65,1,video,noise@0.1"), "{text}");

    // Empty: still a header.
    let empty = dir.path().join("empty.csv");
    write_predictions_csv(&empty, &[]).unwrap();
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "id,video_id,label,score,pred,modality_set,corruption\n"
    );
    // Non-finite scores cannot go to JSON.
    let mut bad = rows.clone();
    bad[2].score = f64::NAN;
    assert!(matches!(
        write_predictions_json(&dir.path().join("bad.json"), &bad),
        Err(ReportError::Invalid(m)) if m.contains("v2/0")
    ));
    assert!(!dir.path().join("bad.json").exists());
    // Quoting: commas and quotes in ids survive.
    let mut odd = rows[..1].to_vec();
    odd[0].id = "a,\"b\"".into();
    write_predictions_csv(&dir.path().join("odd.csv"), &odd).unwrap();
    let back: Vec<PredictionRow> = csv::Reader::from_path(dir.path().join("odd.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back, odd);
}

fn robustness_rows() -> Vec<RobustnessRow> {
    let l = [0, 0, 0, 1, 0];
    let s = [0.1, 0.3, 0.6, 0.9, 1.3];
    vec![
        RobustnessRow {
            modality_set: "audio+video".into(),
            corruption: "none".into(),
            level: 0.0,
            report: binary_report(&l, &s, 0.5).unwrap(),
        },
        RobustnessRow {
            modality_set: "video|x".into(),
            corruption: "blur".into(),
            level: 2.5,
            report: binary_report(&[0, 0], &[0.2, 0.7], 0.5).unwrap(),
        },
    ]
}

#[test]
fn robustness_table_markdown() {
    let md = robustness_markdown(&robustness_rows());
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        "| modalities | corruption | level | n | AUC | AP | AUPR | ACC | F1 | EER | FPR@95%TPR |"
    );
    assert!(lines[1].starts_with("|---|---|---:|"));
    // The ood-metrics vector: AUROC 0.75, AP 0.5 (sklearn), AUPR 0.25, FPR@95 0.25.
    assert_eq!(
        lines[2],
        "| audio+video | none | 0 | 5 | 0.7500 | 0.5000 | 0.2500 | 0.6000 | 0.5000 | 0.2500 | 0.2500 |"
    );
    // Undefined ranking metrics (one class) show a dash; a `|` in a name is escaped.
    assert_eq!(
        lines[3],
        "| video\\|x | blur | 2.5 | 2 | – | – | – | 0.5000 | 0.0000 | – | – |"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("robustness.md");
    write_robustness_markdown(&p, &robustness_rows()).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), md);
}

#[test]
fn robustness_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let rows = robustness_rows();
    let p = dir.path().join("robustness.csv");
    write_robustness_csv(&p, &rows).unwrap();
    let mut r = csv::Reader::from_path(&p).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..4], ["modality_set", "corruption", "level", "n"]);
    assert!(header.iter().any(|h| h == "fn") && header.iter().any(|h| h == "aupr"));
    let recs: Vec<csv::StringRecord> = r.records().collect::<Result<_, _>>().unwrap();
    assert_eq!(recs.len(), 2);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&recs[0][col("auc")], "0.75");
    assert_eq!(&recs[0][col("aupr")], "0.25");
    assert_eq!(
        &recs[1][col("auc")],
        "",
        "undefined metric is an empty cell"
    );
    assert_eq!(&recs[1][col("fp")], "1");

    let j = dir.path().join("robustness.json");
    write_robustness_json(&j, &rows).unwrap();
    let back: Vec<RobustnessRow> =
        serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(back, rows);
    let mut bad = rows.clone();
    bad[0].level = f64::INFINITY;
    assert!(matches!(
        write_robustness_json(&dir.path().join("bad.json"), &bad),
        Err(ReportError::Invalid(_))
    ));
}
