//! The sequencer on a real (single-replica) Raft group over real RocksDB.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ordo_raft::engine::Engine;
use ordo_raft::groups::SEQUENCER_GROUP;
use ordo_raft::{wait_for_leader, Consensus, GroupConfig, GroupHost, RaftGroup, Transport};
use ordo_sequencer::{EpochInput, EpochLog, SealError, Sealer, SealerConfig, SequencerLogic};

async fn open(engine: &Arc<Engine>, logic: &Arc<SequencerLogic>) -> Arc<RaftGroup> {
    let members: BTreeMap<u64, String> = [(1, "127.0.0.1:1".to_string())].into();
    let creds =
        ordo_raft::identity::Credentials { cluster: "t".into(), secret: "t".into(), node_id: 1, incarnation: 1 };
    let transport = Transport::new(creds, &members).unwrap();
    let config = GroupConfig { heartbeat_ms: 50, snapshot_logs: 1000 };
    let host = GroupHost { node_id: 1, engine: engine.clone(), transport, config, metrics: Default::default() };
    let group = RaftGroup::open(&host, SEQUENCER_GROUP, &members, true, logic.clone()).await.unwrap();
    assert_eq!(wait_for_leader(group.as_ref(), Duration::from_secs(10)).await, Some(1));
    group
}

