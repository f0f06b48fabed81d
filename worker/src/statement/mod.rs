//! What the user's CQL statements do, read without a server: the statement kind, its bind markers, and
//! whether Cassandra can apply it idempotently, which exactly-once needs (property P5).
//!
//! Exactly-once here rests on replays writing identical cells with identical write timestamps. A
//! statement breaks that when applying it twice differs from applying it once (counter updates, list
//! appends and prepends), when it computes a value at write time (`now()`, `uuid()`…), or when it brings
//! its own timestamp or condition (`USING TIMESTAMP`, `IF …`: Cassandra refuses custom timestamps on
//! conditional updates). Those are refused under `guarantee: exactly-once` with the reason, and allowed
//! under `at-least-once`.
//!
//! # Caveats
//! This is a lexer plus a few structural rules, not a CQL parser. It sees through string literals,
//! quoted identifiers and comments, so `'now()'` is not a call. Counter columns are found for certain only
//! once the statement is prepared (their type is `counter`); the text check below catches `c = c + ?`
//! whatever the column's type, which is what makes it non-idempotent.

use std::fmt;

mod shape;

/// The kinds of data statement a sink may run per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// `INSERT INTO …`
    Insert,
    /// `UPDATE …`
    Update,
    /// `DELETE …`
    Delete,
}

impl StatementKind {
    /// The kind as a sentence names it: "an INSERT".
    pub fn described(self) -> &'static str {
        match self {
            StatementKind::Insert => "an INSERT",
            StatementKind::Update => "an UPDATE",
            StatementKind::Delete => "a DELETE",
        }
    }
}

/// A bind marker of the statement, in order of appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `?`
    Positional,
    /// `:name` (lower-cased unless it was a quoted identifier).
    Named(String),
}

/// What [`analyze`] found in a data statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// INSERT, UPDATE or DELETE.
    pub kind: StatementKind,
    /// Bind markers in order.
    pub markers: Vec<Marker>,
    /// Reasons the statement cannot be applied exactly once; empty when it can.
    pub not_idempotent: Vec<NotIdempotent>,
}

/// Why a statement cannot be exactly-once in Cassandra.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotIdempotent {
    /// `SET c = c + ?` or `c = c - ?`: a counter or numeric increment applies again on replay.
    Increment(String),
    /// `SET l = l + ?` or `l = ? + l`: appending or prepending to a list adds the elements again.
    ListAppend(String),
    /// A function evaluated by the server at write time.
    NonDeterministicFunction(String),
    /// `USING TIMESTAMP`: the sink sets the write timestamp itself, derived from the offset.
    CustomTimestamp,
    /// `IF …`: a lightweight transaction cannot take the sink's write timestamps.
    Conditional,
}

impl fmt::Display for NotIdempotent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotIdempotent::Increment(column) => write!(
                f,
                "`{column} = {column} ± …` increments (a counter or running total): a replay after a crash would add again"
            ),
            NotIdempotent::ListAppend(column) => write!(
                f,
                "appending or prepending to list `{column}`: a replay after a crash would add the elements again"
            ),
            NotIdempotent::NonDeterministicFunction(name) => write!(
                f,
                "`{name}()` is evaluated by the server at write time, so a replay writes a different value"
            ),
            NotIdempotent::CustomTimestamp => write!(
                f,
                "`USING TIMESTAMP` overrides the write timestamps the sink derives from Kafka offsets to order replays"
            ),
            NotIdempotent::Conditional => write!(
                f,
                "a conditional `IF …` statement (lightweight transaction) cannot carry the sink's write timestamps"
            ),
        }
    }
}

/// Errors in the shape of a statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The text is empty.
    #[error("the statement is empty")]
    Empty,
    /// A string literal, quoted identifier or comment is not closed.
    #[error("unterminated {what} starting at character {at}")]
    Unterminated {
        /// What is open.
        what: &'static str,
        /// Character offset where it starts.
        at: usize,
    },
    /// More than one statement, e.g. `INSERT …; INSERT …`.
    #[error("expected one statement, found more after the `;` at character {at}")]
    Several {
        /// Offset of the separating semicolon.
        at: usize,
    },
    /// Not an INSERT, UPDATE or DELETE.
    #[error("expected INSERT, UPDATE or DELETE, found `{found}`")]
    NotData {
        /// The first word.
        found: String,
    },
    /// Both `?` and `:name` markers.
    #[error("the statement mixes `?` and `:name` bind markers; use one style")]
    MixedMarkers,
    /// No bind marker at all: every record would write the same row.
    #[error("the statement has no bind markers, so no record value would reach Cassandra")]
    NoMarkers,
    /// A clause is missing, out of place or malformed.
    #[error("expected {expected} at character {at}, found {found}")]
    Syntax {
        /// What the statement needs there.
        expected: String,
        /// What is there instead, quoted from the statement.
        found: String,
        /// Character position, from 1.
        at: usize,
    },
}

