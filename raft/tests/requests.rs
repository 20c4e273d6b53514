//! Exactly-once requests on a real (single-replica) Raft group over real
//! RocksDB: an attempt is applied once, a retry gets the first reply, and
//! an attempt that comes too long after the request was first sent is
//! refused without applying (an earlier attempt's record could be gone).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ordo_raft::constants::REQUEST_APPLY_WINDOW_MS;
use ordo_raft::engine::Engine;
use ordo_raft::{wait_for_leader, ApplyContext, Consensus, GroupConfig, GroupHost, GroupLogic, RaftGroup, RequestId};
use ordo_raft::{RequestReply, Transport};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_applies_once_and_never_after_its_window() {
    let dir = std::env::temp_dir().join(format!("ordo-raft-requests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let engine = Engine::open(&dir).unwrap();
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
    let logic = Arc::new(Counter::default());
    let group = RaftGroup::open(&host, 7, &members, true, logic.clone()).await.unwrap();
    assert_eq!(wait_for_leader(group.as_ref(), Duration::from_secs(10)).await, Some(1));

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
