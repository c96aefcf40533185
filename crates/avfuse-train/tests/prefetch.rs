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
    let pre = Prefetcher::spawn(ds.clone(), norm, plan.clone(), InputFill::Present.into());
    assert!(pre.is_threaded());
    let got: Vec<_> = pre.collect();
    assert_eq!(got, direct);
    let inline: Vec<_> =
        Prefetcher::inline(ds.clone(), norm, plan.clone(), InputFill::Present.into()).collect();
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
    let mut pre = Prefetcher::spawn(ds, norm, plan, InputFill::Present.into());
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
    let zero = ds.host_batch_with(&idx, &dropped, &norm, &InputFill::Present.into());
    let data = ds.host_batch_with(&idx, &dropped, &norm, &InputFill::Data.into());
    let reference = ds.host_batch(&idx, &full, &norm);
    assert!(zero.frames.iter().all(|&v| v == 0.0) && zero.mel.iter().all(|&v| v == 0.0));
    assert_eq!(data.frames, reference.frames);
    assert_eq!(data.mel, reference.mel);
    assert_eq!(data.presence, zero.presence);
    assert!(data.presence.iter().all(|&p| p == 0.0));
    // Through the prefetcher, threaded and inline.
    let plan = vec![(idx.clone(), dropped.clone())];
    let threaded: Vec<_> =
        Prefetcher::spawn(ds.clone(), norm, plan.clone(), InputFill::Data.into()).collect();
    let inline: Vec<_> = Prefetcher::inline(ds, norm, plan, InputFill::Data.into()).collect();
    assert_eq!(threaded, vec![data.clone()]);
    assert_eq!(inline, vec![data]);
}

/// Augmentation: a clip's augmented input depends on the epoch seed and the clip, not on the
/// batch it lands in; it changes the input (and only of present modalities); the threaded
/// and inline prefetchers give the same batches.
#[test]
fn augmentation_is_seeded_per_clip_and_changes_only_present_inputs() {
    use avfuse_media::augment::AugmentConfig;
    use avfuse_train::data::{Augment, BatchOptions};

    let dir = tempfile::tempdir().unwrap();
    let ds = Arc::new(dataset(dir.path()));
    let norm = ds.normalizer();
    let opts = |seed| BatchOptions {
        fill: InputFill::Present,
        augment: Some(Augment {
            policy: AugmentConfig {
                flip_p: 1.0,
                jitter_p: 1.0,
                ..AugmentConfig::default()
            },
            seed,
        }),
    };
    let idx: Vec<usize> = (0..6).collect();
    let pres: Vec<[u8; 2]> = idx.iter().map(|&i| ds.presence(i)).collect();
    let plain = ds.host_batch(&idx, &pres, &norm);
    let a = ds.host_batch_with(&idx, &pres, &norm, &opts(5));
    let frame_len = 4 * 3 * 16 * 16;
    let mel_len = plain.mel.len() / idx.len();
    for (k, p) in pres.iter().enumerate() {
        let fr = k * frame_len..(k + 1) * frame_len;
        let me = k * mel_len..(k + 1) * mel_len;
        assert_eq!(p[0] == 1, a.frames[fr.clone()] != plain.frames[fr]);
        assert_eq!(p[1] == 1, a.mel[me.clone()] != plain.mel[me]);
    }
    // Clip 3 alone, or in another batch, gets the same augmentation; another seed differs.
    let single = ds.host_batch_with(&[3], &[pres[3]], &norm, &opts(5));
    assert_eq!(single.frames, a.frames[3 * frame_len..4 * frame_len]);
    assert_eq!(single.mel, a.mel[3 * mel_len..4 * mel_len]);
    let other = ds.host_batch_with(&[3], &[pres[3]], &norm, &opts(6));
    assert_ne!(other.frames, single.frames);
    // Threaded and inline prefetchers agree with the direct batches.
    let plan = vec![
        (idx[..3].to_vec(), pres[..3].to_vec()),
        (idx[3..].to_vec(), pres[3..].to_vec()),
    ];
    let direct: Vec<_> = plan
        .iter()
        .map(|(i, p)| ds.host_batch_with(i, p, &norm, &opts(5)))
        .collect();
    let threaded: Vec<_> = Prefetcher::spawn(ds.clone(), norm, plan.clone(), opts(5)).collect();
    let inline: Vec<_> = Prefetcher::inline(ds, norm, plan, opts(5)).collect();
    assert_eq!(threaded, direct);
    assert_eq!(inline, direct);
}
