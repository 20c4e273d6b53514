//! Label values shared by several layers.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// The kind of a Raft group: the `group_kind` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupKind {
    Meta,
    Sequencer,
    Vshard,
}

impl GroupKind {
    pub const ALL: [GroupKind; 3] = [GroupKind::Meta, GroupKind::Sequencer, GroupKind::Vshard];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Meta => "meta",
            GroupKind::Sequencer => "sequencer",
            GroupKind::Vshard => "vshard",
        }
    }
}

impl EncodeLabelValue for GroupKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// How a request to a replicated group ended: the `outcome` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Applied.
    Ok,
    /// Refused before anything was appended (not the leader, overloaded...).
    Refused,
    /// Its fate is unknown to the proposer (timed out, entry discarded).
    Unknown,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let s = match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Unknown => "unknown",
        };
        EncodeLabelValue::encode(&s, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub group_kind: GroupKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindOutcomeLabels {
    pub group_kind: GroupKind,
    pub outcome: Outcome,
}
