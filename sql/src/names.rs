//! Names as PostgreSQL reads them: identifiers folded to lower case unless
//! quoted, and table names with an optional `public.` schema.

use datafusion::sql::sqlparser::ast::ObjectName;
use ordo_expr::{ExecError, ExecResult};

pub use ordo_expr::parse::ident;

/// A table name; `public.t` and `t` are the same table.
pub fn object_name(n: &ObjectName) -> ExecResult<String> {
    let parts: Vec<String> = n.0.iter().map(|p| p.as_ident().map(ident).unwrap_or_else(|| p.to_string())).collect();
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [s, t] if s == "public" => Ok(t.clone()),
        _ => Err(ExecError::FeatureNotSupported(format!("schema-qualified name {n} is not supported"))),
    }
}
