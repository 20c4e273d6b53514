//! Replica verification: every replica of every group hashes its data at
//! the same log position (a replicated checksum point), and the hashes are
//! compared. Identical hashes mean the replicas applied the same commands to
//! the same state with the same result — the determinism check.

use std::collections::BTreeMap;

use futures::StreamExt;
use ordo_raft::GroupId;
use serde::Serialize;

use crate::constants::VERIFY_FANOUT_MAX;
use crate::rpc::Router;

#[derive(Clone, Debug, Serialize)]
pub struct GroupVerdict {
    pub group_id: GroupId,
    /// The log index of the checksum point.
    pub index: Option<u64>,
    /// Each replica's hash (hex), or the error that prevented reading it.
    pub replicas: BTreeMap<u64, Result<String, String>>,
    pub consistent: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub consistent: bool,
    pub groups: Vec<GroupVerdict>,
}

async fn verify_group(router: &Router, gid: GroupId) -> GroupVerdict {
    let replicas_of = router.placement().replicas(gid);
    let index = match router.checksum_point(gid).await {
        Ok(index) => index,
        Err(e) => {
            let why = format!("no checksum point: {e}");
            return GroupVerdict {
                group_id: gid,
                index: None,
                replicas: replicas_of.into_iter().map(|r| (r, Err(why.clone()))).collect(),
                consistent: false,
            };
        }
    };
    let mut replicas = BTreeMap::new();
    for r in replicas_of {
        let got = match router.replica_checksum(r, gid, index).await {
            Ok(Some(h)) => Ok(format!("{h:016x}")),
            Ok(None) => Err("superseded by a newer checksum point".into()),
            Err(e) => Err(e.to_string()),
        };
        replicas.insert(r, got);
    }
    let mut hashes = replicas.values().filter_map(|h| h.as_ref().ok());
    let first = hashes.next();
    let consistent = first.is_some() && replicas.values().all(|h| h.as_ref().ok() == first);
    GroupVerdict { group_id: gid, index: Some(index), replicas, consistent }
}

/// Checks every group of the cluster. A replica that cannot answer (down,
/// partitioned) makes its group inconsistent: unverified is not verified.
pub async fn verify_all(router: &Router) -> Verdict {
    let gids = router.placement().groups();
    let groups: Vec<GroupVerdict> =
        futures::stream::iter(gids).map(|g| verify_group(router, g)).buffered(VERIFY_FANOUT_MAX).collect().await;
    Verdict { consistent: groups.iter().all(|g| g.consistent), groups }
}