/// Which of a sink's statements a text is, named as in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `insertQuery`: what a record that writes runs.
    Insert,
    /// `delete.query`: what a record that deletes runs.
    Delete,
    /// `fanOut[n].query`: run beside one of them.
    FanOut(usize),
}

impl Role {
    /// The configuration field of the statement's mapping.
    pub fn mapping_field(self) -> String {
        match self {
            Role::Insert => "mapping".to_owned(),
            Role::Delete => "delete.mapping".to_owned(),
            Role::FanOut(index) => format!("fanOut[{index}].mapping"),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Insert => f.write_str("insertQuery"),
            Role::Delete => f.write_str("delete.query"),
            Role::FanOut(index) => write!(f, "fanOut[{index}].query"),
        }
    }
}

/// Why a statement cannot serve its role under the sink's guarantee.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// The text is not a usable data statement.
    #[error("{role}: {source}")]
    Shape {
        /// Which statement.
        role: Role,
        /// What is wrong with it.
        source: StatementError,
    },
    /// `delete.query` is an INSERT or UPDATE.
    #[error("{role} must be a DELETE statement, found {found}")]
    NotDelete {
        /// Which statement.
        role: Role,
        /// What it is.
        found: &'static str,
    },
    /// The statement cannot be applied exactly once (P5).
    #[error(
        "{role} cannot be applied exactly once: {}. Use an idempotent statement, or set \
         `guarantee: at-least-once` to accept duplicates after a crash",
        reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    NotExactlyOnce {
        /// Which statement.
        role: Role,
        /// Each reason.
        reasons: Vec<NotIdempotent>,
    },
}

/// Checks a sink statement without a server: its shape, that a delete statement deletes, and, under
/// exactly-once, that Cassandra can apply it idempotently (P5).
pub fn check_role(
    text: &str,
    role: Role,
    guarantee: crate::config::Guarantee,
) -> Result<Analysis, RoleError> {
    let analysis = analyze(text).map_err(|source| RoleError::Shape { role, source })?;
    if role == Role::Delete && analysis.kind != StatementKind::Delete {
        return Err(RoleError::NotDelete {
            role,
            found: analysis.kind.described(),
        });
    }
    if guarantee == crate::config::Guarantee::ExactlyOnce && !analysis.not_idempotent.is_empty() {
        return Err(RoleError::NotExactlyOnce {
            role,
            reasons: analysis.not_idempotent,
        });
    }
    Ok(analysis)
}

/// Functions whose value depends on when or where they run.
const NON_DETERMINISTIC: &[&str] = &[
    "now",
    "uuid",
    "currenttimestamp",
    "currentdate",
    "currenttime",
    "currenttimeuuid",
    "random",
];

