//! Exactly-once requests on a real (single-replica) Raft group over real
//! RocksDB: an attempt is applied once, a retry gets the first reply, and
//! an attempt that comes too long after the request was first sent is
//! refused without applying (an earlier attempt's record could be gone).
//! Writes queued for a leader's term apply in the order they were queued,
//! and never in another term.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ordo_raft::constants::REQUEST_APPLY_WINDOW_MS;
use ordo_raft::engine::Engine;
use ordo_raft::{wait_for_leader, ApplyContext, Consensus, GroupConfig, GroupHost, GroupLogic, RaftGroup, RequestId};
use ordo_raft::{ConsensusError, RequestReply, Transport};

/// Counts its applies; replies with the count.
#[derive(Default)]
struct Counter {
    applied: AtomicU64,
}

impl GroupLogic for Counter {
    fn apply(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Vec<u8> {
        ctx.put(b"last", command);
        (self.applied.fetch_add(1, Ordering::SeqCst) + 1).to_be_bytes().to_vec()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A single-replica group `gid` in a fresh directory, its leader elected.
async fn one_replica(name: &str, logic: Arc<Counter>) -> (Arc<RaftGroup>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ordo-raft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (open_replica(Engine::open(&dir).unwrap(), logic).await, dir)
}

/// The single-replica group stored in `engine` (created if new), its
/// leader elected.
async fn open_replica(engine: Arc<Engine>, logic: Arc<Counter>) -> Arc<RaftGroup> {
    let members: BTreeMap<u64, String> = [(1, "127.0.0.1:1".to_string())].into();
    let creds =
        ordo_raft::identity::Credentials { cluster: "t".into(), secret: "t".into(), node_id: 1, incarnation: 1 };
    let host = GroupHost {
        node_id: 1,
        engine: engine.clone(),
        transport: Transport::new(creds, &members).unwrap(),
        config: GroupConfig { heartbeat_ms: 50, snapshot_logs: 1000 },
        metrics: Default::default(),
    };
    let group = RaftGroup::open(&host, 7, &members, true, logic).await.unwrap();
    assert_eq!(wait_for_leader(group.as_ref(), Duration::from_secs(10)).await, Some(1));
    group
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_applies_once_and_never_after_its_window() {
    let logic = Arc::new(Counter::default());
    let (group, dir) = one_replica("requests", logic.clone()).await;

    let fresh = RequestId { node: 2, session: 1, seq: 1, first_ms: now_ms() };
    let first = group.propose_request(fresh, b"a".to_vec(), None).await.unwrap();
    assert_eq!(first, RequestReply::Applied(1u64.to_be_bytes().to_vec()));
    let retry = group.propose_request(fresh, b"a".to_vec(), None).await.unwrap();
    assert_eq!(retry, RequestReply::Duplicate(Some(1u64.to_be_bytes().to_vec())), "a retry gets the first reply");

    // First sent longer ago than the window: refused, not applied.
    let stale = RequestId { node: 2, session: 1, seq: 2, first_ms: now_ms() - REQUEST_APPLY_WINDOW_MS - 1_000 };
    let late = group.propose_request(stale, b"b".to_vec(), None).await.unwrap();
    assert_eq!(late, RequestReply::TooLate);
    assert_eq!(logic.applied.load(Ordering::SeqCst), 1, "only the first attempt applied");
    // A retry of a request applied within its window still learns that it
    // was, even after the window.
    assert!(group.applied_request(fresh).unwrap().is_some());
    group.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_apply_in_queue_order_and_only_in_their_term() {
    let logic = Arc::new(Counter::default());
    let (group, dir) = one_replica("submit", logic.clone()).await;
    let term = group.leader_term().expect("leads");
    let count = |n: u64| RequestReply::Applied(n.to_be_bytes().to_vec());

    // Queued one after the other, awaited in reverse: applied in queue order.
    let first = group.submit(term, None, b"a".to_vec(), None).await.unwrap();
    let second = group.submit(term, None, b"b".to_vec(), None).await.unwrap();
    assert_eq!(second.await.unwrap(), count(2));
    assert_eq!(first.await.unwrap(), count(1));

    // For a term this replica does not lead in: refused when it would be
    // appended, never applied.
    let other = group.submit(term + 1, None, b"c".to_vec(), None).await.unwrap();
    assert!(matches!(other.await, Err(ConsensusError::NotLeader { .. })), "a write for another term is refused");

    // A request: applied once; an attempt past its window is refused
    // before it is queued.
    let fresh = RequestId { node: 2, session: 1, seq: 1, first_ms: now_ms() };
    let applied = group.submit(term, Some(fresh), b"d".to_vec(), None).await.unwrap().await.unwrap();
    assert_eq!(applied, count(3));
    let stale = RequestId { node: 2, session: 1, seq: 2, first_ms: now_ms() - REQUEST_APPLY_WINDOW_MS - 1_000 };
    let late = group.submit(term, Some(stale), b"e".to_vec(), None).await;
    assert!(matches!(late, Err(ConsensusError::Unknown { .. })), "a late attempt is refused as unknown");
    assert_eq!(logic.applied.load(Ordering::SeqCst), 3, "only the writes of the leader's term applied");
    group.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A leader that restarts leads again only through a new election, in a
/// new term: resuming its old term, its barriers would not cover entries it
/// appended before the restart, and writes it computed could miss them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_leads_again_only_in_a_new_term() {
    let logic = Arc::new(Counter::default());
    let dir = std::env::temp_dir().join(format!("ordo-raft-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let engine = Engine::open(&dir).unwrap();
    let group = open_replica(engine.clone(), logic.clone()).await;
    let term = group.leader_term().expect("leads");
    group.propose(b"a".to_vec()).await.unwrap();
    group.shutdown().await;
    drop(group);
    // The same storage, as a restarted node finds it.
    let group = open_replica(engine, logic).await;
    let again = group.leader_term().expect("leads again");
    assert!(again > term, "restarted leader resumed term {term} instead of winning a new one ({again})");
    group.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
