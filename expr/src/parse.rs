//! Parsing one SQL expression, and the names in it as PostgreSQL folds them.

use datafusion::sql::sqlparser::ast::{Expr, Ident};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use ordo_meta::catalog::TableDef;

use crate::error::{ExecError, ExecResult};

/// An identifier as PostgreSQL folds it: lowercased unless quoted.
pub fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The column of `table` an expression names (`c` or `t.c`), if it is a
/// plain column reference.
pub fn column_ref(e: &Expr, table: &TableDef) -> Option<usize> {
    match e {
        Expr::Identifier(i) => table.column_index(&ident(i)),
        Expr::CompoundIdentifier(p) if p.len() == 2 => table.column_index(&ident(&p[1])),
        _ => None,
    }
}

/// Parses one SQL expression (text the gateway produced from an AST), the
/// whole text: anything after the expression is a syntax error.
pub fn parse_expr(sql: &str) -> ExecResult<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| {
            let e = p.parse_expr()?;
            p.expect_token(&Token::EOF)?;
            Ok(e)
        })
        .map_err(|e| ExecError::Syntax(e.to_string()))
}
