//! Who may talk to a node's RPC port, and as whom.
//!
//! Every call between nodes carries the cluster's id, the cluster secret,
//! the calling node's id and its *incarnation* (a number drawn when its data
//! directory was created). The receiving node admits a call only with its
//! own cluster id and secret (compared in constant time), from a node of its
//! `--peers`, in the incarnation it first knew that node by. So a stranger,
//! a node of another cluster, or a node whose disk was wiped (it forgot its
//! votes and its log, and must not vote or lead as its old self) is refused,
//! and the refusal logged.
//!
//! A node's identity lives in `identity.json` in its data directory; the
//! incarnations it has seen of its peers in `peers.json` next to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::Status;

const CLUSTER_HEADER: &str = "x-ordo-cluster";
const SECRET_HEADER: &str = "x-ordo-secret";
const NODE_HEADER: &str = "x-ordo-node";
const INCARNATION_HEADER: &str = "x-ordo-incarnation";
/// Marks a start-up probe: checked like any call, but the incarnation it
/// carries is not recorded (the node may yet give it up).
const PROBE_HEADER: &str = "x-ordo-probe";

/// The message a wiped node's calls are refused with (the node looks for it
/// at start, see [`is_wiped_refusal`]).
const WIPED: &str = "came back with new storage";

/// What this node presents to its peers and expects from them.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub cluster: String,
    pub secret: String,
    pub node_id: u64,
    pub incarnation: u64,
}

/// A node's identity as stored in its data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub cluster: String,
    pub node_id: u64,
    pub incarnation: u64,
}

impl Identity {
    /// A new incarnation of node `node_id` (not stored yet: see [`Identity::store`]).
    pub fn new(cluster: &str, node_id: u64) -> Identity {
        Identity { cluster: cluster.to_string(), node_id, incarnation: fresh_incarnation() }
    }

    /// The identity stored in `dir`, if any. One of another cluster or node
    /// id is an error: the directory is not this node's.
    pub fn load(dir: &Path, cluster: &str, node_id: u64) -> Result<Option<Identity>, String> {
        let path = dir.join("identity.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let id: Identity = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if id.cluster != cluster || id.node_id != node_id {
            return Err(format!(
                "{} belongs to node {} of cluster {:?}, not node {node_id} of cluster {cluster:?}",
                dir.display(),
                id.node_id,
                id.cluster
            ));
        }
        Ok(Some(id))
    }

    /// Stores this identity in `dir` (durably).
    pub fn store(&self, dir: &Path) -> Result<(), String> {
        write_durably(&dir.join("identity.json"), &serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?)
    }

    /// The credentials this node presents with `secret`.
    pub fn credentials(&self, secret: &str) -> Credentials {
        Credentials {
            cluster: self.cluster.clone(),
            secret: secret.to_string(),
            node_id: self.node_id,
            incarnation: self.incarnation,
        }
    }
}

