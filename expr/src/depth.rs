//! A bound on how deeply a statement's expressions nest, checked on its
//! tokens before it is parsed: the parser, the planner, `Display`, `Drop`
//! and our own evaluation all walk expression trees recursively, and a
//! chain like `1+1+...+1` of 20,000 terms (a left-deep tree, no
//! parentheses, so the parser's own recursion limit does not see it) would
//! overflow a thread's stack and kill the node.
//!
//! The estimate is an upper bound of a tree's depth: at every token, the
//! parentheses (and `CASE`s) open around it plus every operator met since
//! the last separator (comma, clause keyword) at each of those levels.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::constants::EXPRESSION_DEPTH_MAX;
use crate::error::{ExecError, ExecResult};

/// Refuses (54001) a statement whose expressions may nest deeper than
/// [`EXPRESSION_DEPTH_MAX`]; text that does not tokenize is left to the
/// parser, which reports it.
pub fn check_depth(sql: &str) -> ExecResult<()> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return Ok(()) };
    // Operators since the last separator, per open level (outermost first).
    let mut levels: Vec<usize> = vec![0];
    let mut deepest = 0usize;
    for token in &tokens {
        match token {
            Token::LParen | Token::LBracket => levels.push(0),
            Token::Word(w) if w.keyword == Keyword::CASE => levels.push(0),
            Token::RParen | Token::RBracket => pop(&mut levels),
            Token::Word(w) if w.keyword == Keyword::END => pop(&mut levels),
            Token::Comma | Token::SemiColon => *levels.last_mut().expect("never empty") = 0,
            Token::Word(w) if is_clause(w.keyword) => *levels.last_mut().expect("never empty") = 0,
            t if is_operator(t) => *levels.last_mut().expect("never empty") += 1,
            _ => continue,
        }
        let depth = levels.len() + levels.iter().sum::<usize>();
        deepest = deepest.max(depth);
        if deepest > EXPRESSION_DEPTH_MAX {
            return Err(ExecError::StatementTooComplex(format!(
                "statement too complex: its expressions nest more than {EXPRESSION_DEPTH_MAX} levels deep"
            )));
        }
    }
    Ok(())
}

/// Closes a level; an unbalanced closer is the parser's to report.
fn pop(levels: &mut Vec<usize>) {
    if levels.len() > 1 {
        levels.pop();
    }
}

/// Keywords that start a new expression at their level.
fn is_clause(k: Keyword) -> bool {
    use Keyword as K;
    matches!(
        k,
        K::SELECT
            | K::FROM
            | K::WHERE
            | K::SET
            | K::VALUES
            | K::WHEN
            | K::THEN
            | K::ELSE
            | K::ON
            | K::GROUP
            | K::ORDER
            | K::HAVING
            | K::LIMIT
            | K::OFFSET
            | K::RETURNING
            | K::BEGIN
            | K::COMMIT
    )
}

/// Tokens that join or wrap operands (each may add a level to the tree).
fn is_operator(t: &Token) -> bool {
    use Keyword as K;
    match t {
        Token::Word(w) => {
            matches!(w.keyword, K::AND | K::OR | K::NOT | K::IS | K::LIKE | K::ILIKE | K::BETWEEN | K::IN)
        }
        _ => matches!(
            t,
            Token::DoubleEq
                | Token::Eq
                | Token::Neq
                | Token::Lt
                | Token::Gt
                | Token::LtEq
                | Token::GtEq
                | Token::Spaceship
                | Token::Plus
                | Token::Minus
                | Token::Mul
                | Token::Div
                | Token::Mod
                | Token::StringConcat
                | Token::Caret
                | Token::Ampersand
                | Token::Pipe
                | Token::ShiftLeft
                | Token::ShiftRight
                | Token::Tilde
                | Token::ExclamationMark
                | Token::DoubleColon
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(op: &str, n: usize) -> String {
        vec!["1"; n].join(op)
    }

    #[test]
    fn deep_chains_and_nesting_are_refused() {
        for sql in [
            format!("SELECT {}", chain("+", 20_000)),
            format!("SELECT * FROM t WHERE {}", vec!["id = 1"; 5_000].join(" AND ")),
            format!("UPDATE t SET a = 1 WHERE {}", vec!["s = 'q'"; 5_000].join(" OR ")),
            format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
        ] {
            let e = check_depth(&sql).unwrap_err();
            assert_eq!(e.sqlstate(), "54001", "{e}");
        }
    }

    #[test]
    fn wide_statements_pass() {
        let rows: Vec<String> = (0..5_000).map(|i| format!("({i}, 'x', -{i}.5 * 2)")).collect();
        check_depth(&format!("INSERT INTO t VALUES {}", rows.join(", "))).unwrap();
        let list: Vec<String> = (0..5_000).map(|i| i.to_string()).collect();
        check_depth(&format!("SELECT * FROM t WHERE id IN ({})", list.join(", "))).unwrap();
        check_depth(&format!("SELECT {}", chain("+", EXPRESSION_DEPTH_MAX / 2))).unwrap();
        let cases = "CASE WHEN a = 1 THEN 1 ELSE 2 END, ".repeat(1_000);
        check_depth(&format!("SELECT {cases} 1 FROM t")).unwrap();
    }
}
