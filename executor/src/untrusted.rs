//! Bytes from peers and the disk are never trusted: [`decode_untrusted`]
//! runs every decoder of them at once, for the fuzz target
//! `peer_messages` (`fuzz/`) and the property tests here. No module
//! imports this one: it sits above the codec and every type it decodes.

use crate::codec::decode;

/// Decodes `bytes` as every message type a peer sends or the disk holds
/// (Raft's, and those of the layers above it), dropping the results: what
/// the fuzz target `peer_messages` and the property tests below feed
/// arbitrary bytes to.
pub fn decode_untrusted(bytes: &[u8]) {
    use crate::rpc::{ShardRequest, ShardResponse};
    use crate::txn::program::TxnProgram;
    use crate::txn::record::TxnRecord;
    use crate::txn::statement::SequencedInput;
    ordo_raft::decode_untrusted(bytes);
    let _ = decode::<ShardRequest>(bytes);
    let _ = decode::<ShardResponse>(bytes);
    let _ = decode::<TxnProgram>(bytes);
    let _ = decode::<SequencedInput>(bytes);
    let _ = decode::<TxnRecord>(bytes);
    let _ = decode::<ordo_vshard::shard::ShardCommand>(bytes);
    let _ = decode::<ordo_meta::command::MetaCommand>(bytes);
    let _ = decode::<ordo_meta::catalog::Catalog>(bytes);
    let _ = decode::<ordo_sequencer::Epoch>(bytes);
    let _ = ordo_meta::datum::decode_row(bytes);
}

/// Bytes from peers and storage are never trusted: whatever arrives, a
/// decoder answers with a value or an error, never a panic or a huge
/// allocation (see `ordo_raft::codec`'s bound). Run by every `cargo test`,
/// beside the fuzz target `peer_messages` (docs/RELIABILITY.md).
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::encode;
    use crate::rpc::ShardRequest;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn random_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            decode_untrusted(&bytes);
        }

        #[test]
        fn corrupted_messages_never_panic_a_decoder(at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let req = ShardRequest::Once {
                id: ordo_raft::RequestId { node: 1, session: 2, seq: 3, first_ms: 4 },
                req: Box::new(ShardRequest::ReadAt {
                    pos: ordo_vshard::shard::TxnPos { epoch: 9, index: 1 },
                    vshard: 4,
                    key: b"key".to_vec(),
                    prefix: false,
                }),
            };
            let mut bytes = encode(&req);
            let i = at % bytes.len();
            bytes[i] = byte;
            bytes.truncate(cut % (bytes.len() + 1));
            decode_untrusted(&bytes);
        }

        #[test]
        fn sql_text_never_panics_the_expression_path(text in "[a-z0-9_$+*/%()<>=!'., -]{0,200}") {
            let _ = ordo_expr::depth::check_depth(&text);
            let _ = ordo_expr::parse::parse_expr(&text);
        }
    }
}
