//! The catalog: tables, their columns, primary and partition keys. It lives in
//! the meta group's state machine, so every node holds a replica of it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Column types OrdoDB stores. Names follow PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlType {
    SmallInt,
    Int,
    BigInt,
    Double,
    /// NUMERIC(precision, scale); a bare NUMERIC is NUMERIC(38, 10).
    Numeric {
        precision: u8,
        scale: i8,
    },
    Text,
    /// VARCHAR(n): at most `n` characters, enforced on write.
    Varchar(u32),
    Bool,
    /// Microseconds, no time zone.
    Timestamp,
    Date,
}

impl SqlType {
    /// The PostgreSQL type name shown to clients.
    pub fn pg_name(&self) -> &'static str {
        match self {
            SqlType::SmallInt => "int2",
            SqlType::Int => "int4",
            SqlType::BigInt => "int8",
            SqlType::Double => "float8",
            SqlType::Numeric { .. } => "numeric",
            SqlType::Text => "text",
            SqlType::Varchar(_) => "varchar",
            SqlType::Bool => "bool",
            SqlType::Timestamp => "timestamp",
            SqlType::Date => "date",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    /// Never reused, so rows of a dropped table can never reappear.
    pub id: u64,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Column positions of the primary key, in key order.
    pub primary_key: Vec<usize>,
    /// How many leading primary key columns decide the vShard (1..=pk len).
    pub partition_len: usize,
}

impl TableDef {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn is_pk_column(&self, idx: usize) -> bool {
        self.primary_key.contains(&idx)
    }

    /// Checks the invariants every table in the catalog must satisfy.
    pub fn validate(&self) -> Result<(), String> {
        if self.primary_key.is_empty() {
            return Err("a PRIMARY KEY is required".into());
        }
        if self.partition_len == 0 || self.partition_len > self.primary_key.len() {
            return Err("PARTITION BY must name a prefix of the primary key".into());
        }
        for (i, c) in self.columns.iter().enumerate() {
            if self.columns[..i].iter().any(|o| o.name == c.name) {
                return Err(format!("column \"{}\" specified more than once", c.name));
            }
        }
        for &k in &self.primary_key {
            if k >= self.columns.len() || self.columns[k].nullable {
                return Err("primary key columns must exist and be NOT NULL".into());
            }
        }
        Ok(())
    }
}

/// The replicated catalog. `version` grows with every change of its tables
/// so caches keyed by it (prepared statements, plans) know when to refresh.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub tables: BTreeMap<String, TableDef>,
    pub next_table_id: u64,
    pub version: u64,
    /// Where operators want leaders (not part of `version`: no plan depends on it).
    pub leadership: crate::leadership::Leadership,
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(name)
    }
}
