//! The sequencer: epochs sealed by this node while it leads the sequencer
//! group, their sizes, and how long sealing (one Raft proposal) takes.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::constants::{SIZE_BUCKETS, SIZE_BUCKET_FIRST};
use crate::labels::Outcome;
use crate::latency_histogram;
use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Clone, Debug)]
pub struct SequencerMetrics {
    epochs: Family<OutcomeLabels, Counter>,
    inputs: Histogram,
    seal: Histogram,
    wait: Histogram,
}

impl Default for SequencerMetrics {
    fn default() -> SequencerMetrics {
        SequencerMetrics {
            epochs: Family::default(),
            inputs: Histogram::new(exponential_buckets(SIZE_BUCKET_FIRST, 2.0, SIZE_BUCKETS)),
            seal: latency_histogram(),
            wait: latency_histogram(),
        }
    }
}

impl SequencerMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("sequencer");
        r.register(
            "epochs",
            "Epochs this node proposed as the sequencer's leader, by how they ended",
            self.epochs.clone(),
        );
        r.register("epoch_inputs", "Cross-shard inputs per sealed epoch", self.inputs.clone());
        r.register_with_unit(
            "seal",
            "From an epoch's seal proposal to its commit and apply",
            Unit::Seconds,
            self.seal.clone(),
        );
        r.register_with_unit(
            "input_wait",
            "From an input's arrival to its epoch's commit: batching plus sealing",
            Unit::Seconds,
            self.wait.clone(),
        );
    }

    /// An epoch of `inputs` inputs whose proposal ended with `outcome` after `seconds`.
    pub fn sealed(&self, inputs: usize, outcome: Outcome, seconds: f64) {
        self.epochs.get_or_create(&OutcomeLabels { outcome }).inc();
        if outcome == Outcome::Ok {
            self.inputs.observe(inputs as f64);
            self.seal.observe(seconds);
        }
    }

    /// An input placed in an epoch `seconds` after it arrived.
    pub fn placed(&self, seconds: f64) {
        self.wait.observe(seconds);
    }
}