/// A token of CQL text. Literals and comments are kept only as far as the rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An unquoted word (keyword or identifier), lower-cased.
    Word(String),
    /// A double-quoted identifier, case kept.
    Quoted(String),
    /// A string, number or other literal; its content does not matter here.
    Literal,
    /// `?`
    Question,
    /// `:name`
    Named(String),
    /// Punctuation and operators, one character each.
    Symbol(char),
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, StatementError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let start = index;
        let current = chars[index];
        let next = chars.get(index + 1).copied();
        match current {
            c if c.is_whitespace() => index += 1,
            '-' if next == Some('-') => index = skip_line(&chars, index),
            '/' if next == Some('/') => index = skip_line(&chars, index),
            '/' if next == Some('*') => {
                index =
                    find(&chars, index + 2, &['*', '/']).ok_or(StatementError::Unterminated {
                        what: "comment",
                        at: start,
                    })? + 2;
            }
            '\'' => {
                index = end_of_quoted(&chars, index, '\'').ok_or(StatementError::Unterminated {
                    what: "string literal",
                    at: start,
                })?;
                tokens.push((start, Token::Literal));
            }
            '$' if next == Some('$') => {
                index =
                    find(&chars, index + 2, &['$', '$']).ok_or(StatementError::Unterminated {
                        what: "$$ string literal",
                        at: start,
                    })? + 2;
                tokens.push((start, Token::Literal));
            }
            '"' => {
                let end =
                    end_of_quoted(&chars, index, '"').ok_or(StatementError::Unterminated {
                        what: "quoted identifier",
                        at: start,
                    })?;
                let name: String = chars[index + 1..end - 1].iter().collect();
                tokens.push((start, Token::Quoted(name.replace("\"\"", "\""))));
                index = end;
            }
            '?' => {
                tokens.push((start, Token::Question));
                index += 1;
            }
            ':' if next.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"') => {
                index += 1;
                if chars[index] == '"' {
                    let end =
                        end_of_quoted(&chars, index, '"').ok_or(StatementError::Unterminated {
                            what: "quoted marker name",
                            at: start,
                        })?;
                    let name: String = chars[index + 1..end - 1].iter().collect();
                    tokens.push((start, Token::Named(name)));
                    index = end;
                } else {
                    let end = word_end(&chars, index);
                    let name: String = chars[index..end].iter().collect();
                    tokens.push((start, Token::Named(name.to_lowercase())));
                    index = end;
                }
            }
            c if c.is_ascii_digit() => {
                index = word_end(&chars, index);
                // Decimals and exponents: `1.5`, `1e-3`.
                while index < chars.len()
                    && (chars[index] == '.' || chars[index] == '-' || chars[index] == '+')
                    && chars
                        .get(index + 1)
                        .is_some_and(char::is_ascii_alphanumeric)
                {
                    index = word_end(&chars, index + 1);
                }
                tokens.push((start, Token::Literal));
            }
            c if c.is_alphabetic() || c == '_' => {
                let end = word_end(&chars, index);
                let word: String = chars[index..end].iter().collect();
                tokens.push((start, Token::Word(word.to_lowercase())));
                index = end;
            }
            c => {
                tokens.push((start, Token::Symbol(c)));
                index += 1;
            }
        }
    }
    Ok(tokens)
}

fn skip_line(chars: &[char], from: usize) -> usize {
    chars[from..]
        .iter()
        .position(|&c| c == '\n')
        .map_or(chars.len(), |offset| from + offset + 1)
}

fn find(chars: &[char], from: usize, pattern: &[char; 2]) -> Option<usize> {
    (from..chars.len().saturating_sub(1))
        .find(|&i| chars[i] == pattern[0] && chars[i + 1] == pattern[1])
}

/// Index just past the closing quote; a doubled quote inside is an escaped quote.
fn end_of_quoted(chars: &[char], open: usize, quote: char) -> Option<usize> {
    let mut index = open + 1;
    while index < chars.len() {
        if chars[index] == quote {
            if chars.get(index + 1) == Some(&quote) {
                index += 2;
                continue;
            }
            return Some(index + 1);
        }
        index += 1;
    }
    None
}

fn word_end(chars: &[char], from: usize) -> usize {
    chars[from..]
        .iter()
        .position(|&c| !(c.is_alphanumeric() || c == '_'))
        .map_or(chars.len(), |offset| from + offset)
}

