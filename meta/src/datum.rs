//! SQL values as stored in rows and keys.
//!
//! Rows are encoded with bincode (compact, schema-less); primary keys with an
//! order-preserving ("memcomparable") encoding so that RocksDB's byte order is
//! the key order and a partition-key prefix is a byte prefix of the key.

use serde::{Deserialize, Serialize};

use crate::catalog::SqlType;

/// One SQL value. `Decimal` holds the unscaled integer at its column's scale;
/// `Timestamp` is microseconds since the Unix epoch (UTC); `Date` is days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Datum {
    Null,
    Int(i64),
    Float(f64),
    Decimal(i128),
    Text(String),
    Bool(bool),
    Timestamp(i64),
    Date(i32),
}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }
}

/// Appends the memcomparable encoding of `d` (of column type `ty`) to `out`.
/// NULL never appears in keys (primary key columns are NOT NULL).
pub fn encode_key_datum(d: &Datum, out: &mut Vec<u8>) {
    match d {
        Datum::Null => unreachable!("NULL in a primary key"),
        Datum::Int(v) | Datum::Timestamp(v) => out.extend_from_slice(&((*v as u64) ^ (1 << 63)).to_be_bytes()),
        Datum::Date(v) => out.extend_from_slice(&((*v as u32) ^ (1 << 31)).to_be_bytes()),
        Datum::Decimal(v) => out.extend_from_slice(&((*v as u128) ^ (1 << 127)).to_be_bytes()),
        Datum::Bool(b) => out.push(*b as u8),
        Datum::Float(f) => {
            let bits = f.to_bits();
            // Positive floats: flip the sign bit; negative: flip every bit.
            let ordered = if bits >> 63 == 0 { bits ^ (1 << 63) } else { !bits };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Datum::Text(s) => {
            // 0x00 is escaped as 0x00 0xFF and the string ends with 0x00 0x01,
            // so no encoded string is a prefix of another that sorts after it.
            for &b in s.as_bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xFF);
                }
            }
            out.extend_from_slice(&[0x00, 0x01]);
        }
    }
}

/// Encodes a tuple of key datums.
pub fn encode_key(datums: &[&Datum]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * datums.len());
    for d in datums {
        encode_key_datum(d, &mut out);
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt row encoding: {0}")]
pub struct RowDecodeError(String);

pub fn encode_row(row: &[Datum]) -> Vec<u8> {
    ordo_raft::codec::encode(&row)
}

pub fn decode_row(bytes: &[u8]) -> Result<Vec<Datum>, RowDecodeError> {
    ordo_raft::codec::decode(bytes).map_err(|e| RowDecodeError(e.to_string()))
}

/// Checks that `d` is a valid stored value for `ty` (the coercion layer
/// guarantees this; the assertion catches layers that forget to coerce).
pub fn fits(d: &Datum, ty: &SqlType) -> bool {
    matches!(
        (d, ty),
        (Datum::Null, _)
            | (Datum::Int(_), SqlType::SmallInt | SqlType::Int | SqlType::BigInt)
            | (Datum::Float(_), SqlType::Double)
            | (Datum::Decimal(_), SqlType::Numeric { .. })
            | (Datum::Text(_), SqlType::Text | SqlType::Varchar(_))
            | (Datum::Bool(_), SqlType::Bool)
            | (Datum::Timestamp(_), SqlType::Timestamp)
            | (Datum::Date(_), SqlType::Date)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(d: Datum) -> Vec<u8> {
        encode_key(&[&d])
    }

    #[test]
    fn key_order_matches_value_order() {
        assert!(enc(Datum::Int(-5)) < enc(Datum::Int(3)));
        assert!(enc(Datum::Int(3)) < enc(Datum::Int(1 << 40)));
        assert!(enc(Datum::Float(-2.5)) < enc(Datum::Float(-1.0)));
        assert!(enc(Datum::Float(-1.0)) < enc(Datum::Float(0.5)));
        assert!(enc(Datum::Decimal(-100)) < enc(Datum::Decimal(7)));
        assert!(enc(Datum::Text("ab".into())) < enc(Datum::Text("abc".into())));
        assert!(enc(Datum::Text("a\0".into())) > enc(Datum::Text("a".into())));
        assert!(enc(Datum::Date(-1)) < enc(Datum::Date(0)));
    }

    #[test]
    fn composite_key_prefix_is_byte_prefix() {
        let w = Datum::Int(4);
        let d = Datum::Int(9);
        let full = encode_key(&[&w, &d]);
        assert!(full.starts_with(&encode_key(&[&w])));
    }

    #[test]
    fn rows_round_trip() {
        let row = vec![Datum::Int(1), Datum::Null, Datum::Text("x".into()), Datum::Decimal(-12345)];
        assert_eq!(decode_row(&encode_row(&row)).unwrap(), row);
        assert!(decode_row(&[0xFF, 0xFF, 0xFF]).is_err());
    }
}
