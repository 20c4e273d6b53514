//! Commands replicated through the meta group and their results.

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, TableDef};
use crate::leadership::{Leadership, LeadershipChange};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MetaCommand {
    /// `table.id` is ignored: the state machine assigns the next id.
    CreateTable {
        table: TableDef,
        if_not_exists: bool,
    },
    DropTable {
        name: String,
        if_exists: bool,
    },
    /// An operator's choice of where leaders go (`ordo admin`).
    Leadership(LeadershipChange),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MetaResult {
    Created {
        table_id: u64,
    },
    AlreadyExists,
    Dropped {
        table: Option<TableDef>,
    },
    UndefinedTable,
    /// The leadership choices after the change.
    Leadership(Leadership),
}

impl Catalog {
    /// Applies one command. Deterministic: depends only on the catalog and the
    /// command, so every replica reaches the same catalog.
    pub fn apply(&mut self, cmd: MetaCommand) -> MetaResult {
        let result = match cmd {
            MetaCommand::CreateTable { mut table, if_not_exists } => {
                if self.tables.contains_key(&table.name) {
                    let _ = if_not_exists;
                    return MetaResult::AlreadyExists;
                }
                self.next_table_id += 1;
                table.id = self.next_table_id;
                let table_id = table.id;
                self.tables.insert(table.name.clone(), table);
                MetaResult::Created { table_id }
            }
            MetaCommand::DropTable { name, if_exists } => match self.tables.remove(&name) {
                Some(t) => MetaResult::Dropped { table: Some(t) },
                None if if_exists => MetaResult::Dropped { table: None },
                None => return MetaResult::UndefinedTable,
            },
            MetaCommand::Leadership(change) => {
                self.leadership.apply(change);
                return MetaResult::Leadership(self.leadership.clone());
            }
        };
        self.version += 1;
        result
    }
}