/// Reads a data statement: its kind, bind markers, and every reason it is not idempotent.
pub fn analyze(text: &str) -> Result<Analysis, StatementError> {
    let mut tokens = lex(text)?;
    // One trailing `;` is allowed; anything after a `;` is a second statement.
    if let Some(position) = tokens.iter().position(|(_, t)| *t == Token::Symbol(';')) {
        if position + 1 < tokens.len() {
            return Err(StatementError::Several {
                at: tokens[position].0,
            });
        }
        tokens.truncate(position);
    }
    let words: Vec<&Token> = tokens.iter().map(|(_, token)| token).collect();
    let kind = match words.first() {
        None => return Err(StatementError::Empty),
        Some(Token::Word(word)) if word == "insert" => StatementKind::Insert,
        Some(Token::Word(word)) if word == "update" => StatementKind::Update,
        Some(Token::Word(word)) if word == "delete" => StatementKind::Delete,
        Some(other) => {
            return Err(StatementError::NotData {
                found: describe(other),
            });
        }
    };
    shape::check(kind, &tokens, text)?;

    let markers: Vec<Marker> = words
        .iter()
        .filter_map(|token| match token {
            Token::Question => Some(Marker::Positional),
            Token::Named(name) => Some(Marker::Named(name.clone())),
            _ => None,
        })
        .collect();
    if markers.is_empty() {
        return Err(StatementError::NoMarkers);
    }
    let named = markers
        .iter()
        .filter(|m| matches!(m, Marker::Named(_)))
        .count();
    if named != 0 && named != markers.len() {
        return Err(StatementError::MixedMarkers);
    }

    let mut reasons = Vec::new();
    for (index, token) in words.iter().enumerate() {
        match token {
            Token::Word(word)
                if NON_DETERMINISTIC.contains(&word.as_str())
                    && words.get(index + 1) == Some(&&Token::Symbol('(')) =>
            {
                reasons.push(NotIdempotent::NonDeterministicFunction(word.clone()));
            }
            Token::Word(word)
                if (word == "using" || word == "and")
                    && matches!(words.get(index + 1), Some(Token::Word(next)) if next == "timestamp")
                    && clause_is_using(&words, index) =>
            {
                reasons.push(NotIdempotent::CustomTimestamp);
            }
            Token::Word(word) if word == "if" => reasons.push(NotIdempotent::Conditional),
            _ => {}
        }
    }
    if kind == StatementKind::Update {
        reasons.extend(self_referencing_assignments(&words));
    }
    reasons.dedup();
    Ok(Analysis {
        kind,
        markers,
        not_idempotent: reasons,
    })
}

/// True when the `AND` at `index` continues a `USING` clause (`USING TTL ? AND TIMESTAMP ?`), or the
/// word at `index` is `USING` itself.
fn clause_is_using(words: &[&Token], index: usize) -> bool {
    if matches!(words[index], Token::Word(word) if word == "using") {
        return true;
    }
    // Walk back over `TTL <value>` pairs joined by AND to find USING.
    let mut at = index;
    while at >= 3 {
        match (words[at - 2], words[at - 3]) {
            (Token::Word(option), Token::Word(before))
                if (option == "ttl" || option == "timestamp") && before == "using" =>
            {
                return true;
            }
            (Token::Word(option), Token::Word(before))
                if (option == "ttl" || option == "timestamp") && before == "and" =>
            {
                at -= 3;
            }
            _ => return false,
        }
    }
    false
}

/// In `SET a = a + ?, l = ? + l`, the assignments whose right side names the assigned column.
fn self_referencing_assignments(words: &[&Token]) -> Vec<NotIdempotent> {
    let Some(set) = words
        .iter()
        .position(|t| matches!(t, Token::Word(w) if w == "set"))
    else {
        return Vec::new();
    };
    let end = words
        .iter()
        .skip(set)
        .position(|t| matches!(t, Token::Word(w) if w == "where"))
        .map_or(words.len(), |offset| set + offset);
    let mut reasons = Vec::new();
    for assignment in words[set + 1..end].split(|t| **t == Token::Symbol(',')) {
        let Some(equals) = assignment.iter().position(|t| **t == Token::Symbol('=')) else {
            continue;
        };
        let [target] = &assignment[..equals] else {
            continue;
        };
        let Some(column) = identifier(target) else {
            continue;
        };
        let value = &assignment[equals + 1..];
        let mentions_self = value
            .iter()
            .any(|t| identifier(t).as_deref() == Some(column.as_str()));
        let has_operator = value
            .iter()
            .any(|t| matches!(t, Token::Symbol('+') | Token::Symbol('-')));
        if !(mentions_self && has_operator) {
            continue;
        }
        // `l = ? + l` (prepend) or `l = l + [..]` where the operand is a list: lists are the only
        // collection whose `+` is not idempotent (sets and maps merge). `c = c + ?` is a counter or a
        // read-modify-write total; both apply again on replay.
        let list_literal = value.iter().any(|t| **t == Token::Symbol('['));
        let prepend = identifier(value[value.len() - 1]).as_deref() == Some(column.as_str())
            && identifier(value[0]).as_deref() != Some(column.as_str());
        if list_literal || prepend {
            reasons.push(NotIdempotent::ListAppend(column));
        } else {
            reasons.push(NotIdempotent::Increment(column));
        }
    }
    reasons
}