/// A number no earlier incarnation of the node had: the clock's nanoseconds
/// mixed with the process id (identity files are written once per disk).
fn fresh_incarnation() -> u64 {
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    ns ^ (u64::from(std::process::id()) << 48)
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the
/// new content: a temporary file, fsynced, renamed over, directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}

/// Puts this node's credentials on an outgoing call.
pub fn attach<T>(request: &mut tonic::Request<T>, creds: &Credentials) {
    let m = request.metadata_mut();
    // Values come from flags and numbers; one that is no valid header
    // value is left off, and the peer refuses the call.
    for (name, value) in [
        (CLUSTER_HEADER, creds.cluster.clone()),
        (SECRET_HEADER, creds.secret.clone()),
        (NODE_HEADER, creds.node_id.to_string()),
        (INCARNATION_HEADER, creds.incarnation.to_string()),
    ] {
        if let Ok(v) = MetadataValue::try_from(value.as_str()) {
            m.insert(name, v);
        }
    }
}

/// Marks `request` as a start-up probe (see [`PROBE_HEADER`]).
pub fn mark_probe<T>(request: &mut tonic::Request<T>) {
    request.metadata_mut().insert(PROBE_HEADER, MetadataValue::from_static("1"));
}

/// Whether a refused call says this node was wiped (see [`Gate::admit`]).
pub fn is_wiped_refusal(status: &Status) -> bool {
    status.code() == tonic::Code::PermissionDenied && status.message().contains(WIPED)
}

/// Checks incoming calls (see the module docs).
pub struct Gate {
    creds: Credentials,
    peers: Vec<u64>,
    book: Mutex<BTreeMap<u64, u64>>,
    book_path: PathBuf,
}

impl Gate {
    /// A gate for this node (`creds`), admitting the nodes `peers`, with the
    /// incarnations it saw before read from `dir`.
    pub fn open(dir: &Path, creds: Credentials, peers: Vec<u64>) -> Result<Gate, String> {
        let book_path = dir.join("peers.json");
        let book = match std::fs::read(&book_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", book_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("{}: {e}", book_path.display())),
        };
        Ok(Gate { creds, peers, book: Mutex::new(book), book_path })
    }

    /// Admits a call with `metadata`, or refuses it (and logs why).
    pub fn admit(&self, metadata: &MetadataMap) -> Result<u64, Status> {
        let refused = |why: String| {
            tracing::warn!("refused a call on the RPC port: {why}");
            Err(Status::permission_denied(why))
        };
        let header = |name| metadata.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let secret_ok: bool = header(SECRET_HEADER).as_bytes().ct_eq(self.creds.secret.as_bytes()).into();
        if !secret_ok {
            return refused("wrong or missing cluster secret".into());
        }
        if header(CLUSTER_HEADER) != self.creds.cluster {
            return refused(format!(
                "a node of cluster {:?}, this is {:?}",
                header(CLUSTER_HEADER),
                self.creds.cluster
            ));
        }
        let (Ok(node), Ok(incarnation)) =
            (header(NODE_HEADER).parse::<u64>(), header(INCARNATION_HEADER).parse::<u64>())
        else {
            return refused("no node id or incarnation".into());
        };
        if node == self.creds.node_id || !self.peers.contains(&node) {
            return refused(format!("node {node} is not a peer of node {}", self.creds.node_id));
        }
        let record = metadata.get(PROBE_HEADER).is_none();
        self.check_incarnation(node, incarnation, record).map(|()| node).or_else(refused)
    }

    /// A peer is known by the first incarnation seen of it (`record`: this
    /// call's incarnation is the one to remember if none is yet).
    fn check_incarnation(&self, node: u64, incarnation: u64, record: bool) -> Result<(), String> {
        let mut book = self.book.lock();
        match book.get(&node) {
            Some(&known) if known == incarnation => Ok(()),
            Some(&known) => Err(format!(
                "node {node} {WIPED} (incarnation {incarnation}, known as {known}): a node whose data directory \
                 was lost cannot rejoin as itself (see README, \"Replacing a node\")"
            )),
            None if !record => Ok(()),
            None => {
                book.insert(node, incarnation);
                let bytes = serde_json::to_vec_pretty(&*book).map_err(|e| e.to_string())?;
                write_durably(&self.book_path, &bytes)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ordo-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn creds(node_id: u64, incarnation: u64, secret: &str) -> Credentials {
        Credentials { cluster: "c1".into(), secret: secret.into(), node_id, incarnation }
    }

    fn call(c: &Credentials) -> MetadataMap {
        let mut r = tonic::Request::new(());
        attach(&mut r, c);
        r.metadata().clone()
    }

    #[test]
    fn identities_persist_and_belong_to_one_node() {
        let d = dir("persist");
        assert_eq!(Identity::load(&d, "c1", 2).unwrap(), None);
        let a = Identity::new("c1", 2);
        a.store(&d).unwrap();
        assert_eq!(Identity::load(&d, "c1", 2).unwrap(), Some(a.clone()));
        assert_ne!(Identity::new("c1", 2).incarnation, a.incarnation);
        assert!(Identity::load(&d, "c2", 2).is_err());
        assert!(Identity::load(&d, "c1", 3).is_err());
    }

    #[test]
    fn the_gate_refuses_strangers_other_clusters_and_wiped_nodes() {
        let d = dir("gate");
        let gate = Gate::open(&d, creds(1, 10, "s3cret"), vec![1, 2, 3]).unwrap();
        // A probe is admitted but not remembered.
        let mut probe = tonic::Request::new(());
        attach(&mut probe, &creds(2, 19, "s3cret"));
        mark_probe(&mut probe);
        assert_eq!(gate.admit(probe.metadata()).unwrap(), 2);
        assert_eq!(gate.admit(&call(&creds(2, 20, "s3cret"))).unwrap(), 2);
        assert!(gate.admit(&MetadataMap::new()).is_err(), "no credentials");
        assert!(gate.admit(&call(&creds(2, 20, "guess"))).is_err(), "wrong secret");
        assert!(gate.admit(&call(&creds(4, 40, "s3cret"))).is_err(), "not a peer");
        let other = Credentials { cluster: "c2".into(), ..creds(2, 20, "s3cret") };
        assert!(gate.admit(&call(&other)).is_err(), "another cluster");
        let wiped = gate.admit(&call(&creds(2, 21, "s3cret"))).unwrap_err();
        assert!(is_wiped_refusal(&wiped), "{wiped:?}");
        // The incarnations seen survive a restart of the gate's node.
        let gate = Gate::open(&d, creds(1, 10, "s3cret"), vec![1, 2, 3]).unwrap();
        assert!(gate.admit(&call(&creds(2, 21, "s3cret"))).is_err());
        assert!(gate.admit(&call(&creds(2, 20, "s3cret"))).is_ok());
    }
}
