//! CREATE TABLE -> [`TableDef`].

use datafusion::sql::sqlparser::ast::{
    CharacterLength, ColumnOption, CreateTable, DataType, ExactNumberInfo, Expr, TableConstraint, TimezoneInfo,
};
use ordo_expr::{ExecError, ExecResult};
use ordo_meta::catalog::{ColumnDef, SqlType, TableDef};

use crate::constants::VARCHAR_LEN_MAX;
use crate::names::{ident, object_name};

pub fn sql_type(dt: &DataType) -> ExecResult<SqlType> {
    use DataType as D;
    Ok(match dt {
        D::SmallInt(_) | D::Int2(_) => SqlType::SmallInt,
        D::Int(_) | D::Integer(_) | D::Int4(_) => SqlType::Int,
        D::BigInt(_) | D::Int8(_) => SqlType::BigInt,
        D::DoublePrecision | D::Double(_) | D::Float8 => SqlType::Double,
        D::Numeric(info) | D::Decimal(info) | D::Dec(info) => match info {
            ExactNumberInfo::None => SqlType::Numeric { precision: 38, scale: 10 },
            ExactNumberInfo::Precision(p) => numeric(*p, 0)?,
            ExactNumberInfo::PrecisionAndScale(p, s) => numeric(*p, *s)?,
        },
        D::Text | D::String(_) => SqlType::Text,
        D::Varchar(len) | D::CharacterVarying(len) => match len {
            None => SqlType::Text,
            Some(CharacterLength::IntegerLength { length, .. }) if *length >= 1 && *length <= VARCHAR_LEN_MAX => {
                SqlType::Varchar(*length as u32)
            }
            Some(CharacterLength::IntegerLength { length, .. }) => {
                return Err(ExecError::InvalidParameter(format!(
                    "length for type varchar must be between 1 and {VARCHAR_LEN_MAX}, got {length}"
                )))
            }
            Some(CharacterLength::Max) => SqlType::Text,
        },
        D::Boolean | D::Bool => SqlType::Bool,
        D::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => SqlType::Timestamp,
        D::Date => SqlType::Date,
        other => return Err(ExecError::UndefinedType(other.to_string())),
    })
}

fn numeric(p: u64, s: i64) -> ExecResult<SqlType> {
    if !(1..=38).contains(&p) {
        return Err(ExecError::InvalidParameter(format!("NUMERIC precision {p} must be between 1 and 38")));
    }
    if s < 0 || s as u64 > p {
        return Err(ExecError::InvalidParameter(format!("NUMERIC scale {s} must be between 0 and precision {p}")));
    }
    Ok(SqlType::Numeric { precision: p as u8, scale: s as i8 })
}

pub fn table_def(ct: &CreateTable) -> ExecResult<TableDef> {
    let name = object_name(&ct.name)?;
    let (mut columns, pk_names) = columns_and_key(ct, &name)?;
    let mut primary_key = Vec::with_capacity(pk_names.len());
    for n in &pk_names {
        let idx = columns.iter().position(|c| &c.name == n).ok_or_else(|| ExecError::UndefinedColumn(n.clone()))?;
        if primary_key.contains(&idx) {
            return Err(ExecError::DuplicateColumn(format!("column \"{n}\" appears twice in primary key constraint")));
        }
        columns[idx].nullable = false;
        primary_key.push(idx);
    }
    let partition_len = match &ct.partition_by {
        None => primary_key.len(),
        Some(expr) => {
            let cols = partition_columns(expr)?;
            for (i, c) in cols.iter().enumerate() {
                if primary_key.get(i).map(|&k| &columns[k].name) != Some(c) {
                    return Err(ExecError::InvalidTableDefinition(
                        "PARTITION BY must name a prefix of the primary key, in key order".into(),
                    ));
                }
            }
            cols.len()
        }
    };
    let def = TableDef { id: 0, name, columns, primary_key, partition_len };
    def.validate().map_err(|m| {
        if m.contains("more than once") {
            ExecError::DuplicateColumn(m)
        } else {
            ExecError::InvalidTableDefinition(m)
        }
    })?;
    Ok(def)
}

/// The columns of a CREATE TABLE and the names of its primary key, from
/// a column's `PRIMARY KEY` or the table's constraint (exactly one).
fn columns_and_key(ct: &CreateTable, name: &str) -> ExecResult<(Vec<ColumnDef>, Vec<String>)> {
    let multiple =
        || ExecError::InvalidTableDefinition(format!("multiple primary keys for table \"{name}\" are not allowed"));
    let mut columns = Vec::with_capacity(ct.columns.len());
    let mut pk_names: Vec<String> = Vec::new();
    for c in &ct.columns {
        let cname = ident(&c.name);
        let mut nullable = true;
        for opt in &c.options {
            match &opt.option {
                ColumnOption::NotNull => nullable = false,
                ColumnOption::Null => nullable = true,
                ColumnOption::PrimaryKey(_) if !pk_names.is_empty() => return Err(multiple()),
                ColumnOption::PrimaryKey(_) => pk_names.push(cname.clone()),
                other => return Err(ExecError::FeatureNotSupported(format!("column option {other} is not supported"))),
            }
        }
        columns.push(ColumnDef { name: cname, ty: sql_type(&c.data_type)?, nullable });
    }
    for con in &ct.constraints {
        match con {
            TableConstraint::PrimaryKey(_) if !pk_names.is_empty() => return Err(multiple()),
            TableConstraint::PrimaryKey(pk) => {
                for ic in &pk.columns {
                    match &ic.column.expr {
                        Expr::Identifier(id) => pk_names.push(ident(id)),
                        other => {
                            return Err(ExecError::Syntax(format!("primary key column must be a name, got {other}")))
                        }
                    }
                }
            }
            other => return Err(ExecError::FeatureNotSupported(format!("constraint {other} is not supported"))),
        }
    }
    if pk_names.is_empty() {
        return Err(ExecError::InvalidTableDefinition(format!("table \"{name}\" needs a PRIMARY KEY")));
    }
    Ok((columns, pk_names))
}

fn partition_columns(e: &Expr) -> ExecResult<Vec<String>> {
    match e {
        Expr::Identifier(i) => Ok(vec![ident(i)]),
        Expr::Nested(inner) => partition_columns(inner),
        Expr::Tuple(items) => items.iter().map(|x| partition_columns(x).map(|mut v| v.remove(0))).collect(),
        other => {
            Err(ExecError::FeatureNotSupported(format!("PARTITION BY ({other}) is not supported; name key columns")))
        }
    }
}
