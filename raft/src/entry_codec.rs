//! Raft state and messages use the crate's [`codec`](crate::codec); decode
//! errors become `io::Error`, which openraft's storage traits speak.

use serde::de::DeserializeOwned;

pub use crate::codec::encode;

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    crate::codec::decode(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Decodes `bytes` as every Raft type a peer sends or the disk holds,
/// dropping the results: what fuzz targets and property tests feed
/// arbitrary bytes to (a decoder must answer with a value or an error,
/// never a panic or a huge allocation).
pub fn decode_untrusted(bytes: &[u8]) {
    use crate::types::{Entry, SnapshotMeta, TypeConfig, Vote};
    let _ = decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(bytes);
    let _ = decode::<openraft::raft::VoteRequest<TypeConfig>>(bytes);
    let _ = decode::<openraft::raft::TransferLeaderRequest<TypeConfig>>(bytes);
    let _ = decode::<(Vote, SnapshotMeta, Vec<u8>)>(bytes);
    let _ = decode::<Entry>(bytes);
    let _ = decode::<Vote>(bytes);
    let _ = decode::<crate::requests::RequestRecord>(bytes);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::entry::RaftEntry;
    use openraft::raft::AppendEntriesRequest;
    use openraft::{BasicNode, Membership};

    use super::*;
    use crate::types::{Command, Entry, LogId, TypeConfig, Vote};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(openraft::impls::leader_id_adv::LeaderId { term, node_id: 1 }, index)
    }

    /// bincode is not self-describing: every Raft type we put on the wire
    /// or on disk must round-trip exactly.
    #[test]
    fn raft_messages_round_trip() {
        let members: BTreeMap<u64, BasicNode> = (1..=3).map(|i| (i, BasicNode::new(format!("n{i}")))).collect();
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(2, 9)),
            entries: vec![
                Entry::new_normal(log_id(3, 10), Command::App(vec![1, 2, 3])),
                Entry::new_blank(log_id(3, 11)),
                Entry::new_membership(log_id(3, 12), Membership::from(members)),
            ],
            leader_commit: Some(log_id(3, 10)),
        };
        let back: AppendEntriesRequest<TypeConfig> = decode(&encode(&req)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{req:?}"));
        let r: Result<u64, String> = decode(&encode(&Err::<u64, String>("x".into()))).unwrap();
        assert_eq!(r, Err("x".into()));
    }
}
