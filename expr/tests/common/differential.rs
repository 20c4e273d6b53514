//! The two evaluation paths of an expression side by side, for the
//! differential property test (`fast_vs_datafusion.rs`) and the fuzz target
//! `sql_expression` (`fuzz/`): the fast path's answer and DataFusion's, each
//! written out the same way.

use std::sync::Arc;

use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use ordo_expr::arrow::{input_at, rows_to_batch, table_schema};
use ordo_expr::coerce::Input;
use ordo_expr::fast::{compile, val_input, EvalError};
use ordo_expr::parse::parse_expr;
use ordo_meta::catalog::{ColumnDef, SqlType, TableDef};
use ordo_meta::datum::Datum;

/// `t (id INT, n BIGINT, bal NUMERIC(12,2), name TEXT)`, all nullable.
pub fn table() -> TableDef {
    let types = [
        ("id", SqlType::Int),
        ("n", SqlType::BigInt),
        ("bal", SqlType::Numeric { precision: 12, scale: 2 }),
        ("name", SqlType::Text),
    ];
    let columns = types.into_iter().map(|(name, ty)| ColumnDef { name: name.into(), ty, nullable: true }).collect();
    TableDef { id: 1, name: "t".into(), columns, primary_key: vec![0], partition_len: 1 }
}

/// The value both sides agree on, written out: numbers by value whatever
/// their type and scale.
pub fn canonical(i: &Input) -> String {
    match i {
        Input::Null => "NULL".into(),
        Input::Int(v) => v.to_string(),
        Input::Number(s) if s.contains('.') => {
            let t = s.trim_end_matches('0').trim_end_matches('.');
            if t == "-0" || t.is_empty() {
                "0".into()
            } else {
                t.to_string()
            }
        }
        Input::Number(s) => s.clone(),
        Input::Float(f) => format!("float {f}"),
        Input::Text(s) => format!("'{s}'"),
        Input::Bool(b) => b.to_string(),
        Input::Datum(d) => format!("{d:?}"),
    }
}

/// The fast path's answer: `None` when it does not cover the expression.
pub fn fast(sql: &str, table: &TableDef, row: &[Datum]) -> Option<Result<String, String>> {
    let expr = parse_expr(sql).ok()?;
    let compiled = compile(&expr, table, &[])?;
    match compiled.eval(row, table) {
        Ok(v) => Some(Ok(canonical(&val_input(v)))),
        Err(EvalError::Sql(e)) => Some(Err(e.to_string())),
        Err(EvalError::Unsupported) => None,
    }
}

/// DataFusion's answer, with OrdoDB's session settings, over a table `t`
/// holding `row`.
pub fn slow(sql: &str, table: &TableDef, row: &[Datum]) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let ctx = ordo_expr::session::context();
        let schema = table_schema(table);
        let batch = rows_to_batch(table, &schema, &[row.to_vec()]).expect("a batch of the row");
        let mem = MemTable::try_new(schema, vec![vec![batch]]).expect("a table of it");
        ctx.register_table("t", Arc::new(mem)).expect("registered");
        slow_in(&ctx, sql).await
    })
}

async fn slow_in(ctx: &SessionContext, sql: &str) -> Result<String, String> {
    let df = ctx.sql(&format!("SELECT {sql} FROM t")).await.map_err(|e| e.to_string())?;
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    let batch = batches.iter().find(|b| b.num_rows() > 0).ok_or("no row")?;
    input_at(batch.column(0).as_ref(), 0).map(|i| canonical(&i)).map_err(|e| e.to_string())
}
