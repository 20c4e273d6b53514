//! The openraft type configuration shared by every group of every node.
//!
//! One configuration for all groups lets a single transport carry them all.
//! Commands and replies are opaque bytes: each group's [`GroupLogic`]
//! (meta, sequencer, vShard) encodes its own.
//!
//! [`GroupLogic`]: crate::GroupLogic

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A command replicated through a group's log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A command of the group's [`GroupLogic`](crate::GroupLogic).
    App(Vec<u8>),
    /// Every replica hashes its data section at this log position, so
    /// replicas can be compared at the same point of the log.
    Checksum,
    /// A command of the group's logic sent on behalf of a client request
    /// that may be retried: applied once per request id (see
    /// [`crate::requests`]).
    Request(Box<RequestCommand>),
}

/// A client request's command, its id and its proposer's stamp.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCommand {
    pub id: crate::requests::RequestId,
    pub stamp_ms: u64,
    #[serde(with = "serde_bytes")]
    pub command: Vec<u8>,
    /// The reply to record, when the proposer computed it (a vShard write
    /// set's row count or outputs); `None`: the logic's own reply.
    #[serde(with = "serde_bytes")]
    pub reply: Option<Vec<u8>>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::App(b) => write!(f, "App({} bytes)", b.len()),
            Command::Checksum => write!(f, "Checksum"),
            Command::Request(r) => write!(f, "Request({:?}, {} bytes)", r.id, r.command.len()),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What applying a [`Command`] returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Vec<u8>);

/// The type configuration: openraft's defaults but for the commands,
/// replies and node ids above, and the responder of client writes
/// ([`WriteResponder`]), which `declare_raft_types!` cannot set.
#[derive(Debug, Clone, Copy, Default, Eq, PartialEq, Ord, PartialOrd)]
pub struct TypeConfig;

impl openraft::RaftTypeConfig for TypeConfig {
    type D = Command;
    type R = Reply;
    type NodeId = u64;
    type Node = openraft::BasicNode;
    type Term = u64;
    type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, u64>;
    type Vote = openraft::impls::Vote<Self::LeaderId>;
    type Payload = openraft::EntryPayload<Command, u64, openraft::BasicNode>;
    type Entry = openraft::Entry<<Self::LeaderId as openraft::vote::RaftLeaderId>::Committed, Self::Payload>;
    type AsyncRuntime = openraft::impls::TokioRuntime;
    type Responder<T>
        = WriteResponder<T>
    where
        T: openraft::OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: openraft::OptionalSend + 'static;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}

/// Hands a client write's result to its writer, and first to `hook`, which
/// runs where openraft hands the result over: for a refusal, inside
/// RaftCore before it takes its next message, so anything that asks
/// RaftCore later (a barrier) is ordered after the hook's effect.
pub struct WriteResponder<T> {
    tx: tokio::sync::oneshot::Sender<T>,
    hook: Option<ResultHook<T>>,
}

/// Looks at a write's result where openraft hands it over.
pub type ResultHook<T> = Box<dyn FnOnce(&T) + Send>;

impl<T> WriteResponder<T> {
    pub fn new(hook: Option<ResultHook<T>>) -> (WriteResponder<T>, tokio::sync::oneshot::Receiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (WriteResponder { tx, hook }, rx)
    }
}

impl<T: openraft::OptionalSend + 'static> openraft::raft::responder::Responder<TypeConfig, T> for WriteResponder<T> {
    fn on_complete(self, result: T) {
        if let Some(hook) = self.hook {
            hook(&result);
        }
        // The writer may have stopped waiting: nothing to tell then.
        let _ = self.tx.send(result);
    }
}

pub type SnapshotData = Cursor<Vec<u8>>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// Which Raft RPC a message carries on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftKind {
    Append,
    Vote,
    Snapshot,
    TransferLeader,
}
