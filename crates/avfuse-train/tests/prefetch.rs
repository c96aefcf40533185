//! The prefetching loader yields exactly the batches the training thread would build, in
//! order, and stops cleanly when dropped early.

use std::sync::Arc;

use avfuse_media::synth::{SynthConfig, synth_split};
use avfuse_train::data::{Dataset, InputFill, Prefetcher};

fn dataset(root: &std::path::Path) -> Dataset {
    let cfg = SynthConfig {
        frames: 4,
        image_size: 16,
        ..SynthConfig::default()
    };
    synth_split(&cfg, root, "train", 20, 3, 8, &|_| {}).unwrap();
    Dataset::load(&root.join("train")).unwrap()
}

#[test]
fn prefetched_batches_equal_direct_ones_and_early_drop_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Arc::new(dataset(dir.path()));
    let norm = ds.normalizer();
    // Batches of 3 over a shuffled order, with some modalities absent.
    let order: Vec<usize> = (0..ds.len()).rev().collect();
    let plan: Vec<(Vec<usize>, Vec<[u8; 2]>)> = order
        .chunks(3)
        .enumerate()
        .map(|(bi, c)| {
            let pres = c.iter().map(|&i| [(i + bi) as u8 % 2, 1]).collect();
            (c.to_vec(), pres)
        })
        .collect();
    let direct: Vec<_> = plan
        .iter()
        .map(|(i, p)| ds.host_batch(i, p, &norm))
        .collect();
    let pre = Prefetcher::spawn(ds.clone(), norm, plan.clone(), InputFill::Present);
    assert!(pre.is_threaded());
    let got: Vec<_> = pre.collect();
    assert_eq!(got, direct);
    let inline: Vec<_> =
        Prefetcher::inline(ds.clone(), norm, plan.clone(), InputFill::Present).collect();
    assert_eq!(inline, direct);
    assert_eq!(got.len(), 7);
    // Absent video is zeros, present video is not.
    let frame_len = 4 * 3 * 16 * 16;
    let b0 = &got[0];
    for k in 0..b0.batch {
        let f = &b0.frames[k * frame_len..(k + 1) * frame_len];
        assert_eq!(b0.presence[k * 2] == 0.0, f.iter().all(|&v| v == 0.0));
    }
    // Taking one batch and dropping the rest joins the producer (the test would hang if not).
    let mut pre = Prefetcher::spawn(ds, norm, plan, InputFill::Present);
    assert!(pre.next().is_some());
    drop(pre);
}

/// `InputFill::Data` (coverage `zero_after_encoder`): a modality blanked by modality dropout
/// keeps its real input while its presence says 0; `Present` leaves it at zero.
#[test]
fn data_fill_keeps_the_input_of_dropped_modalities() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Arc::new(dataset(dir.path()));
    let norm = ds.normalizer();
    let idx: Vec<usize> = (0..4).filter(|&i| ds.presence(i) == [1, 1]).collect();
    assert!(!idx.is_empty());
    let dropped: Vec<[u8; 2]> = idx.iter().map(|_| [0, 0]).collect();
    let full: Vec<[u8; 2]> = idx.iter().map(|_| [1, 1]).collect();
    let zero = ds.host_batch_with(&idx, &dropped, &norm, InputFill::Present);
    let data = ds.host_batch_with(&idx, &dropped, &norm, InputFill::Data);
    let reference = ds.host_batch(&idx, &full, &norm);
    assert!(zero.frames.iter().all(|&v| v == 0.0) && zero.mel.iter().all(|&v| v == 0.0));
    assert_eq!(data.frames, reference.frames);
    assert_eq!(data.mel, reference.mel);
    assert_eq!(data.presence, zero.presence);
    assert!(data.presence.iter().all(|&p| p == 0.0));
    // Through the prefetcher, threaded and inline.
    let plan = vec![(idx.clone(), dropped.clone())];
    let threaded: Vec<_> =
        Prefetcher::spawn(ds.clone(), norm, plan.clone(), InputFill::Data).collect();
    let inline: Vec<_> = Prefetcher::inline(ds, norm, plan, InputFill::Data).collect();
    assert_eq!(threaded, vec![data.clone()]);
    assert_eq!(inline, vec![data]);
}