fn input(i: u32) -> EpochInput {
    EpochInput { participants: vec![i % 7, 7 + i % 5], program: i.to_be_bytes().to_vec(), request: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_sealed_into_gap_free_monotonic_epochs_that_survive_reopen() {
    let dir = std::env::temp_dir().join(format!("ordo-seq-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let engine = Engine::open(&dir).unwrap();
    let logic = Arc::new(SequencerLogic::default());
    let group = open(&engine, &logic).await;
    let mut applied = logic.subscribe();
    let sealer = Sealer::start(group.clone(), SealerConfig { epoch_ms: 5, inputs_max: 64, ..Default::default() });

    let n = 500u32;
    let results = futures::future::join_all((0..n).map(|i| sealer.submit(input(i)))).await;
    let sealed: Vec<_> = results.into_iter().map(|r| r.expect("sealed")).collect();
    let last = sealed.iter().map(|s| s.epoch.number).max().unwrap();
    assert!(last < n as u64, "inputs were batched into epochs ({last} epochs for {n} inputs)");
    // Readers are woken only after the epoch is readable.
    applied.wait_for(|&e| e >= last).await.unwrap();

    let log = EpochLog::new(SEQUENCER_GROUP, engine.clone());
    let epochs = log.read(1, 10_000).unwrap();
    assert_eq!(epochs.len() as u64, last, "every epoch 1..=last, no gaps");
    let mut seen = BTreeSet::new();
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(e.number, i as u64 + 1);
        assert!(e.inputs.len() <= 64, "batch bound respected");
        if i > 0 {
            assert!(e.timestamp_us > epochs[i - 1].timestamp_us, "timestamps strictly increase");
        }
        for inp in &e.inputs {
            assert!(seen.insert(inp.program.clone()), "an input was sealed twice");
        }
    }
    assert_eq!(seen.len(), n as usize, "every input sealed exactly once");
    for (i, s) in sealed.iter().enumerate() {
        let e = &epochs[(s.epoch.number - 1) as usize];
        assert_eq!(e.timestamp_us, s.epoch.timestamp_us);
        assert_eq!(e.inputs[s.index as usize], input(i as u32), "the reported index is the input's place in its epoch");
    }

    // Reopen the group on the same storage: numbering and time continue.
    group.shutdown().await;
    drop(sealer);
    let logic2 = Arc::new(SequencerLogic::default());
    let group2 = open(&engine, &logic2).await;
    let sealer2 = Sealer::start(group2.clone(), SealerConfig::default());
    let next = sealer2.submit(input(n + 1)).await.unwrap();
    assert_eq!(next.epoch.number, last + 1);
    assert!(next.epoch.timestamp_us > epochs.last().unwrap().timestamp_us);
    assert_eq!(log.read(last + 1, 10).unwrap().len(), 1);

    // Collect the first half: readers asking from before it start at the
    // first epoch kept, and the bound survives a reopen.
    let half = last / 2;
    group2.propose(ordo_sequencer::collect_command(half)).await.unwrap();
    assert_eq!(log.first_retained().unwrap(), half + 1);
    let rest = log.read(1, 10_000).unwrap();
    assert_eq!(rest.first().map(|e| e.number), Some(half + 1), "collected epochs are gone, the rest start right after");
    assert_eq!(rest.len() as u64, last + 1 - half, "no gap after the collected ones");
    // A bound past the last epoch collects all but the last one, which a
    // reader from before it still finds.
    group2.propose(ordo_sequencer::collect_command(u64::MAX)).await.unwrap();
    assert_eq!(log.first_retained().unwrap(), last + 1);
    assert_eq!(log.read(1, 10).unwrap().iter().map(|e| e.number).collect::<Vec<_>>(), vec![last + 1]);
    group2.shutdown().await;
    drop(sealer2);
    let logic3 = Arc::new(SequencerLogic::default());
    let group3 = open(&engine, &logic3).await;
    let sealer3 = Sealer::start(group3.clone(), SealerConfig::default());
    let after = sealer3.submit(input(n + 2)).await.unwrap();
    assert_eq!(after.epoch.number, last + 2, "numbering continues after a collection");
    assert_eq!(log.read(1, 10).unwrap().iter().map(|e| e.number).collect::<Vec<_>>(), vec![last + 1, last + 2]);
    group3.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A retried input (same request id) keeps the place its first attempt got,
/// within one epoch, across epochs and after the group is reopened; inputs
/// without an id are never merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_input_is_sequenced_once() {
    let dir = std::env::temp_dir().join(format!("ordo-seq-once-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let now_ms = ordo_raft::requests::stamp_now_ms();
    let id = |seq| Some(ordo_raft::RequestId { node: 2, session: 7, seq, first_ms: now_ms });
    let with_id = |i: u32, seq| EpochInput { request: id(seq), ..input(i) };
    let first;
    let closed;
    {
        let engine = Engine::open(&dir).unwrap();
        closed = Arc::downgrade(&engine);
        let logic = Arc::new(SequencerLogic::default());
        let group = open(&engine, &logic).await;
        let sealer = Sealer::start(group.clone(), SealerConfig { epoch_ms: 20, inputs_max: 64, ..Default::default() });
        // Two attempts in one epoch, a third in a later one.
        let (a, b) = futures::join!(sealer.submit(with_id(1, 1)), sealer.submit(with_id(1, 1)));
        first = a.unwrap();
        assert_eq!(b.unwrap(), first, "a retry in the same epoch gets the first place");
        let c = sealer.submit(with_id(1, 1)).await.unwrap();
        assert_eq!(c, first, "a retry in a later epoch gets the first place");
        let other = sealer.submit(with_id(2, 2)).await.unwrap();
        assert_ne!(other, first, "another request is another input");
        let (x, y) = futures::join!(sealer.submit(input(9)), sealer.submit(input(9)));
        assert_ne!(x.unwrap(), y.unwrap(), "inputs without an id are never merged");
        // An attempt first sent longer ago than the window is not sequenced
        // (an earlier attempt's record could have expired): unknown.
        let first_ms = now_ms - ordo_raft::constants::REQUEST_APPLY_WINDOW_MS - 1_000;
        let stale = EpochInput { request: Some(ordo_raft::RequestId { first_ms, ..id(3).unwrap() }), ..input(3) };
        let refused = sealer.submit(stale).await;
        assert!(matches!(refused, Err(SealError::Unknown(_))), "{refused:?}");
        group.shutdown().await;
    }
    // The sealer's task ends on its own once its handle is gone, and holds
    // the engine (RocksDB's lock) until then.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while closed.strong_count() > 0 {
        assert!(std::time::Instant::now() < deadline, "the first engine was never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let engine = Engine::open(&dir).unwrap();
    let logic = Arc::new(SequencerLogic::default());
    let group = open(&engine, &logic).await;
    let sealer = Sealer::start(group.clone(), SealerConfig { epoch_ms: 5, ..Default::default() });
    assert_eq!(sealer.submit(with_id(1, 1)).await.unwrap(), first, "records survive a restart");
    let log = EpochLog::new(SEQUENCER_GROUP, engine.clone());
    let program = input(1).program;
    let inputs: Vec<EpochInput> = log.read(1, 1000).unwrap().into_iter().flat_map(|e| e.inputs).collect();
    let sealed_once = inputs.iter().filter(|i| i.program == program).count();
    assert!(inputs.iter().all(|i| i.request.is_none()), "stored epochs carry no request ids");
    assert_eq!(sealed_once, 1, "the retried input is in the epoch log once");
    assert!(!inputs.iter().any(|i| i.program == input(3).program), "the stale attempt is not in the epoch log");
    group.shutdown().await;
}
