//! The meta group's state machine logic: applies [`MetaCommand`]s to the
//! catalog, keeps the catalog in memory for every reader on the node and
//! persists it with each apply.

use std::sync::Arc;

use ordo_raft::GroupId;
use ordo_raft::{ApplyContext, GroupLogic};
use parking_lot::RwLock;

use crate::catalog::Catalog;
use crate::command::{MetaCommand, MetaResult};

/// Data key of the catalog in the meta group.
pub const CATALOG_KEY: &[u8] = b"catalog";

use ordo_raft::codec::{decode, encode};

pub fn encode_command(cmd: &MetaCommand) -> Vec<u8> {
    encode(cmd)
}

pub fn decode_result(bytes: &[u8]) -> Result<MetaResult, String> {
    decode(bytes).map_err(|e| e.to_string())
}

/// The node's replica of the catalog, shared with every reader on the node.
#[derive(Default)]
pub struct MetaLogic {
    catalog: RwLock<Arc<Catalog>>,
    /// On a node without a meta replica: the meta log index of the copy
    /// last installed from the leader.
    installed_index: parking_lot::Mutex<u64>,
    /// Whether the catalog came from the meta group at all (a replica's
    /// stored or applied state, or an installed copy), rather than being
    /// the empty default of a node that has not heard from it yet.
    known: std::sync::atomic::AtomicBool,
}

impl MetaLogic {
    /// The catalog as of the last applied meta entry (cheap: an `Arc`).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().clone()
    }

    /// Whether [`MetaLogic::catalog`] is the meta group's (see `known`).
    pub fn is_known(&self) -> bool {
        self.known.load(std::sync::atomic::Ordering::Acquire)
    }

    /// On a node without a meta replica: installs the leader's catalog as of
    /// meta log `index` (encoded as stored), unless one of that index or a
    /// later one is in. The leader reads the index before the bytes, so the
    /// bytes are at least as new as their index, maybe newer: only a copy of
    /// a later index is sure to be at least as new as the one installed.
    pub fn install(&self, index: u64, bytes: &[u8]) -> Result<(), String> {
        let catalog: Catalog = decode(bytes).map_err(|e| e.to_string())?;
        let mut installed = self.installed_index.lock();
        if index > *installed {
            *installed = index;
            *self.catalog.write() = Arc::new(catalog);
            self.known.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }
}

impl GroupLogic for MetaLogic {
    fn apply(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Vec<u8> {
        let cmd: MetaCommand = match decode(command) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("undecodable meta command: {e}");
                return Vec::new();
            }
        };
        let mut next = (**self.catalog.read()).clone();
        let result = next.apply(cmd);
        ctx.put(CATALOG_KEY, &encode(&next));
        *self.catalog.write() = Arc::new(next);
        self.known.store(true, std::sync::atomic::Ordering::Release);
        encode(&result)
    }

    fn reload(&self, gid: GroupId, db: &rocksdb::DB) {
        let key = ordo_raft::keys::key(gid, ordo_raft::keys::Section::Data, CATALOG_KEY);
        let catalog = match db.get(key) {
            Ok(Some(bytes)) => decode(&bytes).unwrap_or_else(|e| {
                panic!(
                    "undecodable catalog in RocksDB ({e}): corrupt, or written by a build with another catalog format"
                )
            }),
            Ok(None) => Catalog::default(),
            Err(e) => panic!("cannot read the catalog: {e}"),
        };
        *self.catalog.write() = Arc::new(catalog);
        self.known.store(true, std::sync::atomic::Ordering::Release);
    }
}