fn identifier(token: &Token) -> Option<String> {
    match token {
        Token::Word(word) => Some(word.clone()),
        Token::Quoted(name) => Some(name.clone()),
        _ => None,
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(word) => word.to_uppercase(),
        Token::Quoted(name) => format!("\"{name}\""),
        Token::Literal => "a literal".to_owned(),
        Token::Question => "?".to_owned(),
        Token::Named(name) => format!(":{name}"),
        Token::Symbol(symbol) => symbol.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(text: &str) -> Vec<NotIdempotent> {
        analyze(text).expect("statement parses").not_idempotent
    }

    #[test]
    fn the_seed_insert_is_idempotent_with_two_positional_markers() {
        let analysis =
            analyze("INSERT INTO example.values (id, counter) VALUES (?, ?);").expect("parses");
        assert_eq!(analysis.kind, StatementKind::Insert);
        assert_eq!(
            analysis.markers,
            vec![Marker::Positional, Marker::Positional]
        );
        assert!(analysis.not_idempotent.is_empty());
    }

    #[test]
    fn named_markers_are_read_in_order() {
        let analysis =
            analyze("UPDATE ks.t USING TTL 60 SET a = :A, \"B\" = :\"B\" WHERE id = :id")
                .expect("parses");
        assert_eq!(analysis.kind, StatementKind::Update);
        assert_eq!(
            analysis.markers,
            vec![
                Marker::Named("a".into()),
                Marker::Named("B".into()),
                Marker::Named("id".into())
            ]
        );
        assert!(
            analysis.not_idempotent.is_empty(),
            "USING TTL alone is fine"
        );
    }

    #[test]
    fn counter_updates_are_refused() {
        assert_eq!(
            reasons("UPDATE ks.hits SET n = n + ? WHERE id = ?"),
            vec![NotIdempotent::Increment("n".into())]
        );
        assert_eq!(
            reasons("UPDATE ks.hits SET n = n - 1 WHERE id = ?"),
            vec![NotIdempotent::Increment("n".into())]
        );
    }

    #[test]
    fn list_appends_and_prepends_are_refused() {
        assert_eq!(
            reasons("UPDATE ks.t SET events = events + ? WHERE id = ?"),
            vec![NotIdempotent::Increment("events".into())],
            "without the column type, `x = x + ?` is reported as an increment; still refused"
        );
        assert_eq!(
            reasons("UPDATE ks.t SET events = events + ['a'] WHERE id = ?"),
            vec![NotIdempotent::ListAppend("events".into())]
        );
        assert_eq!(
            reasons("UPDATE ks.t SET events = ? + events WHERE id = ?"),
            vec![NotIdempotent::ListAppend("events".into())]
        );
    }

    #[test]
    fn plain_assignments_and_other_columns_are_fine() {
        assert!(reasons("UPDATE ks.t SET a = ?, b = ? WHERE id = ?").is_empty());
        assert!(reasons("UPDATE ks.t SET a = b + ? WHERE id = ?").is_empty());
    }

    #[test]
    fn non_deterministic_functions_are_refused_but_not_inside_strings() {
        assert_eq!(
            reasons("INSERT INTO ks.t (id, at) VALUES (?, now())"),
            vec![NotIdempotent::NonDeterministicFunction("now".into())]
        );
        assert_eq!(
            reasons("INSERT INTO ks.t (id, u) VALUES (?, UUID())"),
            vec![NotIdempotent::NonDeterministicFunction("uuid".into())]
        );
        assert!(reasons("INSERT INTO ks.t (id, note) VALUES (?, 'now()')").is_empty());
        assert!(reasons("INSERT INTO ks.t (id, \"now\") VALUES (?, ?)").is_empty());
    }

    #[test]
    fn custom_timestamps_and_conditions_are_refused() {
        assert_eq!(
            reasons("INSERT INTO ks.t (id, v) VALUES (?, ?) USING TIMESTAMP ?"),
            vec![NotIdempotent::CustomTimestamp]
        );
        assert_eq!(
            reasons("INSERT INTO ks.t (id, v) VALUES (?, ?) USING TTL 10 AND TIMESTAMP 5"),
            vec![NotIdempotent::CustomTimestamp]
        );
        assert_eq!(
            reasons("INSERT INTO ks.t (id, v) VALUES (?, ?) IF NOT EXISTS"),
            vec![NotIdempotent::Conditional]
        );
        assert_eq!(
            reasons("UPDATE ks.t SET v = ? WHERE id = ? IF v = 1"),
            vec![NotIdempotent::Conditional]
        );
        // A column called timestamp is not a USING TIMESTAMP clause.
        assert!(reasons("UPDATE ks.t SET v = ? WHERE id = ? AND timestamp = ?").is_empty());
    }

    #[test]
    fn shapes_that_cannot_work_are_errors() {
        assert_eq!(analyze("  ;"), Err(StatementError::Empty));
        assert!(matches!(
            analyze("SELECT * FROM ks.t WHERE id = ?"),
            Err(StatementError::NotData { found }) if found == "SELECT"
        ));
        assert!(matches!(
            analyze("INSERT INTO ks.t (a) VALUES (?); INSERT INTO ks.t (a) VALUES (?)"),
            Err(StatementError::Several { .. })
        ));
        assert_eq!(
            analyze("INSERT INTO ks.t (a, b) VALUES (?, :b)"),
            Err(StatementError::MixedMarkers)
        );
        assert_eq!(
            analyze("INSERT INTO ks.t (a) VALUES (1)"),
            Err(StatementError::NoMarkers)
        );
        assert!(matches!(
            analyze("INSERT INTO ks.t (a) VALUES ('open"),
            Err(StatementError::Unterminated { .. })
        ));
    }

    #[test]
    fn comments_are_ignored() {
        let analysis = analyze(
            "-- the seed's table\nINSERT INTO ks.t /* now() */ (id, v) VALUES (?, ?) // IF NOT EXISTS",
        )
        .expect("parses");
        assert!(analysis.not_idempotent.is_empty());
        assert_eq!(analysis.markers.len(), 2);
    }

    /// The error for `text`, which must be a syntax error: (what was expected, what was found).
    fn syntax(text: &str) -> (String, String) {
        match analyze(text) {
            Err(StatementError::Syntax {
                expected, found, ..
            }) => (expected, found),
            other => panic!("{text}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn each_malformed_insert_is_refused_quoting_what_could_not_be_read() {
        let cases = [
            (
                "INSERT INTO ks.values (id, counter) VALUES (?, ?",
                "`)` closing the VALUES list",
                "the end",
            ),
            (
                "INSERT INTO ks.values (id counter) VALUES (?, ?)",
                "`,` or `)` in the column list",
                "`counter",
            ),
            (
                "INSERT INTO ks.values (id, counter) VALUES (?)",
                "2 values, one per column",
                "1 in the VALUES list",
            ),
            (
                "INSERT INTO ks.values (id) VALUES (?, ?)",
                "1 values, one per column",
                "2 in the VALUES list",
            ),
            (
                "INSERT INTO ks.values (id, counter) VALUES (?, ?) garbage",
                "the end of the statement",
                "`garbage`",
            ),
            (
                "INSERT INTO ks.values (id, counter) VALUS (?, ?)",
                "VALUES after the column list",
                "`VALUS (?, ?)`",
            ),
            (
                "INSERT INTO (id, counter) VALUES (?, ?)",
                "a table name",
                "`(id, counter)",
            ),
            (
                "INSERT ks.values (id, counter) VALUES (?, ?)",
                "INTO after INSERT",
                "`ks.values",
            ),
            (
                "INSERT INTO ks.values (id, counter) VALUES ?, ?",
                "`(` opening the VALUES list",
                "`?, ?`",
            ),
            (
                "INSERT INTO ks.values VALUES (?, ?)",
                "`(` opening the column list",
                "`VALUES (?, ?)`",
            ),
            (
                "INSERT INTO ks.values (id, counter) VALUES (?, ?]",
                "`,` or `)` in the VALUES list",
                "`]`",
            ),
            (
                "INSERT INTO ks.values (id, counter) VALUES (?, [?)",
                "`]` closing the `[`",
                "`)`",
            ),
            (
                "INSERT INTO ks. (id) VALUES (?)",
                "a table name after `keyspace.`",
                "`(id)",
            ),
            (
                "INSERT INTO ks.values (id, counter) VALUES (?, ?) USING TTLL 5",
                "TTL or TIMESTAMP",
                "`TTLL 5`",
            ),
        ];
        for (text, expected, found) in cases {
            let (got_expected, got_found) = syntax(text);
            assert!(
                got_expected.starts_with(expected) && got_found.starts_with(found),
                "{text}: expected {got_expected:?}, found {got_found:?}"
            );
        }
    }

    #[test]
    fn malformed_updates_and_deletes_are_refused() {
        for (text, expected) in [
            (
                "UPDATE ks.t counter = ? WHERE id = ?",
                "SET after the table name",
            ),
            (
                "UPDATE ks.t SET counter = ?",
                "`,` or WHERE after the assignments",
            ),
            (
                "UPDATE ks.t SET counter ? WHERE id = ?",
                "an operator or `,` in an assignment",
            ),
            (
                "UPDATE ks.t SET counter = ? WHERE id",
                "a relation on the primary key with an operator",
            ),
            (
                "UPDATE ks.t SET counter = ? WHERE id = ? extra",
                "an operator or `,` in a relation",
            ),
            ("DELETE ks.t WHERE id = ?", "FROM in DELETE"),
            ("DELETE FROM ks.t", "WHERE after the table name"),
            ("DELETE FROM ks.t WHERE id = ? AND", "a relation"),
        ] {
            let (got, _) = syntax(text);
            assert!(got.starts_with(expected), "{text}: {got}");
        }
    }

    #[test]
    fn well_formed_statements_of_every_shape_pass() {
        for text in [
            "INSERT INTO example.values (id, counter) VALUES (?, ?);",
            "insert into \"Ks\".\"Values\" (\"Id\", json, ttl) values (:id, :json, :ttl)",
            "INSERT INTO ks.t (id, tags, m, pos) VALUES (?, {'a', 'b'}, {'k': ?}, (?, 1.5e-3))",
            "INSERT INTO ks.t (id, v) VALUES (?, ?) USING TTL 86400",
            "INSERT INTO ks.t (id, v) VALUES (?, blobAsText(?)) IF NOT EXISTS",
            "INSERT INTO ks.t JSON ? DEFAULT UNSET",
            "UPDATE ks.t USING TTL ? SET v = ?, m['k'] = ?, s = s + {'x'} WHERE id = ? AND c IN (1, 2)",
            "UPDATE ks.t SET v = ? WHERE id = ? IF v = 3",
            "DELETE FROM ks.t WHERE id = ?",
            "DELETE v, m['k'] FROM ks.t USING TIMESTAMP 5 WHERE id = ? AND c > ? IF EXISTS",
        ] {
            assert!(analyze(text).is_ok(), "{text}: {:?}", analyze(text));
        }
    }

    #[test]
    fn a_delete_statement_must_delete_and_be_idempotent_under_exactly_once() {
        use crate::config::Guarantee::{AtLeastOnce, ExactlyOnce};
        let analysis = check_role("DELETE FROM ks.t WHERE id = ?", Role::Delete, ExactlyOnce)
            .expect("a plain delete");
        assert_eq!(analysis.kind, StatementKind::Delete);
        assert_eq!(analysis.markers, vec![Marker::Positional]);

        let error = check_role(
            "INSERT INTO ks.t (id) VALUES (?)",
            Role::Delete,
            ExactlyOnce,
        )
        .expect_err("an insert as delete.query");
        assert_eq!(
            error.to_string(),
            "delete.query must be a DELETE statement, found an INSERT"
        );
        // A conditional delete cannot carry the offset-derived timestamp that orders it.
        let conditional = "DELETE FROM ks.t WHERE id = ? IF EXISTS";
        let error = check_role(conditional, Role::Delete, ExactlyOnce).expect_err("IF EXISTS");
        assert!(
            matches!(&error, RoleError::NotExactlyOnce { role: Role::Delete, reasons }
                if reasons == &[NotIdempotent::Conditional]),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("delete.query cannot be applied exactly once")
        );
        check_role(conditional, Role::Delete, AtLeastOnce).expect("allowed at least once");
        let error = check_role("DELETE FROM", Role::Delete, AtLeastOnce).expect_err("malformed");
        assert!(error.to_string().starts_with("delete.query: "), "{error}");
        // The insert statement keeps accepting any data statement.
        check_role("DELETE FROM ks.t WHERE id = ?", Role::Insert, ExactlyOnce)
            .expect("a delete as insertQuery");
    }
}
