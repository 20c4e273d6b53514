//! The rows a `WHERE` clause can touch ([`Target`]): one row, the rows
//! under one key prefix of one vShard, or every vShard — found from the
//! `column = constant` conjuncts on the primary key, without a plan.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::Expr;
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{encode_key, Datum};
use ordo_vshard::routing::vshard_of;

use crate::coerce::coerce;
use crate::constant::key_equalities;
use crate::param::Param;

/// The vShard of a row whose primary key (or at least its partition
/// prefix) is `key`.
pub fn vshard_of_key(table: &TableDef, key: &[Datum], vshards: u32) -> u32 {
    let part: Vec<&Datum> = key[..table.partition_len].iter().collect();
    vshard_of(&encode_key(&part), vshards)
}

/// The rows a statement on one table can touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One row: its vShard and encoded primary key.
    Point { vshard: u32, pk: Vec<u8> },
    /// The rows under one primary-key prefix (`part`, encoded): at least
    /// the partition key, so one vShard; longer when more leading key
    /// columns are bound (keys are self-delimiting, so a byte prefix of
    /// the encoded key selects exactly those rows).
    Shard { vshard: u32, part: Vec<u8> },
    /// Any row.
    All,
}

impl Target {
    pub fn vshards(&self, vshards: u32) -> Vec<u32> {
        match self {
            Target::Point { vshard, .. } | Target::Shard { vshard, .. } => vec![*vshard],
            Target::All => (0..vshards).collect(),
        }
    }
}

/// Where a `WHERE` clause on `table` can match: the full primary key bound
/// by equalities gives one row, the partition key (or a longer leading
/// part of the primary key) a range of one vShard.
pub fn target(table: &TableDef, selection: Option<&Expr>, params: &[Param], vshards: u32) -> Target {
    let Some(sel) = selection else { return Target::All };
    let mut eq = BTreeMap::new();
    key_equalities(table, sel, params, &mut eq);
    let bind = |n: usize| -> Option<Vec<Datum>> {
        table.primary_key[..n]
            .iter()
            .map(|&ci| {
                let d = coerce(eq.get(&ci)?.clone(), &table.columns[ci]).ok()?;
                (!d.is_null()).then_some(d)
            })
            .collect()
    };
    if let Some(pk) = bind(table.primary_key.len()) {
        let vshard = vshard_of_key(table, &pk, vshards);
        return Target::Point { vshard, pk: encode_key(&pk.iter().collect::<Vec<_>>()) };
    }
    for n in (table.partition_len.max(1)..table.primary_key.len()).rev() {
        if let Some(part) = bind(n) {
            let vshard = vshard_of_key(table, &part, vshards);
            return Target::Shard { vshard, part: encode_key(&part.iter().collect::<Vec<_>>()) };
        }
    }
    Target::All
}
